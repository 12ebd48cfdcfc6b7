"""The origin's share of a mixed swarm started together (audit h1), on the offload
policy's sans-IO core in simulated time.

Started together, aria2 is alone on the web seed for its first fraction of a second and
gets a whole copy (a lone client gets the origin's full speed, by design). Only then does
it announce, as a seed: the others have not met it yet, and had each been given nothing
by the swarm since they joined, so the pieces "only a departed peer holds" went to them
from the origin at once, a window at a time, before aria2 could connect to anyone.
"""

from __future__ import annotations

import random

from s3torrent.peer.policy import PolicySettings, RevealPiece, SwarmPolicy

PIECE = 64 * 1024


def policy(pieces: int = 256, **settings: object) -> SwarmPolicy:
    return SwarmPolicy(
        pieces,
        PIECE,
        PolicySettings(**settings),  # type: ignore[arg-type]
        rng=random.Random(3),
    )


def revealed_to(actions: list[object], key: int) -> set[int]:
    return {a.index for a in actions if isinstance(a, RevealPiece) and a.peer == key}


def swarm_of_two_and_a_new_seed(p: SwarmPolicy) -> None:
    """The field's start: the web seed sends a lone client (aria2) every piece by 0.3 s;
    two leechers join the peer wire at 0.5 s (nothing is fresh: the web seed's pieces are
    taken); aria2, done, first announces at 1.1 s, as a seed they have not met."""
    p.web_seed_request("aria2", 0.0)
    for index in range(p.piece_count):
        assert p.web_seed_allows(index, 0.0)
        p.web_seed_sent(index, PIECE, 0.3, client="aria2")
    p.peer_joined(1, 0.5, super_seed=True)
    p.peer_joined(2, 0.5, super_seed=True)
    assert not revealed_to(p.update(0.5), 1) and not revealed_to(p.update(0.5), 2)
    p.remote_seed(-1, 1.1)


def test_a_seed_that_just_announced_is_given_time_to_reach_the_swarm() -> None:
    p = policy(remote_grace=1.0, swarm_stall_timeout=3.0, stall_timeout=30.0)
    swarm_of_two_and_a_new_seed(p)
    for now in (1.2, 1.6, 2.0, 2.5):
        actions = p.update(now)
        # Before: at 1.6 s each leecher had had nothing from the swarm for over 1 s
        # (since it joined), and got a window of the new seed's pieces from the origin.
        assert not revealed_to(actions, 1) and not revealed_to(actions, 2), now


def test_a_new_seed_that_serves_nobody_still_leaves_the_origin_to_serve() -> None:
    """A peer cut off from the swarm (the seed never reaches it) is served in bounded time:
    once the seed has been around for the newcomer grace, its pieces come from us."""
    p = policy(remote_grace=1.0, swarm_stall_timeout=30.0, stall_timeout=30.0)
    swarm_of_two_and_a_new_seed(p)
    late = 1.1 + p.settings.remote_newcomer_grace + 0.01
    assert not revealed_to(p.update(late - 0.05), 1)
    actions = p.update(late)
    got_1, got_2 = revealed_to(actions, 1), revealed_to(actions, 2)
    assert got_1 and got_2 and not got_1 & got_2


def test_a_peer_the_new_seed_serves_waits_the_grace_again() -> None:
    p = policy(remote_grace=1.0, swarm_stall_timeout=30.0, stall_timeout=30.0)
    swarm_of_two_and_a_new_seed(p)
    late = 1.1 + p.settings.remote_newcomer_grace + 0.01
    p.peer_has(1, 5, late - 0.5)  # from the seed: it is alive and reached peer 1
    actions = p.update(late)
    assert not revealed_to(actions, 1)
    assert revealed_to(actions, 2)
    assert revealed_to(p.update(late + 0.5), 1)


def test_a_seed_remembered_for_long_is_served_after_the_usual_grace() -> None:
    """The grace of a seed known for a while is unchanged: one second without anything
    from the swarm (a seed that quit without `stopped` stays remembered for an hour)."""
    p = policy(remote_grace=1.0, swarm_stall_timeout=30.0, stall_timeout=30.0)
    p.remote_seed(-1, 0.0)
    p.peer_joined(1, 10.0, super_seed=True)
    assert not revealed_to(p.update(10.9), 1)
    assert revealed_to(p.update(11.0), 1)


def test_a_leecher_leaving_the_origin_counts_as_new_too() -> None:
    """A peer that left the origin but stays in the swarm (the tracker still hears from it)
    holds pieces nobody connected has: the others get a chance to fetch them from it."""
    p = policy(remote_grace=1.0, swarm_stall_timeout=30.0, stall_timeout=30.0)
    p.peer_joined(1, 0.0, super_seed=True)
    p.peer_joined(2, 0.0, super_seed=True)
    p.peer_bitfield(1, bytes([0b11110000]) + bytes(31), 0.0)
    p.peer_left(1, 2.0, remember=True)
    assert not revealed_to(p.update(2.5), 2) & {0, 1, 2, 3}
    assert revealed_to(p.update(2.01 + p.settings.remote_newcomer_grace), 2) & {0, 1, 2, 3}


# Started together, aria2 may still be on the web seed (no peer wire to us yet) when
# rtorrent joins the peer wire. The web seed counted the busiest channel only (a client uses
# both), so each was "alone": rtorrent got the alone window of fresh pieces revealed while the
# web seed went on sending aria2 every piece, those too (0.5 copies more in one run).


def test_a_web_seed_client_without_a_peer_wire_is_not_alone_beside_a_peer_wire_peer() -> None:
    p = policy(pieces=512)  # 32 MiB: more than rtorrent's alone window
    p.web_seed_request("aria2", 0.0)
    p.peer_joined(1, 0.08, super_seed=True)  # rtorrent, from another address
    revealed = revealed_to(p.update(0.08), 1)
    assert revealed
    taken = next(iter(revealed))
    # Before: allowed (alone), and the piece went out twice.
    assert not p.web_seed_allows(taken, 0.1, client="aria2", peer_wire=False)
    # What nobody holds or was given still goes to aria2 from the web seed.
    free = next(i for i in range(p.piece_count) if i not in revealed)
    assert p.web_seed_allows(free, 0.1, client="aria2", peer_wire=False)


def test_a_lone_client_on_both_channels_still_gets_anything_from_the_web_seed() -> None:
    """Its peer wire comes from its own address (peer_wire): one client, alone."""
    p = policy()
    p.web_seed_request("libtorrent", 0.0)
    p.peer_joined(1, 0.0, super_seed=True)
    revealed = revealed_to(p.update(0.0), 1)
    assert all(p.web_seed_allows(i, 0.1, client="libtorrent", peer_wire=True) for i in revealed)


def test_a_lone_web_seed_only_client_still_gets_anything() -> None:
    p = policy()
    p.web_seed_request("aria2", 0.0)
    for index in range(p.piece_count):
        assert p.web_seed_allows(index, 0.0, client="aria2", peer_wire=False)
        p.web_seed_sent(index, PIECE, 0.0, client="aria2", peer_wire=False)
    assert p.web_clients.rescued == 0  # sent because alone, not as a rescue
