"""When the web seed holds a request back instead of answering it: a client whose web-seed
scheduler slows its own peer wire.

WebTorrent (node) asks its web seed for one piece at a time, and once the web seed has sent
it anything its scheduler rescans every piece for the web seed on every block that arrives
from any peer (the web seed's pipeline target is counted in blocks, its cap in pieces, so it
is never full). A lone WebTorrent downloading from the origin's seeder and its web seed at
once took 2.2 s for 100 MiB, its node process saturated, against 0.74 s from the seeder
alone. A 503 does not help: each refusal is a new request, one per block received.

So a request from such a client (named by its User-Agent: browsers cannot set one, and have
no peer wire to us anyway) waits, unanswered, while the same client's peer-wire connection
to us makes progress and still lacks pieces outside the request. It is answered as any other
(under the offload policy) when the client lacks nothing else (its peer wire cannot take a
piece its web seed reserved), when its peer wire stalls or closes, when no peer wire from it
appears within PEER_WAIT, or after LIMIT in all. Sans-IO and clock-free, like policy.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from s3torrent.peer.policy_types import PeerRecord

__all__ = ["LIMIT", "MAX_HELD", "PEER_WAIT", "STALL", "WebHolds", "held_agent", "keep_holding"]

PEER_WAIT = 2.0  # seconds a held client's peer wire may take to connect
UNWIRED_MEMORY = 60.0  # a client whose peer wire never came is not held again this long
MAX_UNWIRED = 256  # such clients remembered per torrent (the oldest forgotten first)
STALL = 1.0  # released once its peer wire gained no piece for this long
LIMIT = 20.0  # seconds held in all (WebTorrent gives up on a web seed request at 60 s)
MAX_HELD = 64  # requests held at once per torrent; beyond, answered at once


def held_agent(user_agent: str | None, agents: Iterable[str]) -> bool:
    """Whether requests with this User-Agent may be held (its prefix is listed)."""
    if not user_agent:
        return False
    return any(a and user_agent.startswith(a) for a in agents)


def keep_holding(
    peers: Sequence[PeerRecord],
    first: int,
    last: int,
    piece_count: int,
    held_for: float,
    now: float,
) -> bool:
    """Whether a request for pieces first..last, held for `held_for` seconds, should wait
    longer, given the policy's records of the same client's peer-wire connections."""
    if held_for >= LIMIT:
        return False
    if not peers:
        return held_for < PEER_WAIT
    first, last = max(0, first), min(last, piece_count - 1)
    span = max(0, last - first + 1)
    for peer in peers:
        if now - peer.last_progress >= STALL:
            continue
        lacking = piece_count - peer.has_count
        # Asked again on every peer event while held: count the range only when it could
        # hold all the client lacks, and then in C (`has` is one byte per piece).
        if lacking > span or lacking > span - sum(peer.has[first : last + 1]):
            return True  # its peer wire has other pieces to fetch
    return False


class WebHolds:
    """One torrent's held requests: how many wait now, and which clients never showed a
    peer wire (a web-seed-only client, or a peer wire we cannot tell is theirs): those are
    answered at once for UNWIRED_MEMORY, not held PEER_WAIT on every request."""

    def __init__(self) -> None:
        self.held = 0
        self._unwired: dict[object, float] = {}

    def begin(self, client: object, now: float, *, wired: bool = False) -> bool:
        """Whether a request of this client may be held now (then it counts as held);
        `wired`: it has a peer wire to us right now (a late one undoes the memory)."""
        if self.held >= MAX_HELD:
            return False
        since = self._unwired.get(client)
        if since is not None:
            if not wired and now - since < UNWIRED_MEMORY:
                return False
            del self._unwired[client]
        self.held += 1
        return True

    def end(self, client: object, now: float, *, wired: bool) -> None:
        """A held request is answered; `wired`: the client had a peer wire at some point."""
        self.held -= 1
        if not wired:
            if client not in self._unwired and len(self._unwired) >= MAX_UNWIRED:
                del self._unwired[next(iter(self._unwired))]
            self._unwired[client] = now
