"""A swarm's connections by peer id: what a seed's announce and a departure look up."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from s3torrent.config import SeederSettings
from s3torrent.peer.owed import OwedBlock
from s3torrent.peer.swarm import Swarm
from s3torrent.torrent.catalog import TorrentInfo
from s3torrent.torrent.hasher import PieceHashes
from s3torrent.torrent.metainfo import InfoHash

PIECES = 1280  # 20 MiB: more than the lone window (16 MiB), far more than a peer's


@dataclass(eq=False)
class FakeLink:
    key: int
    peer_id: bytes
    ip: str = "10.0.0.1"
    closed: bool = False
    reasons: list[str] = field(default_factory=list)
    said: list[tuple[str, int]] = field(default_factory=list)  # what the policy had sent

    def __post_init__(self) -> None:
        said = self.said
        self.conn = SimpleNamespace(
            unchoke=lambda: said.append(("unchoke", -1)),
            choke=lambda: said.append(("choke", -1)),
            have=lambda index: said.append(("have", index)),
            suggest=lambda index: said.append(("suggest", index)),
        )

    def close(self, reason: str, *, revoked: bool = False) -> None:
        self.reasons.append(reason)

    def collect(self) -> None:
        pass

    def pump(self) -> None:
        pass


def _info() -> TorrentInfo:
    hashes = PieceHashes(length=PIECES * 16384, piece_length=16384, pieces_v1=b"\0" * 20 * PIECES,
                         pieces_root=None, piece_layer=None)  # fmt: skip
    return TorrentInfo(
        bucket="b",
        key="k",
        version_id="v",
        name="k",
        fmt="v1",
        hashes=hashes,
        info=b"",
        info_hash=InfoHash(v1=b"\1" * 20, v2=None),
        last_modified=0.0,
    )


def _swarm() -> tuple[Swarm, list[Swarm]]:
    dropped: list[Swarm] = []
    seeder: Any = SimpleNamespace(
        settings=SeederSettings(),
        store=SimpleNamespace(blobs=SimpleNamespace(local_path=lambda _version: None)),
        stats=SimpleNamespace(torrents={}, bytes_sent=0, blocks_sent=0),
        clock=time.monotonic,
        _drop_swarm=dropped.append,
        on_piece_sent=None,
    )
    return Swarm(seeder, _info(), time.monotonic()), dropped


def _add(swarm: Swarm, link: FakeLink) -> None:
    swarm.add(link, time.monotonic(), super_seed=swarm.policy.super_seed())  # type: ignore[arg-type]


def _remove(swarm: Swarm, link: FakeLink) -> None:
    swarm.remove(link, time.monotonic())  # type: ignore[arg-type]


def test_a_peer_is_remembered_only_when_its_last_connection_goes() -> None:
    async def run() -> None:
        swarm, _ = _swarm()
        first, second = FakeLink(1, b"P" * 20), FakeLink(2, b"P" * 20)
        other = FakeLink(3, b"Q" * 20)
        for link in (first, second, other):
            _add(swarm, link)
        swarm.announced_by(b"P" * 20, 100, False, time.monotonic(), "10.0.0.1")
        _remove(swarm, first)
        assert b"P" * 20 not in swarm.remembered  # still connected through `second`
        _remove(swarm, first)  # a second removal of the same link changes nothing
        assert b"P" * 20 not in swarm.remembered
        _remove(swarm, second)
        assert swarm.remembered.get(b"P" * 20) == second.key  # announced, not connected
        _remove(swarm, other)
        assert b"Q" * 20 not in swarm.remembered  # never announced: gone with its link

    asyncio.run(run())


def test_a_connected_peer_announcing_done_is_told_apart_from_a_remote_seed() -> None:
    async def run() -> None:
        swarm, _ = _swarm()
        crowd = [FakeLink(100 + i, b"c" + i.to_bytes(19, "big")) for i in range(200)]
        mine = FakeLink(7, b"S" * 20)
        for link in [*crowd, mine]:
            _add(swarm, link)
        swarm.announced_by(b"S" * 20, 0, False, time.monotonic(), "10.0.0.9")
        # Its connection now counts as holding every piece; no remote stand-in is made.
        assert swarm.policy.peers[mine.key].has_count == PIECES
        assert b"S" * 20 not in swarm.remembered
        assert all(swarm.policy.peers[link.key].has_count == 0 for link in crowd)
        # A seed the origin has no connection to is remembered under a key of its own.
        swarm.announced_by(b"R" * 20, 0, False, time.monotonic(), "10.0.0.8")
        assert swarm.remembered[b"R" * 20] < 0

    asyncio.run(run())


def test_closing_the_swarm_forgets_every_connection() -> None:
    async def run() -> None:
        swarm, _ = _swarm()
        links = [FakeLink(1, b"A" * 20), FakeLink(2, b"A" * 20)]
        for link in links:
            _add(swarm, link)
        swarm.close("revoked")
        assert [link.reasons for link in links] == [["revoked"], ["revoked"]]
        assert swarm.links == {}
        swarm.announced_by(b"A" * 20, 0, False, time.monotonic(), "10.0.0.1")
        assert swarm.remembered[b"A" * 20] < 0  # no stale connection answers for it

    asyncio.run(run())


def _send_piece(swarm: Swarm, link: FakeLink, index: int) -> None:
    length = 16384  # one block is the whole piece here
    block = OwedBlock(index, 0, length, index * length, length)
    swarm.blocks_sent(link, [block], time.monotonic())  # type: ignore[arg-type]


def test_a_lone_downloader_is_topped_up_as_each_piece_goes_out() -> None:
    """Its HAVE comes after its own hash check and write; waiting for it left a fast
    leecher with nothing revealed to ask for."""

    async def run() -> None:
        swarm, _ = _swarm()
        alone = FakeLink(1, b"L" * 20)
        _add(swarm, alone)
        swarm.decide()  # the join's own pass: unchoked, its window revealed
        revealed = [i for what, i in alone.said if what == "have"]
        assert revealed and not swarm._decide_scheduled
        for index in revealed[: len(revealed) // 2 - 1]:
            _send_piece(swarm, alone, index)
        assert not swarm._decide_scheduled  # more than half its window still ahead
        _send_piece(swarm, alone, revealed[len(revealed) // 2 - 1])
        assert swarm._decide_scheduled  # half of it went out: topped up now

    asyncio.run(run())


def test_in_a_swarm_a_piece_sent_waits_for_the_peers_have() -> None:
    async def run() -> None:
        swarm, _ = _swarm()
        first, second = FakeLink(1, b"A" * 20), FakeLink(2, b"B" * 20)
        _add(swarm, first)
        _add(swarm, second)
        swarm.decide()
        assert not swarm._decide_scheduled
        revealed = [i for what, i in first.said if what == "have"]
        for index in revealed:
            _send_piece(swarm, first, index)
            assert swarm.policy.peers[first.key].has[index]
        assert revealed and not swarm._decide_scheduled

    asyncio.run(run())
