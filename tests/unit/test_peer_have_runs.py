"""Runs of HAVEs: every peer tells the origin of every piece it gets, so an origin's
connections decode them in one pass (messages.HaveRun) and take each as if it came alone;
and the policy credits the spread of a first-hand piece without a walk over every peer."""

from __future__ import annotations

import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.peer import wire as w
from s3torrent.peer.messages import HaveRun, decode_have_run
from s3torrent.peer.policy import SwarmPolicy
from tests.unit.test_peer_batching import TORRENT, established, frames

PIECES = TORRENT.piece_count
Have = w.Have


def test_a_run_of_haves_decodes_in_one_pass_and_stops_at_other_bytes() -> None:
    tail = frames(w.Interested())
    buffer = frames(*(Have(i) for i in (3, 1, 3, 2**32 - 1))) + tail
    assert decode_have_run(buffer) == ([3, 1, 3, 2**32 - 1], 36)
    assert decode_have_run(tail) == ([], 0)
    assert decode_have_run(buffer[:8]) == ([], 0)  # the first still arriving
    assert decode_have_run(buffer[:20]) == ([3, 1], 18)
    # A HAVE frame with another length prefix is not a HAVE: the general path judges it.
    assert decode_have_run(struct.pack(">IBI", 6, 4, 0) + b"\0") == ([], 0)


def test_feed_runs_groups_haves_and_feed_expands_them() -> None:
    wire = frames(Have(1), Have(2), w.Request(0, 0, w.BLOCK_SIZE), Have(3), w.KeepAlive(), Have(4))
    got = w.MessageDecoder().feed_runs(wire)
    assert got[0] == HaveRun([1, 2]) and got[2:] == [HaveRun([3]), w.KeepAlive(), HaveRun([4])]
    assert w.MessageDecoder().feed(wire) == [
        Have(1),
        Have(2),
        w.Request(0, 0, w.BLOCK_SIZE),
        Have(3),
        w.KeepAlive(),
        Have(4),
    ]


def test_a_run_answers_each_have_as_if_it_came_alone() -> None:
    seed = established()
    events = seed.receive_data(frames(Have(3), Have(3), Have(7), Have(0)), 1.0)
    assert events == [w.PeerHas(3), w.PeerHas(3), w.PeerHas(7), w.PeerHas(0)]
    assert seed.peer_piece_count == 3
    assert all(seed.peer_has(i) for i in (0, 3, 7)) and not seed.peer_has(1)


def test_a_have_out_of_range_in_a_run_closes_the_connection() -> None:
    seed = established()
    events = seed.receive_data(frames(Have(1), Have(PIECES), Have(2)), 1.0)
    assert events == [w.ConnectionClosed(f"piece index {PIECES} out of range")]
    # Huge indices too (an attacker's 2**32 - 1 must not index a bitfield).
    seed = established()
    assert seed.receive_data(frames(Have(2**32 - 1)), 1.0) == [
        w.ConnectionClosed(f"piece index {2**32 - 1} out of range")
    ]


adverts = st.sampled_from([None, w.Bitfield(b"\x80\x40"), w.HaveAll(), w.HaveNone()])
small = st.one_of(
    st.builds(Have, st.integers(0, PIECES - 1)),
    st.builds(Have, st.integers(0, PIECES - 1)),
    adverts.filter(lambda m: m is not None),  # a late advert, once one came
    st.just(w.Interested()),
    st.just(w.NotInterested()),
    st.just(w.KeepAlive()),
)


@settings(max_examples=200, deadline=None)
@given(adverts, st.lists(small, max_size=40), st.booleans())
def test_haves_in_a_run_act_as_on_the_general_path(
    advert: w.Message | None, sent: list[w.Message], fast: bool
) -> None:
    """The events, phase and pieces are those of the general path, where each HAVE is
    decoded and taken on its own: late adverts and phases included."""
    wire = [*([advert] if advert is not None else []), *sent]
    if not fast:  # HAVE_ALL and HAVE_NONE need the fast extension
        wire = [m for m in wire if not isinstance(m, (w.HaveAll, w.HaveNone))]
    together, alone = established(fast), established(fast)
    runs = alone._decoder.feed_runs  # the reference takes each HAVE on its own
    alone._decoder.feed_runs = lambda data: [  # type: ignore[method-assign]
        m
        for item in runs(data)
        for m in ([Have(i) for i in item.indices] if isinstance(item, HaveRun) else [item])
    ]
    got_together = together.receive_data(frames(*wire), 1.0)
    got_alone = alone.receive_data(frames(*wire), 1.0)
    assert got_together == got_alone
    assert together.phase is alone.phase
    assert together.peer_piece_count == alone.peer_piece_count
    assert [together.peer_has(i) for i in range(PIECES)] == [
        alone.peer_has(i) for i in range(PIECES)
    ]


