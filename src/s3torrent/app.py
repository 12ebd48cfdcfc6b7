"""Composition root: builds every service from the settings, starts and stops them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from s3torrent.admin import AdminApi, NodeFacts, seeder_stats_handler
from s3torrent.anonymous_reads import AnonymousReads
from s3torrent.config import Settings, StartupError, split_host_port, url_place
from s3torrent.console import PREFIX as CONSOLE_PREFIX
from s3torrent.console import ConsolePages
from s3torrent.events import EventBus
from s3torrent.events_local import EventHub, EventLink
from s3torrent.extras import check_extras
from s3torrent.failures import logged_failure
from s3torrent.forwarding import TrustedProxies, forwarded_client_middleware
from s3torrent.handoff import HandoffClient, HandoffServer
from s3torrent.http_site import AdmittedSite, aiohttp_keepalive_timeout, finish_bodies
from s3torrent.lifecycle.worker import LifecycleWorker
from s3torrent.listeners import ConnectionGate
from s3torrent.log_output import unblock_server_log
from s3torrent.metering.lifecycle_metrics import LifecycleCollector
from s3torrent.metering.meter import Meter, edge_recorder
from s3torrent.metering.metrics import MetricsEndpoint
from s3torrent.metering.worker_push import TOTALS_PATH, incarnation, push_forever, totals_handler
from s3torrent.metering.worker_totals import WorkerTotals
from s3torrent.owner_link import (
    OwnerLink,
    route_to_owner,
    settle_middleware,
    tag_worker,
    trusted_client_middleware,
)
from s3torrent.peer.seeder import Seeder, advertised_address
from s3torrent.probes import health_handler, metrics_handler
from s3torrent.provision import (
    hold_data_dir,
    open_sealing,
    open_user_secrets,
    persistent_node_id,
    secure_data_dir,
    space_reserve,
)
from s3torrent.publication import PublicTorrents, ResolvingRegistry
from s3torrent.roles import (
    STOP_SIGNALS,
    Role,
    events_socket,
    handoff_socket,
    owner_socket,
    tracker_socket,
)
from s3torrent.s3.access_log import AccessLog
from s3torrent.s3.bucket_logs import BucketLogDelivery
from s3torrent.s3.context import S3Context
from s3torrent.s3.cross_origin import CrossOrigin
from s3torrent.s3.ops.table import handlers
from s3torrent.s3.quick import QUICK_PUT_MAX, QuickReads
from s3torrent.s3.server import FinishedHook, S3Application, Wrapper
from s3torrent.startup import (
    deployment_warnings,
    finished_hooks,
    listening,
    open_access_log,
    preflight,
    record_config_file,
)
from s3torrent.store.blobs import open_blob_store
from s3torrent.store.master_key import MasterKeyError
from s3torrent.store.metastore import MetadataStore, open_metadata_store
from s3torrent.store.migrations import HEAD as SCHEMA_REVISION
from s3torrent.store.objects import ObjectStore
from s3torrent.store.space import storage_full
from s3torrent.store.sql import one_generation_read
from s3torrent.store.upload_expiry import expire_uploads_forever
from s3torrent.store.users import UserDirectory
from s3torrent.torrent.catalog import TorrentCatalog
from s3torrent.torrent.jobs import HashJobs
from s3torrent.tracker import service as tracker_service
from s3torrent.tracker.http import tracker_handler
from s3torrent.tracker.registry import (
    MemoryRegistry,
    RegistryLimits,
    TokenBuckets,
    TrackerRegistry,
)
from s3torrent.tracker.relay import TrackerRelay
from s3torrent.tracker.udp_protocol import derive_udp_secret
from s3torrent.tracker.ws import WS_TRACKER_PATH, WebSocketTracker, websocket_tracker
from s3torrent.tracker_listeners import TrackerListeners
from s3torrent.webseed import WEB_SEED_PREFIX, WebSeed

if TYPE_CHECKING:
    from s3torrent.events_redis import RedisEventRelay

log = logging.getLogger("s3torrent")


@dataclass(slots=True)
class Services:
    """Everything a request handler may use; built once per process."""

    settings: Settings
    meta: MetadataStore
    store: ObjectStore
    users: UserDirectory
    events: EventBus
    torrents: TorrentCatalog
    executor: concurrent.futures.ThreadPoolExecutor
    hash_jobs: HashJobs
    public: PublicTorrents
    tracker: tracker_service.TrackerService
    meter: Meter
    relay: RedisEventRelay | EventHub | EventLink | None = None


def _database_failure(settings: Settings, exc: Exception) -> StartupError | None:
    """A driver's failure to open the metadata database as a StartupError naming
    metadata_url and where it points (never its password), with the driver's first line."""
    import sqlalchemy.exc

    if not isinstance(exc, sqlalchemy.exc.DBAPIError):
        return None
    where = url_place(settings.database_url)
    reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc).__name__
    return StartupError(
        f"cannot open the metadata database at {where} (metadata_url): {reason}; "
        "correct metadata_url, or make the database reachable"
    )


