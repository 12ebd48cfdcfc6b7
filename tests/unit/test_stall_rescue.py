"""A downloader that stops making progress is served by the origin after `stall_timeout`.

libtorrent stops asking its other peers once every piece it lacks was taken by a web-seed
request that then ended (the web seed's 503 or a cut at a piece boundary): those
connections sit idle until its 5 s end-game timer, with seeds all around. Traced in the
eight-leecher swarm as served, that idle time was most of the gap to a libtorrent seeder.
The origin sees the peer's HAVEs stop and serves it itself. The default stays 3 s: at 1 s
a swarm joining a seeding aria2 cost the origin more than 1.3 copies
(tests/interop/test_webseed_offload.py).
"""

from __future__ import annotations

import random

from s3torrent.peer.policy import PolicySettings, RevealPiece, SwarmPolicy

PIECE = 64 * 1024
PIECES = 64


def swarm_with_an_idle_downloader(settings: PolicySettings | None = None) -> SwarmPolicy:
    """A seed peer (every piece) and a downloader holding half, both connected at t=0."""
    settings = settings or PolicySettings()
    policy = SwarmPolicy(PIECES, PIECE, settings, rng=random.Random(0), now=0.0)
    policy.peer_joined(1, 0.0, super_seed=True)
    policy.peer_have_all(1, 0.0)
    policy.peer_joined(2, 0.0, super_seed=True)
    for index in range(0, PIECES, 2):
        policy.peer_has(2, index, 0.0)
    policy.update(0.0)
    return policy


def reveals_to(actions: object, peer: int) -> list[int]:
    assert isinstance(actions, list)
    return [a.index for a in actions if isinstance(a, RevealPiece) and a.peer == peer]


def test_an_idle_downloader_is_served_after_the_stall_timeout() -> None:
    policy = swarm_with_an_idle_downloader(PolicySettings(stall_timeout=1.0))
    # The seed peer holds everything: nothing is fresh, nothing is revealed yet.
    assert reveals_to(policy.update(0.5), 2) == []
    rescued = reveals_to(policy.update(1.1), 2)
    assert rescued, "no piece revealed to a downloader idle for 1.1 s"
    assert all(index % 2 == 1 for index in rescued)  # only what it lacks


def test_a_downloader_making_progress_is_left_to_its_peers() -> None:
    policy = swarm_with_an_idle_downloader(PolicySettings(stall_timeout=1.0))
    for step in range(1, 20):
        now = step * 0.25
        policy.peer_has(2, 2 * step - 1, now)  # one HAVE every quarter second
        assert reveals_to(policy.update(now), 2) == [], now


def test_the_default_stall_timeout_is_the_settings_one() -> None:
    from s3torrent.config import SeederSettings

    assert PolicySettings().stall_timeout == SeederSettings().stall_timeout == 3.0


def test_a_downloader_fed_only_by_us_waits_longer_for_more() -> None:
    """A slow client its other peers give nothing must not make the origin its only source."""
    policy = swarm_with_an_idle_downloader()
    rescued: list[int] = []
    for step in range(1, 13):
        now = step * 0.25
        policy.peer_has(2, 2 * step - 1, now, from_us=True)  # progress, all of it from us
        rescued += reveals_to(policy.update(now), 2)
        if now < 3.0:
            assert rescued == [], now
    assert rescued, "never fed again after 3 s of getting nothing from its peers"
