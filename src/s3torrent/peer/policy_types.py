"""The offload policy's settings and the actions it decides (policy.py re-exports them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias

__all__ = [
    "Action",
    "ChokePeer",
    "Mode",
    "PeerKey",
    "PeerRecord",
    "PolicySettings",
    "RevealPiece",
    "SuggestPiece",
    "UnchokePeer",
]

Mode: TypeAlias = Literal["fastest", "offload", "auto"]
PeerKey: TypeAlias = int


@dataclass(frozen=True, slots=True)
class PolicySettings:
    mode: Mode = "auto"
    unchoke_slots: int = 8
    round_interval: float = 5.0
    alone_window: int = 16 * 1024 * 1024
    peer_window: int = 2 * 1024 * 1024
    unspread_limit: int = 8 * 1024 * 1024
    # libtorrent stops asking its other peers once every piece it lacks was taken by a
    # web-seed request (or by us) that then ended (a 503, a cut, a choke): those connections
    # sit idle until its 5 s end-game timer. A second without progress is our cue to serve.
    stall_timeout: float = 3.0
    # A peer that gets pieces only from us (its other peers give it nothing) is fed again
    # after this long: a slow client must not turn the origin into its only source.
    swarm_stall_timeout: float = 3.0
    # A peer that lacks at most `endgame_window` bytes stalls after `endgame_stall_timeout`:
    # a swarm's last pieces are often held only by peers that just finished, and a
    # libtorrent seed keeps choking whom it choked as a leecher until its next unchoke
    # round; waiting the whole stall_timeout for them held a whole as-served swarm ~3 s.
    endgame_window: int = 4 * 1024 * 1024
    endgame_stall_timeout: float = 1.0
    # Pieces only departed peers hold go to a peer the swarm gave nothing for this long
    # (a seed that left without a `stopped` announce stays remembered for an hour).
    remote_grace: float = 1.0
    # ... and only once a departed peer holding them has been one this long: a seed that
    # just announced (aria2, done from the web seed before its first announce) or a peer
    # that just left the origin has not met the swarm yet. Counted from the peer's join,
    # the grace had run out already, and a mixed swarm started together got 0.2-1 copy
    # more from the origin (audit h1).
    remote_newcomer_grace: float = 3.0
    carry_rate: int = 1024 * 1024  # bytes/s; 0: no cap
    # An assignment (a fresh piece revealed to one peer) that makes no progress for this
    # many stall timeouts stops blocking other peers from getting the piece.
    stale_assignments: float = 3.0
    suggestions: int = 4
    # Seconds a piece the web seed sent stays taken when no peer reports having it (a web
    # seed client may never talk to the origin's peer port).
    web_seed_memory: float = 60.0
    # A web seed client counts as downloading for this long after its last request.
    web_seed_client_window: float = 5.0
    # A web seed client without a peer-wire connection to us that asks again for a piece
    # refused this long ago is sent it: a client that cannot reach the swarm (a firewall,
    # Transmission and loopback peers) must finish. At most one copy per client; all such
    # rescues of a torrent share one copy per `web_seed_rescue_period` (web_clients.py).
    web_seed_patience: float = 8.0
    web_seed_rescue_period: float = 600.0


@dataclass(frozen=True, slots=True)
class UnchokePeer:
    peer: PeerKey


@dataclass(frozen=True, slots=True)
class ChokePeer:
    peer: PeerKey


@dataclass(frozen=True, slots=True)
class RevealPiece:
    """Tell the peer we have this piece (HAVE): it may now request it from us."""

    peer: PeerKey
    index: int


@dataclass(frozen=True, slots=True)
class SuggestPiece:
    peer: PeerKey
    index: int


Action: TypeAlias = UnchokePeer | ChokePeer | RevealPiece | SuggestPiece


@dataclass(slots=True)
class PeerRecord:
    """What the policy knows of one peer (connected, or departed and remembered)."""

    key: PeerKey
    joined: float
    super_seed: bool
    has: bytearray  # one byte per piece: 0/1
    has_count: int = 0
    interested: bool = False
    unchoked: bool = False
    revealed: set[int] = field(default_factory=set)
    # Fresh pieces revealed to this peer, not yet had: index -> when.
    assigned: dict[int, float] = field(default_factory=dict)
    # Pieces this peer holds first-hand (from us) that no other connected peer has yet.
    unspread: set[int] = field(default_factory=set)
    spread_credit: float = 0.0
    last_progress: float = 0.0
    bytes_from_us: int = 0
    suggested: bool = False
    # Bytes of each piece sent to this peer, until the whole piece went out.
    delivered: dict[int, int] = field(default_factory=dict)
    # When it last got a piece from the swarm (not from us).
    swarm_progress: float = 0.0
    # Departed: when it last became the holder of pieces nobody connected may have
    # (it left the origin, or announced itself a seed).
    remote_since: float = 0.0

    def complete(self, piece_count: int) -> bool:
        return self.has_count >= piece_count
