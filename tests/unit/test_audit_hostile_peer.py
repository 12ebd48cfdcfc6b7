"""The seeder's bound on a peer's input (peer/input_allowance.py), on a real socket pair."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from s3torrent.peer.input_allowance import FLOOD_BACKLOG, InputAllowance, InputFlood, InputSources

KiB = 1024


def allowance_of(rate: int, burst: int) -> InputAllowance:
    """One connection, alone from its source."""
    return InputAllowance(InputSources(rate, burst), "192.0.2.1", 0.0)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    a.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_a_peer_within_its_burst_is_read_in_full(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    allowance = allowance_of(16 * KiB, 128 * KiB)
    peer.sendall(bytes(100 * KiB))
    got = 0
    while got < 100 * KiB:
        data = allowance.recv(ours, 0.0)
        assert data
        got += len(data)


def test_past_its_allowance_a_peer_waits_and_then_is_read_at_the_rate(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    allowance = allowance_of(16 * KiB, 8 * KiB)
    peer.sendall(bytes(8 * KiB + FLOOD_BACKLOG))  # its burst and no more than the backlog
    assert len(allowance.recv(ours, 0.0) or b"") == 8 * KiB
    assert allowance.recv(ours, 0.0) is None  # spent: not read now
    data = allowance.recv(ours, 0.5)  # half a second later: 8 KiB more
    assert data is not None and len(data) == 8 * KiB


def test_a_peer_that_keeps_sending_past_its_allowance_is_a_flood(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    allowance = allowance_of(16 * KiB, 8 * KiB)
    peer.sendall(bytes(8 * KiB + FLOOD_BACKLOG + 1))
    assert allowance.recv(ours, 0.0)
    with pytest.raises(InputFlood):
        allowance.recv(ours, 0.0)


def test_bytes_we_send_earn_input_and_tiny_blocks_earn_none(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, peer = pair
    allowance = allowance_of(16 * KiB, 8 * KiB)
    peer.sendall(bytes(9 * KiB))
    assert allowance.recv(ours, 0.0)
    for _ in range(1000):
        allowance.sent(1)  # a thousand 1-byte blocks
    assert allowance.recv(ours, 0.0) is None
    allowance.sent(64 * 16 * KiB)  # 64 blocks of 16 KiB: 4 KiB of requests and HAVEs
    assert allowance.recv(ours, 0.0) == bytes(KiB)


def test_no_rate_means_no_bound(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, peer = pair
    allowance = allowance_of(0, 8 * KiB)
    peer.sendall(bytes(200 * KiB))
    got = 0
    while got < 200 * KiB:
        data = allowance.recv(ours, 0.0)
        assert data
        got += len(data)
