"""The web seed's clients under the offload policy, in simulated time: one client's several
connections, the tracker's count, and the rescue of a client that only the web seed serves."""

from __future__ import annotations

import random

from s3torrent.peer.policy import PolicySettings, SwarmPolicy
from s3torrent.peer.web_clients import MAX_CONNECTIONS, MAX_REFUSED, MAX_WEB_CLIENTS, TARPIT

PIECE = 64 * 1024
PIECES = 16
COPY = PIECE * PIECES


def policy(**settings: object) -> SwarmPolicy:
    return SwarmPolicy(PIECES, PIECE, PolicySettings(**settings), rng=random.Random(3))  # type: ignore[arg-type]


def swarm_holding_everything(p: SwarmPolicy) -> None:
    """A seed and two peer-wire downloaders: nothing is fresh, nobody is alone."""
    for key in (1, 2, 3):
        p.peer_joined(key, 0.0, super_seed=True)
    for index in range(PIECES):
        p.peer_has(1, index, 0.0)
    p.peer_has(2, 0, 0.0)


def ask(p: SwarmPolicy, client: object, index: int, now: float, *, peer_wire: bool = False) -> bool:
    """One web seed request for one piece: sent (and counted) or refused."""
    p.web_seed_request(client, now)
    if p.web_seed_allows(index, now, client=client, peer_wire=peer_wire):
        p.web_seed_sent(index, PIECE, now, client=client)
        return True
    p.web_seed_refused(client, now, index)
    return False


def test_one_clients_several_connections_are_one_client() -> None:
    p = policy()
    p.peer_joined(1, 0.0, super_seed=True)  # its peer-wire connection
    p.peer_has(1, 3, 0.0)
    # WebTorrent asks on several connections at once: the web seed names them all alike.
    client = ("198.51.100.7", "WebTorrent/2.8.5")
    for port in range(4):
        p.web_seed_request(client, 0.0, connection=("198.51.100.7", 50000 + port))
    assert p.web_seed_alone(0.0)
    assert p.web_seed_allows(3, 0.0)  # alone: anything, even what it holds


def test_browsers_behind_one_address_are_told_apart_by_their_connections() -> None:
    """Browsers announce to the WebSocket tracker, not to the registry, and have no peer-wire
    connection: with nothing else to count, every web seed connection may be a client."""
    p = policy()
    page = ("198.51.100.7", "Mozilla/5.0 HeadlessChrome")
    for port in range(4):
        p.web_seed_request(page, 0.0, connection=("198.51.100.7", 50000 + port))
    assert not p.web_seed_alone(0.0)
    p.update(10.0)  # all went quiet
    p.web_seed_request(page, 10.0, connection=("198.51.100.7", 50009))
    assert p.web_seed_alone(10.0)


def test_web_seed_connections_remembered_per_client_are_bounded() -> None:
    p = policy()
    client = ("198.51.100.7", "x")
    for port in range(1000):
        p.web_seed_request(client, port * 0.001, connection=port)
    assert len(p.web_clients.clients[client].connections) == MAX_CONNECTIONS


def test_clients_the_tracker_tells_apart_are_not_alone() -> None:
    p = policy()
    p.peer_joined(1, 0.0, super_seed=True)
    p.peer_has(1, 3, 0.0)
    # Two leechers behind one address with one User-Agent: one client to the web seed...
    p.web_seed_request(("203.0.113.1", "libtorrent/2.0"), 0.0)
    assert p.web_seed_alone(0.0)
    # ...but two peer ids at the tracker.
    p.tracked_downloaders(2, 0.0)
    assert not p.web_seed_alone(0.0)
    assert not p.web_seed_allows(3, 0.0)
    p.tracked_downloaders(1, 1.0)  # one finished
    assert p.web_seed_alone(1.0)


def test_a_web_seed_only_client_asking_again_for_a_refused_piece_is_sent_it() -> None:
    p = policy(web_seed_patience=8.0)
    swarm_holding_everything(p)
    client = ("198.51.100.9", "Transmission/3.00")
    assert not ask(p, client, 5, 0.0)
    assert not ask(p, client, 5, 4.0)  # its peers may still give it piece 5
    assert ask(p, client, 5, 8.0)  # 8 s later it still lacks it: it has no other source
    assert not ask(p, client, 6, 8.5)  # another piece: its own patience
    assert ask(p, client, 6, 16.5)
    assert p.web_clients.rescued == 2 * PIECE


def test_a_client_with_a_peer_wire_connection_is_never_rescued_by_the_web_seed() -> None:
    p = policy(web_seed_patience=8.0)
    swarm_holding_everything(p)
    client = ("198.51.100.9", "libtorrent/2.0")
    for t in (0.0, 10.0, 20.0):
        # The seeder's own stall rescue feeds it on the peer wire instead.
        assert not ask(p, client, 5, t, peer_wire=True)
    assert p.web_clients.rescued == 0


