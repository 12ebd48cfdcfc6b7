"""The offload policy's web seed decisions and swarm memory, in simulated time."""

from __future__ import annotations

import random

from s3torrent.peer.policy import PolicySettings, RevealPiece, SwarmPolicy

PIECE = 64 * 1024


def policy(pieces: int = 16, **settings: object) -> SwarmPolicy:
    return SwarmPolicy(
        pieces,
        PIECE,
        PolicySettings(**settings),
        rng=random.Random(7),  # type: ignore[arg-type]
    )


def fresh(p: SwarmPolicy) -> set[int]:
    return {i for i in range(p.piece_count) if p.web_seed_allows(i, 0.0)}


def test_a_whole_piece_sent_counts_as_held_without_have() -> None:
    p = policy()
    p.peer_joined(1, 0.0, super_seed=True)
    p.peer_joined(2, 0.0, super_seed=True)
    for _begin in range(0, PIECE, 16384):
        p.piece_sent(1, 3, 16384, 0.1, piece_size=PIECE)
    # aria2 sends no HAVE to a peer it believes has the piece: we count it anyway.
    assert p.availability[3] == 1
    assert p.peers[1].has[3] == 1


def test_half_a_piece_is_not_held() -> None:
    p = policy()
    p.peer_joined(1, 0.0, super_seed=True)
    p.piece_sent(1, 3, 16384, 0.1, piece_size=PIECE)
    assert p.availability[3] == 0


def test_a_departed_peer_that_stays_in_the_swarm_keeps_its_pieces() -> None:
    p = policy(pieces=4)
    p.peer_joined(1, 0.0, super_seed=True)
    p.peer_have_all(1, 0.0)
    p.peer_left(1, 1.0, remember=True)
    assert p.availability == [1, 1, 1, 1]
    p.peer_joined(2, 1.0, super_seed=True)
    p.peer_joined(3, 1.0, super_seed=True)
    # Nothing is fresh: the origin sends nothing first-hand again.
    assert not fresh(p)
    p.forget(1)
    assert p.availability == [0, 0, 0, 0]
    assert fresh(p) == {0, 1, 2, 3}


def test_a_peer_that_leaves_without_being_remembered_takes_its_pieces() -> None:
    p = policy(pieces=4)
    p.peer_joined(1, 0.0, super_seed=True)
    p.peer_have_all(1, 0.0)
    p.peer_left(1, 1.0)
    assert p.availability == [0, 0, 0, 0]


def test_a_remote_seed_holds_every_piece() -> None:
    p = policy(pieces=4)
    p.remote_seed(-1, 0.0)
    assert p.availability == [1, 1, 1, 1]
    assert not p.downloaders()


def test_a_seed_announcing_again_changes_nothing_and_says_so() -> None:
    # Every re-announce of a seed reaches the policy; only the first may count its pieces
    # (and wake held web-seed requests), each later one must be a no-op.
    p = policy(pieces=4)
    assert p.remote_seed(-1, 0.0) is True
    assert p.remote_seed(-1, 5.0) is False
    assert p.availability == [1, 1, 1, 1]
    p.remote_seed(-2, 6.0)
    assert p.availability == [2, 2, 2, 2]
    p.peer_joined(1, 0.0, super_seed=True)
    assert p.remote_seed(1, 7.0) is False  # connected: its messages say what it has
    assert p.peer_have_all(1, 8.0) is True
    assert p.peer_have_all(1, 9.0) is False  # told the tracker again: counted once
    assert p.availability == [3, 3, 3, 3]


def test_a_lone_client_gets_anything_from_the_web_seed() -> None:
    p = policy(pieces=4)
    p.peer_joined(1, 0.0, super_seed=True)
    p.peer_has(1, 2, 0.0)
    p.web_seed_request("client", 0.0)
    assert p.web_seed_allows(2, 0.0)  # alone: full speed, whatever the swarm holds


def test_with_several_downloaders_the_web_seed_sends_only_what_the_swarm_lacks() -> None:
    p = policy(pieces=4)
    for key in (1, 2):
        p.peer_joined(key, 0.0, super_seed=True)
    p.peer_has(1, 2, 0.0)
    p.web_seed_request("a", 0.0)
    assert not p.web_seed_allows(2, 0.0)
    assert p.web_seed_allows(0, 0.0)
    p.web_seed_sent(0, PIECE, 0.0)
    # Sent once: nobody else gets it from the origin, by web seed or by the seeder.
    assert not p.web_seed_allows(0, 0.0)
    assert p.web_seed_allows(0, 0.0, continuing=True)  # the rest of the same piece
    reveals = [a for a in p.update(0.0) if isinstance(a, RevealPiece)]
    assert reveals and all(a.index not in (0, 2) for a in reveals)


def test_web_seed_clients_count_as_downloaders() -> None:
    p = policy(pieces=4)
    p.web_seed_request("a", 0.0)
    assert p.web_seed_alone(0.0)
    p.web_seed_request("b", 0.1)
    assert not p.web_seed_alone(0.1)
    p.update(10.0)  # both went quiet
    assert p.web_seed_alone(10.0)


def test_a_web_seed_hold_ends_when_a_peer_reports_the_piece_or_after_its_memory() -> None:
    p = policy(pieces=4, web_seed_memory=30.0)
    for key in (1, 2):
        p.peer_joined(key, 0.0, super_seed=True)
    p.web_seed_sent(0, PIECE, 0.0)
    p.web_seed_sent(1, PIECE, 0.0)
    assert p.assigned_count[0] == 1
    p.peer_has(1, 0, 1.0)
    assert p.assigned_count[0] == 0 and p.availability[0] == 1
    reveals = {a.index for a in p.update(31.0) if isinstance(a, RevealPiece)}
    # Nobody reported it: it may go out again (the seeder reveals it at once).
    assert 1 not in p.web_held
    assert 1 in reveals


