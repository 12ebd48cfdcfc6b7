"""The origin seeder: the peer listener, its connection caps, timers and revocation.

Each connection is a ``PeerLink`` (link.py) around the sans-IO ``SeedConnection``;
each published torrent a ``Swarm`` (swarm.py) whose ``SwarmPolicy`` decides whom to
unchoke and which pieces to reveal. A revoked torrent stops serving at once; its
connections close within half a second unless it was republished meanwhile (an ACL
change that kept it public).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from s3torrent.admission import Evictability
from s3torrent.config import SeederSettings, Settings
from s3torrent.listeners import ConnectionGate, Listener, Slot
from s3torrent.peer import wire
from s3torrent.peer.input_allowance import InputSources
from s3torrent.peer.link import PeerLink
from s3torrent.peer.mse import Established, obfuscated_swarm_id
from s3torrent.peer.mse_stream import MseStream
from s3torrent.peer.swarm import Swarm, TorrentStats
from s3torrent.publication import PublicTorrents
from s3torrent.store.objects import ObjectStore
from s3torrent.torrent.catalog import TorrentInfo
from s3torrent.tracker.protocol import AnnounceRequest

__all__ = ["PieceSent", "Seeder", "SeederStats", "advertised_address", "wire_limits"]

log = logging.getLogger(__name__)


class PieceSent(Protocol):
    """on_piece_sent(bucket, key, nbytes, blocks, created): `blocks` piece messages of
    `nbytes` in all served (metering) of the bucket created at `created` (the
    publication's TorrentInfo.bucket_created); called once per batch of blocks, not per
    block."""

    def __call__(
        self, bucket: str, key: str, nbytes: int, blocks: int = 1, created: float | None = None, /
    ) -> None: ...


REVOCATION_GRACE = 0.5
TICK = 0.25


async def advertised_address(settings: Settings, bound: tuple[str, int]) -> tuple[str, int] | None:
    """The origin's address in peer lists: an IP literal (compact peer lists need one)."""
    s = settings.seeder
    host = s.public_host or urlsplit(settings.base_url).hostname or bound[0]
    port = s.public_port or bound[1]
    try:
        ipaddress.ip_address(host)
        return host, port
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        log.warning("not advertising the seeder: cannot resolve %s: %s", host, exc)
        return None
    return str(infos[0][4][0]), port


def wire_limits(s: SeederSettings) -> wire.WireLimits:
    return wire.WireLimits(
        max_outstanding_requests=s.max_outstanding_requests,
        max_queued_requests=s.max_queued_requests,
        max_request_length=s.max_request_length,
        handshake_timeout=s.handshake_timeout,
        idle_timeout=s.idle_timeout,
        keepalive_interval=s.keepalive_interval,
    )


@dataclass(slots=True)
class SeederStats:
    accepted: int = 0
    refused_at_accept: int = 0  # connection caps
    refused_handshakes: int = 0  # unknown, revoked, or over the per-torrent cap
    protocol_errors: int = 0
    timeouts: int = 0
    bytes_sent: int = 0
    blocks_sent: int = 0
    bytes_received: int = 0
    requests: int = 0
    mse_plaintext: int = 0  # MSE handshakes that selected a plaintext payload
    mse_rc4: int = 0  # ... and an RC4 payload
    torrents: dict[str, TorrentStats] = field(default_factory=dict)  # by info-hash hex


class Seeder:
    """The origin seeder for every published torrent of this node."""

    def __init__(
        self,
        settings: SeederSettings,
        public: PublicTorrents,
        store: ObjectStore,
        gate: ConnectionGate,
        *,
        on_piece_sent: PieceSent | None = None,
        peer_id: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.public = public
        self.store = store
        self.on_piece_sent = on_piece_sent
        self.peer_id = peer_id or b"-ST0100-" + secrets.token_bytes(12)
        self.clock = clock
        self.limits = wire_limits(settings)
        self.stats = SeederStats()
        self.links: dict[int, PeerLink] = {}
        self.per_ip: dict[str, int] = {}
        # Each source's input allowance, shared by its connections (peer/input_allowance.py).
        self.input_sources = InputSources(settings.input_rate, settings.input_burst)
        self.swarms: dict[str, Swarm] = {}  # by version id
        self.address: tuple[str, int] | None = None
        # The process's connection gate admits (or evicts) every peer connection, so peers,
        # S3 clients and announces share one cap below the open file limit.
        self.gate = gate
        self._listener: Listener | None = None
        self._slots: dict[int, Slot] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_key = 0
        self._tick_task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        # MSE names a torrent by HASH('req2', info-hash): published swarm ids by that hash.
        self._obfuscated: dict[bytes, bytes] = {}
        public.on_revoked(self.on_revoked)
        public.on_published(self._index_swarm_ids)
        for info in list(public.by_version.values()):
            self._index_swarm_ids(info)
        public.on_announce(self.on_announce)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "seeder not started"
        return self._loop

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on host:port (port 0: any); returns the bound address."""
        self._loop = asyncio.get_running_loop()
        self._listener = await self.gate.start_socket_listener(
            self._on_socket, host or None, port, name="seeder"
        )
        bound = self._listener.sockets[0].getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        self._tick_task = self._loop.create_task(self._tick_forever())
        log.info("seeder listening on %s:%d (mode %s)", *self.address, self.settings.mode)
        return self.address

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for swarm in list(self.swarms.values()):
            swarm.close("shutdown")
        self.swarms.clear()
        for link in list(self.links.values()):
            link.close("shutdown")

    # ------------------------------------------------------------------ accepting

    def _on_socket(self, sock: socket.socket, slot: Slot) -> None:
        """An admitted connection (the gate's caps and back-off came first); ours next."""
        try:
            ip = str(sock.getpeername()[0])
        except OSError:
            slot.release()
            sock.close()
            return
        if (
            len(self.links) >= self.settings.max_connections
            or self.per_ip.get(ip, 0) >= self.settings.max_per_ip
        ):
            self.stats.refused_at_accept += 1
            slot.release()
            sock.close()
            return
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._next_key += 1
        self.stats.accepted += 1
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
        link = PeerLink(self, sock, ip, self._next_key)
        self.links[link.key] = link
        self._slots[link.key] = slot
        # A peer still in its handshake may be evicted to make room; one that got that far
        # is a download in progress.
        slot.attach(
            lambda: link.close("evicted for another connection"),
            lambda: Evictability.NO_REQUEST if link.handshake_left else Evictability.BUSY,
        )

    def _forget(self, link: PeerLink) -> None:
        if self.links.pop(link.key, None) is None:
            return
        slot = self._slots.pop(link.key, None)
        if slot is not None:
            slot.release()
        left = self.per_ip.get(link.ip, 1) - 1
        if left > 0:
            self.per_ip[link.ip] = left
        else:
            self.per_ip.pop(link.ip, None)

    # ------------------------------------------------------------------ torrents

    def _swarm_for(self, info: TorrentInfo, now: float) -> Swarm | None:
        swarm = self.swarms.get(info.version_id)
        if swarm is not None and swarm.suspended:
            # It was republished (we only get here with a currently public info). Deciding
            # its peers again may leave it empty and drop it: then a new one is made.
            self._resume(swarm, info)
            swarm = self.swarms.get(info.version_id)
        if swarm is not None:
            return swarm
        swarm = Swarm(self, info, now)
        self.swarms[info.version_id] = swarm
        return swarm

    def swarm_of(self, info: TorrentInfo) -> Swarm | None:
        """The torrent's swarm (made now if need be) for the web seed's per-piece decisions;
        None while it is revoked."""
        swarm = self.swarms.get(info.version_id)
        if swarm is not None and swarm.suspended:
            return None
        return self._swarm_for(info, self.clock()) if self._loop is not None else None

    def on_announce(self, info: TorrentInfo, req: AnnounceRequest) -> None:
        """The tracker admitted an announce: who is in the swarm, and who seeds."""
        if self._loop is None:
            return
        swarm = self.swarm_of(info)
        if swarm is not None:
            stopped = req.event == "stopped"
            swarm.announced_by(req.peer_id, req.left, stopped, self.clock(), req.ip, req.source_ip)

    def _drop_swarm(self, swarm: Swarm) -> None:
        if self.swarms.get(swarm.info.version_id) is swarm:
            del self.swarms[swarm.info.version_id]
        swarm.closed = True
        swarm.wake()  # held web-seed requests answer now, not at their next recheck
        swarm.source.close()

    def _index_swarm_ids(self, info: TorrentInfo) -> None:
        for sid in info.swarm_ids:
            self._obfuscated[obfuscated_swarm_id(sid)] = sid

    def swarm_id_by_obfuscated(self, obfuscated: bytes) -> bytes | None:
        """The published swarm id an MSE handshake names (HASH('req2', SKEY))."""
        return self._obfuscated.get(obfuscated)

    def mse_stream(self) -> MseStream | None:
        """A new connection's MSE layer; None when encryption is disabled (plain only)."""
        if self.settings.encryption == "disabled":
            return None
        return MseStream(self.swarm_id_by_obfuscated, self._count_mse)

    def _count_mse(self, established: Established) -> None:
        if established.rc4:
            self.stats.mse_rc4 += 1
        else:
            self.stats.mse_plaintext += 1

    def on_revoked(self, info: TorrentInfo) -> None:
        """A torrent stopped being public: stop serving now, close its peers shortly."""
        for sid in info.swarm_ids:
            self._obfuscated.pop(obfuscated_swarm_id(sid), None)
        swarm = self.swarms.get(info.version_id)
        if swarm is None or self._loop is None:
            return
        swarm.suspended = True

        def recheck() -> None:
            self._timers.discard(handle)
            self._recheck(swarm)

        handle = self._loop.call_later(REVOCATION_GRACE, recheck)
        self._timers.add(handle)

    def _recheck(self, swarm: Swarm) -> None:
        if swarm.closed or not swarm.suspended:
            return
        current = [self.public.get(sid) for sid in swarm.info.swarm_ids]
        republished = next(
            (i for i in current if i is not None and i.version_id == swarm.info.version_id), None
        )
        if republished is not None:
            self._resume(swarm, republished)
            return
        self._drop_swarm(swarm)
        swarm.close("revoked", revoked=True)

    def _resume(self, swarm: Swarm, info: TorrentInfo) -> None:
        """A suspended swarm's torrent is published again (found so after the grace, or by
        a handshake within it): serve it again, each peer decided again on the new facts.
        Until 2026-12-07 a handshake within the grace resumed the swarm as it was, and the
        check after the grace, finding nothing suspended, decided no connection again."""
        swarm.suspended = False
        swarm.info = info
        for link in list(swarm.links.values()):
            # Public again, but perhaps not to this peer (a policy that now denies its
            # network, or a time condition that does): each connection is decided again
            # with its own address, as its handshake was.
            if self.public.admits(info, link.ip):
                link.pump()
            else:
                swarm.reset(link, "no longer allowed for this peer")
        # So is each peer the tracker heard from: one it would no longer admit is no longer
        # listed to the others (PublicTorrents._drop_refused_peers), and what it holds
        # must not keep the policy from serving them.
        swarm.forget_refused(lambda source: self.public.admits(info, source))
        swarm.schedule_decide()

    # ------------------------------------------------------------------ timers

    def _wake_later(self, link: PeerLink, delay: float) -> None:
        def wake() -> None:
            self._timers.discard(handle)
            link.rate_wait_until = 0.0
            link.pump()

        handle = self.loop.call_later(delay, wake)
        self._timers.add(handle)

    async def _tick_forever(self) -> None:
        last_timeouts = 0.0
        while True:
            await asyncio.sleep(TICK)
            now = self.clock()
            try:
                for swarm in list(self.swarms.values()):
                    swarm.decide()
                    if swarm.idle(now):
                        self._drop_swarm(swarm)
                if now - last_timeouts >= 1.0:
                    last_timeouts = now
                    for link in list(self.links.values()):
                        link.tick(now)
            except Exception:
                log.exception("seeder tick failed")

    # ------------------------------------------------------------------ stats

    def stats_json(self) -> dict[str, Any]:
        s = self.stats
        return {
            "address": list(self.address) if self.address else None,
            "mode": self.settings.mode,
            "connections": len(self.links),
            "accepted": s.accepted,
            "refused_at_accept": s.refused_at_accept,
            "refused_handshakes": s.refused_handshakes,
            "protocol_errors": s.protocol_errors,
            "timeouts": s.timeouts,
            "bytes_sent": s.bytes_sent,
            "blocks_sent": s.blocks_sent,
            "bytes_received": s.bytes_received,
            "requests": s.requests,
            "mse": {"plaintext": s.mse_plaintext, "rc4": s.mse_rc4},
            "torrents": {h: t.to_json() for h, t in s.torrents.items()},
        }
