"""One published torrent at the origin seeder: its connections, offload policy and blob.

The swarm also remembers peers the tracker still hears from after they left the origin
(their pieces keep counting, see policy.py), so it outlives its last connection until the
policy has nothing left to remember.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from s3torrent.anonymous_reads import reset_on_close
from s3torrent.config import SeederSettings
from s3torrent.peer import wire
from s3torrent.peer.opened_spans import INLINE_SPAN, OpenedSpans, span_for
from s3torrent.peer.policy import (
    Action,
    ChokePeer,
    PolicySettings,
    RevealPiece,
    SuggestPiece,
    SwarmPolicy,
    UnchokePeer,
)
from s3torrent.peer.web_hold import WebHolds
from s3torrent.store import rows as md
from s3torrent.store.objects import ObjectStore
from s3torrent.store.sealing import PlainReader
from s3torrent.torrent.catalog import TorrentInfo
from s3torrent.torrent.metainfo import piece_layers_for

if TYPE_CHECKING:
    from s3torrent.peer.link import OwedBlock, PeerLink
    from s3torrent.peer.seeder import Seeder

__all__ = [
    "BlobSource",
    "Swarm",
    "TorrentStats",
    "apply_action",
    "policy_settings",
    "torrent_view",
]

log = logging.getLogger(__name__)

# A peer the tracker has not heard from for this long has left the swarm (the tracker
# forgets peers after two announce intervals; clients re-announce well within one).
REMOTE_PEER_TTL = 2 * 1800.0


def torrent_view(info: TorrentInfo) -> wire.TorrentView:
    """What the wire needs to serve one published torrent."""
    h, ih = info.hashes, info.info_hash
    primary = ih.v1 if ih.v1 is not None else ih.v2_truncated
    assert primary is not None
    return wire.TorrentView(
        info_hash=primary,
        piece_count=h.layout.count,
        piece_length=h.piece_length,
        total_length=h.length,
        metadata=info.info,
        info_hash_v2=ih.v2,
        piece_layers=piece_layers_for(h),
    )


def policy_settings(s: SeederSettings) -> PolicySettings:
    return PolicySettings(
        mode=s.mode,
        unchoke_slots=s.unchoke_slots,
        round_interval=s.choke_interval,
        alone_window=s.alone_window,
        peer_window=s.peer_window,
        unspread_limit=s.unspread_limit,
        stall_timeout=s.stall_timeout,
        swarm_stall_timeout=s.swarm_stall_timeout,
        endgame_window=s.endgame_window,
        endgame_stall_timeout=s.endgame_stall_timeout,
        remote_grace=s.remote_grace,
        remote_newcomer_grace=s.remote_newcomer_grace,
        carry_rate=s.carry_upload_rate,
    )


@dataclass(slots=True)
class TorrentStats:
    bucket: str
    key: str
    version_id: str
    bytes_sent: int = 0
    blocks_sent: int = 0
    connections: int = 0
    peers_seen: int = 0
    web_seed_bytes: int = 0
    web_seed_requests: int = 0
    web_seed_refused: int = 0
    web_seed_held: int = 0  # requests that waited for the client's peer wire (web_hold.py)
    remembered: int = 0  # peers gone from the origin whose pieces still count

    def to_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "version_id": self.version_id,
            "bytes_sent": self.bytes_sent,
            "blocks_sent": self.blocks_sent,
            "connections": self.connections,
            "peers_seen": self.peers_seen,
            "web_seed_bytes": self.web_seed_bytes,
            "web_seed_requests": self.web_seed_requests,
            "web_seed_refused": self.web_seed_refused,
            "web_seed_held": self.web_seed_held,
            "remembered": self.remembered,
        }


class BlobSource:
    """A version's bytes: an open file for sendfile, else reads off the loop.

    A sealed version's blocks come from `spans`: plaintext opened a span at a time and
    shared by the swarm's peers (opened_spans.py)."""

    def __init__(self, store: ObjectStore, info: TorrentInfo) -> None:
        self.store = store
        self.info = info
        self.fd: int | None = None
        self._obj: md.ObjectVersion | None = None
        self._read: Callable[[int, int], bytes] | None = None
        self._plain: PlainReader | None = None
        self.spans: OpenedSpans | None = None
        # A sealed blob holds ciphertext: no sendfile, its blocks are read and opened.
        path = None if info.sealed else store.blobs.local_path(info.version_id)
        if path is not None:
            with contextlib.suppress(OSError):
                self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        if self.fd is not None:
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        if info.sealed:
            self.spans = OpenedSpans(span_for(info.hashes.piece_length), self._open_span)

    async def _reader(self) -> Callable[[int, int], bytes]:
        if self._obj is None:
            vid = self.info.version_id
            self._obj = await self.store.meta.object_by_version(vid)
            if self._obj is None:
                raise FileNotFoundError(f"version {vid} is gone")
            if self.spans is not None:
                self.spans.size = self._obj.size
        obj = self._obj
        if self._read is None:
            sealing = self.store.sealing
            if sealing is not None and sealing.is_sealed(obj):
                self._plain = await sealing.reader(obj, None)
                self._read = self._plain.read
                local = obj.inline is not None or self.store.blobs.local_path(obj.version_id)
                if self.spans is not None and local and self.spans.span <= INLINE_SPAN:
                    self.spans.open_now = self._plain.read_buffer
            else:
                self._read = functools.partial(self.store.read_range, obj)
        return self._read

    async def _open_span(self, offset: int, length: int) -> bytes | bytearray:
        await self._reader()
        plain = self._plain
        if plain is None:  # flagged sealed in the catalog, stored plain: read it as it is
            return await self._run(offset, length)
        length = max(0, min(length, (self._obj.size if self._obj else length) - offset))
        return await asyncio.get_running_loop().run_in_executor(
            self.store.executor, plain.read_buffer, offset, length
        )

    async def _run(self, offset: int, length: int) -> bytes:
        read = await self._reader()
        return await asyncio.get_running_loop().run_in_executor(
            self.store.executor, read, offset, length
        )

    async def read(self, offset: int, length: int) -> bytes | memoryview:
        if self.spans is not None:
            data = await self.spans.read(offset, length)
            if data is not None:
                return data
        await self._reader()
        if self._plain is not None:
            # Most blocks of a sealed version were opened with the block before them.
            hit = self._plain.cached(offset, length)
            if hit is not None:
                return hit
        return await self._run(offset, length)

    def ready(self, offset: int, length: int) -> memoryview | None:
        """A sealed block's bytes now: from a span opened a moment ago, or one opened on
        the loop (a short span of a local blob); None when the block must be read."""
        return self.spans.ready(offset, length) if self.spans is not None else None

    def prefetch(self, offset: int) -> None:
        """Start opening the sealed span holding `offset` (a request queued behind)."""
        if self.spans is not None:
            self.spans.prefetch(offset)

    def close(self) -> None:
        if self.spans is not None:
            self.spans.clear()
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


