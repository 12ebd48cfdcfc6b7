"""corking.corked: TCP_CORK set for the block and cleared (flushed) after, on TCP only."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator

import pytest

from s3torrent.corking import corked

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_CORK is Linux's")


def _cork(transport: asyncio.BaseTransport) -> int:
    sock = transport.get_extra_info("socket")
    return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK))


class _Keep(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data


@contextlib.asynccontextmanager
async def _tcp_pair() -> AsyncIterator[tuple[asyncio.Transport, _Keep, asyncio.Server]]:
    loop = asyncio.get_running_loop()
    accepted: list[_Keep] = []

    def make() -> _Keep:
        accepted.append(_Keep())
        return accepted[-1]

    server = await loop.create_server(make, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    while not accepted or accepted[0].transport is None:
        await asyncio.sleep(0.001)
    try:
        yield transport, accepted[0], server
    finally:
        transport.close()
        server.close()
        await server.wait_closed()


def test_corked_only_inside_and_the_tail_is_flushed() -> None:
    asyncio.run(_test_corked_only_inside_and_the_tail_is_flushed())


async def _test_corked_only_inside_and_the_tail_is_flushed() -> None:
    async with _tcp_pair() as (client, peer, _server):
        assert _cork(client) == 0
        with corked(client):
            assert _cork(client) == 1
            client.write(b"x" * 100)  # a partial segment: held while corked
        assert _cork(client) == 0
        # Uncorked, the held bytes go out at once (well before the kernel's 200 ms cap).
        for _ in range(100):
            if len(peer.data) == 100:
                break
            await asyncio.sleep(0.001)
        assert bytes(peer.data) == b"x" * 100


def test_uncorked_when_the_block_raises() -> None:
    asyncio.run(_test_uncorked_when_the_block_raises())


async def _test_uncorked_when_the_block_raises() -> None:
    async with _tcp_pair() as (client, _peer, _server):
        with pytest.raises(RuntimeError), corked(client):
            raise RuntimeError("boom")
        assert _cork(client) == 0


def test_a_shut_or_closed_socket_is_left_alone() -> None:
    asyncio.run(_test_a_shut_or_closed_socket_is_left_alone())


async def _test_a_shut_or_closed_socket_is_left_alone() -> None:
    async with _tcp_pair() as (client, _peer, _server):
        with corked(client):
            client.get_extra_info("socket").shutdown(socket.SHUT_RDWR)  # a revoked read
        with corked(client):
            client.abort()  # the socket closes under the block: no error on the way out
    with corked(None):
        pass


def test_unix_sockets_are_not_touched() -> None:
    asyncio.run(_unix())


async def _unix() -> None:
    loop = asyncio.get_running_loop()
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, left)
    try:
        with corked(transport):  # IPPROTO_TCP options on a Unix socket would raise
            transport.write(b"y")
        assert right.recv(1) == b"y"
    finally:
        transport.close()
        right.close()
