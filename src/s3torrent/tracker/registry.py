"""Which torrents the tracker serves, and their swarms.

The interface is async although the in-memory registry never awaits: the Redis registry that
comes later does network round trips, and a sync interface would force it to block the loop.
Time is always passed in as `now`; nothing here reads a clock.
"""

from __future__ import annotations

import ipaddress
import math
import random
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Protocol

from s3torrent.tracker.protocol import (
    PEER_ID_LENGTH,
    AnnounceEvent,
    AnnounceRequest,
    PeerAddress,
    ScrapeStats,
    is_ipv6,
    pack_compact_peer,
)

UNREGISTERED_TORRENT = "unregistered torrent"
SWARM_FULL = "swarm full: you get peers but are not listed to others"
RATE_LIMITED = "rate limited"
PEER_ID_IN_USE = "peer id in use from another address"


@dataclass(frozen=True, slots=True)
class TorrentRef:
    """The object version a torrent belongs to, and the seeders we run for it."""

    bucket: str
    key: str
    version_id: str
    # Always in every peer list and counted as seeds: they guarantee the swarm can finish.
    origin_seeders: tuple[tuple[str, int], ...] = ()


class AnnounceResult(NamedTuple):
    """What an admitted announce is answered with (a named tuple: one per announce)."""

    complete: int
    incomplete: int
    peers: tuple[PeerAddress, ...]
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class AnnounceFailure:
    reason: str


@dataclass(frozen=True, slots=True)
class SwarmStats:
    completed: int  # completed downloads seen (once per peer)
    seeders: int  # announcing seeds, origins not included
    leechers: int
    uploaded: int  # bytes, summed from per-peer deltas of what peers reported
    downloaded: int


class TrackerRegistry(Protocol):
    async def register(self, info_hash: bytes, meta: TorrentRef) -> None:
        """Serve this torrent; registering again updates its ref and keeps the swarm."""

    async def deregister(self, info_hash: bytes) -> None:
        """Stop serving this torrent at once (a registry may keep its peers for a
        registration that comes back)."""

    async def is_registered(self, info_hash: bytes) -> bool: ...

    async def announce(self, req: AnnounceRequest, now: float) -> AnnounceResult | AnnounceFailure:
        """Record the announce and pick peers for it."""

    async def scrape(self, info_hashes: tuple[bytes, ...], now: float) -> dict[bytes, ScrapeStats]:
        """Stats of the registered hashes among `info_hashes`; others are left out."""

    async def stats(self, info_hash: bytes) -> SwarmStats:
        """Counters of a registered torrent; KeyError if it is not registered."""

    async def registered(self) -> list[bytes]: ...

    async def peer_sources(self, info_hash: bytes) -> dict[bytes, str]:
        """Where each listed peer of a registered torrent last announced from (entry id,
        `entry_id` -> source address: what the access decision goes by); empty if not
        registered."""

    async def drop_peers(self, info_hash: bytes, peers: Mapping[bytes, str]) -> int:
        """Unlist these peers (entry id -> the source `peer_sources` gave) of a registered
        torrent, each only if it still announces from that source; how many were."""

    def sweep(self, now: float) -> int:
        """Drop peers not seen for two intervals (a no-op where the engine expires them)."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RegistryLimits:
    # Twice the default announce interval of 1800 s: one lost announce does not drop a peer.
    peer_ttl: float = 3600.0
    max_peers_per_torrent: int = 5000
    max_peers_total: int = 1_000_000
    # Per-IP token bucket. Generous because a NAT hides many clients, each with many torrents.
    rate_per_ip: float = 5.0
    rate_burst: float = 60.0
    rate_table_size: int = 65536


# A swarm keeps one entry per peer id and address family: a dual-stack client (libtorrent
# 2 announces from each of its listen sockets, with one peer id and one key) is listed to
# IPv4 peers at its IPv4 address and to IPv6 ones at its IPv6 address, each where it
# announced from. Keyed by peer id alone, each of its announces moved its one entry to the
# other family (until 2026-12-08). An IPv6 entry's id is the peer id and this byte.
_IPV6_ENTRY = b"6"


def entry_id(peer_id: bytes, ip: str) -> bytes:
    """The id of a peer's entry for address `ip` (canonical: ":" tells the family)."""
    return peer_id + _IPV6_ENTRY if ":" in ip else peer_id