def test_fastest_mode_web_seed_sends_everything() -> None:
    p = policy(pieces=4, mode="fastest")
    for key in (1, 2):
        p.peer_joined(key, 0.0, super_seed=False)
    p.peer_has(1, 0, 0.0)
    assert p.web_seed_allows(0, 0.0)


def test_a_peer_the_remembered_seeds_do_not_serve_is_rescued_without_waiting() -> None:
    p = policy(pieces=64, stall_timeout=3.0, peer_window=4 * PIECE)
    p.remote_seed(-1, 0.0)  # announced as a seed, but it serves nobody
    p.peer_joined(1, 0.0, super_seed=True)
    p.peer_joined(2, 0.0, super_seed=True)
    p.update(0.0)
    got: set[int] = set()
    now = 0.0
    for _ in range(10):  # 5 s
        now += 0.5
        for a in p.update(now):
            if isinstance(a, RevealPiece) and a.peer == 1:
                got.add(a.index)
        for index in list(p.peers[1].assigned):
            p.piece_sent(1, index, PIECE, now, piece_size=PIECE)
    # A window at every step once stalled, not one per stall timeout after each window.
    assert len(got) >= 12, len(got)


def revealed_to(actions: list[object], key: int) -> set[int]:
    return {a.index for a in actions if isinstance(a, RevealPiece) and a.peer == key}


def test_pieces_only_a_departed_seed_holds_come_from_us_after_the_remote_grace() -> None:
    """A seed that quit without a `stopped` announce is remembered: its pieces count as
    held, so none is fresh. A peer the swarm gives nothing gets them from us after
    remote_grace (before: after swarm_stall_timeout, 3 s, for every new downloader)."""
    p = policy(pieces=8, remote_grace=1.0, swarm_stall_timeout=3.0, peer_window=2 * PIECE)
    p.remote_seed(-1, 0.0)
    assert p.remote_held == [1] * 8
    p.peer_joined(1, 10.0, super_seed=True)
    p.peer_joined(2, 10.0, super_seed=True)
    first = p.update(10.0)
    assert not revealed_to(first, 1) and not revealed_to(first, 2)
    assert not revealed_to(p.update(10.9), 1)
    later = p.update(11.0)
    got_1, got_2 = revealed_to(later, 1), revealed_to(later, 2)
    assert len(got_1) == 2 and len(got_2) == 2  # a window each...
    assert not got_1 & got_2  # ...of different pieces: each goes to one peer


def test_a_peer_the_departed_seed_serves_gets_nothing_from_us() -> None:
    p = policy(pieces=8, remote_grace=1.0, peer_window=2 * PIECE)
    p.remote_seed(-1, 0.0)
    p.peer_joined(1, 10.0, super_seed=True)
    p.update(10.0)
    # A piece from the swarm (the seed is alive and serves it): no reason to step in.
    p.peer_has(1, 5, 10.8)
    assert not revealed_to(p.update(11.5), 1)
    # Quiet for remote_grace again: we step in.
    assert revealed_to(p.update(11.8), 1)


def test_a_departed_seed_does_not_make_the_swarm_carry_itself() -> None:
    """The carry cap (the origin slows once connected peers hold every piece) counts
    connected peers only: a seed that left (ctorrent, done in a second and gone) capped a
    mix of 8 clients at 1 MiB/s for a minute."""
    p = policy(pieces=4, carry_rate=1024 * 1024)
    p.peer_joined(1, 0.0, super_seed=True)
    p.peer_have_all(1, 0.0)
    p.peer_left(1, 1.0, remember=True)
    p.peer_joined(2, 1.0, super_seed=True)
    p.peer_joined(3, 1.0, super_seed=True)
    assert not p.carrying()
    assert p.upload_delay(10 << 20, 1.0) == 0.0
    # Connected peers between them hold every piece: now they carry the swarm.
    p.peer_bitfield(2, bytes([0b11000000]), 2.0)
    p.peer_bitfield(3, bytes([0b00110000]), 2.0)
    assert p.carrying()
    assert p.upload_delay(10 << 20, 2.0) > 0


def test_pieces_no_connected_peer_holds_stay_counted_through_joins_and_departures() -> None:
    """The carry cap's counter against a recount, over random joins, HAVEs, departures
    (remembered or not), announced seeds and forgotten peers."""
    rng = random.Random(11)
    p = policy(pieces=12)
    next_key = 1
    for step in range(2000):
        op = rng.random()
        if op < 0.2 or not p.peers:
            p.peer_joined(next_key, float(step), super_seed=True)
            next_key += 1
        elif op < 0.6:
            p.peer_has(rng.choice(list(p.peers)), rng.randrange(12), float(step))
        elif op < 0.75:
            p.peer_left(rng.choice(list(p.peers)), float(step), remember=rng.random() < 0.5)
        elif op < 0.85:
            p.remote_seed(-next_key, float(step))
            next_key += 1
        elif p.departed:
            p.forget(rng.choice(list(p.departed)))
        held = [0] * 12
        for peer in p.departed.values():
            for i in range(12):
                held[i] += peer.has[i]
        assert p.remote_held == held
        unconnected = sum(1 for i in range(12) if p.availability[i] == held[i])
        assert p._unconnected == unconnected