def test_browsers_are_not_rescued_by_the_web_seed() -> None:
    """A browser swarm (no peer wire, no registry tracker) trades over WebRTC, unseen here:
    a piece asked again late is no sign that a browser starves."""
    p = policy(web_seed_patience=8.0)
    pages = [("198.51.100.7", f"Mozilla/5.0 #{n}") for n in range(4)]
    assert ask(p, pages[0], 5, 0.0)  # fresh: one browser gets it
    for t in (0.0, 10.0, 20.0):
        for page in pages:
            p.web_seed_request(page, t)  # all four still download
        assert not ask(p, pages[1], 5, t)
    assert p.web_clients.rescued == 0


def test_a_client_that_gets_its_pieces_elsewhere_is_never_rescued() -> None:
    """WebTorrent asks again at once after every 503, each time for a piece it still lacks:
    its peers give it what it was refused, so it never asks for the same piece late."""
    p = policy(web_seed_patience=8.0)
    swarm_holding_everything(p)
    client = ("198.51.100.9", "WebTorrent/2.8.5")
    now = 0.0
    for index in range(1, PIECES):
        for _ in range(20):
            assert not ask(p, client, index, now)
            now += 0.1  # 2 s per piece, then it has it
    assert p.web_clients.rescued == 0


def test_a_starving_client_that_never_finishes_gets_one_copy_at_most() -> None:
    p = policy(web_seed_patience=8.0, web_seed_rescue_period=600.0)
    swarm_holding_everything(p)
    client = ("198.51.100.9", "Transmission/3.00")
    served = 0
    now = 0.0
    for _ in range(200):  # 400 s of asking for the same pieces (it never keeps them)
        for index in range(1, PIECES):
            served += ask(p, client, index, now)
        now += 2.0
    assert 0 < served * PIECE <= COPY
    assert p.web_clients.rescued <= COPY


def test_many_starving_clients_share_one_copy_per_period() -> None:
    """One downloader posing as many (many addresses) gets no more than one client would."""
    p = policy(web_seed_patience=8.0, web_seed_rescue_period=600.0)
    swarm_holding_everything(p)
    clients = [(f"192.0.2.{n}", "Transmission/3.00") for n in range(1, 9)]
    for c in clients:
        for index in range(1, PIECES):
            assert not ask(p, c, index, 0.0)
    served = sum(ask(p, c, index, 8.0) for c in clients for index in range(1, PIECES))
    assert served * PIECE <= COPY + PIECE  # the torrent's allowance, not eight copies
    assert p.web_clients.rescued <= COPY + PIECE
    # The allowance refills over its period: rescues go on, slowly.
    later = 308.0
    assert ask(p, clients[-1], PIECES - 1, later)


def test_a_client_that_stops_asking_is_forgotten_with_its_refusals() -> None:
    p = policy(web_seed_patience=8.0)
    swarm_holding_everything(p)
    client = ("198.51.100.9", "Transmission/3.00")
    assert not ask(p, client, 1, 0.0)
    p.update(100.0)  # quiet for far longer than its patience
    assert client not in p.web_clients.clients
    assert not ask(p, client, 1, 100.0)  # a new client: patience from now
    assert not ask(p, client, 1, 104.0)
    assert ask(p, client, 1, 108.0)


def test_web_seed_clients_remembered_are_bounded() -> None:
    p = policy()
    for n in range(MAX_WEB_CLIENTS + 50):
        p.web_seed_request((f"10.0.{n // 256}.{n % 256}", "x"), n * 0.001)
    assert len(p.web_clients.clients) == MAX_WEB_CLIENTS
    assert ("10.0.0.0", "x") not in p.web_clients.clients  # the oldest went first


def test_refused_pieces_remembered_per_client_are_bounded() -> None:
    p = SwarmPolicy(4 * MAX_REFUSED, PIECE, rng=random.Random(3))
    for key in (1, 2, 3):
        p.peer_joined(key, 0.0, super_seed=True)
    for index in range(p.piece_count):
        p.peer_has(1, index, 0.0)
    client = ("198.51.100.9", "x")
    for index in range(p.piece_count):
        assert not ask(p, client, index, 0.0)
    assert len(p.web_clients.clients[client].refused) == MAX_REFUSED


def test_a_client_refused_again_at_once_waits_for_its_next_refusal() -> None:
    """WebTorrent ignores Retry-After: its next refusal is held back, not answered at once."""
    p = policy()
    client = "198.51.100.7"
    p.web_seed_request(client, 0.0)
    assert p.web_seed_refusal_delay(client, 0.0) == 0.0  # a first refusal: at once
    assert p.web_seed_refusal_delay(client, 0.1) == TARPIT
    assert p.web_seed_refusal_delay(client, 1.2) == TARPIT  # still hammering
    # libtorrent waits the Retry-After (10 s) before asking again: never held.
    assert p.web_seed_refusal_delay(client, 20.0) == 0.0
    assert p.web_seed_refusal_delay("unknown", 20.0) == 0.0
