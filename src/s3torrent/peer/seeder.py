"""The origin seeder: an asyncio peer listener around the sans-IO ``SeedConnection``.

Each connection is a non-blocking socket driven by loop reader/writer callbacks. The
wire state machine parses and validates; ``SwarmPolicy`` decides whom to unchoke and
which pieces to reveal; this module only moves bytes:

* piece payloads go from the blob file to the socket with ``os.sendfile`` (no copy
  through Python), each right behind its 13-byte header sent with ``MSG_MORE``; blobs
  without a local file are read off the loop (``ObjectStore.read_range``);
* memory per connection is bounded: bytes from the peer are fed to the state machine in
  small slices, and reading stops while the control bytes we owe it (metadata, hashes,
  rejects) sit above ``write_high_water``; at most a few blocks are queued per peer;
* a revoked torrent stops serving at once; its connections close within half a second
  unless it was republished meanwhile (an ACL change that kept it public).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from s3torrent.config import SeederSettings, Settings
from s3torrent.peer import wire
from s3torrent.peer.policy import (
    Action,
    ChokePeer,
    PolicySettings,
    RevealPiece,
    SuggestPiece,
    SwarmPolicy,
    UnchokePeer,
)
from s3torrent.publication import PublicTorrents
from s3torrent.store import metadata as md
from s3torrent.store.objects import ObjectStore
from s3torrent.torrent.catalog import TorrentInfo
from s3torrent.torrent.metainfo import piece_layers_for

log = logging.getLogger(__name__)

PieceSent = Callable[[str, str, int], None]
"""on_piece_sent(bucket, key, nbytes): one piece message served (metering)."""

FEED_SLICE = 1024  # bytes of peer input per state-machine call: bounds replies per step
RECV_SIZE = 64 * 1024
MAX_QUEUED_BLOCKS = 4  # blocks handed to the socket path per peer at a time
BLOCKS_PER_PUMP = 64  # then yield to other connections (fairness on fast links)
REVOCATION_GRACE = 0.5
TICK = 0.25
_ADVERT_IDS = frozenset({wire.Bitfield.MSG_ID, wire.HaveAll.MSG_ID, wire.HaveNone.MSG_ID})
_MAX_READVERT = 1 << 20  # larger than any bitfield we serve: left to the state machine


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


def policy_settings(s: SeederSettings) -> PolicySettings:
    return PolicySettings(
        mode=s.mode,
        unchoke_slots=s.unchoke_slots,
        round_interval=s.choke_interval,
        alone_window=s.alone_window,
        peer_window=s.peer_window,
        unspread_limit=s.unspread_limit,
        stall_timeout=s.stall_timeout,
        carry_rate=s.carry_upload_rate,
    )


def wire_limits(s: SeederSettings) -> wire.WireLimits:
    return wire.WireLimits(
        max_outstanding_requests=s.max_outstanding_requests,
        max_request_length=s.max_request_length,
        handshake_timeout=s.handshake_timeout,
        idle_timeout=s.idle_timeout,
        keepalive_interval=s.keepalive_interval,
    )


@dataclass(slots=True)
class _Block:
    """A piece payload owed to the peer; its header was queued just before it."""

    index: int
    begin: int
    length: int
    offset: int  # in the object
    done: int = 0
    data: memoryview | None = None  # when read off the loop (no local file)
    reading: bool = False


@dataclass(slots=True)
class TorrentStats:
    bucket: str
    key: str
    version_id: str
    bytes_sent: int = 0
    blocks_sent: int = 0
    connections: int = 0
    peers_seen: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "version_id": self.version_id,
            "bytes_sent": self.bytes_sent,
            "blocks_sent": self.blocks_sent,
            "connections": self.connections,
            "peers_seen": self.peers_seen,
        }


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
    torrents: dict[str, TorrentStats] = field(default_factory=dict)  # by info-hash hex


class _BlobSource:
    """A version's bytes: an open file for sendfile, else reads off the loop."""

    def __init__(self, store: ObjectStore, info: TorrentInfo) -> None:
        self.store = store
        self.info = info
        self.fd: int | None = None
        self._obj: md.ObjectVersion | None = None
        path = store.blobs.local_path(info.version_id)
        if path is not None:
            with contextlib.suppress(OSError):
                self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        if self.fd is not None:
            with contextlib.suppress(OSError, AttributeError):
                os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)

    async def read(self, offset: int, length: int) -> bytes:
        if self._obj is None:
            vid = self.info.version_id
            self._obj = await self.store.meta.object_by_version(vid)
            if self._obj is None:
                raise FileNotFoundError(f"version {vid} is gone")
        obj = self._obj
        return await asyncio.get_running_loop().run_in_executor(
            self.store.executor, self.store.read_range, obj, offset, length
        )

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