def build_services(settings: Settings, role: Role | None = None) -> Services:
    role = role or Role()
    check_extras(settings)
    secure_data_dir(settings)
    space = space_reserve(settings)
    events = EventBus()
    try:
        meta = open_metadata_store(
            settings.database_url,
            events,
            max_batch=settings.storage.group_commit_max_ops,
            durable=settings.storage.fsync,
        )
    except Exception as exc:
        if not storage_full(exc):
            failure = _database_failure(settings, exc)
            if failure is None:
                raise
            raise failure from exc
        # No reserve was left to give back (storage.reserve_bytes 0, or lost in a crash).
        raise SystemExit(
            f"s3torrent: the disk holding {settings.data_dir} is too full to open the metadata "
            "database; free some space there and start again"
        ) from None
    log.info("metadata schema at revision %s", SCHEMA_REVISION)
    if space is not None:
        meta.db.on_full = space.release
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="io")
    blobs = open_blob_store(settings)
    store = ObjectStore(
        meta,
        blobs,
        executor=executor,
        blob_delete_delay=settings.storage.blob_delete_delay,
        space=space,
    )
    store.sealing = open_sealing(settings, meta, blobs)
    open_user_secrets(meta, store.sealing.keys)
    users = UserDirectory(meta)
    users.load()
    catalog = TorrentCatalog(settings.torrent)
    node_id = role.node_id(settings.node_id or persistent_node_id(settings))
    hash_jobs = HashJobs(
        meta,
        blobs,
        catalog,
        workers=settings.torrent.hash_workers,
        node_id=node_id,
        claim_ttl=settings.jobs.claim_ttl,
        poll_interval=settings.jobs.poll_interval,
    )
    hash_jobs.sealing = store.sealing
    ts = settings.tracker
    limits = RegistryLimits(
        max_peers_per_torrent=ts.max_peers_per_torrent,
        max_peers_total=ts.max_peers_total,
        rate_per_ip=ts.announce_rate_per_ip,
        rate_burst=ts.announce_rate_burst,
    )
    registry: TrackerRegistry
    relay: RedisEventRelay | EventHub | EventLink | None = None
    redis_relay: RedisEventRelay | None = None
    if settings.redis_url:
        # Several nodes: one swarm state and one event stream for all of them.
        from s3torrent.events_redis import RedisEventRelay
        from s3torrent.tracker.redis_registry import RedisRegistry

        registry = RedisRegistry.from_url(settings.redis_url, limits)
        relay = redis_relay = RedisEventRelay.from_url(events, settings.redis_url, node_id=node_id)
    else:
        registry = MemoryRegistry(limits)
    public = PublicTorrents(settings, meta, catalog, registry)
    public.lookups = TokenBuckets(limits.rate_per_ip, limits.rate_burst, limits.rate_table_size)
    if redis_relay is not None:
        # A gap in the subscription (Redis restarted, the connection dropped): re-decide.
        redis_relay.on_gap = lambda: public.missed_events(shared_registry=True)
    # See PublicTorrents.decide_relayed_writes: another node's writes (Redis) are decided at
    # once by a node's owner; another worker's of this machine are published lazily by all.
    public.decide_relayed_writes = role.owner and bool(settings.redis_url)
    if relay is None and not role.alone:
        # The workers of one machine: events through the owner's hub (events_local), which
        # leaves out a write no other worker needs (ObjectWritten.written_unmarked).
        meta.marks_at_commit = True
        path = events_socket(settings.data_dir)

        async def reload_users() -> None:
            await asyncio.get_running_loop().run_in_executor(executor, users.load)

        controls = {"users": reload_users}
        relay = (
            EventHub(events, node_id, path, controls)
            if role.owner
            else EventLink(
                events, node_id, path, controls=controls, on_gap=lambda: forget_publications(public)
            )
        )
    tracker = tracker_service.TrackerService(
        ResolvingRegistry(registry, public),
        tracker_service.TrackerSettings(
            interval=ts.interval,
            min_interval=ts.min_interval,
            max_numwant=ts.max_numwant,
            default_numwant=ts.default_numwant,
            trust_ip_param=ts.trust_ip_param,
            # Either list: the top-level one names the proxies of every channel.
            trusted_proxies=frozenset([*ts.trusted_proxies, *settings.trusted_proxies]),
            max_scrape_hashes=ts.max_scrape_hashes,
        ),
        # Connection ids any worker or node gives are checked on the others: one clock.
        id_clock=time.time,
    )
    # Revocation first, then new jobs: a subscriber order that keeps revocation synchronous.
    events.subscribe(public.on_event)
    if role.owner:  # background hashing runs on the owner; the others claim on demand
        events.subscribe(hash_jobs.on_event)
    meter = Meter(
        meta,
        flush_interval=settings.metering.flush_interval,
        storage_sample_interval=settings.metering.storage_sample_interval,
        public=public,
        node_id=node_id,
        # The owner's registry is this process's (without Redis): it bills its own swarms.
        local_swarms=role.owner and not settings.redis_url,
    )
    meter.may_sample = role.owner  # the owner holds the swarms the sample reads
    return Services(
        settings=settings,
        meta=meta,
        store=store,
        users=users,
        events=events,
        torrents=catalog,
        executor=executor,
        hash_jobs=hash_jobs,
        public=public,
        tracker=tracker,
        meter=meter,
        relay=relay,
    )


