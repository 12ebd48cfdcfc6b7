"""The socket side of MSE for one seeder connection: detection, owed bytes, RC4 out.

A ``PeerLink`` passes every byte through its ``MseStream`` while it has one: input is
turned into the peer's clear payload, output into wire bytes in the order it is handed
to the socket (RC4 is a stream: the order of encryption must be the order on the wire,
so encryption happens at ``send`` time, never when a message is queued). A connection
that opens with a plain handshake, or whose MSE handshake selected plaintext and is
done, drops its stream and goes back to the plain path (sendfile included).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Final

from s3torrent.peer.mse import Established, MseResponder, SwarmLookup, classify_opening

__all__ = ["SEAL_CHUNK", "MseStream"]

SEAL_CHUNK: Final = 64 * 1024  # plaintext taken per send: bounds the ciphertext we hold


class MseStream:
    """One connection's MSE layer between the socket and the wire state machine."""

    def __init__(
        self, lookup: SwarmLookup, on_established: Callable[[Established], None] | None = None
    ) -> None:
        self._lookup = lookup
        self._on_established = on_established
        self._opening = bytearray()  # at most 20 bytes: until the opening is classified
        self.responder: MseResponder | None = None
        self.plain_opening = False
        self._owed = bytearray()  # wire bytes (handshake or ciphertext) not yet sent

    @property
    def idle(self) -> bool:
        """Nothing owed to the socket."""
        return not self._owed

    @property
    def droppable(self) -> bool:
        """The link may forget this stream: every later byte goes in the clear."""
        if not self.idle:
            return False
        if self.plain_opening:
            return True
        est = self.responder.established if self.responder is not None else None
        return est is not None and not est.rc4

    def receive(self, data: bytes) -> bytes:
        """The peer's bytes in, its payload in the clear out; ProtocolError on bad input."""
        if self.plain_opening:
            return data
        if self.responder is None:
            self._opening += data
            kind = classify_opening(self._opening)
            if kind is None:
                return b""
            data = bytes(self._opening)
            self._opening.clear()
            if kind == "plaintext":
                self.plain_opening = True
                return data
            self.responder = MseResponder(self._lookup)
        responder = self.responder
        was_established = responder.established is not None
        clear = responder.receive_data(data)
        self._owed += responder.data_to_send()
        if not was_established and responder.established and self._on_established:
            self._on_established(responder.established)
        return clear

    def flush(self, sock: socket.socket) -> bool:
        """Send what we owe; True when all of it went. Socket errors other than a full
        buffer propagate."""
        while self._owed:
            try:
                n = sock.send(self._owed)
            except (BlockingIOError, InterruptedError):
                return False
            del self._owed[:n]
        return True

    def send_file(self, sock: socket.socket, fd: int, offset: int, size: int) -> int:
        """Like ``os.sendfile`` for a payload: read at most SEAL_CHUNK, encrypt, send.

        The read is from the page cache on the loop, as sendfile's would be; nothing is
        read while earlier ciphertext is still owed.
        """
        if not self.flush(sock):
            raise BlockingIOError
        return self.send(sock, os.pread(fd, min(size, SEAL_CHUNK), offset))

    def send_all(self, sock: socket.socket, parts: list[memoryview]) -> int:
        """Like ``sock.sendmsg`` for payload bytes: `parts` in order, encrypted and sent a
        SEAL_CHUNK at a time until the socket is full. How many bytes were taken (at most
        one chunk of their ciphertext is then owed); BlockingIOError if none were."""
        data = memoryview(b"".join(parts))
        taken = 0
        while taken < len(data):
            try:
                taken += self.send(sock, data[taken:])
            except BlockingIOError:
                break
        if not taken and data:
            raise BlockingIOError
        return taken

    def send(self, sock: socket.socket, data: bytes | memoryview, flags: int = 0) -> int:
        """Like ``sock.send`` for payload bytes: how many of ``data`` were taken.

        Taken bytes are encrypted at once (the stream advances); what the socket did not
        accept is owed and goes first next time. Raises BlockingIOError while owing.
        """
        if not self.flush(sock):
            raise BlockingIOError
        if self.responder is None:  # a plain opening: nothing to transform
            return sock.send(data, flags)
        chunk = data[:SEAL_CHUNK]
        sealed = self.responder.encrypt(chunk)
        try:
            n = sock.send(sealed, flags)
        except (BlockingIOError, InterruptedError):
            n = 0
        self._owed += sealed[n:]
        return len(chunk)