class Swarm:
    """One published torrent's connections, policy and blob at this node."""

    def __init__(self, seeder: Seeder, info: TorrentInfo, now: float) -> None:
        self.seeder = seeder
        self.info = info
        self.view = torrent_view(info)
        self.policy = SwarmPolicy(
            self.view.piece_count,
            self.view.piece_length,
            policy_settings(seeder.settings),
            now=now,
        )
        self.links: dict[int, PeerLink] = {}
        # The same connections by the peer id of their handshake: a seed's announce finds
        # its own connections without walking every other one (a popular swarm has hundreds).
        self._links_by_peer: dict[bytes, list[PeerLink]] = {}
        self.source = BlobSource(seeder.store, info)
        self.suspended = False
        self.closed = False
        self._decide_scheduled = False
        # Peer ids the tracker heard from (not stopped): when, and whether as a seed.
        self.announced: dict[bytes, tuple[float, bool]] = {}
        # ... and where each announced from (its source address, as the tracker decided it).
        self.announced_from: dict[bytes, str] = {}
        # Peers that left the origin (or never came) whose pieces still count: peer id ->
        # the policy's key for them (negative keys for peers we never connected to).
        self.remembered: dict[bytes, int] = {}
        self._next_remote_key = -1
        self._next_expiry = now
        # The peer id that last announced from each address: a client's web-seed requests
        # and its announces reach the HTTP listener alike, while its peer wire may come
        # from another address (IPv4 and IPv6, a host's several addresses).
        self.announcers: dict[str, bytes] = {}
        self.web_holds = WebHolds()  # web-seed requests waiting (web_hold.py)
        self._heard: asyncio.Future[None] | None = None
        hexid = (info.info_hash.v1 or info.info_hash.v2 or b"").hex()
        stats = seeder.stats.torrents.get(hexid)
        if stats is None or stats.version_id != info.version_id:
            stats = TorrentStats(info.bucket, info.key, info.version_id)
            seeder.stats.torrents[hexid] = stats
        self.tstats = stats

    def add(self, link: PeerLink, now: float, *, super_seed: bool) -> None:
        self.links[link.key] = link
        self._links_by_peer.setdefault(link.peer_id, []).append(link)
        self.tstats.connections = len(self.links)
        self.tstats.peers_seen += 1
        # Back at the origin: what it holds comes again with its bitfield.
        old = self.remembered.pop(link.peer_id, None)
        if old is not None:
            self.policy.forget(old)
            self.tstats.remembered = len(self.remembered)
        self.policy.peer_joined(link.key, now, super_seed=super_seed)

    def remove(self, link: PeerLink, now: float) -> None:
        if self.links.pop(link.key, None) is None:
            return
        same_peer = self._links_by_peer.get(link.peer_id, [])
        if link in same_peer:
            same_peer.remove(link)
        if not same_peer:
            self._links_by_peer.pop(link.peer_id, None)
        self.tstats.connections = len(self.links)
        # Still in the swarm (the tracker hears from it): its pieces are still out there.
        remember = link.peer_id in self.announced and not same_peer
        self.policy.peer_left(link.key, now, remember=remember)
        if not self.links and self.source.spans is not None:
            self.source.spans.clear()  # nobody to serve: its plaintext need not stay
        if remember:
            self.remembered[link.peer_id] = link.key
            self.tstats.remembered = len(self.remembered)
        if not self.closed and self.idle(now):
            self.seeder._drop_swarm(self)
        else:
            self.schedule_decide()

    def links_of(self, address: str | None) -> list[PeerLink]:
        """The peer-wire connections of the client at this address: from it, or from the
        peer that announced from it."""
        announcer = self.announcers.get(address) if address is not None else None
        return [
            link
            for link in self.links.values()
            if link.ip == address or (announcer is not None and link.peer_id == announcer)
        ]

    def announced_by(
        self,
        peer_id: bytes,
        left: int,
        stopped: bool,
        now: float,
        address: str | None = None,
        source: str | None = None,
    ) -> None:
        """The tracker heard from a peer of this torrent (left: bytes it still lacks), at
        `address` (where its peers reach it), from `source` (where the announce came from:
        what the access decision goes by; `address` if None)."""
        if address is not None:
            if not stopped:
                self.announcers[address] = peer_id
            elif self.announcers.get(address) == peer_id:
                del self.announcers[address]
        if stopped:
            self._forget_announced(peer_id)
            return
        seed = left == 0
        self.announced[peer_id] = (now, seed)
        origin = source if source is not None else address
        if origin is not None:
            self.announced_from[peer_id] = origin
        if not seed:
            return  # a leecher's news is its last-heard time, kept above
        links = self._links_by_peer.get(peer_id)
        if links:
            # It told the tracker it is done, though perhaps not us (no HAVE to a seed).
            changed = False
            for link in links:
                changed |= self.policy.peer_have_all(link.key, now)
            if changed:
                self.schedule_decide()
        else:
            key = self.remembered.get(peer_id)
            if key is None:
                key = self._next_remote_key
                self._next_remote_key -= 1
                self.remembered[peer_id] = key
            if self.policy.remote_seed(key, now):
                self.schedule_decide()
        self.tstats.remembered = len(self.remembered)

    def _forget_announced(self, peer_id: bytes, *, decide: bool = True) -> None:
        """The peer left the swarm (stopped, or may no longer be in it): its pieces no
        longer count (`decide`: the policy decides again; expiry runs within a decision)."""
        self.announced.pop(peer_id, None)
        self.announced_from.pop(peer_id, None)
        key = self.remembered.pop(peer_id, None)
        if key is not None:
            self.policy.forget(key)
            self.tstats.remembered = len(self.remembered)
            if decide:
                self.schedule_decide()

    def forget_refused(self, admits: Callable[[str], bool]) -> int:
        """Forget the peers the tracker heard from at a source `admits` now refuses (a
        policy that started denying their network): the tracker no longer lists them to
        the others, so what they hold is not out there for them. How many were."""
        refused = [pid for pid, source in self.announced_from.items() if not admits(source)]
        for peer_id in refused:
            self._forget_announced(peer_id)
        for address, peer_id in list(self.announcers.items()):
            if peer_id not in self.announced:
                del self.announcers[address]
        return len(refused)

    def expire_remembered(self, now: float) -> None:
        """Forget peers the tracker stopped hearing from."""
        if now < self._next_expiry:
            return
        self._next_expiry = now + 1.0
        for peer_id, (seen, _seed) in list(self.announced.items()):
            if now - seen >= REMOTE_PEER_TTL:
                self._forget_announced(peer_id, decide=False)
        for address, peer_id in list(self.announcers.items()):
            if peer_id not in self.announced:
                del self.announcers[address]

    def idle(self, now: float) -> bool:
        """Nothing to serve or remember: the seeder may drop it."""
        return not self.links and not self.announced and self.policy.idle(now)

    def schedule_decide(self) -> None:
        if not self._decide_scheduled and not self.closed:
            self._decide_scheduled = True
            asyncio.get_running_loop().call_soon(self.decide)

    async def hear(self, timeout: float) -> None:
        """Wait until the policy next hears from a peer (or the swarm closes), at most
        `timeout` seconds: what held web-seed requests wait on."""
        if self._heard is None or self._heard.done():
            self._heard = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._heard), timeout)

    def wake(self) -> None:
        """Wake what waits in `hear` (the swarm changed, or closed)."""
        if self._heard is not None and not self._heard.done():
            self._heard.set_result(None)

    def decide(self) -> None:
        self._decide_scheduled = False
        self.wake()
        if self.closed or self.suspended:
            return
        now = self.seeder.clock()
        self.expire_remembered(now)
        touched: set[PeerLink] = set()
        for action in self.policy.update(now):
            link = self.links.get(action.peer)
            if link is None or link.closed:
                continue
            apply_action(link.conn, action)
            touched.add(link)
        for link in touched:
            link.collect()
            link.pump()

    def blocks_sent(self, link: PeerLink, blocks: list[OwedBlock], now: float) -> None:
        """Blocks went to a peer: the policy hears one sum per run of a piece's blocks
        (what it does with bytes does not depend on how they are split), the counters
        and the meter one sum for them all."""
        policy, view, key = self.policy, self.view, link.key
        total = run = 0
        index = -1
        finished = False
        for block in blocks:
            if block.index != index:
                if run:
                    finished |= policy.piece_sent(key, index, run, now, view.piece_size(index))
                index, run = block.index, 0
            run += block.length
            total += block.length
        if run:
            finished |= policy.piece_sent(key, index, run, now, view.piece_size(index))
        if finished and policy.window_drained(key):
            # A lone client's window half gone out is topped up now, not at its HAVE, which
            # comes after its own hash check and write: waiting for it left one fast
            # libtorrent leecher idle. So is a gated peer kept busy, whose next piece must
            # be on its way before it has all of ours. Otherwise in a swarm the HAVE (or the
            # round) decides: deciding per piece sent made 8 leechers finish later (2026-12-02).
            self.schedule_decide()
        count = len(blocks)
        self.tstats.bytes_sent += total
        self.tstats.blocks_sent += count
        stats = self.seeder.stats
        stats.bytes_sent += total
        stats.blocks_sent += count
        callback = self.seeder.on_piece_sent
        if callback is not None:
            info = self.info
            try:
                callback(info.bucket, info.key, total, count, info.bucket_created)
            except Exception:
                log.exception("piece metering callback failed")

    def reset(self, link: PeerLink, reason: str) -> None:
        """Close the connection of a peer that may no longer have the torrent with a reset:
        a plain close let the kernel send what it held (up to a send buffer, 4 MiB) at the
        peer's pace, and a slow peer went on receiving pieces of a revoked object for
        seconds. What the reset drops comes off the metered bytes (`unsent`)."""
        if not link.closed:
            self.unsent(reset_on_close(link.sock))
        link.close(reason)

    def unsent(self, nbytes: int) -> None:
        """Bytes counted as sent (blocks_sent) that a reset dropped before they reached the
        peer (`reset`): off the metered bytes, so the usage report counts what peers got
        (to within the 13-byte headers of the blocks among them)."""
        callback = self.seeder.on_piece_sent
        if callback is None or nbytes <= 0:
            return
        try:
            info = self.info
            callback(info.bucket, info.key, -nbytes, 0, info.bucket_created)
        except Exception:
            log.exception("piece metering callback failed")

    def close(self, reason: str, *, revoked: bool = False) -> None:
        self.closed = True
        self.wake()
        for link in list(self.links.values()):
            if revoked:
                self.reset(link, reason)
            else:
                link.close(reason)
        self.links.clear()
        self._links_by_peer.clear()
        self.source.close()


def apply_action(conn: wire.SeedConnection, action: Action) -> None:
    match action:
        case UnchokePeer():
            conn.unchoke()
        case ChokePeer():
            conn.choke()
        case RevealPiece(_, index):
            conn.have(index)
        case SuggestPiece(_, index):
            conn.suggest(index)
