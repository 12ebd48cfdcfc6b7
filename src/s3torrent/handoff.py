"""Client connections the owner worker gives to the other workers (SCM_RIGHTS).

The kernel spreads the S3 listener's connections over every worker, so the owner, whose one
core also answers every other worker's relayed announces (tracker/relay.py), takes its share
of the connections that only announce, which cost it about three relayed announces each. A
connection that keeps announcing (a client with many torrents, a reverse proxy's upstream
pool) is therefore given away: after its second announce, with nothing unanswered or unsent,
the owner's front (front.py) passes the socket itself to another worker over a
Unix stream, `data_dir/handoff.sock` (mode 0600 in the 0700 data directory), and forgets it.
The worker admits it through its own listener's gate as if it had accepted it, and it starts
in that worker's front: announces there go through the relay, any other request to that
worker's S3 application. The client sees nothing: the same TCP connection, answers in order.

Each worker connects to the owner and only receives; the owner sends one byte per socket
with the descriptor attached, to the workers in turn, and never waits: a worker's stream
that is full or gone makes the owner keep the connection and answer it itself.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

# Descriptors one receive takes at most (the owner sends one per message).
_MAX_FDS: Final = 16
_FD_SIZE: Final = array.array("i").itemsize
_ANCILLARY: Final = socket.CMSG_SPACE(_MAX_FDS * _FD_SIZE)
# A worker's wait before connecting again after the owner was unreachable.
RECONNECT_AFTER: Final = 0.5
# Worker streams the owner keeps at most (one per worker; beyond it a newcomer is closed).
MAX_STREAMS: Final = 1024


def send_socket(channel: socket.socket, fd: int) -> bool:
    """Pass the socket `fd` over `channel` without waiting; whether it went."""
    fds = array.array("i", [fd])
    try:
        sent = channel.sendmsg([b"\x01"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    except (BlockingIOError, InterruptedError, OSError):
        return False
    return sent == 1


def receive_sockets(channel: socket.socket) -> tuple[list[socket.socket], bool]:
    """The sockets waiting on `channel`, and whether it is still open (False: closed)."""
    received: list[socket.socket] = []
    while True:
        try:
            data, ancillary, flags, _ = channel.recvmsg(_MAX_FDS, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return received, True
        except OSError:
            return received, False
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - len(payload) % _FD_SIZE])
                for fd in fds:
                    sock = _adopt_fd(fd)
                    if sock is not None:
                        received.append(sock)
        if flags & socket.MSG_CTRUNC:
            log.warning("connection hand-off: descriptors were cut off")
        if not data:
            return received, False


def _adopt_fd(fd: int) -> socket.socket | None:
    try:
        return socket.socket(fileno=fd)
    except OSError:  # not a socket: nothing the owner sends
        os.close(fd)
        log.warning("connection hand-off: a descriptor that is not a socket; closed")
        return None


class HandoffServer:
    """The owner's end: the workers' streams, and `give` to pass a connection to one."""

    def __init__(self) -> None:
        self._listening: socket.socket | None = None
        self._streams: list[socket.socket] = []
        self._next = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._path: Path | None = None

    @property
    def workers(self) -> int:
        """Worker streams connected now."""
        return len(self._streams)

    def start(self, path: Path) -> None:
        self._loop = loop = asyncio.get_running_loop()
        path.unlink(missing_ok=True)
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listening.setblocking(False)
        listening.bind(str(path))
        path.chmod(0o600)
        listening.listen(64)
        self._listening = listening
        self._path = path
        loop.add_reader(listening.fileno(), self._accept)

    def _accept(self) -> None:
        assert self._listening is not None and self._loop is not None
        while True:
            try:
                stream, _ = self._listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                log.warning("connection hand-off: accept failed: %s", error)
                return
            if len(self._streams) >= MAX_STREAMS:
                stream.close()
                continue
            stream.setblocking(False)
            self._streams.append(stream)
            # A worker never writes: readable means it closed (or broke) its end.
            self._loop.add_reader(stream.fileno(), self._drop, stream)

    def _drop(self, stream: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if stream.recv(1):
                log.warning("connection hand-off: a worker wrote to its stream; closing it")
        assert self._loop is not None
        self._loop.remove_reader(stream.fileno())
        self._streams.remove(stream)
        stream.close()

    def give(self, fd: int) -> bool:
        """Pass the connection `fd` to the next worker; False (keep it) if none took it now.
        The caller closes its descriptor after a True, without shutting the connection."""
        streams = self._streams
        for _ in range(len(streams)):
            self._next = (self._next + 1) % len(streams)
            if send_socket(streams[self._next], fd):
                return True
        return False

    def close(self) -> None:
        loop = self._loop
        for stream in self._streams:
            if loop is not None:
                loop.remove_reader(stream.fileno())
            stream.close()
        self._streams.clear()
        if self._listening is not None:
            if loop is not None:
                loop.remove_reader(self._listening.fileno())
            self._listening.close()
            self._listening = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None


class HandoffClient:
    """A worker's end: connects to the owner and adopts every socket it is given."""

    def __init__(self, path: Path, adopt: Callable[[socket.socket], None]) -> None:
        self.path = path
        self._adopt = adopt
        self._stream: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        self.adopted = 0

    @property
    def connected(self) -> bool:
        return self._stream is not None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._connect()

    def _connect(self) -> None:
        self._retry = None
        if self._closed:
            return
        assert self._loop is not None
        stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stream.setblocking(False)
        try:
            # A local stream connects at once or not at all (the owner is not listening,
            # or its backlog is full): never a wait.
            stream.connect(str(self.path))
        except OSError:
            stream.close()
            self._retry = self._loop.call_later(RECONNECT_AFTER, self._connect)
            return
        self._stream = stream
        self._loop.add_reader(stream.fileno(), self._receive)

    def _receive(self) -> None:
        stream = self._stream
        if stream is None:
            return
        sockets, open_ = receive_sockets(stream)
        for sock in sockets:
            try:
                self._adopt(sock)
                self.adopted += 1
            except Exception:
                log.exception("connection hand-off: adopting a connection failed")
                sock.close()
        if not open_:
            self._lose()

    def _lose(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            assert self._loop is not None
            self._loop.remove_reader(stream.fileno())
            stream.close()
        if not self._closed and self._loop is not None:
            # The owner is restarting: connect again once it listens.
            self._retry = self._loop.call_later(RECONNECT_AFTER, self._connect)

    def close(self) -> None:
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._lose()
