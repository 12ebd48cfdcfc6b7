"""How much of a peer's input the seeder reads: a seed needs little (requests, HAVEs), and
each small message costs the loop about a microsecond a byte, so a peer's input is read at
a bounded rate beyond what the bytes we send it earn, and a peer that keeps sending past
that is closed (`seeder.input_rate`, `seeder.input_burst`)."""

from __future__ import annotations

import fcntl
import socket
import sys
import termios

from s3torrent.peer.token_bucket import TokenBucket

__all__ = ["InputAllowance", "InputFlood"]

RECV_SIZE = 64 * 1024
# Peer input that the bytes we send it earn, one byte per this many (64 per 16 KiB block;
# its request is 17 bytes, a HAVE 9): a downloader never waits on the input bound, whatever
# its speed, and a peer asking for 1-byte blocks earns nothing.
EARNED_PER = 256
MIN_READ = 1024  # below this much allowance, wait for more rather than recv a sliver
# Input waiting in a peer's socket once its allowance is spent, past which it is closed: a
# peer we serve keeps at most its `reqq` requests (250: 4 KiB) and a few HAVEs unread.
FLOOD_BACKLOG = 16 * 1024


class InputFlood(ConnectionError):
    """The peer sends far more than a peer that needs serving ever does."""


def unread(sock: socket.socket) -> int:
    """Bytes waiting in the socket's receive buffer."""
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(buf, sys.byteorder)


class InputAllowance:
    """`rate` bytes/s of peer input (0: unbounded), `burst` at once, plus what we send earns."""

    __slots__ = ("_bucket",)

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self._bucket = TokenBucket(rate, burst, now)

    def recv(self, sock: socket.socket, now: float) -> bytes | None:
        """The peer's next bytes as `sock.recv` gives them (b"": it closed); None while
        it is over its allowance (read again later). InputFlood: close the peer."""
        size = RECV_SIZE
        if self._bucket.rate > 0:
            level = self._bucket.level(now)
            if level < MIN_READ:
                if unread(sock) > FLOOD_BACKLOG:
                    raise InputFlood("input past its allowance")
                return None
            size = min(size, int(level))
        data = sock.recv(size)
        self._bucket.charge(len(data), now)
        return data

    def sent(self, nbytes: int, now: float) -> None:
        """`nbytes` of blocks went to the peer: they earn it input."""
        self._bucket.charge(-(nbytes // EARNED_PER), now)