def _sibling_id(entry: bytes) -> bytes:
    """The id of the same peer id's entry in the other family."""
    return entry[:-1] if len(entry) > PEER_ID_LENGTH else entry + _IPV6_ENTRY


class _Peer:
    __slots__ = (
        "accounts",
        "address",
        "completed",
        "downloaded",
        "group",
        "key",
        "last_seen",
        "left",
        "source",
        "uploaded",
    )

    def __init__(self, req: AnnounceRequest, now: float) -> None:
        # Immutable and packed once: peer lists hand out this very object, never a new one.
        self.address = PeerAddress(req.ip, req.port, req.peer_id)
        self.left = req.left
        self.key = req.key
        # Where it announced from when that is not `address.ip` (AnnounceRequest.source).
        self.source = req.source
        self.last_seen = now
        # A peer's counters are "since it started the torrent": one first seen without the
        # `started` event (after this registry started again, or after it expired here)
        # has counted bytes some earlier registry may have summed. They are its baseline:
        # only what it reports beyond them is new (a lower bound, as the savings are).
        fresh = req.event is AnnounceEvent.STARTED
        self.uploaded = 0 if fresh else req.uploaded
        self.downloaded = 0 if fresh else req.downloaded
        self.completed = False
        # The swarm's seeders or leechers, whichever lists this peer (None until updated).
        self.group: _PeerGroup | None = None
        # Whether its reports add to the swarm's transfer and completion counters: not
        # those of the other family's entry of a client listed already (the same peer id
        # and key), which reports the same totals; it takes over when that entry goes.
        self.accounts = True


def _index_below(rng: random.Random, bound: int) -> int:
    """A uniform index in range(bound): `randrange` costs ten times this, per announce."""
    return int(rng.random() * bound)


class _PeerGroup:
    """Peer addresses keyed by peer id: O(1) add, replace and remove, O(count) sampling.

    The list is kept in uniformly random order: each newcomer swaps places with a random
    member (the inside-out Fisher-Yates shuffle), and a removal fills its hole with the last
    member, which keeps the order uniform. A window at a random offset is then a uniformly
    random subset, taken with one slice instead of `count` calls into the RNG (which cost
    more than the rest of an announce). Successive windows share the order, so neighbours
    in it tend to be listed together until joins and leaves move them; opentracker's
    strided walk makes the same trade. `_compacts` mirrors `_items` with each member's
    packed entry, so a window is checked against the requester's own entry in one C call.
    """

    __slots__ = ("_compacts", "_index", "_items")

    def __init__(self) -> None:
        self._items: list[PeerAddress] = []
        self._compacts: list[bytes] = []
        self._index: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def add(self, peer_id: bytes, address: PeerAddress, rng: random.Random) -> None:
        """Insert at a random position, or replace the address of a member in place."""
        position = self._index.get(peer_id)
        if position is not None:
            self._items[position] = address
            self._compacts[position] = address.compact
            return
        items, compacts = self._items, self._compacts
        position = _index_below(rng, len(items) + 1)
        if position == len(items):
            items.append(address)
            compacts.append(address.compact)
        else:
            displaced = items[position]
            items.append(displaced)
            compacts.append(compacts[position])
            self._index[_peer_id(displaced)] = len(items) - 1
            items[position] = address
            compacts[position] = address.compact
        self._index[peer_id] = position

    def discard(self, peer_id: bytes) -> None:
        position = self._index.pop(peer_id, None)
        if position is None:
            return
        last = self._items.pop()
        last_compact = self._compacts.pop()
        if position < len(self._items):
            self._items[position] = last
            self._compacts[position] = last_compact
            self._index[_peer_id(last)] = position

    def sample(self, count: int, rng: random.Random) -> tuple[list[PeerAddress], list[bytes]]:
        """`count` members (all of them if fewer), fresh lists the caller may keep, with
        their packed entries in the same order."""
        items, compacts = self._items, self._compacts
        size = len(items)
        if count >= size:
            return items[:], compacts[:]
        start = _index_below(rng, size)
        end = start + count
        if end <= size:
            return items[start:end], compacts[start:end]
        return items[start:] + items[: end - size], compacts[start:] + compacts[: end - size]


