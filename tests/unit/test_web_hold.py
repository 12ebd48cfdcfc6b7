"""When the web seed holds a request (peer/web_hold.py): while the same client's peer wire
makes progress and has other pieces to fetch, and never past its bounds."""

from __future__ import annotations

from s3torrent.peer.policy_types import PeerRecord
from s3torrent.peer.web_hold import (
    LIMIT,
    MAX_HELD,
    MAX_UNWIRED,
    PEER_WAIT,
    STALL,
    UNWIRED_MEMORY,
    WebHolds,
    held_agent,
    keep_holding,
)

PIECES = 8


def peer(has: set[int], last_progress: float = 100.0) -> PeerRecord:
    bits = bytearray(PIECES)
    for i in has:
        bits[i] = 1
    return PeerRecord(1, 0.0, False, bits, has_count=len(has), last_progress=last_progress)


def test_only_listed_agents_are_held() -> None:
    agents = ("WebTorrent/",)
    assert held_agent("WebTorrent/2.8.5 (https://webtorrent.io)", agents)
    assert not held_agent("libtorrent/2.0.11", agents)
    assert not held_agent("Mozilla/5.0 (X11; Linux x86_64) Chrome/120", agents)
    assert not held_agent(None, agents)
    assert not held_agent("", agents)
    assert not held_agent("WebTorrent/2.8.5", ())
    assert not held_agent("anything", ("",))  # an empty prefix matches nothing


def test_held_while_the_peer_wire_progresses_and_has_other_pieces_to_fetch() -> None:
    p = peer({0, 1, 2})
    assert keep_holding([p], 7, 7, PIECES, held_for=1.0, now=100.5)


def test_released_when_the_request_is_all_the_client_lacks() -> None:
    """Its peer wire cannot take a piece its web seed reserved: the web seed must answer."""
    p = peer({0, 1, 2, 3, 4, 5, 6})
    assert not keep_holding([p], 7, 7, PIECES, held_for=1.0, now=100.5)
    # The same when the range spans every piece it lacks.
    p = peer({0, 1, 2, 3, 4, 5})
    assert not keep_holding([p], 6, 7, PIECES, held_for=1.0, now=100.5)
    assert keep_holding([p], 7, 7, PIECES, held_for=1.0, now=100.5)


def test_released_when_the_peer_wire_stalls() -> None:
    p = peer({0}, last_progress=100.0)
    assert keep_holding([p], 7, 7, PIECES, held_for=1.0, now=100.0 + STALL / 2)
    assert not keep_holding([p], 7, 7, PIECES, held_for=1.0, now=100.0 + STALL)


def test_any_progressing_connection_of_the_client_holds() -> None:
    stalled = peer({0}, last_progress=0.0)
    moving = peer({0, 1})
    assert keep_holding([stalled, moving], 7, 7, PIECES, held_for=1.0, now=100.5)
    assert not keep_holding([stalled], 7, 7, PIECES, held_for=1.0, now=100.5)


def test_without_a_peer_wire_it_waits_for_one_a_short_while() -> None:
    assert keep_holding([], 0, 0, PIECES, held_for=0.0, now=0.0)
    assert keep_holding([], 0, 0, PIECES, held_for=PEER_WAIT / 2, now=0.0)
    assert not keep_holding([], 0, 0, PIECES, held_for=PEER_WAIT, now=0.0)


def test_never_held_past_the_limit() -> None:
    p = peer({0})
    assert keep_holding([p], 7, 7, PIECES, held_for=LIMIT - 0.1, now=100.5)
    assert not keep_holding([p], 7, 7, PIECES, held_for=LIMIT, now=100.5)


def test_a_range_past_the_end_is_clamped() -> None:
    """A huge or hostile range costs no more than the torrent's pieces."""
    p = peer({0, 1, 2, 3, 4, 5})
    assert not keep_holding([p], -5, 10**12, PIECES, held_for=1.0, now=100.5)


def test_a_client_whose_peer_wire_never_came_is_not_held_again_for_a_while() -> None:
    """A web-seed-only client (or one whose peer wire we cannot tell is theirs) would
    otherwise wait PEER_WAIT on every request."""
    holds = WebHolds()
    assert holds.begin("a", 0.0)
    holds.end("a", PEER_WAIT, wired=False)
    assert not holds.begin("a", PEER_WAIT + 1.0)
    assert holds.begin("b", PEER_WAIT + 1.0)  # another client is
    holds.end("b", PEER_WAIT + 2.0, wired=True)
    assert holds.begin("b", PEER_WAIT + 3.0)  # a client with a peer wire, again
    holds.end("b", PEER_WAIT + 4.0, wired=True)
    assert holds.begin("a", PEER_WAIT + UNWIRED_MEMORY)  # remembered for so long only
    assert holds.held == 1


def test_held_requests_and_remembered_clients_are_bounded() -> None:
    holds = WebHolds()
    assert all(holds.begin(i, 0.0) for i in range(MAX_HELD))
    assert not holds.begin("one more", 0.0)
    for i in range(MAX_HELD):
        holds.end(i, 1.0, wired=False)
    assert holds.held == 0
    for i in range(MAX_HELD, MAX_UNWIRED + MAX_HELD):
        assert holds.begin(i, 1.0)
        holds.end(i, 1.0, wired=False)
    assert len(holds._unwired) == MAX_UNWIRED
    assert holds.begin(0, 2.0)  # the oldest were forgotten first
    assert not holds.begin(MAX_UNWIRED + MAX_HELD - 1, 2.0)


def test_a_late_peer_wire_undoes_the_memory() -> None:
    """A client whose peer wire came after PEER_WAIT (a slow tracker, a loaded machine) is
    held again as soon as it has one, not a minute later."""
    holds = WebHolds()
    assert holds.begin("a", 0.0)
    holds.end("a", PEER_WAIT, wired=False)
    assert not holds.begin("a", PEER_WAIT + 1.0)
    assert holds.begin("a", PEER_WAIT + 1.0, wired=True)
    holds.end("a", PEER_WAIT + 2.0, wired=True)
    assert holds.begin("a", PEER_WAIT + 3.0)  # forgotten