class _Swarm:
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
        self.links: dict[int, _Link] = {}
        self.source = _BlobSource(seeder.store, info)
        self.suspended = False
        self.closed = False
        self._decide_scheduled = False
        hexid = (info.info_hash.v1 or info.info_hash.v2 or b"").hex()
        stats = seeder.stats.torrents.get(hexid)
        if stats is None or stats.version_id != info.version_id:
            stats = TorrentStats(info.bucket, info.key, info.version_id)
            seeder.stats.torrents[hexid] = stats
        self.tstats = stats

    def add(self, link: _Link, now: float, *, super_seed: bool) -> None:
        self.links[link.key] = link
        self.tstats.connections = len(self.links)
        self.tstats.peers_seen += 1
        self.policy.peer_joined(link.key, now, super_seed=super_seed)

    def remove(self, link: _Link, now: float) -> None:
        if self.links.pop(link.key, None) is None:
            return
        self.tstats.connections = len(self.links)
        self.policy.peer_left(link.key, now)
        if not self.links and not self.closed:
            self.seeder._drop_swarm(self)
        else:
            self.schedule_decide()

    def schedule_decide(self) -> None:
        if not self._decide_scheduled and not self.closed:
            self._decide_scheduled = True
            asyncio.get_running_loop().call_soon(self.decide)

    def decide(self) -> None:
        self._decide_scheduled = False
        if self.closed or self.suspended:
            return
        now = self.seeder.clock()
        touched: set[_Link] = set()
        for action in self.policy.update(now):
            link = self.links.get(action.peer)
            if link is None or link.closed:
                continue
            _apply(link.conn, action)
            touched.add(link)
        for link in touched:
            link.collect()
            link.pump()

    def piece_sent(self, link: _Link, block: _Block, now: float) -> None:
        n = block.length
        self.policy.piece_sent(link.key, block.index, n, now)
        self.tstats.bytes_sent += n
        self.tstats.blocks_sent += 1
        self.seeder.stats.bytes_sent += n
        self.seeder.stats.blocks_sent += 1
        callback = self.seeder.on_piece_sent
        if callback is not None:
            try:
                callback(self.info.bucket, self.info.key, n)
            except Exception:
                log.exception("piece metering callback failed")

    def close(self, reason: str) -> None:
        self.closed = True
        for link in list(self.links.values()):
            link.close(reason)
        self.links.clear()
        self.source.close()


def _apply(conn: wire.SeedConnection, action: Action) -> None:
    match action:
        case UnchokePeer():
            conn.unchoke()
        case ChokePeer():
            conn.choke()
        case RevealPiece(_, index):
            conn.have(index)
        case SuggestPiece(_, index):
            conn.suggest(index)


