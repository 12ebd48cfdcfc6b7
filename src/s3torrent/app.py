"""Composition root: builds every service from the settings, starts and stops them."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import signal
import time
from dataclasses import dataclass

from aiohttp import web

from s3torrent.config import Settings
from s3torrent.events import EventBus
from s3torrent.publication import PublicTorrents, ResolvingRegistry
from s3torrent.s3.routing import Endpoint
from s3torrent.s3.server import Handler, S3Application
from s3torrent.store.blobs.local import LocalBlobStore
from s3torrent.store.database import Database
from s3torrent.store.objects import ObjectStore
from s3torrent.store.users import UserDirectory
from s3torrent.torrent.catalog import TorrentCatalog
from s3torrent.torrent.jobs import HashJobs
from s3torrent.tracker import service as tracker_service
from s3torrent.tracker.http import tracker_handler
from s3torrent.tracker.registry import MemoryRegistry

log = logging.getLogger("s3torrent")


@dataclass(slots=True)
class Services:
    """Everything a request handler may use; built once per process."""

    settings: Settings
    db: Database
    store: ObjectStore
    users: UserDirectory
    events: EventBus
    torrents: TorrentCatalog
    executor: concurrent.futures.ThreadPoolExecutor
    hash_jobs: HashJobs
    public: PublicTorrents
    tracker: tracker_service.TrackerService


def build_services(settings: Settings) -> Services:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url, max_batch=settings.storage.group_commit_max_ops)
    events = EventBus()
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="io")
    blobs = LocalBlobStore(settings.data_dir, fsync=settings.storage.fsync)
    store = ObjectStore(
        db, blobs, events, executor=executor, blob_delete_delay=settings.storage.blob_delete_delay
    )
    users = UserDirectory(db)
    users.load()
    catalog = TorrentCatalog(settings.torrent)
    hash_jobs = HashJobs(db, store, catalog, events, workers=settings.torrent.hash_workers)
    registry = MemoryRegistry()
    public = PublicTorrents(settings, db, catalog, registry)
    ts = settings.tracker
    tracker = tracker_service.TrackerService(
        ResolvingRegistry(registry, public),
        tracker_service.TrackerSettings(
            interval=ts.interval,
            min_interval=ts.min_interval,
            max_numwant=ts.max_numwant,
            default_numwant=ts.default_numwant,
            trust_ip_param=ts.trust_ip_param,
        ),
    )
    # Revocation first, then new jobs: a subscriber order that keeps revocation synchronous.
    events.subscribe(public.on_event)
    events.subscribe(hash_jobs.on_event)
    return Services(
        settings=settings,
        db=db,
        store=store,
        users=users,
        events=events,
        torrents=catalog,
        executor=executor,
        hash_jobs=hash_jobs,
        public=public,
        tracker=tracker,
    )


def handlers() -> dict[Endpoint, Handler]:
    from s3torrent.s3.ops import buckets, listing, objects, torrent

    return {
        Endpoint.ListBuckets: buckets.list_buckets,
        Endpoint.CreateBucket: buckets.create_bucket,
        Endpoint.HeadBucket: buckets.head_bucket,
        Endpoint.DeleteBucket: buckets.delete_bucket,
        Endpoint.GetBucketLocation: buckets.get_bucket_location,
        Endpoint.GetBucketVersioning: buckets.get_bucket_versioning,
        Endpoint.ListObjects: listing.list_objects,
        Endpoint.ListObjectsV2: listing.list_objects_v2,
        Endpoint.ListObjectVersions: listing.list_object_versions,
        Endpoint.PutObject: objects.put_object,
        Endpoint.GetObject: objects.get_object,
        Endpoint.HeadObject: objects.head_object,
        Endpoint.DeleteObject: objects.delete_object,
        Endpoint.DeleteObjects: objects.delete_objects,
        Endpoint.GetObjectTorrent: torrent.get_object_torrent,
    }


class Node:
    """One running s3torrent node: HTTP listener plus background tasks."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.svc = build_services(settings)
        self.s3 = S3Application(self.svc, handlers())
        self.s3.add_route("/_health", self._health)
        self.s3.add_route("/_tracker", tracker_handler(self.svc.tracker))
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = False

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"status": "ok" if self._ready else "starting"}, status=200 if self._ready else 503
        )

    def ensure_root(self) -> tuple[str, str, bool]:
        root, generated = self.svc.users.ensure_root(
            self.settings.data_dir, self.settings.root_access_key, self.settings.root_secret_key
        )
        return root.access_key, root.secret_key, generated

    async def start(self) -> None:
        self.svc.store.cleanup_orphans()
        app = self.s3.build()
        limits = self.settings.limits
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=limits.shutdown_timeout,
            max_field_size=limits.max_header_size,
            max_line_size=limits.max_header_size,
        )
        await self._runner.setup()
        host, port = self.settings.http_host_port
        site = web.TCPSite(self._runner, host, port, backlog=1024, reuse_address=True)
        await site.start()
        self._tasks.append(asyncio.create_task(self._reload_users()))
        self._tasks.append(asyncio.create_task(self._sweep_tracker()))
        await self.svc.hash_jobs.resume()
        self._ready = True
        log.info(
            "s3torrent listening on http://%s:%d (public URL %s)",
            host,
            port,
            self.settings.base_url,
        )

    async def _reload_users(self) -> None:
        # Users removed with the CLI while we run lose access within a few seconds.
        while True:
            await asyncio.sleep(3)
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(
                    self.svc.executor, self.svc.users.load
                )

    async def _sweep_tracker(self) -> None:
        registry = self.svc.public.registry
        while True:
            await asyncio.sleep(30)
            sweep = getattr(registry, "sweep", None)
            if sweep is not None:
                sweep(time.monotonic())

    async def stop(self) -> None:
        self._ready = False
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._runner is not None:
            # Stops accepting, waits (bounded) for in-flight requests, then closes.
            await self._runner.cleanup()
        await self.svc.hash_jobs.close()
        await self.svc.public.close()
        self.svc.store.flush_pending_deletes()
        self.svc.executor.shutdown(wait=True)
        self.svc.db.close()


async def serve(settings: Settings, *, announce: bool = True) -> None:
    node = Node(settings)
    access_key, secret_key, generated = node.ensure_root()
    if generated and announce:
        print(
            "Generated root credentials (stored in "
            f"{settings.data_dir / 'root-credentials.json'}, shown once):\n"
            f"  AWS_ACCESS_KEY_ID={access_key}\n  AWS_SECRET_ACCESS_KEY={secret_key}",
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await node.start()
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        await node.stop()