def _peer_id(address: PeerAddress) -> bytes:
    # Group members always come from announces, which always carry a peer id.
    assert address.peer_id is not None
    return address.peer_id


class _Swarm:
    """One torrent's peers, in groups by role and address family: a UDP answer carries one
    family (BEP 15), and a sample of both whose other family was then dropped left an IPv6
    client of a mostly IPv4 swarm with no peers (until 2026-12-08)."""

    __slots__ = (
        "completed",
        "downloaded",
        "expires_at",
        "leechers",
        "leechers6",
        "origin_entries",
        "origins",
        "origins_by_family",
        "peers",
        "ref",
        "seeders",
        "seeders6",
        "uploaded",
    )

    def __init__(self, ref: TorrentRef) -> None:
        # Ordered by last announce (moved to the end on each one), so expiry pops the front.
        self.peers: OrderedDict[bytes, _Peer] = OrderedDict()
        # IPv4 peers; the IPv6 ones in seeders6 and leechers6.
        self.seeders = _PeerGroup()
        self.leechers = _PeerGroup()
        self.seeders6 = _PeerGroup()
        self.leechers6 = _PeerGroup()
        self.completed = 0
        self.uploaded = 0
        self.downloaded = 0
        # No peer expires before this (a lower bound, exact after each expiry pass): an
        # announce skips the pass until then.
        self.expires_at = math.inf
        self.set_ref(ref)

    def set_ref(self, ref: TorrentRef) -> None:
        self.ref = ref
        # Built once per registration, not per announce: every peer list carries them.
        self.origins = tuple(PeerAddress(ip, port) for ip, port in ref.origin_seeders)
        self.origin_entries = frozenset(o.compact for o in self.origins if o.compact)
        # (IPv4, IPv6): the origins an answer of one family carries.
        self.origins_by_family = (
            tuple(o for o in self.origins if not is_ipv6(o.ip)),
            tuple(o for o in self.origins if is_ipv6(o.ip)),
        )

    @property
    def seeding(self) -> int:
        return len(self.seeders) + len(self.seeders6)

    @property
    def leeching(self) -> int:
        return len(self.leechers) + len(self.leechers6)

    def group_for(self, ip: str, left: int) -> _PeerGroup:
        if ":" in ip:  # canonical: ":" tells the family
            return self.seeders6 if left == 0 else self.leechers6
        return self.seeders if left == 0 else self.leechers

    def scrape_stats(self) -> ScrapeStats:
        return ScrapeStats(
            complete=self.seeding + len(self.ref.origin_seeders),
            incomplete=self.leeching,
            downloaded=self.completed,
        )


class TokenBuckets:
    """Per-source announce budget with a bounded, least-recently-used table."""

    __slots__ = ("_buckets", "_burst", "_rate", "_size")

    def __init__(self, rate: float, burst: float, size: int) -> None:
        self._rate = rate
        self._burst = burst
        self._size = size
        # A plain dict keeps insertion order: popping and inserting again moves a source to
        # the end, so the first key is the least recently used.
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, source: str, now: float) -> bool:
        buckets = self._buckets
        tokens, stamp = buckets.pop(source, (self._burst, now))
        if now > stamp:
            tokens += (now - stamp) * self._rate
            if tokens > self._burst:
                tokens = self._burst
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        buckets[source] = (tokens, now)
        # An evicted source starts again with a full bucket; the bound matters more than that.
        while len(buckets) > self._size:
            del buckets[next(iter(buckets))]
        return allowed


def rate_limit_source(ip: str) -> str:
    """The unit rate limits apply to: an IPv4 address, or an IPv6 /64 (one subscriber's LAN)."""
    if ":" not in ip:
        return ip  # IPv4 (every announce's ip is canonical): no need to parse it
    return _ipv6_source(ip)


