"""Which pieces the offload policy hands a peer when it is not a fresh one, and when a peer
gets no fresh pieces (policy.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from s3torrent.peer.policy import SwarmPolicy
    from s3torrent.peer.policy_types import PeerRecord

KEEP_IN_FLIGHT = 2  # fresh pieces a gated peer whose pieces spread still has on the way


def gated(policy: SwarmPolicy, peer: PeerRecord) -> bool:
    """The peer holds `unspread_limit` of first-hand pieces nobody else has yet while
    others still need them: no new fresh pieces for now (but see kept_busy)."""
    return (
        policy.mode != "fastest"
        and policy.downloaders() > 1
        and len(peer.unspread) * policy.piece_length >= policy.settings.unspread_limit
    )


def kept_busy(peer: PeerRecord) -> bool:
    """A gated peer whose pieces spread lately (spread credit, halved every choke round, of
    half a piece or more) still gets KEEP_IN_FLIGHT fresh pieces at a time, the next revealed
    as one went out. Left with nothing of ours to ask for, libtorrent says NOT_INTERESTED,
    which ends its slow start with us for good: it then asks us for 2 blocks at a time until
    its measured rate from us builds up again, and at a swarm's end the origin trickled at
    2-5 MB/s to each peer. A free rider (nothing of its spread) stays gated: kept busy, two
    free riders cost the origin 2.1 copies in the simulation instead of 1.2."""
    return peer.spread_credit >= 0.5 and len(peer.assigned) < KEEP_IN_FLIGHT


def rarest_lacking(
    policy: SwarmPolicy, peer: PeerRecord, limit: int, exclude: Iterable[int] = ()
) -> list[int]:
    """Up to `limit` pieces the peer lacks and was not shown, fewest holders (and
    assignments) first, ties in random order."""
    skip = set(exclude)
    avail, assigned, rng = policy.availability, policy.assigned_count, policy.rng
    scored = [
        (avail[i] + assigned[i], rng.random(), i)
        for i in range(policy.piece_count)
        if not peer.has[i] and i not in peer.revealed and i not in skip
    ]
    scored.sort()
    return [i for _, _, i in scored[:limit]]


def unheld(
    peers: Iterable[PeerRecord], peer: PeerRecord, ranked: list[int], limit: int
) -> list[int]:
    """The first `limit` of `ranked` that no other of `peers` holds."""
    others = [p.has for p in peers if p is not peer]
    out: list[int] = []
    for index in ranked:
        if not any(has[index] for has in others):
            out.append(index)
            if len(out) >= limit:
                break
    return out


def remote_only(
    policy: SwarmPolicy, peer: PeerRecord, limit: int, now: float, exclude: Iterable[int] = ()
) -> list[int]:
    """Up to `limit` pieces the peer lacks and was not shown that only departed peers hold
    and nobody is assigned, in random order; not those only newcomers hold (departed for
    less than `remote_newcomer_grace`: they have yet to meet the swarm)."""
    skip = set(exclude)
    held, avail, assigned = policy.remote_held, policy.availability, policy.assigned_count
    grace = policy.settings.remote_newcomer_grace
    newcomers = [p.has for p in policy.departed.values() if now - p.remote_since < grace]
    found = [
        i
        for i in range(policy.piece_count)
        if held[i] and avail[i] == held[i] and not assigned[i] and not peer.has[i]
        if i not in peer.revealed and i not in skip
        if not newcomers or held[i] > sum(has[i] for has in newcomers)
    ]
    return policy.rng.sample(found, min(limit, len(found)))


def rescue(
    policy: SwarmPolicy, peer: PeerRecord, want: int, now: float, exclude: Iterable[int]
) -> list[int]:
    """Up to `want` pieces for a peer the swarm is not serving. Stalled: nothing from anyone
    for a while (`endgame_stall_timeout` once it lacks at most `endgame_window`, else
    `stall_timeout`): the rarest it lacks. Starved: its pieces from us are all in and the
    swarm gave it nothing meanwhile (the peers we count on may not serve it): what no other
    connected peer holds (it needs that from us anyway), and what they hold one window per
    `swarm_stall_timeout`, not at our full pace. Neither: none."""
    settings = policy.settings
    lacking = (policy.piece_count - peer.has_count) * policy.piece_length
    endgame = lacking <= settings.endgame_window
    timeout = settings.endgame_stall_timeout if endgame else settings.stall_timeout
    stalled = now - peer.last_progress >= timeout
    starved = not peer.assigned and now - peer.swarm_progress >= settings.swarm_stall_timeout
    if not (stalled or starved):
        return []
    if stalled:
        chosen = rarest_lacking(policy, peer, want, exclude)
    else:
        ranked = rarest_lacking(policy, peer, policy.piece_count, exclude)
        chosen = unheld(policy.peers.values(), peer, ranked, want)
        if not chosen:
            chosen = ranked[:want]
            peer.swarm_progress = now
    if chosen:
        peer.last_progress = now
    return chosen
