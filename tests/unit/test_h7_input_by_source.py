"""A peer's input allowance belongs to its source (peer/input_allowance.py): shared by the
source's connections, kept after they close, bounded in memory. Sans-IO for the table, a
socket pair for the reads."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from s3torrent.peer.input_allowance import InputAllowance, InputSources

KiB = 1024
RATE = 16 * KiB
BURST = 8 * KiB
REFILL = BURST / RATE  # seconds from empty to full


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = []
    for _ in range(3):
        a, b = socket.socketpair()
        a.setblocking(False)
        made.append((a, b))
    yield made
    for a, b in made:
        a.close()
        b.close()


def spend(sources: InputSources, source: str, now: float) -> None:
    bucket = sources.bucket(source, now)
    bucket.charge(int(bucket.level(now)), now)


def test_a_source_holds_a_burst_for_each_open_connection(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """Its connections share them: one may spend the others' share too."""
    sources = InputSources(RATE, BURST)
    (first, first_peer), (second, second_peer), (other, other_peer) = pairs
    first_peer.sendall(bytes(2 * BURST + KiB))
    second_peer.sendall(bytes(2 * BURST))
    other_peer.sendall(bytes(2 * BURST))
    one = InputAllowance(sources, "198.51.100.7", 0.0)
    two = InputAllowance(sources, "198.51.100.7", 0.0)
    assert len(one.recv(first, 0.0) or b"") == 2 * BURST
    assert one.recv(first, 0.0) is None
    assert two.recv(second, 0.0) is None
    assert len(InputAllowance(sources, "203.0.113.9", 0.0).recv(other, 0.0) or b"") == BURST
    # It refills at the rate for each open connection.
    assert len(two.recv(second, 0.25) or b"") == 2 * RATE // 4


def test_a_reconnecting_source_gets_no_new_burst_until_it_has_refilled(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    sources = InputSources(RATE, BURST)
    (first, first_peer), (again, again_peer), _ = pairs
    first_peer.sendall(bytes(BURST))
    again_peer.sendall(bytes(2 * BURST))
    closing = InputAllowance(sources, "198.51.100.7", 0.0)
    assert len(closing.recv(first, 0.0) or b"") == BURST
    first.close()  # the peer reconnects
    closing.close(0.0)
    closing.close(0.0)  # once only
    reconnected = InputAllowance(sources, "198.51.100.7", 0.0)
    assert reconnected.recv(again, 0.05) is None  # 819 bytes refilled: not a read's worth
    assert len(reconnected.recv(again, 0.25) or b"") == RATE // 4  # the rate since
    assert len(reconnected.recv(again, 0.25 + REFILL) or b"") == BURST  # no more than it


def test_reconnecting_beside_an_open_connection_adds_nothing_either(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    sources = InputSources(RATE, BURST)
    (first, first_peer), (again, again_peer), _ = pairs
    first_peer.sendall(bytes(BURST))
    again_peer.sendall(bytes(4 * BURST))
    staying = InputAllowance(sources, "198.51.100.7", 0.0)
    for _ in range(5):  # open, spend, close: the level never comes back
        flooder = InputAllowance(sources, "198.51.100.7", 0.0)
        flooder.recv(again, 0.0)
        flooder.close(0.0)
    assert staying.recv(first, 0.0) is None
    assert len(staying.recv(first, REFILL) or b"") == BURST


def test_what_sending_earns_stays_with_its_connection(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """A downloader's requests are read on what it earns whatever a neighbour behind the
    same address sends; the neighbour gets none of it."""
    sources = InputSources(RATE, BURST)
    (down, down_peer), (flood, flood_peer), _ = pairs
    downloader = InputAllowance(sources, "198.51.100.7", 0.0)
    flooder = InputAllowance(sources, "198.51.100.7", 0.0)
    flood_peer.sendall(bytes(3 * BURST))
    assert len(flooder.recv(flood, 0.0) or b"") == 2 * BURST  # the source's bursts, all
    down_peer.sendall(bytes(4 * KiB))
    assert downloader.recv(down, 0.0) is None
    downloader.sent(64 * 16 * KiB)  # 64 blocks: 4 KiB of its requests and HAVEs
    assert flooder.recv(flood, 0.0) is None
    assert len(downloader.recv(down, 0.0) or b"") == 4 * KiB


def test_a_source_is_forgotten_once_full_again() -> None:
    sources = InputSources(RATE, BURST)
    spend(sources, "198.51.100.7", 0.0)
    sources.bucket("203.0.113.9", 0.0)
    assert len(sources) == 2
    sources.bucket("203.0.113.10", REFILL / 2)  # the first is half full: kept
    assert len(sources) == 3
    sources.bucket("203.0.113.11", REFILL)  # full again: as good as a new one
    assert len(sources) == 1


def test_past_its_size_the_least_recently_read_source_is_forgotten() -> None:
    sources = InputSources(RATE, BURST, size=2)
    spend(sources, "198.51.100.1", 0.0)
    spend(sources, "198.51.100.2", 0.0)
    sources.bucket("198.51.100.1", 0.0)  # read again: now the most recent
    spend(sources, "198.51.100.3", 0.0)
    assert len(sources) == 2
    assert sources.bucket("198.51.100.1", 0.0).level(0.0) == 0  # remembered: still spent
    assert sources.bucket("198.51.100.2", 0.0).level(0.0) == BURST  # forgotten


def test_no_rate_needs_no_table(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    sources = InputSources(0, BURST)
    (ours, peer), _, _ = pairs
    peer.sendall(bytes(4 * BURST))
    allowance = InputAllowance(sources, "198.51.100.7", 0.0)
    got = 0
    while got < 4 * BURST:
        got += len(allowance.recv(ours, 0.0) or b"")
    assert len(sources) == 0
