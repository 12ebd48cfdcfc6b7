"""How much of a peer's input the seeder reads: a seed needs little (requests, HAVEs), and
each small message costs the loop about a microsecond a byte, so a peer's input is read at
a bounded rate beyond what the bytes we send it earn, and a peer that keeps sending past
that is closed (`seeder.input_rate`, `seeder.input_burst`).

The rate and burst belong to the peer's source (an IPv4 address, an IPv6 /64: the
per-client key of `admission.client_key`), shared by its connections and remembered after
they close until refilled, so a peer that reconnects gets no new burst. The source's bucket
holds a burst and refills at the rate for each of its open connections (at least one): the
clients of a swarm behind one address (a NAT, a lab on loopback) each keep their own share
for the HAVEs of pieces they got from each other, while closing and opening a connection
adds nothing to the bucket's level. What our sending earns stays with the connection it
went to: a downloader's requests never wait on another connection from its address (a
NAT's neighbour) spending the shared part."""

from __future__ import annotations

import fcntl
import socket
import sys
import termios

from s3torrent.peer.token_bucket import TokenBucket

__all__ = ["InputAllowance", "InputFlood", "InputSources"]

RECV_SIZE = 64 * 1024
# Peer input that the bytes we send it earn, one byte per this many (64 per 16 KiB block;
# its request is 17 bytes, a HAVE 9): a downloader never waits on the input bound, whatever
# its speed, and a peer asking for 1-byte blocks earns nothing.
EARNED_PER = 256
MIN_READ = 1024  # below this much allowance, wait for more rather than recv a sliver
# Input waiting in a peer's socket once its allowance is spent, past which it is closed: a
# peer we serve keeps at most its `reqq` requests (250: 4 KiB) and a few HAVEs unread.
FLOOD_BACKLOG = 16 * 1024
# Sources whose allowance is remembered (least recently read dropped first, a few hundred
# bytes each): well above the seeder's connection cap, so that only sources idle for a
# while are forgotten before they have refilled.
SOURCES_REMEMBERED = 8192


class InputFlood(ConnectionError):
    """The peer sends far more than a peer that needs serving ever does."""


def unread(sock: socket.socket) -> int:
    """Bytes waiting in the socket's receive buffer."""
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(buf, sys.byteorder)


class InputSources:
    """Each source's unearned input: `rate` bytes/s (0: unbounded), `burst` at once, for
    each of its open connections (`opened`, `closed`; at least one).

    A source's bucket is shared by its connections and outlives them: it is forgotten once
    full again (a new one would be the same), or past `size` sources, least recently read
    first (an attacker needs that many addresses busy at once to be forgotten early).
    """

    __slots__ = ("_buckets", "_open", "burst", "rate", "size")

    def __init__(self, rate: float, burst: float, size: int = SOURCES_REMEMBERED) -> None:
        self.rate = rate
        self.burst = burst
        self.size = size
        # Insertion order is recency: popping and inserting again moves a source to the end.
        self._buckets: dict[str, TokenBucket] = {}
        # Open connections per source (a source with none is not in it).
        self._open: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def opened(self, source: str, now: float) -> None:
        """A connection from `source` opened: its bucket holds (and refills) one share more,
        from its level as it is (a reconnection gains nothing)."""
        self._open[source] = self._open.get(source, 0) + 1
        self._resize(source, now)

    def closed(self, source: str, now: float) -> None:
        """A connection from `source` closed: one share less (its level kept, up to that)."""
        left = self._open.get(source, 0) - 1
        if left > 0:
            self._open[source] = left
        else:
            self._open.pop(source, None)
        self._resize(source, now)

    def _resize(self, source: str, now: float) -> None:
        bucket = self._buckets.get(source)
        if bucket is not None:
            bucket.level(now)  # refilled at the old size up to now
            shares = max(1, self._open.get(source, 0))
            bucket.rate, bucket.burst = self.rate * shares, self.burst * shares
            bucket.level(now)  # clipped to the new size

    def bucket(self, source: str, now: float) -> TokenBucket:
        """`source`'s bucket (full when new), now its most recently used."""
        buckets = self._buckets
        bucket = buckets.pop(source, None)
        if bucket is None:
            shares = max(1, self._open.get(source, 0))
            bucket = TokenBucket(self.rate * shares, self.burst * shares, now)
        buckets[source] = bucket
        self._forget_oldest(now)
        return bucket

    def _forget_oldest(self, now: float) -> None:
        """Drop the least recently used buckets while full again or past `size`: one check
        per call when nothing is to be dropped."""
        buckets = self._buckets
        while len(buckets) > 1:
            oldest = next(iter(buckets))
            if len(buckets) <= self.size and buckets[oldest].level(now) < buckets[oldest].burst:
                return
            del buckets[oldest]


class InputAllowance:
    """One connection's input: what its source may send unearned (`InputSources`), plus
    what the bytes we send this connection earn (at most a burst of it kept)."""

    __slots__ = ("_earned", "_open", "_source", "_sources")

    def __init__(self, sources: InputSources, source: str, now: float) -> None:
        self._sources = sources
        self._source = source
        self._earned = 0
        self._open = True
        sources.opened(source, now)

    def close(self, now: float) -> None:
        """The connection closed: its source's share goes with it (once)."""
        if self._open:
            self._open = False
            self._sources.closed(self._source, now)

    def recv(self, sock: socket.socket, now: float) -> bytes | None:
        """The peer's next bytes as `sock.recv` gives them (b"": it closed); None while
        it is over its allowance (read again later). InputFlood: close the peer."""
        if self._sources.rate <= 0:
            return sock.recv(RECV_SIZE)
        bucket = self._sources.bucket(self._source, now)
        level = self._earned + bucket.level(now)
        if level < MIN_READ:
            if unread(sock) > FLOOD_BACKLOG:
                raise InputFlood("input past its allowance")
            return None
        data = sock.recv(min(RECV_SIZE, int(level)))
        from_earned = min(self._earned, len(data))
        self._earned -= from_earned
        bucket.charge(len(data) - from_earned, now)
        return data

    def sent(self, nbytes: int) -> None:
        """`nbytes` of blocks went to the peer: they earn this connection input."""
        self._earned = min(int(self._sources.burst), self._earned + nbytes // EARNED_PER)