class _Link:
    """One peer connection: socket callbacks around a SeedConnection."""

    def __init__(self, seeder: Seeder, sock: socket.socket, ip: str, key: int) -> None:
        self.seeder = seeder
        self.loop = seeder.loop
        self.sock = sock
        self.fd = sock.fileno()
        self.ip = ip
        self.key = key
        now = seeder.clock()
        self.conn = wire.SeedConnection(seeder.peer_id, now, seeder.limits)
        self.swarm: _Swarm | None = None
        self.out: deque[memoryview | _Block] = deque()
        self.out_bytes = 0
        self.blocks_queued = 0
        self.unfed = bytearray()
        self.handshake_left = wire.HANDSHAKE_LENGTH
        self.frame_left = 0
        self.queue: deque[tuple[int, int, int]] = deque()
        self.reading = False
        self.writing = False
        self.closed = False
        self.deciding = False
        self.rate_wait_until = 0.0
        self._pump_scheduled = False
        self._resolve_task: asyncio.Task[None] | None = None
        self._resume_reading()

    # ---------------------------------------------------------------- reading

    def _resume_reading(self) -> None:
        if not self.reading and not self.closed:
            self.reading = True
            self.loop.add_reader(self.fd, self._on_readable)

    def _pause_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.fd)

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(f"recv: {exc}")
            return
        if not data:
            self.close("peer closed")
            return
        self.unfed += data
        self.seeder.stats.bytes_received += len(data)
        self.feed()

    def feed(self) -> None:
        now = self.seeder.clock()
        high = self.seeder.settings.write_high_water
        while self.unfed and not self.closed and not self.deciding and self.out_bytes < high:
            chunk = self._next_slice()
            if chunk is None:
                break  # a message that must be seen whole is still arriving
            events = self.conn.receive_data(chunk, now)
            self.collect()
            self._handle(events, now)
        if self.closed:
            return
        if self.unfed and (self.deciding or self.out_bytes >= high):
            self._pause_reading()  # resumed when the peer reads what we owe it / decided
        else:
            self._resume_reading()
        self.pump()

    def _next_slice(self) -> bytes | None:
        """The next bytes for the state machine: the handshake, then whole-message runs.

        Message boundaries are tracked so that a piece advertisement sent after the
        first one (aria2 sends BITFIELD after every 20 new pieces, and HAVE ALL when it
        completes) reaches the strict state machine as the HAVEs it amounts to.
        """
        unfed = self.unfed
        if self.handshake_left:
            n = min(self.handshake_left, len(unfed), FEED_SLICE)
            self.handshake_left -= n
            chunk = bytes(unfed[:n])
            del unfed[:n]
            return chunk
        out = bytearray()
        pos = 0
        while len(out) < FEED_SLICE and pos < len(unfed):
            if self.frame_left:
                take = min(self.frame_left, len(unfed) - pos, FEED_SLICE - len(out))
                out += unfed[pos : pos + take]
                pos += take
                self.frame_left -= take
                continue
            if len(unfed) - pos < 5:
                if len(unfed) - pos < 4:
                    break
                size = int.from_bytes(unfed[pos : pos + 4], "big")
                if size == 0:
                    out += unfed[pos : pos + 4]  # keep-alive
                    pos += 4
                elif size > _MAX_READVERT:
                    self.frame_left = 4 + size  # hopeless: the state machine rejects it
                else:
                    break
                continue
            size = int.from_bytes(unfed[pos : pos + 4], "big")
            msg_id = unfed[pos + 4]
            if msg_id in _ADVERT_IDS and size <= _MAX_READVERT:
                if out:
                    break  # let the phase settle on what comes before an advertisement
                if self.conn.phase is wire.Phase.ESTABLISHED:
                    if len(unfed) - pos < 4 + size:
                        break
                    out += self._readvertised(msg_id, bytes(unfed[pos + 5 : pos + 4 + size]))
                    pos += 4 + size
                    continue
            self.frame_left = 4 + size
        del unfed[:pos]
        return bytes(out) if out else None

    def _readvertised(self, msg_id: int, payload: bytes) -> bytes:
        torrent = self.conn.torrent
        assert torrent is not None
        count = torrent.piece_count
        if msg_id == wire.Bitfield.MSG_ID:
            if len(payload) != (count + 7) // 8:
                # Wrong size: let the state machine see it and close the connection.
                return wire.encode_message(wire.Bitfield(payload))
            indices: Iterable[int] = (
                i for i in range(count) if payload[i >> 3] & (0x80 >> (i & 7))
            )
        elif msg_id == wire.HaveAll.MSG_ID:
            indices = range(count)
        else:
            return b""  # a late HAVE NONE tells us nothing
        return b"".join(
            wire.encode_message(wire.Have(i)) for i in indices if not self.conn.peer_has(i)
        )

    def _handle(self, events: list[wire.Event], now: float) -> None:
        swarm = self.swarm
        for ev in events:
            match ev:
                case wire.PieceRequested(index, begin, length):
                    self.seeder.stats.requests += 1
                    self.queue.append((index, begin, length))
                    if len(self.queue) > 4 * self.seeder.settings.max_outstanding_requests:
                        self.queue = deque(b for b in self.queue if self.conn.is_pending(*b))
                case wire.HandshakeReceived():
                    self._on_handshake(ev, now)
                case wire.PeerHas(index) if swarm is not None:
                    swarm.policy.peer_has(self.key, index, now)
                    swarm.schedule_decide()
                case wire.PeerBitfield(bits) if swarm is not None:
                    swarm.policy.peer_bitfield(self.key, bits, now)
                    swarm.schedule_decide()
                case wire.PeerHaveAll() if swarm is not None:
                    swarm.policy.peer_have_all(self.key, now)
                    swarm.schedule_decide()
                case wire.PeerInterested() if swarm is not None:
                    swarm.policy.peer_interested(self.key, True, now)
                    swarm.schedule_decide()
                case wire.PeerNotInterested() if swarm is not None:
                    swarm.policy.peer_interested(self.key, False, now)
                    swarm.schedule_decide()
                case wire.ConnectionClosed(reason):
                    self.seeder.stats.protocol_errors += 1
                    self.close(f"protocol: {reason}")
                    return

    # ---------------------------------------------------------------- handshake

    def _on_handshake(self, ev: wire.HandshakeReceived, now: float) -> None:
        info = self.seeder.public.get(ev.info_hash)
        if info is not None:
            # The one access decision, asked with this peer's address and the time.
            if self.seeder.public.admits(info, self.ip):
                self._accept(info, now)
            else:
                self.seeder.stats.refused_handshakes += 1
                self.close("not allowed for this peer")
            return
        self.deciding = True
        self._pause_reading()
        self._resolve_task = self.loop.create_task(self._resolve(ev.info_hash))

    async def _resolve(self, info_hash: bytes) -> None:
        try:
            info = await self.seeder.public.admit(info_hash, self.ip)
        except Exception:
            log.exception("resolving a handshake's info-hash failed")
            info = None
        self._resolve_task = None
        if self.closed:
            return
        self.deciding = False
        if info is None:
            self.seeder.stats.refused_handshakes += 1
            self.close("unknown info-hash")
            return
        now = self.seeder.clock()
        self._accept(info, now)
        if not self.closed:
            self.feed()

    def _accept(self, info: TorrentInfo, now: float) -> None:
        swarm = self.seeder._swarm_for(info, now)
        if swarm is None or len(swarm.links) >= self.seeder.settings.max_per_torrent:
            self.seeder.stats.refused_handshakes += 1
            self.conn.reject()
            self.close("torrent refused")
            return
        self.swarm = swarm
        super_seed = swarm.policy.super_seed()
        # A hybrid torrent's peer that offers v2 expects the v2 info-hash back (BEP 52).
        events = self.conn.accept(swarm.view, now, super_seed=super_seed, upgrade_to_v2=True)
        swarm.add(self, now, super_seed=super_seed)
        self.collect()
        self._handle(events, now)
        swarm.schedule_decide()

    # ---------------------------------------------------------------- writing

    def collect(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.out.append(memoryview(data))
            self.out_bytes += len(data)

    def pump(self) -> None:
        """Queue requested blocks the policy lets through, and write what we can."""
        if self.closed:
            return
        budget = BLOCKS_PER_PUMP
        while True:
            self._serve()
            sent = self._flush(budget)
            if sent < 0 or self.closed:
                return
            budget -= sent
            if budget <= 0:
                self._schedule_pump()  # let other connections run, then go on
                break
            if self.out or not self._servable():
                break  # the socket is full (writer armed), a read is pending, or all done
        high = self.seeder.settings.write_high_water
        if self.unfed and not self.deciding and self.out_bytes < high:
            self.loop.call_soon(self.feed)

    def _servable(self) -> bool:
        swarm = self.swarm
        return (
            bool(self.queue)
            and swarm is not None
            and not swarm.suspended
            and not swarm.closed
            and self.seeder.clock() >= self.rate_wait_until
        )

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True

            def run() -> None:
                self._pump_scheduled = False
                self.pump()

            self.loop.call_soon(run)

    def _serve(self) -> None:
        swarm = self.swarm
        if swarm is None or swarm.suspended or swarm.closed:
            return
        high = self.seeder.settings.write_high_water
        now = self.seeder.clock()
        if now < self.rate_wait_until:
            return
        conn = self.conn
        while self.queue and self.blocks_queued < MAX_QUEUED_BLOCKS and self.out_bytes < high:
            index, begin, length = self.queue[0]
            if not conn.is_pending(index, begin, length):
                self.queue.popleft()
                continue
            delay = swarm.policy.upload_delay(length, now)
            if delay > 0:
                self.rate_wait_until = now + delay
                self.seeder._wake_later(self, delay)
                return
            self.queue.popleft()
            if conn.send_piece_header(index, begin, length):
                self.collect()
                offset = index * swarm.view.piece_length + begin
                self.out.append(_Block(index, begin, length, offset))
                self.blocks_queued += 1

    def _flush(self, budget: int) -> int:
        """Write queued bytes until the socket is full; the number of blocks finished, or -1."""
        finished = 0
        sock = self.sock
        while self.out:
            item = self.out[0]
            if isinstance(item, memoryview):
                flags = socket.MSG_MORE if len(self.out) > 1 else 0
                try:
                    n = sock.send(item, flags)
                except (BlockingIOError, InterruptedError):
                    self._want_write()
                    return finished
                except OSError as exc:
                    self.close(f"send: {exc}")
                    return -1
                self.out_bytes -= n
                if n < len(item):
                    self.out[0] = item[n:]
                    self._want_write()
                    return finished
                self.out.popleft()
                continue
            status = self._write_block(item)
            if status < 0:
                return -1
            if status == 0:
                return finished
            self.out.popleft()
            self.blocks_queued -= 1
            now = self.seeder.clock()
            self.conn.piece_sent(item.index, item.begin, item.length, now)
            if self.swarm is not None:
                self.swarm.piece_sent(self, item, now)
            finished += 1
            if finished >= budget:
                break
        if not self.out:
            self._no_write()
        return finished

    def _write_block(self, block: _Block) -> int:
        """1 when the block is fully written, 0 when waiting (socket or disk), -1 when closed."""
        swarm = self.swarm
        if swarm is None:
            self.close("block without a torrent")
            return -1
        fd = swarm.source.fd
        while block.done < block.length:
            try:
                if fd is not None:
                    n = os.sendfile(
                        self.fd, fd, block.offset + block.done, block.length - block.done
                    )
                elif block.data is None:
                    self._start_read(block)
                    return 0
                else:
                    n = self.sock.send(block.data[block.done :])
            except (BlockingIOError, InterruptedError):
                self._want_write()
                return 0
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    self._want_write()
                    return 0
                self.close(f"sendfile: {exc}")
                return -1
            if n == 0:
                self.close("blob shorter than the torrent")
                return -1
            block.done += n
        block.data = None
        return 1

    def _start_read(self, block: _Block) -> None:
        if block.reading or self.swarm is None:
            return
        block.reading = True
        self._no_write()
        source = self.swarm.source

        async def read() -> None:
            try:
                data = await source.read(block.offset, block.length)
            except Exception as exc:
                self.close(f"read: {exc}")
                return
            if len(data) != block.length:
                self.close("blob shorter than the torrent")
                return
            block.data = memoryview(data)
            self.pump()

        self.loop.create_task(read())

    def _want_write(self) -> None:
        if not self.writing and not self.closed:
            self.writing = True
            self.loop.add_writer(self.fd, self.pump)

    def _no_write(self) -> None:
        if self.writing:
            self.writing = False
            self.loop.remove_writer(self.fd)

    # ---------------------------------------------------------------- timers, close

    def tick(self, now: float) -> None:
        if self.conn.timed_out(now):
            self.seeder.stats.timeouts += 1
            self.close("timed out")
            return
        if self.conn.keepalive_due(now):
            self.conn.send_keepalive(now)
            self.collect()
            self.pump()

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        log.debug("peer %s:%d closed: %s", self.ip, self.key, reason)
        self._pause_reading()
        self._no_write()
        if self._resolve_task is not None:
            self._resolve_task.cancel()
        with contextlib.suppress(OSError):
            self.sock.close()
        self.out.clear()
        self.queue.clear()
        self.unfed.clear()
        self.seeder._forget(self)
        if self.swarm is not None:
            self.swarm.remove(self, self.seeder.clock())


class Seeder:
    """The origin seeder for every published torrent of this node."""

    def __init__(
        self,
        settings: SeederSettings,
        public: PublicTorrents,
        store: ObjectStore,
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
        self.links: dict[int, _Link] = {}
        self.per_ip: dict[str, int] = {}
        self.swarms: dict[str, _Swarm] = {}  # by version id
        self.address: tuple[str, int] | None = None
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_key = 0
        self._tick_task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        public.on_revoked(self.on_revoked)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "seeder not started"
        return self._loop

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on host:port (port 0: any); returns the bound address."""
        self._loop = asyncio.get_running_loop()
        infos = await self._loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(1024)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._listener = sock
        bound = sock.getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        self._loop.add_reader(sock.fileno(), self._on_accept)
        self._tick_task = self._loop.create_task(self._tick_forever())
        log.info("seeder listening on %s:%d (mode %s)", *self.address, self.settings.mode)
        return self.address

    async def stop(self) -> None:
        if self._listener is not None and self._loop is not None:
            self._loop.remove_reader(self._listener.fileno())
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

    def _on_accept(self) -> None:
        listener = self._listener
        if listener is None:
            return
        for _ in range(64):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # EMFILE and friends: stop accepting for this turn, keep serving.
                log.warning("peer accept failed: %s", exc)
                return
            ip = str(addr[0])
            if (
                len(self.links) >= self.settings.max_connections
                or self.per_ip.get(ip, 0) >= self.settings.max_per_ip
            ):
                self.stats.refused_at_accept += 1
                sock.close()
                continue
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._next_key += 1
            self.stats.accepted += 1
            self.per_ip[ip] = self.per_ip.get(ip, 0) + 1
            link = _Link(self, sock, ip, self._next_key)
            self.links[link.key] = link

    def _forget(self, link: _Link) -> None:
        if self.links.pop(link.key, None) is None:
            return
        left = self.per_ip.get(link.ip, 1) - 1
        if left > 0:
            self.per_ip[link.ip] = left
        else:
            self.per_ip.pop(link.ip, None)

    # ------------------------------------------------------------------ torrents

    def _swarm_for(self, info: TorrentInfo, now: float) -> _Swarm | None:
        swarm = self.swarms.get(info.version_id)
        if swarm is not None:
            if swarm.suspended:
                # It was republished (we only get here with a currently public info).
                swarm.suspended = False
                swarm.info = info
            return swarm
        swarm = _Swarm(self, info, now)
        self.swarms[info.version_id] = swarm
        return swarm

    def _drop_swarm(self, swarm: _Swarm) -> None:
        if self.swarms.get(swarm.info.version_id) is swarm:
            del self.swarms[swarm.info.version_id]
        swarm.closed = True
        swarm.source.close()

    def on_revoked(self, info: TorrentInfo) -> None:
        """A torrent stopped being public: stop serving now, close its peers shortly."""
        swarm = self.swarms.get(info.version_id)
        if swarm is None or self._loop is None:
            return
        swarm.suspended = True

        def recheck() -> None:
            self._timers.discard(handle)
            self._recheck(swarm)

        handle = self._loop.call_later(REVOCATION_GRACE, recheck)
        self._timers.add(handle)

    def _recheck(self, swarm: _Swarm) -> None:
        if swarm.closed or not swarm.suspended:
            return
        current = [self.public.get(sid) for sid in swarm.info.swarm_ids]
        republished = next(
            (i for i in current if i is not None and i.version_id == swarm.info.version_id), None
        )
        if republished is not None:
            swarm.suspended = False
            swarm.info = republished
            for link in list(swarm.links.values()):
                link.pump()
            swarm.schedule_decide()
            return
        self._drop_swarm(swarm)
        swarm.close("revoked")

    # ------------------------------------------------------------------ timers

    def _wake_later(self, link: _Link, delay: float) -> None:
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
            "torrents": {h: t.to_json() for h, t in s.torrents.items()},
        }
