"""One peer connection of the origin seeder: socket callbacks around a SeedConnection.

This layer only moves bytes: peer input goes to the sans-IO state machine in small
slices, and piece payloads go out several to one ``sendmsg`` with their 13-byte headers
(owed.py): a plain blob's blocks read with one ``os.pread`` per run of adjacent blocks,
a sealed blob's as slices of the plaintext spans its swarm opened (opened_spans.py). A
block that cannot be batched goes alone, from the blob file with ``os.sendfile`` right
behind its header; blobs without a local file are read off the loop. What was sent is
accounted once per batch (per piece for the offload policy, one sum for metering), not
per block. Reading stops while the control bytes we owe the peer sit above
``write_high_water``; at most a few blocks are queued per peer.

MSE/PE: while a link has an ``MseStream`` (mse_stream.py), every byte in and out goes
through it; piece payloads are then batched as above (``os.pread``, like sendfile a
page-cache read on the loop) and encrypted in wire order, 64 KiB at a time. Plain and
plaintext-selected links drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import functools
import logging
import os
import socket
from collections import deque
from typing import TYPE_CHECKING

from s3torrent.admission import client_key
from s3torrent.peer import wire
from s3torrent.peer.input_allowance import InputAllowance
from s3torrent.peer.mse_stream import MseStream
from s3torrent.peer.owed import ZEROS as _ZEROS
from s3torrent.peer.owed import OwedBlock, consume, gather, pread, read_runs, release, unread
from s3torrent.peer.owed import prefetch as prefetch_spans
from s3torrent.torrent.catalog import TorrentInfo

if TYPE_CHECKING:
    from s3torrent.peer.seeder import Seeder
    from s3torrent.peer.swarm import Swarm

__all__ = ["OwedBlock", "PeerLink"]

log = logging.getLogger(__name__)

FEED_SLICE = 1024  # bytes of peer input per state-machine call: bounds replies per step
MAX_QUEUED_BLOCKS = 4  # blocks handed to the socket path per peer at a time
# Blocks in memory (a plain blob's blocks read in runs, a sealed blob's opened spans) go
# out several to one sendmsg (owed.py): this many queued per peer.
MAX_BATCHED_BLOCKS = 32
BLOCKS_PER_PUMP = 64  # then yield to other connections (fairness on fast links)


class _Batch(enum.Enum):
    NONE = "too little in memory to batch"
    SENT = "all of it sent"
    FULL = "the socket took part of it"
    CLOSED = "the link closed"


class PeerLink:
    """One peer connection: socket callbacks around a SeedConnection."""

    def __init__(self, seeder: Seeder, sock: socket.socket, ip: str, key: int) -> None:
        self.seeder = seeder
        self.loop = seeder.loop
        self.sock = sock
        self.fd = sock.fileno()
        self.ip = ip
        self.key = key
        self.peer_id = b""  # from its handshake
        now = seeder.clock()
        self.conn = wire.SeedConnection(seeder.peer_id, now, seeder.limits)
        self.swarm: Swarm | None = None
        self.out: deque[memoryview | OwedBlock] = deque()
        self.out_bytes = 0
        self.blocks_queued = 0
        self.unfed = bytearray()
        self.handshake_left = wire.HANDSHAKE_LENGTH
        self.queue: deque[tuple[int, int, int]] = deque()
        limits = seeder.limits
        self.queue_bound = max(limits.max_queued_requests, limits.max_outstanding_requests)
        self.reading = False
        self.writing = False
        self.closed = False
        self.deciding = False
        self.rate_wait_until = 0.0
        self._pump_scheduled = False
        self._resolve_task: asyncio.Task[None] | None = None
        self.mse: MseStream | None = seeder.mse_stream()
        self.input = InputAllowance(seeder.input_sources, client_key(ip), seeder.clock())
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
            data = self.input.recv(self.sock, self.seeder.clock())
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(f"recv: {exc}")
            return
        if data is None:  # over its input allowance: read again at the next tick
            self._pause_reading()
            return
        if not data:
            self.close("peer closed")
            return
        self.seeder.stats.bytes_received += len(data)
        if self.mse is not None:
            data = self._through_mse(data)
            if self.closed:
                return
        self.unfed += data
        self.feed()

    def feed(self) -> None:
        now = self.seeder.clock()
        high = self.seeder.settings.write_high_water
        while self.unfed and not self.closed and not self.deciding and self.out_bytes < high:
            events = self.conn.receive_data(self._next_slice(), now)
            self.collect()
            self._handle(events, now)
        if self.closed:
            return
        if self.unfed and (self.deciding or self.out_bytes >= high):
            self._pause_reading()  # resumed when the peer reads what we owe it / decided
        else:
            self._resume_reading()
        self.pump()

    def _next_slice(self) -> bytes:
        """The next bytes for the state machine: the handshake alone, then small slices.

        The handshake goes first on its own so that nothing behind it is parsed before
        the torrent is decided. The state machine bounds what it buffers by message
        type, so a slice may end anywhere.
        """
        n = min(len(self.unfed), FEED_SLICE)
        if self.handshake_left:
            n = min(n, self.handshake_left)
            self.handshake_left -= n
        chunk = bytes(self.unfed[:n])
        del self.unfed[:n]
        return chunk

    def _handle(self, events: list[wire.Event], now: float) -> None:
        swarm = self.swarm
        requested = 0
        for ev in events:
            if type(ev) is wire.PieceRequested:  # most events: one per block, kept cheap
                requested += 1
                self.queue.append((ev.index, ev.begin, ev.length))
                continue
            if type(ev) is wire.PeerHas:  # the next most: one per piece the peer gets
                if swarm is not None:
                    swarm.policy.peer_has(self.key, ev.index, now)
                    swarm.schedule_decide()
                continue
            match ev:
                case wire.HandshakeReceived():
                    self._on_handshake(ev, now)
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
        if requested:
            self.seeder.stats.requests += requested
            # Drop served and cancelled entries, and copies of a block cancelled and asked
            # again, once they could outnumber the pending ones (the state machine bounds).
            if len(self.queue) > 2 * self.queue_bound:
                self.queue = deque(dict.fromkeys(b for b in self.queue if self.conn.is_pending(*b)))

    # ---------------------------------------------------------------- handshake

    def _on_handshake(self, ev: wire.HandshakeReceived, now: float) -> None:
        self.peer_id = ev.peer_id
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
        policy = swarm.policy
        capping = policy.capping()  # fixed while we queue: only peer events change it
        source = swarm.source
        spans = source.spans if self.mse is None else None
        batching = source.spans is not None or source.fd is not None
        bound = MAX_BATCHED_BLOCKS if batching else MAX_QUEUED_BLOCKS
        self.collect()  # control bytes queued before these blocks go before them
        view = swarm.view
        piece_length = view.piece_length
        queue, out = self.queue, self.out
        while queue and self.blocks_queued < bound and self.out_bytes < high:
            index, begin, length = queue[0]
            if capping:
                if not conn.is_pending(index, begin, length):
                    queue.popleft()
                    continue
                delay = policy.upload_delay(length, now)
                if delay > 0:
                    self.rate_wait_until = now + delay
                    self.seeder._wake_later(self, delay)
                    return
            queue.popleft()
            header = conn.start_block(index, begin, length)
            if header is not None:
                out.append(memoryview(header))
                self.out_bytes += len(header)
                offset = index * piece_length + begin
                valid = view.data_length(index, begin, length)
                out.append(OwedBlock(index, begin, length, offset, valid))
                self.blocks_queued += 1
        if spans is not None and spans.open_now is None:
            # Spans opened in threads: start them before they are due.
            prefetch_spans(swarm.source, self.out, self.queue, swarm.view.piece_length)

    def _flush(self, budget: int) -> int:
        """Write queued bytes until the socket is full; the number of blocks finished, or -1."""
        finished = 0
        if self.mse is not None and not self._flush_mse():
            return -1 if self.closed else 0
        source = self.swarm.source if self.swarm is not None else None
        batching = source is not None and (source.spans is not None or source.fd is not None)
        while self.out:
            if batching:
                batched, state = self._send_batch(budget - finished)
                finished += batched
                if state is _Batch.CLOSED:
                    return -1
                if state is _Batch.FULL:
                    self._want_write()
                    return finished
                if state is _Batch.SENT:
                    if finished >= budget:
                        break
                    continue
            item = self.out[0]
            if isinstance(item, memoryview):
                flags = socket.MSG_MORE if len(self.out) > 1 else 0
                try:
                    n = self._send(item, flags)
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
            self._blocks_sent([item])
            finished += 1
            if finished >= budget:
                break
        if not self.out:
            if self.mse is None or self.mse.idle:
                self._no_write()
            else:
                self._want_write()  # ciphertext the socket did not take yet
        return finished

    def _blocks_sent(self, blocks: list[OwedBlock]) -> None:
        """Account blocks gone to the socket: one call each for the state machine and the
        swarm (which sums them per piece for the policy and once for metering)."""
        self.blocks_queued -= len(blocks)
        now = self.seeder.clock()
        self.input.sent(sum(b.length for b in blocks))
        self.conn.pieces_sent([(b.index, b.begin, b.length) for b in blocks], now)
        if self.swarm is not None:
            self.swarm.blocks_sent(self, blocks, now)

    def _send_batch(self, budget: int) -> tuple[int, _Batch]:
        """Send what `gather` finds in one call: the blocks it finished, and how it went."""
        assert self.swarm is not None
        source = self.swarm.source
        budget = max(1, budget)
        fd = source.fd if source.spans is None else None
        try:
            if fd is not None:
                read_runs(self.out, functools.partial(pread, fd), budget)
                parts = gather(self.out, unread, budget)
            else:
                parts = gather(self.out, source.ready, budget)
        except Exception as exc:  # a span that fails its tags: never send a byte of it
            self.close(f"read: {exc}")
            return 0, _Batch.CLOSED
        if len(parts) < 2:
            return 0, _Batch.NONE
        try:
            if self.mse is None:
                n = self.sock.sendmsg(parts)
            else:  # RC4 is a stream: encrypted in wire order as the socket takes it
                n = self.mse.send_all(self.sock, parts)
        except (BlockingIOError, InterruptedError):
            if fd is not None:
                release(self.out)
            return 0, _Batch.FULL
        except OSError as exc:
            self.close(f"send: {exc}")
            return 0, _Batch.CLOSED
        full = n < sum(len(p) for p in parts)
        sent, control = consume(self.out, n)
        self.out_bytes -= control
        if sent:
            self._blocks_sent(sent)
        if full and fd is not None:
            release(self.out)
        return len(sent), (_Batch.FULL if full else _Batch.SENT)

    # ---------------------------------------------------------------- MSE

    def _through_mse(self, data: bytes) -> bytes:
        """The peer's clear payload from its bytes (empty while the MSE handshake runs)."""
        assert self.mse is not None
        try:
            clear = self.mse.receive(data)
        except wire.ProtocolError as exc:
            self.seeder.stats.protocol_errors += 1
            self.close(f"protocol: {exc}")
            return b""
        if self.mse.droppable:
            self.mse = None
        return clear

    def _flush_mse(self) -> bool:
        """Send the MSE bytes we owe; False while some are left (or when closed)."""
        assert self.mse is not None
        try:
            done = self.mse.flush(self.sock)
        except OSError as exc:
            self.close(f"send: {exc}")
            return False
        if not done:
            self._want_write()
            return False
        if self.mse.droppable:
            self.mse = None
        return True

    def _send(self, data: bytes | memoryview, flags: int = 0) -> int:
        if self.mse is None:
            return self.sock.send(data, flags)
        return self.mse.send(self.sock, data, flags)

    def _write_block(self, block: OwedBlock) -> int:
        """1 when the block is fully written, 0 when waiting (socket or disk), -1 when closed."""
        swarm = self.swarm
        if swarm is None:
            self.close("block without a torrent")
            return -1
        fd = swarm.source.fd
        while block.done < block.length:
            try:
                if block.done >= block.valid:
                    # Implied padding past the object's end (hybrid torrents): zeros,
                    # never a read past the blob.
                    n = self._send(_ZEROS[: block.length - block.done])
                elif fd is not None and self.mse is not None:
                    # RC4 rules sendfile out: read the block and encrypt it.
                    n = self.mse.send_file(
                        self.sock, fd, block.offset + block.done, block.valid - block.done
                    )
                elif fd is not None:
                    n = os.sendfile(
                        self.fd, fd, block.offset + block.done, block.valid - block.done
                    )
                elif block.data is None:
                    self._start_read(block)
                    if block.data is None:
                        return -1 if self.closed else 0
                    continue  # served at once (a sealed block opened with the one before)
                else:
                    n = self._send(block.data[block.done : block.valid])
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

    def _start_read(self, block: OwedBlock) -> None:
        if block.reading or self.swarm is None:
            return
        source = self.swarm.source
        try:
            ready = source.ready(block.offset, block.valid)
        except Exception as exc:  # a span that fails its tags: never send a byte of it
            self.close(f"read: {exc}")
            return
        if ready is not None and len(ready) == block.valid:
            block.data = memoryview(ready)
            return
        block.reading = True
        self._no_write()

        async def read() -> None:
            try:
                data = await source.read(block.offset, block.valid)
            except Exception as exc:
                self.close(f"read: {exc}")
                return
            if len(data) != block.valid:
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
        if not (self.reading or self.unfed or self.deciding):
            self._resume_reading()  # it waited on its input allowance

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.input.close(self.seeder.clock())
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