def forget_publications(public: PublicTorrents) -> None:
    """After events may have been missed: decide every published torrent, and every
    anonymous response in flight, again."""
    public.missed_events()


class Node:
    """One running s3torrent node: HTTP listener plus background tasks."""

    def __init__(self, settings: Settings, role: Role | None = None) -> None:
        self.settings = settings
        self.role = role = role or Role()
        # Before any listener or file: raises the open file limit, caps connections below it.
        self.gate = ConnectionGate.from_settings(
            settings.limits, TrustedProxies(settings.trusted_proxies)
        )
        self.svc = build_services(settings, role)
        self.anonymous_reads = AnonymousReads()
        self.svc.public.on_revoked(lambda info: self.anonymous_reads.revoked(info.version_id))
        self.svc.public.on_access_changed(self.anonymous_reads.access_changed)
        self.svc.public.on_gap(self.anonymous_reads.recheck_all)
        self.context = S3Context(
            settings=settings,
            meta=self.svc.meta,
            store=self.svc.store,
            users=self.svc.users,
            torrents=self.svc.torrents,
            hash_jobs=self.svc.hash_jobs,
            anonymous_reads=self.anonymous_reads,
            publication_settled=self.svc.public.settled,
        )
        self.s3 = S3Application(self.context, handlers())
        health = health_handler(self.context, lambda: self._ready)
        self.s3.add_route("/_health", health if role.alone else tag_worker(health, role))
        tracker = tracker_handler(self.svc.tracker)
        self.ws_tracker = self._websocket_tracker() if settings.tracker.websocket else None
        self.s3.add_route("/_tracker", tracker)
        # The URL torrents name (libtorrent accepts no other path on a LAN address); buckets
        # named "announce"/"scrape" keep them: S3 never sends info_hash or peer_id.
        self.s3.add_query_route("/announce", frozenset({"info_hash", "peer_id"}), tracker)
        self.s3.add_query_route("/scrape", frozenset({"info_hash"}), tracker)
        self.admin = AdminApi(self.context, NodeFacts(swarms=self.svc.public.registry))
        self.s3.add_route("/_admin", self.admin)
        self.s3.add_route(CONSOLE_PREFIX, ConsolePages(settings.region))
        self.owner_link: OwnerLink | None = None
        if not role.owner:
            self.owner_link = OwnerLink(
                owner_socket(settings.data_dir),
                max_ws_message=settings.tracker.ws_max_message_bytes,
            )
        self.lifecycle = LifecycleWorker(
            self.svc.store, settings.lifecycle, self.svc.hash_jobs.node_id
        )
        self.metrics: MetricsEndpoint | None = None
        self.metrics_listen: str | None = None
        hooks: list[FinishedHook] = []
        if settings.metering.enabled:
            hooks.append(edge_recorder(self.svc.meter))
            self.metrics = MetricsEndpoint(self.svc.meter, self.svc.public, self.svc.hash_jobs)
            self.metrics.registry.register(LifecycleCollector(self.lifecycle.progress))
            self.s3.add_route("/_metrics", metrics_handler(self.context, self.metrics))
            self.metrics_listen = settings.metering.metrics_listen
            if role.owner and not role.alone:
                # The other workers' counters, summed into the node's (worker_totals.py).
                self.metrics.collector.others = WorkerTotals(incarnation())
                self.s3.add_route(TOTALS_PATH, totals_handler(self.metrics.collector.others))
        self.access_log: AccessLog | None = None
        logs = settings.logging
        if logs.access_log and logging.getLogger("s3torrent").isEnabledFor(logging.INFO):
            self.access_log = open_access_log(logs.access_log_file, logs.access_log_format)
            hooks.append(self.access_log.hook)
        self.bucket_logs = BucketLogDelivery(
            self.svc.meta,
            self.svc.store,
            interval=logs.bucket_log_interval,
            inline_max_size=settings.storage.inline_max_size,
        )
        hooks.append(self.bucket_logs.hook)
        self.s3.on_finished = finished_hooks(hooks)
        self.seeder: Seeder | None = None
        if settings.seeder.enabled and role.owner:
            self.seeder = Seeder(
                settings.seeder,
                self.svc.public,
                self.svc.store,
                self.gate,
                on_piece_sent=self.svc.meter.on_piece_sent if settings.metering.enabled else None,
            )
            self.s3.add_route("/_seeder/stats", self._seeder_stats)
            self.admin.node.seeder = self.seeder
            if self.metrics is not None:
                seeder = self.seeder
                self.metrics.peer_connections = lambda: len(seeder.links)
        self.web_seed = WebSeed(
            self.svc.public,
            self.svc.store,
            self.anonymous_reads,
            seeder=self.seeder,
            meter=self.svc.meter if settings.metering.enabled else None,
            browsers=self.ws_tracker.core.peers if self.ws_tracker is not None else None,
        )
        self.s3.add_route(WEB_SEED_PREFIX, self.web_seed.handle)
        cross_origin = CrossOrigin(
            self.context, web_seed_prefix=WEB_SEED_PREFIX, web_seed_bucket=self.web_seed.bucket_of
        )
        self.s3.preflight = cross_origin.preflight
        self.s3.cors_headers = cross_origin.headers
        self.s3.cors_vary = cross_origin.vary
        if self.owner_link is not None:
            # After every local route: the owner's paths are taken over by forwarding.
            route_to_owner(self.s3, self.owner_link, self.admin, role, settings, self.web_seed)
        self._runner: web.AppRunner | None = None
        self.handoff_server: HandoffServer | None = None
        self.handoff_client: HandoffClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.trackers = TrackerListeners(
            settings, self.svc.tracker, self.svc.public.registry, self.gate, self.svc.torrents
        )
        self._ready = False
        self.root_generated: tuple[str, str, bool] = ("", "", False)

    def _websocket_tracker(self) -> WebSocketTracker:
        # Before "/_tracker" (routes match in order): browsers' tracker, same decision.
        public, service = self.svc.public, self.svc.tracker

        async def admit(swarm_id: bytes, ip: str | None) -> bool:
            # Within the address's lookup budget, as the HTTP and UDP tracker's.
            if ip is not None and not public.may_look_up(swarm_id, ip):
                return False
            return await public.admit(swarm_id, ip) is not None

        def client_ip(request: web.BaseRequest) -> str:
            return service.client_ip(request.remote or "", request.headers.get("X-Forwarded-For"))

        ws = websocket_tracker(self.settings.tracker, admit, client_ip)
        public.on_revoked(lambda info: ws.revoke(info.swarm_ids))
        # What browsers report in their announces joins the savings report's swarm bytes.
        self.svc.meter.swarm_counters.append(ws.counters)
        self.s3.add_route(WS_TRACKER_PATH, ws.handle)
        self.svc.torrents.ws_tracker_path = WS_TRACKER_PATH
        return ws

    async def _seeder_stats(self, request: web.Request) -> web.StreamResponse:
        return await seeder_stats_handler(self.context, self.seeder, request)

    async def _start_relay(self) -> None:
        """Events to and from the other workers or nodes; an unreachable Redis is a
        StartupError naming redis_url (its host, not its password)."""
        relay = self.svc.relay
        if relay is None:
            return
        try:
            await relay.start()
        except TimeoutError:
            from s3torrent.events_redis import RedisEventRelay

            if self.settings.redis_url is None or not isinstance(relay, RedisEventRelay):
                raise
            where = url_place(self.settings.redis_url)
            reason = relay.last_error.rstrip(".") or "no answer"
            raise StartupError(
                f"cannot subscribe to Redis at {where} (redis_url): {reason}; "
                "start Redis there or correct redis_url"
            ) from None

    async def _start_seeder(self) -> None:
        # Before the HTTP listener: every torrent published from now on lists the origin.
        host, port = self.settings.peer_host_port
        if self.seeder is None:
            if not self.settings.seeder.enabled:
                return
            bound = (host, port)  # the owner worker's seeder
        else:
            fix = "choose another with --peer-listen, or set seeder.enabled = false"
            with listening("BitTorrent peers", host, port, fix):
                bound = await self.seeder.start(host, port)
        origin = await advertised_address(self.settings, bound)
        # Every node's seeder, in the same order on each node (a shared registry keeps the
        # ref of whichever node registered a torrent last).
        origins = [split_host_port(a, 6881) for a in self.settings.seeder.peer_addresses]
        if origin is not None and origin not in origins:
            origins.append(origin)
        if origins:
            self.svc.public.origin_seeders = tuple(origins)

    def ensure_root(self) -> tuple[str, str, bool]:
        try:
            root, generated = self.svc.users.ensure_root(
                self.settings.data_dir,
                self.settings.root_access_key,
                self.settings.root_secret_key,
            )
        except MasterKeyError as exc:  # the root's secret sealed under another key file
            raise StartupError(str(exc)) from None
        assert root.secret_key is not None  # just stored, sealed by this node's key
        return root.access_key, root.secret_key, generated

    async def start(self) -> None:
        owner, role = self.role.owner, self.role
        await asyncio.get_running_loop().run_in_executor(
            self.svc.executor, self.svc.store.blobs.prepare
        )
        if owner and not role.restarted:
            # Only while no other worker writes: their blobs in flight look orphaned.
            await asyncio.get_running_loop().run_in_executor(
                self.svc.executor, self.svc.store.cleanup_orphans
            )
            await self.svc.meta.drop_unreferenced_seal_records()
        elif role.restarted:
            # The others write meanwhile: only what writers that died left (its
            # predecessor's uploads cut short), before this one serves.
            await asyncio.get_running_loop().run_in_executor(
                self.svc.executor, self.svc.store.cleanup_abandoned
            )
        await self._start_relay()
        await self._start_seeder()
        relay = self.svc.relay
        outer: list[Wrapper] = []
        if owner and not role.alone:
            outer.append(trusted_client_middleware())
        proxies = TrustedProxies(self.settings.trusted_proxies)
        if proxies:
            outer.append(forwarded_client_middleware(proxies))
        if isinstance(relay, EventHub | EventLink):
            outer.append(settle_middleware(relay, self.svc.public.may_hold))
        app = self.s3.build(outer)
        limits = self.settings.limits
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=limits.shutdown_timeout,
            max_field_size=limits.max_header_size,
            max_line_size=limits.max_header_size,
            # S3 stores bodies as sent: Content-Encoding is metadata, never decoded here.
            auto_decompress=False,
            # aiohttp's idle timer also runs before the first request: the header deadline.
            keepalive_timeout=aiohttp_keepalive_timeout(limits.header_read_timeout),
        )
        await self._runner.setup()
        host, port = self.settings.http_host_port
        # Announces and scrapes are answered before aiohttp (front.py): here
        # where the registry is at hand, else by the owner over the tracker relay.
        relayed = not owner and self.settings.redis_url is None
        front = self.trackers.make_front(
            TrackerRelay(tracker_socket(self.settings.data_dir), self.svc.tracker)
            if relayed
            else None
        )
        if self.settings.quick_reads and self.s3.entry is not None:
            front.quick = QuickReads(
                self.s3.entry,
                self.s3.stamp,
                limits.max_xml_body,
                one_generation_read,
                # A PUT stored in its metadata row (and no larger than QUICK_PUT_MAX).
                max_body=min(self.settings.storage.inline_max_size, QUICK_PUT_MAX),
            )
        site = AdmittedSite(
            self._runner,
            self.gate,
            host,
            port,
            backlog=4096,
            reuse_port=not role.alone,
            front=front,
            at_once=front.at_once(),
        )
        with listening("HTTP", host, port, "choose another with --listen"):
            await site.start()
        if owner and not role.alone:
            # The other workers' forwarded requests (owner_link).
            path = owner_socket(self.settings.data_dir)
            path.unlink(missing_ok=True)
            await web.UnixSite(self._runner, str(path)).start()
            path.chmod(0o600)
            if self.settings.redis_url is None:
                await self.trackers.start_relay(tracker_socket(self.settings.data_dir))
                # Connections that keep announcing go to the other workers (handoff.py).
                self.handoff_server = HandoffServer()
                self.handoff_server.start(handoff_socket(self.settings.data_dir))
                front.tracker.give_away = self.handoff_server.give
        elif relayed:
            self.handoff_client = HandoffClient(
                handoff_socket(self.settings.data_dir), site.listener.adopt
            )
            self.handoff_client.start()
        if owner:
            await self.trackers.start_udp()
        # The tracker port. Alone, this process serves it. With several workers the others
        # do, together (SO_REUSEPORT): each parses and answers its announces and asks the
        # owner's registry over the relay, many per write. The owner stays off it: its one
        # core answers every worker's relayed announces, and an announce it took itself
        # would cost it three relayed ones (docs/ARCHITECTURE.md, Workers). With Redis
        # every worker has the registry at hand, the owner too.
        if role.alone or not owner or self.settings.redis_url is not None:
            await self.trackers.start_http(self.trackers.relay, reuse_port=not role.alone)
        self._tasks.append(asyncio.create_task(self._reload_users()))
        self._tasks.append(asyncio.create_task(self.bucket_logs.run()))
        self._tasks.append(asyncio.create_task(self._sweep_tracker()))
        if owner:  # clean-ups of the node's data: once per machine
            self._tasks.append(asyncio.create_task(self._sweep_seal_records()))
            self._tasks.append(asyncio.create_task(self._sweep_orphan_blobs()))
            self._tasks.append(
                asyncio.create_task(expire_uploads_forever(self.svc.store, self.settings.storage))
            )
        if self.settings.lifecycle.enabled and owner:
            self._tasks.append(asyncio.create_task(self.lifecycle.run_forever()))
        if owner:
            await self.svc.hash_jobs.resume()
        if self.settings.metering.enabled:
            self.svc.meter.start()
            link = self.owner_link
            if link is not None:
                self._tasks.append(
                    asyncio.create_task(
                        push_forever(self.svc.meter, lambda: link.session, self.role.index)
                    )
                )
        if self.metrics is not None and self.metrics_listen and owner:
            metrics_host, metrics_port = split_host_port(self.metrics_listen, 9100)
            with listening("metrics", metrics_host, metrics_port, "see metering.metrics_listen"):
                await self.metrics.start(metrics_host, metrics_port)
        # Only now, with every listener up: a start that fails generates nothing.
        self.root_generated = self.ensure_root()
        # Keyed alike on every worker and node (the root user's secret is in the database
        # they share), so an id one of them gave is valid on the others behind one UDP
        # address, and after a restart (tests/scale/test_audit_tracker_field.py).
        self.svc.tracker.key_connection_ids(derive_udp_secret(self.root_generated[1]))
        self._ready = True
        if owner:
            log.info(
                "s3torrent listening on http://%s:%d (public URL %s)",
                f"[{host}]" if ":" in host else host,  # an IPv6 address, as in a URL
                port,
                self.settings.base_url,
            )

    async def _reload_users(self) -> None:
        # Users removed with the CLI while we run lose access within a few seconds.
        while True:
            await asyncio.sleep(3)
            with logged_failure(log, "reloading users"):
                await asyncio.get_running_loop().run_in_executor(
                    self.svc.executor, self.svc.users.load
                )

    async def _sweep_tracker(self) -> None:
        registry = self.svc.public.registry
        while True:
            await asyncio.sleep(30)
            registry.sweep(time.monotonic())

    async def _sweep_seal_records(self) -> None:
        """Key material of versions overwritten or deleted since (an hour's grace covers
        writes whose record is stored but whose version is not committed yet)."""
        while True:
            await asyncio.sleep(self.settings.storage.upload_cleanup_interval)
            with logged_failure(log, "encryption key record cleanup"):
                await self.svc.meta.drop_unreferenced_seal_records(time.time() - 3600)

    async def _sweep_orphan_blobs(self) -> None:
        """Blobs no row references, put in place long enough ago that no write in flight
        can be theirs (ObjectStore.sweep_orphans): what a worker that died left."""
        storage = self.settings.storage
        while True:
            await asyncio.sleep(storage.upload_cleanup_interval)
            with logged_failure(log, "orphan blob sweep"):
                await asyncio.get_running_loop().run_in_executor(
                    self.svc.executor, self.svc.store.sweep_orphans, storage.orphan_grace
                )

    def reopen_logs(self) -> None:
        """SIGUSR1: the access log file is opened again by its name (log rotation)."""
        if self.access_log is None:
            return
        try:
            self.access_log.reopen()
        except OSError as exc:
            log.warning("the access log could not be opened again: %s", exc)
        else:
            log.info("access log opened again")

    async def stop(self) -> None:
        self._ready = False
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with (
                contextlib.suppress(asyncio.CancelledError),
                logged_failure(log, "a background task"),
            ):
                await t
        if self.handoff_client is not None:
            self.handoff_client.close()  # draining: take no more connections
        await self.trackers.close_ports()
        if self.ws_tracker is not None:
            await self.ws_tracker.close()
        if self._runner is not None:
            # Stops accepting; the requests under way receive their bodies (aiohttp's own
            # shutdown would drop them: http_site.finish_bodies), then aiohttp waits
            # (bounded) for their answers and closes.
            self.s3.draining = True
            for site in list(self._runner.sites):
                await site.stop()
            if self._runner.server is not None:
                await finish_bodies(self._runner.server, self.settings.limits.shutdown_timeout)
            await self._runner.cleanup()
            if self.role.owner and not self.role.alone:
                owner_socket(self.settings.data_dir).unlink(missing_ok=True)
        # After the listeners' drain, during which other workers may still relay announces.
        if self.handoff_server is not None:
            self.handoff_server.close()
        await self.trackers.close_relay_server()
        await self.trackers.close_front()
        if self.seeder is not None:
            await self.seeder.stop()
        if self.metrics is not None:
            await self.metrics.stop()
        if self.access_log is not None:
            self.access_log.flush()
            await asyncio.to_thread(self.access_log.close)
        with logged_failure(log, "the last bucket log delivery"):
            await self.bucket_logs.deliver()
        if self.settings.metering.enabled:
            # After the listeners: the last requests are counted, then written.
            with logged_failure(log, "the last metering flush"):
                await self.svc.meter.close()
        await self.svc.hash_jobs.close()
        await self.svc.public.close()
        await self.anonymous_reads.close()
        if self.svc.relay is not None:
            await self.svc.relay.close()
        if self.owner_link is not None:
            await self.owner_link.close()
        with logged_failure(log, "closing the tracker registry"):
            await self.svc.public.registry.close()
        self.svc.store.flush_pending_deletes()
        self.svc.executor.shutdown(wait=True)
        self.svc.meta.close()
        if self.svc.store.space is not None:
            # After the close (its WAL is gone): a reserve released while serving is made
            # whole again where there is room, so a full disk cannot keep the next start out.
            with logged_failure(log, "putting the space reserve back"):
                await asyncio.to_thread(self.svc.store.space.put_back)


