"""Which torrents are public right now: the bridge from events and the access decision to the
tracker registry and the seeder.

A torrent is published while its object version is current, anonymously readable (asked of
the one access decision, as an anonymous GetObject), within the torrent limits and hashed.
Events revoke at once (synchronously, before the request that caused them is answered);
publication is eager for new versions and lazy for everything else: an announce or handshake
for an unknown swarm id looks the id up in the metadata database and publishes it if allowed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from s3torrent.access import RequestContext, facts
from s3torrent.config import Settings, TorrentSettings
from s3torrent.events import (
    AccessChanged,
    Event,
    ObjectDeleted,
    ObjectWritten,
    TorrentHashed,
    relayed,
)
from s3torrent.store import rows as md
from s3torrent.store.metastore import MetadataStore
from s3torrent.store.sealing import SSE_C, seal_mode
from s3torrent.torrent.catalog import (
    TorrentCatalog,
    TorrentInfo,
    piece_hashes,
)
from s3torrent.tracker.protocol import AnnounceRequest, ScrapeStats
from s3torrent.tracker.registry import (
    RATE_LIMITED,
    SWARM_FULL,
    UNREGISTERED_TORRENT,
    AnnounceFailure,
    AnnounceResult,
    SwarmStats,
    TokenBuckets,
    TorrentRef,
    TrackerRegistry,
    rate_limit_source,
)

log = logging.getLogger(__name__)

Revoked = Callable[[TorrentInfo], None]
Published = Callable[[TorrentInfo], None]
Announced = Callable[[TorrentInfo, AnnounceRequest], None]
_MAX_CONSIDER_ATTEMPTS = 3
_EPOCH_SLOTS = 4096
_UNPUBLISHABLE_MAX = 65536
_DECISIONS_MAX = 65536
# Decisions on a swarm's peers per loop turn when a publication drops those it refuses.
_DECISIONS_PER_TURN = 256
# Re-decide a little after a policy's time boundary, so the clock is surely past it.
_BOUNDARY_SLACK = 0.05
# loop.call_later's longest useful delay; a later boundary is re-scheduled on the way.
_MAX_TIMER = 86400.0


class Refusal(Enum):
    """Why an object version has no public torrent."""

    DISABLED = "disabled"  # torrents are off, for the server or the bucket
    TOO_LARGE = "too large"  # over torrent.max_object_size
    NOT_PUBLIC = "not public"  # anonymous callers may not fetch it by BitTorrent


def torrent_refusal(
    settings: TorrentSettings,
    bucket: md.Bucket,
    obj: md.ObjectVersion,
    ctx: RequestContext,
) -> Refusal | None:
    """Why this version has no torrent for anonymous callers in ctx, or None when it has.

    The one rule, asked by ?torrent, the tracker, the seeder, the web seed and the CLI.
    """
    if not settings.enabled or bucket.name in settings.disabled_buckets:
        return Refusal.DISABLED
    if bucket.settings.get("torrent") is False:
        return Refusal.DISABLED
    if obj.size > settings.max_object_size:
        return Refusal.TOO_LARGE
    if not facts.may_torrent(bucket, obj.key, obj, ctx):
        return Refusal.NOT_PUBLIC
    if seal_mode(obj.headers) == SSE_C:
        # No anonymous reader can hold the customer's key: as good as private.
        return Refusal.NOT_PUBLIC
    return None


def anywhere_now() -> RequestContext:
    """The context of an anonymous caller from no particular address, now."""
    return facts.context(datetime.now(UTC), None, False)


def refusal_anywhere(
    settings: TorrentSettings, bucket: md.Bucket, obj: md.ObjectVersion
) -> Refusal | None:
    """Why this version may have no torrent for any anonymous caller now, or None when some
    caller may have it: whether it is published. Where the bucket's policy decides by the
    caller's address, "not public" from no address is asked again from the addresses the
    policy names (facts.policy_source_samples): a torrent only some networks may read is
    published, and the tracker, the seeder and the web seed admit each peer by its own
    address (PublicTorrents.admits). Until 2026-12-07 such a torrent was never published:
    `?torrent` served it to an allowed caller, and no channel would carry it."""
    now = datetime.now(UTC)
    refusal = torrent_refusal(settings, bucket, obj, facts.context(now, None, False))
    if refusal is not Refusal.NOT_PUBLIC or not facts.depends_on_source(bucket):
        return refusal
    for source in facts.policy_source_samples(bucket.policy or "", bucket.name)[1:]:
        if torrent_refusal(settings, bucket, obj, facts.context(now, source, False)) is None:
            return None
    return refusal


class PublicTorrents:
    """The set of published torrents, kept in step with events."""

    def __init__(
        self,
        settings: Settings,
        meta: MetadataStore,
        catalog: TorrentCatalog,
        registry: TrackerRegistry,
        origin_seeders: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.settings = settings
        self.meta = meta
        self.catalog = catalog
        self.registry = registry
        self._origin_seeders = origin_seeders
        self.by_swarm: dict[bytes, TorrentInfo] = {}
        self.by_version: dict[str, TorrentInfo] = {}
        # Decide at once the writes other processes made (their ObjectWritten and
        # TorrentHashed events)? A node of several (Redis) does, for the other nodes'
        # writes. The workers of one machine, the owner too, publish those lazily, at the
        # first announce, handshake or web seed request that names one (admit -> resolve:
        # the tracker's registry, the seeder and the swarm sampling all ask it), so a PUT
        # costs only its own worker a decision.
        self.decide_relayed_writes = True
        self._revoked_listeners: list[Revoked] = []
        self._published_listeners: list[Published] = []
        self._announce_listeners: list[Announced] = []
        self._access_listeners: list[Callable[[str, str | None], None]] = []
        self._gap_listeners: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[object]] = set()
        # The last deregistration under way per swarm id (each waits for the one before): a
        # registration of that id waits for it. revoke() cannot wait (events revoke
        # synchronously), and a publication decided again at once (consider, after a
        # revocation raced it; its reads need not suspend) registered the id before the
        # revocation's deregistration ran, which then left a published torrent unregistered.
        self._deregistering: dict[bytes, asyncio.Task[object]] = {}
        # The decision under way for a version (its write's or its hashing's), by version id,
        # or for a key whose access changed, by (bucket, key): `?torrent` waits for it, so
        # the swarm of a torrent file handed out is live.
        self._considering: dict[str | tuple[str, str], asyncio.Task[object]] = {}
        # Change counters bumped by every event that may revoke, in a fixed number of slots
        # per bucket and per key (a collision only costs a re-check). A publication decided
        # on data read before a bump may be stale: an ACL change, overwrite or delete landed
        # between its access check and its registration.
        self._epochs = [0] * _EPOCH_SLOTS
        # Swarm ids resolve() found unknown or not publishable, until the next event: an
        # announce flood of random info-hashes costs a set lookup, not a database query each.
        self._unpublishable: set[bytes] = set()
        self._unpublishable_generation = 0
        # The tracker transports' per-source budget of those database lookups (may_look_up;
        # tracker.announce_rate_per_ip and burst, per IPv4 address or IPv6 /64). None:
        # unbounded (the seeder and the web seed, behind their connection caps, never ask).
        self.lookups: TokenBuckets | None = None
        # What each published torrent was decided on (its bucket and version rows); events
        # revoke and re-decide, so these never outlive their facts.
        self._facts: dict[str, tuple[md.Bucket, md.ObjectVersion]] = {}
        # Per-announce / per-connection decisions by (version, source class, the request
        # headers the policy tests): allowed, and until when (monotonic) the answer holds.
        # Cleared by every event.
        self._decisions: dict[
            tuple[str, str | None, tuple[tuple[str, str], ...]], tuple[bool, float]
        ] = {}
        # Per bucket: the re-evaluation at the next time boundary of its policy.
        self._boundary_timers: dict[str, asyncio.TimerHandle] = {}
        # missed_events(shared_registry=True)'s pass under way, and whether another was
        # asked for since it started.
        self._deciding_again: asyncio.Task[object] | None = None
        self._decide_again_after = False

    @property
    def origin_seeders(self) -> tuple[tuple[str, int], ...]:
        """Our seeders' (ip, port), put in every peer list of every published torrent."""
        return self._origin_seeders

    @origin_seeders.setter
    def origin_seeders(self, value: tuple[tuple[str, int], ...]) -> None:
        # Set once the seeder listens, possibly after torrents were published: re-register
        # them so their swarms list the origin too.
        self._origin_seeders = tuple(value)
        for info in list(self.by_version.values()):
            ref = self._ref(info)
            for sid in info.swarm_ids:
                self._spawn(self.registry.register(sid, ref))

    def _ref(self, info: TorrentInfo) -> TorrentRef:
        return TorrentRef(info.bucket, info.key, info.version_id, self._origin_seeders)

    def on_revoked(self, listener: Revoked) -> None:
        """The seeder subscribes here to close connections of revoked torrents."""
        self._revoked_listeners.append(listener)

    def on_published(self, listener: Published) -> None:
        """The seeder subscribes here to index swarm ids (MSE names torrents by a hash)."""
        self._published_listeners.append(listener)

    def on_access_changed(self, listener: Callable[[str, str | None], None]) -> None:
        """Anonymous responses in flight subscribe here: a change of access to a bucket (key
        None) or a key, from any process, or a time boundary of its policy reached here;
        whether or not this process published a torrent there (revocations reach only what
        it published)."""
        self._access_listeners.append(listener)

    def on_gap(self, listener: Callable[[], None]) -> None:
        """Anonymous responses in flight subscribe here too: events may have been missed
        (missed_events), so every one of them is decided again, whatever its bucket."""
        self._gap_listeners.append(listener)

    def missed_events(self, *, shared_registry: bool = False) -> None:
        """Events may have been missed (an event relay came back from a gap): decide every
        published torrent again, and tell the listeners of on_gap.

        With a registry of this process's, as if each bucket's access had changed (revoke,
        then publish again what is still public). With a registry other nodes share (Redis,
        `shared_registry`), a revocation would empty the swarm of every torrent this node
        published for every node (deregistering drops its peers and counters), and a gap
        says nothing changed: each is decided again on fresh rows and revoked only if it is
        no longer public; the others are registered again (a Redis restarted empty lost
        them)."""
        if shared_registry:
            self._unpublishable.clear()
            self._unpublishable_generation += 1
            self._decisions.clear()
            # One pass at a time (a relay cut off asks every second); one asked for while
            # a pass runs is a pass more after it, whose reads follow the call.
            self._decide_again_after = True
            if self._deciding_again is None or self._deciding_again.done():
                self._deciding_again = self._spawn(self._decide_again_while_asked())
        else:
            for bucket in {t.bucket for t in self.by_version.values()} or {""}:
                self.on_event(AccessChanged(bucket, None))
        for listener in self._gap_listeners:
            try:
                listener()
            except Exception:
                log.exception("gap listener failed")

    async def _decide_again_while_asked(self) -> None:
        while self._decide_again_after:
            self._decide_again_after = False
            await self._decide_again(list(self.by_version.values()))

    async def _decide_again(self, infos: list[TorrentInfo]) -> None:
        """missed_events(shared_registry=True)'s decisions, one torrent at a time; then
        those still public are registered again, so that a registry out of reach (each call
        waiting for its timeout) delays no revocation."""
        kept = [info for info in infos if await self._still_public(info)]
        unregistered = 0
        for info in kept:
            if self.by_version.get(info.version_id) is not info:
                continue  # revoked since it was decided
            ref = self._ref(info)
            try:
                for sid in info.swarm_ids:
                    await self._register(sid, ref)
                facts_ = self._facts.get(info.version_id)
                if facts_ is not None:
                    await self._drop_refused_peers(info, facts_)
            except Exception:
                unregistered += 1  # Redis away: a pass a second while cut off, one line each
        if unregistered:
            log.warning("%d published torrents could not be registered again", unregistered)

    async def _still_public(self, info: TorrentInfo) -> bool:
        """Decide a published torrent again on fresh rows: revoked (False) unless still
        public and unchanged meanwhile."""
        if self.by_version.get(info.version_id) is not info:
            return False  # an event revoked it meanwhile (and decided it again)
        epoch = self._epoch(info.bucket, info.key)
        try:
            bucket = await self.meta.bucket(info.bucket)
            current = await self._object(info.bucket, info.key)
        except Exception:
            log.exception("%s/%s: deciding again failed; revoking", info.bucket, info.key)
            self.revoke(info.version_id)
            return False
        if self.by_version.get(info.version_id) is not info:
            return False
        if (
            bucket is None
            or current is None
            or current.version_id != info.version_id
            or refusal_anywhere(self.settings.torrent, bucket, current) is not None
        ):
            self.revoke(info.version_id)
            return False
        if self._epoch(info.bucket, info.key) != epoch:
            # An event of its key or bucket meanwhile (one that did not revoke it): the
            # rows just read may be older than it; decide the usual way.
            self.revoke(info.version_id)
            self._spawn_consider(info.version_id, self.consider_version(info.version_id))
            return False
        if self._facts.get(info.version_id) != (bucket, current):
            # Its rows changed while events were missed, yet it is public still (a policy
            # narrowed to other networks, say): do what the missed event would have done,
            # revoke and decide again, so that every peer it admitted (the seeder's
            # connections, browsers, the swarm) is decided again with its own address.
            # Until 2026-12-07 the rows were only swapped: a peer from a network the change
            # denies went on downloading from the seeder while it stayed connected.
            self.revoke(info.version_id)
            self._spawn_consider(info.version_id, self.consider_version(info.version_id))
            return False
        self._facts[info.version_id] = (bucket, current)
        self._decisions.clear()
        self._schedule_boundary(bucket)
        return True

    def on_announce(self, listener: Announced) -> None:
        """The seeder subscribes here to learn which peers are in a swarm, and which seed."""
        self._announce_listeners.append(listener)

    def announced(self, info: TorrentInfo, req: AnnounceRequest) -> None:
        """An admitted announce of a published torrent (listeners must not block)."""
        for listener in self._announce_listeners:
            try:
                listener(info, req)
            except Exception:
                log.exception("announce listener failed")

    def get(self, swarm_id: bytes) -> TorrentInfo | None:
        return self.by_swarm.get(swarm_id)

    # ---- events ----

    def _epoch_slots(self, bucket: str, key: str | None) -> tuple[int, int]:
        return hash((bucket,)) % _EPOCH_SLOTS, hash((bucket, key)) % _EPOCH_SLOTS

    def _epoch(self, bucket: str, key: str) -> tuple[int, int]:
        a, b = self._epoch_slots(bucket, key)
        return self._epochs[a], self._epochs[b]

    def on_event(self, event: Event) -> None:
        # Anything may have become publishable: forget what resolve() found was not.
        self._unpublishable.clear()
        self._unpublishable_generation += 1
        self._decisions.clear()
        if not isinstance(event, TorrentHashed):
            bucket_slot, key_slot = self._epoch_slots(event.bucket, event.key)
            self._epochs[bucket_slot if event.key is None else key_slot] += 1
        if isinstance(event, ObjectWritten | TorrentHashed):
            if isinstance(event, ObjectWritten) and event.replaced_version_id:
                self.revoke(event.replaced_version_id)
            # Another process's write: decided here at once only by a node of several
            # (see decide_relayed_writes); a worker decides it when a request names it.
            if self.decide_relayed_writes or not relayed():
                if isinstance(event, ObjectWritten) and isinstance(event.written, md.ObjectVersion):
                    self._consider_own_write(event, event.written)
                else:
                    self._spawn_consider(event.version_id, self.consider_version(event.version_id))
        elif isinstance(event, ObjectDeleted):
            self.revoke(event.version_id)
        elif isinstance(event, AccessChanged):
            for access_listener in self._access_listeners:
                try:
                    access_listener(event.bucket, event.key)
                except Exception:
                    log.exception("access listener failed")
            affected = [
                t
                for t in self.by_version.values()
                if t.bucket == event.bucket and (event.key is None or t.key == event.key)
            ]
            # Revoked here at once, but left in the registry until decided again: those
            # still public come back at once, the rest are deregistered then (_decide_kept).
            for t in affected:
                self.revoke(t.version_id, keep_registered=True)
            for t in affected:
                self._spawn_consider(t.version_id, self._decide_kept(t))
            if event.key is not None:
                self._spawn_consider(
                    (event.bucket, event.key), self.consider_key(event.bucket, event.key)
                )

    def _consider_own_write(self, event: ObjectWritten, written: md.ObjectVersion) -> None:
        """This process's own write comes with the rows its commit wrote and read, and the
        hashes it stored: none is read again (consider decides on the current row it reads
        itself)."""
        if written.inline is not None and event.written_hashes is None:
            return  # small: its torrent is made, and published, when first asked for
        bucket = event.written_bucket
        if not isinstance(bucket, md.Bucket):
            self._spawn_consider(written.version_id, self.consider(written))
        elif not self._refused_at_commit(bucket, written):
            # Not refused on the commit's rows: consider() skips that early answer.
            stored = event.written_hashes
            hashes = stored if isinstance(stored, md.TorrentHashes) else None
            self._spawn_consider(
                written.version_id, self.consider(written, early=False, stored=hashes)
            )

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> asyncio.Task[object]:
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _spawn_consider(
        self, what: str | tuple[str, str], coro: Coroutine[Any, Any, object]
    ) -> None:
        task = self._spawn(coro)
        self._considering[what] = task

        def done(_: asyncio.Task[object]) -> None:
            if self._considering.get(what) is task:
                del self._considering[what]

        task.add_done_callback(done)

    async def settled(self, version_id: str, bucket: str, key: str, timeout: float) -> None:
        """Wait, at most timeout seconds, for the decision under way in this process on
        publishing this version (its write's, its hashing's, or its key's change of access):
        `?torrent` answers once the swarm of the torrent it hands out is live here. An MSE
        handshake names a torrent by a hash of its info-hash, so the seeder finds only
        torrents published already; a plain handshake or an announce would publish it
        themselves. No decision under way: at once."""
        tasks = [
            task
            for task in (self._considering.get(version_id), self._considering.get((bucket, key)))
            if task is not None
        ]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    def revoke(self, version_id: str, *, keep_registered: bool = False) -> None:
        """Stop admitting anything for this version here at once and tell the listeners;
        with keep_registered, its swarm ids stay in the registry (_decide_kept)."""
        info = self.by_version.pop(version_id, None)
        self._facts.pop(version_id, None)
        self.catalog.forget(version_id)
        if info is None:
            return
        for sid in info.swarm_ids:
            self.by_swarm.pop(sid, None)
            if not keep_registered:
                self._deregister(sid)
        for listener in self._revoked_listeners:
            try:
                listener(info)
            except Exception:
                log.exception("revocation listener failed")

    async def _decide_kept(self, revoked: TorrentInfo) -> TorrentInfo | None:
        """Decide again a torrent revoked by a change of access and left registered: what
        is still public is published again; what is not, or could not be decided, is
        deregistered then.

        Nothing is admitted on the revoked publication meanwhile: this process's announces
        (and every other node's, each revoking on the same event) are decided by `admit`,
        which finds it unpublished and decides on fresh rows. The registry is left alone
        because a registry in Redis is every node's: a deregistration by one node while
        the others still admitted the torrent answered their announces "unregistered
        torrent" (one in six announces of a tight loop on two nodes during PutBucketPolicy
        calls that kept the object public, until 2026-12-08), and the swarm, which must not
        be lost with a change that keeps it public, was at the mercy of that race."""
        try:
            info = await self.consider_version(revoked.version_id)
        except Exception:  # not a cancellation (a stop): that leaves the registry be
            log.exception("%s/%s: deciding again failed; unregistered", revoked.bucket, revoked.key)
            info = None
        kept = set(info.swarm_ids) if info is not None else set()
        for sid in revoked.swarm_ids:
            if sid not in kept and sid not in self.by_swarm:
                self._deregister(sid)
        return info

    def _deregister(self, sid: bytes) -> None:
        """Take sid out of the registry, after any deregistration of it still under way, in
        a task that `_registered` waits for."""
        task = self._spawn(self._deregister_after(self._deregistering.get(sid), sid))
        self._deregistering[sid] = task

        def done(_: asyncio.Task[object]) -> None:
            if self._deregistering.get(sid) is task:
                del self._deregistering[sid]

        task.add_done_callback(done)

    async def _deregister_after(self, before: asyncio.Task[object] | None, sid: bytes) -> None:
        if before is not None:
            await asyncio.wait((before,))
        await self.registry.deregister(sid)

    async def _register(self, sid: bytes, ref: TorrentRef) -> None:
        """Put sid in the registry once every deregistration of it started before is done:
        one that ran later would undo this registration."""
        while (pending := self._deregistering.get(sid)) is not None and not pending.done():
            await asyncio.wait((pending,))
        await self.registry.register(sid, ref)

    # ---- publication ----

    async def _object(self, bucket: str, key: str) -> md.ObjectVersion | None:
        return await self.meta.object(bucket, key)

    async def _version(self, version_id: str) -> md.ObjectVersion | None:
        return await self.meta.object_by_version(version_id)

    async def consider_key(self, bucket: str, key: str) -> TorrentInfo | None:
        obj = await self._object(bucket, key)
        return await self.consider(obj) if obj is not None else None

    async def consider_version(self, version_id: str) -> TorrentInfo | None:
        obj = await self._version(version_id)
        return await self.consider(obj) if obj is not None else None

    async def consider(
        self,
        obj: md.ObjectVersion,
        *,
        early: bool = True,
        stored: md.TorrentHashes | None = None,
    ) -> TorrentInfo | None:
        """Publish obj's torrent if it may be public now; return it when published.

        obj names the version; its row may be older than the database's (a writer's
        ObjectWritten.written): a refusal on it is an early answer that a later change
        of access corrects with its own event, and a publication is decided on the
        current row, read after it."""
        for _ in range(_MAX_CONSIDER_ATTEMPTS):
            epoch = self._epoch(obj.bucket, obj.key)
            info = await self._consider_once(obj, early, stored)
            if info is None or self._epoch(obj.bucket, obj.key) == epoch:
                return info
            # Revoked while we decided: undo and decide again on fresh data.
            self.revoke(obj.version_id)
            fresh = await self._version(obj.version_id)
            if fresh is None:
                return None
            obj = fresh
        # Still racing revocations: stay unpublished; the next announce resolves it again.
        return None

    def _refused_at_commit(self, bucket: md.Bucket, obj: md.ObjectVersion) -> bool:
        """Whether this process's own write has no public torrent, decided at once on the
        rows its commit wrote and read (the first steps of _consider_once, with no task and
        no read): most writes are of private objects.

        Only for a bucket row whose policy has no time boundary ahead: that row may be older
        than the database's by now, and scheduling from it could replace the timer of a
        newer policy. With no boundary there is nothing to schedule, and a refusal on an
        older row is the early answer consider() gives too: a later change of access
        carries its own event, and a swarm id nobody published is resolved when a request
        names it."""
        if obj.size == 0:
            return True  # zero bytes: nothing to seed, never registered
        if facts.next_time_boundary(bucket, datetime.now(UTC)) is not None:
            return False  # decided by consider(), which schedules the boundary
        return refusal_anywhere(self.settings.torrent, bucket, obj) is not None

    async def _consider_once(
        self, obj: md.ObjectVersion, early: bool, stored: md.TorrentHashes | None
    ) -> TorrentInfo | None:
        known = self.by_version.get(obj.version_id)
        if known is not None:
            return known
        bucket = await self.meta.bucket(obj.bucket)
        # Zero-byte objects have a metainfo but nothing to seed: never registered.
        if bucket is None or obj.size == 0:
            return None
        # Published or not, a policy's next time boundary may change the answer.
        self._schedule_boundary(bucket)
        # The early answer, on obj's row (`early`: its caller did not just ask it): it
        # spares a refused version the reads below. The decision is the one further down.
        if early and refusal_anywhere(self.settings.torrent, bucket, obj) is not None:
            return None
        if stored is None or stored.version_id != obj.version_id:
            # (`stored`: what the commit of obj stored, handed over by its writer.)
            stored = await self.meta.torrent_hashes(obj.version_id)
        hashes = piece_hashes(obj, stored)
        if hashes is None or not self.catalog.has_hashes_for_format(hashes):
            # Its hashing job's TorrentHashed brings it back; a small object's, its first
            # `?torrent` (HashJobs.ensure hashes it from its row and records them).
            return None
        if not await self.meta.torrent_marked(obj.bucket, obj.key):
            # Durably, before the current row is read (see schema.torrent_marks). A write
            # that fails (a full disk) leaves the torrent unpublished, not half-published.
            try:
                await self.meta.mark_torrent(obj.bucket, obj.key)
            except Exception:
                log.warning(
                    "%s/%s: could not mark its torrent published; not publishing",
                    obj.bucket,
                    obj.key,
                )
                return None
        # Re-check currency after the awaits: a revocation may have raced us.
        current = await self._object(obj.bucket, obj.key)
        if current is None or current.version_id != obj.version_id:
            return None
        # Decided again on the row just read: obj's ACL or tags may have changed since.
        if refusal_anywhere(self.settings.torrent, bucket, current) is not None:
            return None
        obj = current
        info = self.catalog.info_for(obj, hashes)
        if info.bucket_created != bucket.created_at:
            # The version is of this bucket: `current` has obj's version id, which no
            # bucket that took the name since could hold.
            info = dataclasses.replace(info, bucket_created=bucket.created_at)
        # Into the registry first, then into what admit() reads: an announce admitted here
        # must find its swarm registered (with Redis, register is a round trip during which
        # an announce used to be admitted and then refused as unregistered). A revocation
        # meanwhile finds nothing to revoke yet; consider() sees its epoch bump and revokes.
        # A deregistration still under way (of a revocation, that one's included) goes first.
        ref = self._ref(info)
        for sid in info.swarm_ids:
            await self._register(sid, ref)
        # A swarm kept over a revocation (parked, or shared in Redis) comes back with peers
        # admitted on older facts: unlisted before any announce is admitted on these ones.
        await self._drop_refused_peers(info, (bucket, obj))
        self.by_version[obj.version_id] = info
        self._facts[obj.version_id] = (bucket, obj)
        for sid in info.swarm_ids:
            self.by_swarm[sid] = info
        for listener in self._published_listeners:
            try:
                listener(info)
            except Exception:
                log.exception("publication listener failed")
        return info

    async def _drop_refused_peers(
        self, info: TorrentInfo, facts_: tuple[md.Bucket, md.ObjectVersion]
    ) -> int:
        """Unlist, from the registry's swarms of this publication, the peers that announced
        from an address the decision on facts_ now refuses (a bucket policy narrowed to other
        networks, or a time condition that now denies some): each was admitted on older
        facts, and the tracker hands out no address it would not admit. Only where the
        decision depends on the source at all: otherwise it is every peer's or none's, and
        a refused torrent is not published. Returns how many were unlisted."""
        if not facts.depends_on_source(facts_[0]):
            return 0
        dropped = 0
        # Decided here, not through admits's cache: these facts may be outdated by an event
        # while this yields, and that cache must hold only decisions on published facts.
        decided: dict[str, bool] = {}
        for sid in info.swarm_ids:
            refused: dict[bytes, str] = {}
            sources = await self.registry.peer_sources(sid)
            for n, (peer_id, source) in enumerate(sources.items()):
                allowed = decided.get(source)
                if allowed is None:
                    allowed = decided[source] = self._allowed(facts_, source, (), datetime.now(UTC))
                if not allowed:
                    refused[peer_id] = source
                if n % _DECISIONS_PER_TURN == _DECISIONS_PER_TURN - 1:
                    await asyncio.sleep(0)  # a swarm of thousands: let announces in between
            if refused:
                dropped += await self.registry.drop_peers(sid, refused)
        if dropped:
            log.info("%s/%s: %d peers no longer admitted unlisted", info.bucket, info.key, dropped)
        return dropped

    async def may_hold(self, event: Event) -> bool:
        """Whether some process may hold a publication that this revoking event (of this
        process, just committed) takes back. An overwrite or delete of a key no torrent of
        which was ever published takes back nothing anywhere: a publication marks its key
        before it reads the version it publishes, and this reads the mark after the
        event's commit (schema.torrent_marks), unless its commit read it already."""
        if isinstance(event, ObjectWritten) and event.written_unmarked:
            return False
        if isinstance(event, ObjectWritten | ObjectDeleted):
            return await self.meta.torrent_marked(event.bucket, event.key)
        return True

    def may_look_up(self, swarm_id: bytes, source_ip: str) -> bool:
        """Whether a tracker client at source_ip (canonical) may have swarm_id decided now:
        always if that needs no database query (published here, or known unpublishable
        since the last event); else if its address's lookup budget allows one more.

        Until 2026-12-07 lookups were unbounded, before any budget (the registry's announce
        budget comes after the decision, scrapes had none): one UDP scrape of 74 random
        hashes cost the owner, which answers every announce, 25 ms, so about 60 KB/s from
        one address kept it busy; random hashes' announces and WebSocket scrapes did
        likewise."""
        if self.lookups is None or swarm_id in self.by_swarm or swarm_id in self._unpublishable:
            return True
        return self.lookups.allow(rate_limit_source(source_ip), time.monotonic())

    async def resolve(self, swarm_id: bytes) -> TorrentInfo | None:
        """The published torrent for a swarm id, publishing it now if it may be."""
        info = self.by_swarm.get(swarm_id)
        if info is not None:
            return info
        if swarm_id in self._unpublishable:
            return None
        generation = self._unpublishable_generation
        obj = await self.meta.version_by_swarm_id(swarm_id)
        info = await self.consider(obj) if obj is not None else None
        if info is None or swarm_id not in info.swarm_ids:
            # Only if no event came meanwhile: one may have made it publishable.
            if generation == self._unpublishable_generation:
                if len(self._unpublishable) >= _UNPUBLISHABLE_MAX:
                    self._unpublishable.clear()
                self._unpublishable.add(swarm_id)
            return None
        return info

    # ---- the decision per announce and per peer connection ----

    def admits(
        self,
        info: TorrentInfo,
        source_ip: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        """May an anonymous peer at source_ip use this published torrent now?

        The one decision (torrent_refusal) with the peer's own context: its address, the
        current time and, for an HTTP request (the web seed's), the headers a policy may
        test (aws:UserAgent, aws:Referer), as a REST GET is asked. Cached per torrent,
        source class and the header values the policy tests, until the next event or time
        boundary, so an announce costs a dict lookup.
        """
        facts_ = self._facts.get(info.version_id)
        if facts_ is None:
            return False
        bucket = facts_[0]
        source = source_ip if facts.depends_on_source(bucket) else None
        heard = facts.header_values(bucket, headers) if headers is not None else ()
        key = (info.version_id, source, heard)
        now_mono = time.monotonic()
        cached = self._decisions.get(key)
        if cached is not None and now_mono < cached[1]:
            return cached[0]
        now = datetime.now(UTC)
        allowed = self._allowed(facts_, source_ip, heard, now)
        boundary = facts.next_time_boundary(bucket, now)
        until = now_mono + (boundary - now).total_seconds() if boundary is not None else math.inf
        if len(self._decisions) >= _DECISIONS_MAX:
            self._decisions.clear()
        self._decisions[key] = (allowed, until)
        return allowed

    def _allowed(
        self,
        facts_: tuple[md.Bucket, md.ObjectVersion],
        source_ip: str | None,
        heard: tuple[tuple[str, str], ...],
        now: datetime,
    ) -> bool:
        """`admits`'s decision itself, uncached, on these rows."""
        bucket, obj = facts_
        ctx = facts.context(now, source_ip, False, **dict(heard))
        return torrent_refusal(self.settings.torrent, bucket, obj, ctx) is None

    async def admit(
        self,
        swarm_id: bytes,
        source_ip: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> TorrentInfo | None:
        """The published torrent for swarm_id if a peer at source_ip (an HTTP request with
        these headers) may use it now."""
        # resolve()'s own first step, inline: a published torrent costs no coroutine.
        info = self.by_swarm.get(swarm_id)
        if info is None:
            info = await self.resolve(swarm_id)
            if info is None:
                return None
        return info if self.admits(info, source_ip, headers) else None

    def _schedule_boundary(self, bucket: md.Bucket) -> None:
        """At the next time boundary of the bucket's policy, decide its torrents again."""
        boundary = facts.next_time_boundary(bucket, datetime.now(UTC))
        old = self._boundary_timers.pop(bucket.name, None)
        if old is not None:
            old.cancel()
        if boundary is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, (boundary - datetime.now(UTC)).total_seconds()) + _BOUNDARY_SLACK
        self._boundary_timers[bucket.name] = loop.call_later(
            min(delay, _MAX_TIMER), self._boundary_reached, bucket.name
        )

    def _boundary_reached(self, bucket: str) -> None:
        self._boundary_timers.pop(bucket, None)
        log.info(
            "a time condition of bucket %s's policy changed: deciding its torrents again", bucket
        )
        # As if its access settings had changed: revoke, then republish what is still public.
        self.on_event(AccessChanged(bucket, None))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for timer in self._boundary_timers.values():
            timer.cancel()
        self._boundary_timers.clear()


class ResolvingRegistry:
    """The tracker registry as the tracker sees it: unknown swarm ids are resolved lazily."""

    def __init__(self, inner: TrackerRegistry, public: PublicTorrents) -> None:
        self.inner = inner
        self.public = public
        # The inner registry's synchronous announce, where it has one (the in-memory one).
        self._inner_now: (
            Callable[[AnnounceRequest, float], AnnounceResult | AnnounceFailure] | None
        ) = getattr(inner, "announce_now", None)

    async def register(self, info_hash: bytes, meta: TorrentRef) -> None:
        await self.inner.register(info_hash, meta)

    async def deregister(self, info_hash: bytes) -> None:
        await self.inner.deregister(info_hash)

    async def is_registered(self, info_hash: bytes) -> bool:
        if await self.inner.is_registered(info_hash):
            return True
        return await self.public.resolve(info_hash) is not None

    async def announce(self, req: AnnounceRequest, now: float) -> AnnounceResult | AnnounceFailure:
        # Every announce asks the one decision with where it came from and the time (not an
        # `ip` the client named: req.source_ip).
        public = self.public
        if req.info_hash not in public.by_swarm and not public.may_look_up(
            req.info_hash, req.source_ip
        ):
            return AnnounceFailure(RATE_LIMITED)
        info = await self.public.admit(req.info_hash, req.source_ip)
        if info is None:
            return AnnounceFailure(UNREGISTERED_TORRENT)
        result = await self.inner.announce(req, now)
        if isinstance(result, AnnounceResult) and result.warning != SWARM_FULL:
            self.public.announced(info, req)
        return result

    def announce_now(
        self, req: AnnounceRequest, now: float
    ) -> AnnounceResult | AnnounceFailure | None:
        """`announce` without a coroutine, or None where it would wait: a swarm id not
        published here yet (resolved from the database) or a registry that waits (Redis).
        The same steps and the same decision as `announce`."""
        info = self.public.by_swarm.get(req.info_hash)
        if info is None or self._inner_now is None:
            return None
        if not self.public.admits(info, req.source_ip):
            return AnnounceFailure(UNREGISTERED_TORRENT)
        result = self._inner_now(req, now)
        # A peer the registry did not list (its swarm is full) is not one the seeder
        # learns of either: its bookkeeping stays within the registry's bound per torrent.
        if isinstance(result, AnnounceResult) and result.warning != SWARM_FULL:
            self.public.announced(info, req)
        return result

    async def admitted(self, info_hashes: tuple[bytes, ...], source_ip: str) -> tuple[bytes, ...]:
        """The hashes among info_hashes whose torrents a client at source_ip may use now:
        what a scrape answers for (the one decision per hash, as an announce's). A hash
        beyond the source's lookup budget is left out, as an unknown one is."""
        return tuple(
            [
                h
                for h in info_hashes
                if self.public.may_look_up(h, source_ip) and await self.public.admit(h, source_ip)
            ]
        )

    async def scrape(self, info_hashes: tuple[bytes, ...], now: float) -> dict[bytes, ScrapeStats]:
        for h in info_hashes:
            if not await self.inner.is_registered(h):
                await self.public.resolve(h)
        return await self.inner.scrape(info_hashes, now)

    async def stats(self, info_hash: bytes) -> SwarmStats:
        return await self.inner.stats(info_hash)

    async def registered(self) -> list[bytes]:
        return await self.inner.registered()

    async def peer_sources(self, info_hash: bytes) -> dict[bytes, str]:
        return await self.inner.peer_sources(info_hash)

    async def drop_peers(self, info_hash: bytes, peers: Mapping[bytes, str]) -> int:
        return await self.inner.drop_peers(info_hash, peers)

    def sweep(self, now: float) -> int:
        return self.inner.sweep(now)

    async def close(self) -> None:
        await self.inner.close()