# ------------------------------------------------------------- spread credit, indexed


def _policy() -> SwarmPolicy:
    return SwarmPolicy(PIECES, 4 * w.BLOCK_SIZE, now=0.0, rng=random.Random(1))


def test_spread_credit_goes_to_the_first_hand_holder_and_only_once() -> None:
    policy = _policy()
    for key in ("a", "b", "c"):
        policy.peer_joined(key, 0.0, super_seed=False)
    a = policy.peers["a"]
    a.assigned[5] = 0.0  # piece 5 went to a first-hand
    policy.assigned_count[5] += 1
    policy.peer_has("a", 5, 1.0)
    assert a.unspread == {5}
    policy.peer_has("b", 5, 2.0)  # b got it from a: a's piece spread
    assert a.unspread == set() and a.spread_credit == 1.0
    policy.peer_has("c", 5, 3.0)  # already spread: no more credit
    assert a.spread_credit == 1.0 and policy.peers["b"].spread_credit == 0.0


def test_a_departed_first_holders_piece_credits_nobody() -> None:
    policy = _policy()
    for key in ("a", "b", "c"):
        policy.peer_joined(key, 0.0, super_seed=False)
    policy.peers["a"].assigned[4] = 0.0
    policy.assigned_count[4] += 1
    policy.peer_has("a", 4, 1.0)
    policy.peer_left("a", 1.5)  # forgotten: piece 4 held by nobody again
    b = policy.peers["b"]
    b.assigned[4] = 1.5
    policy.assigned_count[4] += 1
    policy.peer_has("b", 4, 2.0)  # b is now its first-hand holder
    assert b.unspread == {4}
    policy.peer_has("c", 4, 3.0)
    assert b.spread_credit == 1.0 and b.unspread == set()


def test_a_departed_first_holder_is_not_credited() -> None:
    policy = _policy()
    for key in ("a", "b"):
        policy.peer_joined(key, 0.0, super_seed=False)
    policy.peers["a"].assigned[6] = 0.0
    policy.assigned_count[6] += 1
    policy.peer_has("a", 6, 1.0)
    policy.peer_left("a", 1.5, remember=True)  # gone from us, still in the swarm
    policy.peer_has("b", 6, 2.0)
    assert policy.departed["a"].spread_credit == 0.0


# ------------------------------------------------------- the downloader count, kept

peer_ops = st.lists(
    st.tuples(
        st.sampled_from(["join", "leave", "remember", "have", "all", "bits", "remote"]),
        st.integers(0, 1),  # two peers: the same one joins, completes and leaves often
        st.integers(0, PIECES - 1),
        st.binary(min_size=(PIECES + 7) // 8, max_size=(PIECES + 7) // 8),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(peer_ops)
def test_the_downloader_count_is_what_a_walk_over_the_peers_finds(
    ops: list[tuple[str, int, int, bytes]],
) -> None:
    """`downloaders()` is a kept count (asked per served run): after any joins, HAVEs,
    adverts, departures and seeds heard of from the tracker it equals the walk."""
    policy = _policy()
    for op, peer, index, bits in ops:
        key = f"peer{peer}"
        if op == "join" and key not in policy.peers:
            policy.peer_joined(key, 0.0, super_seed=peer % 2 == 0)
        elif op in ("leave", "remember"):
            policy.peer_left(key, 1.0, remember=op == "remember")
        elif op == "have":
            policy.peer_has(key, index, 1.0)
        elif op == "all":
            policy.peer_have_all(key, 1.0)
        elif op == "bits":
            policy.peer_bitfield(key, bits, 1.0)
        elif op == "remote":
            policy.remote_seed(key, 1.0)
        walk = sum(1 for p in policy.peers.values() if not p.complete(PIECES))
        assert policy.downloaders() == walk


def test_a_peer_completing_and_leaving_moves_the_downloader_count() -> None:
    policy = _policy()
    for key in ("a", "b"):
        policy.peer_joined(key, 0.0, super_seed=True)
    assert policy.downloaders() == 2
    for i in range(PIECES - 1):
        policy.peer_has("a", i, 1.0)
    assert policy.downloaders() == 2
    policy.peer_has("a", PIECES - 1, 1.0)
    policy.peer_has("a", PIECES - 1, 1.5)  # a repeated HAVE changes nothing
    assert policy.downloaders() == 1
    policy.peer_left("a", 2.0)
    assert policy.downloaders() == 1
    policy.peer_have_all("b", 2.5)
    assert policy.downloaders() == 0
    policy.peer_left("b", 3.0, remember=True)
    assert policy.downloaders() == 0 and not policy.peers
