"""Connections handed from the owner to another worker (handoff.py), on real sockets."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from s3torrent.handoff import (
    HandoffClient,
    HandoffServer,
    receive_sockets,
    send_socket,
)


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """(client, server's accepted end) of one loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        client = socket.create_connection(listening.getsockname())
        accepted, _ = listening.accept()
    return client, accepted


def test_a_passed_socket_is_the_same_connection() -> None:
    client, accepted = tcp_pair()
    owner_end, worker_end = socket.socketpair()
    worker_end.setblocking(False)
    try:
        client.sendall(b"before")  # unread when handed over: the new holder reads it
        assert send_socket(owner_end, accepted.fileno())
        accepted.close()  # the giver's descriptor only: the connection lives on
        (adopted,), open_ = receive_sockets(worker_end)
        assert open_
        adopted.settimeout(5)
        assert adopted.recv(100) == b"before"
        adopted.sendall(b"answer")
        client.settimeout(5)
        assert client.recv(100) == b"answer"
        assert adopted.getpeername() == client.getsockname()
        adopted.close()
        assert client.recv(100) == b""  # closed by its new holder only
    finally:
        client.close()
        owner_end.close()
        worker_end.close()


def test_a_closed_stream_is_reported_and_nothing_passes_to_it() -> None:
    owner_end, worker_end = socket.socketpair()
    worker_end.setblocking(False)
    assert receive_sockets(worker_end) == ([], True)  # nothing yet, still open
    owner_end.close()
    assert receive_sockets(worker_end) == ([], False)
    client, accepted = tcp_pair()
    try:
        assert not send_socket(worker_end, accepted.fileno())  # the peer is gone
    finally:
        client.close()
        accepted.close()
        worker_end.close()


def test_the_owner_gives_connections_to_workers_in_turn(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "handoff.sock"
        server = HandoffServer()
        client, accepted = tcp_pair()
        try:
            # No worker yet: the owner keeps the connection.
            server.start(path)
            assert oct(path.stat().st_mode & 0o777) == "0o600"
            assert not server.give(accepted.fileno())
            got: dict[str, list[socket.socket]] = {"a": [], "b": []}
            workers = [HandoffClient(path, got[name].append) for name in got]
            for worker in workers:
                worker.start()
            for _ in range(100):
                if server.workers == 2:
                    break
                await asyncio.sleep(0.01)
            assert server.workers == 2
            pairs = [tcp_pair() for _ in range(4)]
            for _, end in pairs:
                assert server.give(end.fileno())
                end.close()
            for _ in range(100):
                if len(got["a"]) + len(got["b"]) == 4:
                    break
                await asyncio.sleep(0.01)
            assert (len(got["a"]), len(got["b"])) == (2, 2)  # in turn
            for (peer, _), adopted in zip(pairs, got["a"] + got["b"], strict=False):
                peer.close()
                adopted.close()
            # A worker gone: the other takes everything, and none left keeps it home.
            workers[0].close()
            for _ in range(100):
                if server.workers == 1:
                    break
                await asyncio.sleep(0.01)
            assert server.workers == 1
            assert server.give(accepted.fileno())
            for _ in range(100):
                if len(got["b"]) == 3:
                    break
                await asyncio.sleep(0.01)
            assert len(got["b"]) == 3
            workers[1].close()
            for _ in range(100):
                if server.workers == 0:
                    break
                await asyncio.sleep(0.01)
            assert not server.give(accepted.fileno())
        finally:
            server.close()
            client.close()
            accepted.close()
        assert not path.exists()

    asyncio.run(main())


def test_a_worker_connects_again_when_the_owner_comes_back(tmp_path: Path) -> None:
    async def main() -> None:
        path = tmp_path / "handoff.sock"
        got: list[socket.socket] = []
        worker = HandoffClient(path, got.append)
        worker.start()  # the owner is not there yet: retried, never waited for
        assert not worker.connected
        server = HandoffServer()
        server.start(path)
        try:
            for _ in range(200):
                if server.workers == 1:
                    break
                await asyncio.sleep(0.01)
            assert worker.connected and server.workers == 1
            server.close()  # the owner restarts
            server = HandoffServer()
            server.start(path)
            for _ in range(200):
                if server.workers == 1:
                    break
                await asyncio.sleep(0.01)
            assert server.workers == 1
        finally:
            worker.close()
            server.close()

    asyncio.run(main())


def test_a_descriptor_that_is_not_a_socket_is_closed(tmp_path: Path) -> None:
    owner_end, worker_end = socket.socketpair()
    worker_end.setblocking(False)
    with open(tmp_path / "f", "wb") as f:
        assert send_socket(owner_end, f.fileno())
    try:
        assert receive_sockets(worker_end) == ([], True)
    finally:
        owner_end.close()
        worker_end.close()
