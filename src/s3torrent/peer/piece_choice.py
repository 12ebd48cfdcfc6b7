"""Which pieces the offload policy hands a peer, when it is not a fresh one (policy.py)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from s3torrent.peer.policy import SwarmPolicy
    from s3torrent.peer.policy_types import PeerRecord


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
    policy: SwarmPolicy, peer: PeerRecord, limit: int, exclude: Iterable[int] = ()
) -> list[int]:
    """Up to `limit` pieces the peer lacks and was not shown that only departed peers hold
    and nobody is assigned, in random order."""
    skip = set(exclude)
    held, avail, assigned = policy.remote_held, policy.availability, policy.assigned_count
    found = [
        i
        for i in range(policy.piece_count)
        if held[i] and avail[i] == held[i] and not assigned[i] and not peer.has[i]
        if i not in peer.revealed and i not in skip
    ]
    return policy.rng.sample(found, min(limit, len(found)))