@lru_cache(maxsize=4096)
def _ipv6_source(ip: str) -> str:
    return str(ipaddress.IPv6Network((ipaddress.IPv6Address(ip), 64), strict=False))


# Swarms of deregistered torrents kept for a registration that comes back (at most this
# many, oldest dropped first): every change of a bucket's access (a tag, a rule, a policy
# time boundary) revokes its torrents and republishes those still public at once, and
# their peers, which announce every half hour, must not be lost with it.
MAX_PARKED_SWARMS = 1024


class MemoryRegistry:
    """The single-process registry: everything in dicts, expiry lazy plus `sweep`."""

    def __init__(self, limits: RegistryLimits | None = None, rng: random.Random | None = None):
        self._limits = limits or RegistryLimits()
        self._rng = rng or random.Random()
        self._swarms: dict[bytes, _Swarm] = {}
        self._peer_count = 0
        # Deregistered swarms, by info-hash, oldest first; served by no announce, scrape or
        # stats until registered again. Their peers expire as any do (peer_ttl), at the
        # first announce after they come back; their number is bounded by max_peers_total.
        self._parked: OrderedDict[bytes, _Swarm] = OrderedDict()
        self._parked_peers = 0
        self._rate = TokenBuckets(
            self._limits.rate_per_ip, self._limits.rate_burst, self._limits.rate_table_size
        )

    async def register(self, info_hash: bytes, meta: TorrentRef) -> None:
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            swarm = self._parked.pop(info_hash, None)
            if swarm is None:
                swarm = _Swarm(meta)
            else:
                self._parked_peers -= len(swarm.peers)
                self._peer_count += len(swarm.peers)
            self._swarms[info_hash] = swarm
        swarm.set_ref(meta)

    async def deregister(self, info_hash: bytes) -> None:
        """Stop serving the torrent at once; its swarm is kept (parked) for a registration
        that comes back (a revocation that republishes it)."""
        swarm = self._swarms.pop(info_hash, None)
        if swarm is None:
            return
        self._peer_count -= len(swarm.peers)
        if swarm.peers:
            self._parked[info_hash] = swarm
            self._parked_peers += len(swarm.peers)
        while self._parked and (
            len(self._parked) > MAX_PARKED_SWARMS
            or self._parked_peers > self._limits.max_peers_total
        ):
            _, dropped = self._parked.popitem(last=False)
            self._parked_peers -= len(dropped.peers)

    async def is_registered(self, info_hash: bytes) -> bool:
        return info_hash in self._swarms

    async def registered(self) -> list[bytes]:
        return list(self._swarms)

    async def stats(self, info_hash: bytes) -> SwarmStats:
        swarm = self._swarms[info_hash]
        return SwarmStats(
            completed=swarm.completed,
            seeders=swarm.seeding,
            leechers=swarm.leeching,
            uploaded=swarm.uploaded,
            downloaded=swarm.downloaded,
        )

    async def scrape(self, info_hashes: tuple[bytes, ...], now: float) -> dict[bytes, ScrapeStats]:
        result: dict[bytes, ScrapeStats] = {}
        for info_hash in info_hashes:
            swarm = self._swarms.get(info_hash)
            if swarm is not None:
                self._expire(swarm, now)
                result[info_hash] = swarm.scrape_stats()
        return result

    async def close(self) -> None:
        """Nothing to release: the swarms live in this process."""

    async def peer_sources(self, info_hash: bytes) -> dict[bytes, str]:
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            return {}
        return {entry: _source_of(peer) for entry, peer in swarm.peers.items()}

    async def drop_peers(self, info_hash: bytes, peers: Mapping[bytes, str]) -> int:
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            return 0
        dropped = 0
        for entry, source in peers.items():
            peer = swarm.peers.get(entry)
            if peer is not None and _source_of(peer) == source:
                self._remove(swarm, entry)
                dropped += 1
        return dropped

    def sweep(self, now: float) -> int:
        """Drop every peer not seen for `peer_ttl`; returns how many were dropped."""
        return sum(self._expire(swarm, now) for swarm in self._swarms.values())

    async def announce(self, req: AnnounceRequest, now: float) -> AnnounceResult | AnnounceFailure:
        return self.announce_now(req, now)

    def announce_now(self, req: AnnounceRequest, now: float) -> AnnounceResult | AnnounceFailure:
        """`announce` without a coroutine: this registry never waits (the UDP fast path)."""
        swarm = self._swarms.get(req.info_hash)
        if swarm is None:
            return AnnounceFailure(UNREGISTERED_TORRENT)
        # A peer leaving is exempt: dropping it would keep a dead peer in lists until expiry.
        if req.event is not AnnounceEvent.STOPPED and not self._rate.allow(
            rate_limit_source(req.source_ip), now
        ):
            return AnnounceFailure(RATE_LIMITED)
        if now >= swarm.expires_at:
            self._expire(swarm, now)
        entry = req.peer_id + _IPV6_ENTRY if ":" in req.ip else req.peer_id  # entry_id
        peer = swarm.peers.get(entry)
        if peer is not None and not _same_peer(peer, req):
            return AnnounceFailure(PEER_ID_IN_USE)
        complete_origins = len(swarm.origins)
        if req.event is AnnounceEvent.STOPPED:
            if peer is not None:
                if peer.accounts:
                    self._account_transfer(swarm, peer, req)
                self._remove(swarm, entry)
            return AnnounceResult(swarm.seeding + complete_origins, swarm.leeching, ())
        warning = None
        if peer is None:
            peer = self._admit(swarm, req, entry, now)
            if peer is None:
                warning = SWARM_FULL
        if peer is not None:
            self._update(swarm, entry, peer, req, now)
            # The requester's own entry, packed already (its address is the request's now).
            own = peer.address.compact
        else:
            own = pack_compact_peer(req.ip, req.port)
        peers = self._pick_peers(swarm, req, own)
        return AnnounceResult(swarm.seeding + complete_origins, swarm.leeching, peers, warning)

    def _admit(self, swarm: _Swarm, req: AnnounceRequest, entry: bytes, now: float) -> _Peer | None:
        # When full, the newcomer is not remembered but is still answered with peers.
        if (
            len(swarm.peers) >= self._limits.max_peers_per_torrent
            or self._peer_count >= self._limits.max_peers_total
        ):
            return None
        peer = _Peer(req, now)
        sibling = swarm.peers.get(_sibling_id(entry))
        if sibling is not None and sibling.key is not None and sibling.key == req.key:
            peer.accounts = False  # the same client, counted by its other entry
        swarm.peers[entry] = peer
        self._peer_count += 1
        swarm.expires_at = min(swarm.expires_at, now + self._limits.peer_ttl)
        return peer

    def _update(
        self, swarm: _Swarm, entry: bytes, peer: _Peer, req: AnnounceRequest, now: float
    ) -> None:
        peer_id = req.peer_id
        left = req.left
        finished = req.event is AnnounceEvent.COMPLETED or (peer.left > 0 and left == 0)
        if peer.accounts:
            self._account_transfer(swarm, peer, req)
            if finished and not peer.completed:
                # Some clients never send `completed`; the leecher -> seed transition too.
                swarm.completed += 1
        else:  # its totals are its baseline, should it take over (_remove)
            peer.uploaded = req.uploaded
            peer.downloaded = req.downloaded
        if finished:
            peer.completed = True
        address = peer.address
        moved = address.port != req.port or address.ip != req.ip
        if moved:
            address = peer.address = PeerAddress(req.ip, req.port, peer_id)
        peer.left = left
        peer.source = req.source
        if req.key is not None:
            peer.key = req.key
        peer.last_seen = now
        expires = now + self._limits.peer_ttl
        if expires < swarm.expires_at:  # only if the clock went back
            swarm.expires_at = expires
        swarm.peers.move_to_end(entry)
        group = swarm.group_for(address.ip, left)
        if peer.group is not group:
            if peer.group is not None:
                peer.group.discard(peer_id)
            group.add(peer_id, address, self._rng)
            peer.group = group
        elif moved:
            group.add(peer_id, address, self._rng)  # replaces its entry in place

    @staticmethod
    def _account_transfer(swarm: _Swarm, peer: _Peer, req: AnnounceRequest) -> None:
        # Counters are "since started"; one that went backwards means the client restarted
        # them, so everything it reports now is new.
        up = req.uploaded - peer.uploaded
        down = req.downloaded - peer.downloaded
        swarm.uploaded += up if up >= 0 else req.uploaded
        swarm.downloaded += down if down >= 0 else req.downloaded
        peer.uploaded = req.uploaded
        peer.downloaded = req.downloaded

    def _remove(self, swarm: _Swarm, entry: bytes) -> None:
        peer = swarm.peers.pop(entry)
        if peer.group is not None:
            peer.group.discard(_peer_id(peer.address))
        self._peer_count -= 1
        if peer.accounts:
            sibling = swarm.peers.get(_sibling_id(entry))
            if sibling is not None:
                sibling.accounts = True  # from its last totals on (a lower bound)

    def _expire(self, swarm: _Swarm, now: float) -> int:
        ttl = self._limits.peer_ttl
        deadline = now - ttl
        dropped = 0
        swarm.expires_at = math.inf
        while swarm.peers:
            entry, peer = next(iter(swarm.peers.items()))
            if peer.last_seen >= deadline:
                swarm.expires_at = peer.last_seen + ttl
                break
            self._remove(swarm, entry)
            dropped += 1
        return dropped

    def _pick_peers(
        self, swarm: _Swarm, req: AnnounceRequest, own: bytes
    ) -> tuple[PeerAddress, ...]:
        ipv6 = ":" in req.source_ip  # the asker's family (canonical: ":" tells it)
        origins = swarm.origins_by_family[ipv6] if req.family_only else swarm.origins
        wanted = max(0, req.numwant - len(origins))
        # Neither the requester (`own`: its address, whatever its peer id) nor an origin,
        # which is added below anyway. Compact entries are equal exactly when ip and port are.
        excluded = swarm.origin_entries | {own} if swarm.origin_entries else {own}
        # Leechers want seeds first; seeds only need leechers, another seed gives them nothing.
        # The asker's family first; the other one only to fill an answer that carries both.
        groups: tuple[_PeerGroup, ...]
        if ipv6:
            groups = (swarm.seeders6, swarm.leechers6, swarm.seeders, swarm.leechers)
        else:
            groups = (swarm.seeders, swarm.leechers, swarm.seeders6, swarm.leechers6)
        if req.family_only:
            groups = groups[:2]
        if req.left == 0:
            groups = groups[1::2]
        chosen: list[PeerAddress] = []
        for group in groups:
            missing = wanted - len(chosen)
            if missing <= 0:
                break
            if not group:
                continue
            # One spare covers the requester itself being in this group.
            items, compacts = group.sample(missing + 1, self._rng)
            if excluded.isdisjoint(compacts):
                chosen += items[:missing]
            else:
                kept = [p for p, c in zip(items, compacts, strict=True) if c not in excluded]
                chosen += kept[:missing]
        # Random positions spread first connections over the swarm instead of the origin.
        for origin in origins:
            chosen.insert(_index_below(self._rng, len(chosen) + 1), origin)
        return tuple(chosen)


def _source_of(peer: _Peer) -> str:
    return peer.address.ip if peer.source is None else peer.source


def _same_peer(peer: _Peer, req: AnnounceRequest) -> bool:
    # BEP 3 `key` lets a client prove it is the same peer after its address changed; without
    # it, another host could stop or move someone else's peer by reusing the peer id. The
    # same host is the same source, not the same `ip`: under trust_ip_param that is only the
    # address a client names (until 2026-12-07 naming a peer's address made one that peer).
    # A peer that announced without a key is the same peer from its own source only: any
    # host had been that peer (its id is in `compact=0` answers and every handshake), and
    # could stop it or list itself in its place. A keyless client whose address changes
    # gets "peer id in use" until its old entry expires; the clients we test send a key.
    return _source_of(peer) == req.source_ip or (peer.key is not None and peer.key == req.key)