def settle_garbage_collector() -> None:
    """Once a node has started: move what startup built (modules, settings, the app) out of
    the collector's sight (gc.freeze), so its full passes walk only what serving made. The
    thresholds stay Python's: a request no longer leaves cyclic garbage (see
    s3.server._release_after), and larger young generations (measured with 20,000) made
    the tracker's passes over its registry slower, not faster."""
    gc.collect()
    gc.freeze()


async def serve(
    settings: Settings,
    *,
    announce: bool = True,
    config_file: Path | None = None,
    role: Role | None = None,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Run a node (or one worker of it) until SIGTERM, SIGINT or SIGHUP. Raises StartupError
    (nothing generated) when it cannot start."""
    role = role or Role()
    # From here on no log line waits on standard error (log_output.py).
    unblock_server_log()
    held: list[int] = []
    if role.alone:  # else the supervisor did (workers bind the HTTP port together)
        for warning in deployment_warnings(settings):
            log.warning("%s", warning)
        preflight(settings)
        held = hold_data_dir(settings, 1)
    try:
        await _serve_node(settings, role, announce, config_file, on_ready)
    finally:
        for fd in held:
            os.close(fd)


async def _serve_node(
    settings: Settings,
    role: Role,
    announce: bool,
    config_file: Path | None,
    on_ready: Callable[[], None] | None,
) -> None:
    node = Node(settings, role)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, node.reopen_logs)
    try:
        await node.start()
    except BaseException:
        await node.stop()
        raise
    if role.owner:
        record_config_file(settings, config_file)
    settle_garbage_collector()
    if on_ready is not None:
        on_ready()
    access_key, secret_key, generated = node.root_generated
    if generated and announce:
        # As environment variables the AWS CLI and SDKs read: pasted, `aws s3 ls` works.
        print(
            "Generated root credentials (stored in "
            f"{settings.data_dir / 'root-credentials.json'}, shown once):\n"
            f"  AWS_ACCESS_KEY_ID={access_key}\n  AWS_SECRET_ACCESS_KEY={secret_key}\n"
            f"  AWS_ENDPOINT_URL={settings.base_url}\n  AWS_DEFAULT_REGION={settings.region}",
            flush=True,
        )
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await node.stop()
