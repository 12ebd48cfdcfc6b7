"""The tracker registry in Redis: one swarm state shared by every node.

Per torrent (hex info-hash H, prefix P):
  P:reg            hash  H -> TorrentRef as JSON (the set of registered torrents)
  P:sw:{H}         hash  completed, uploaded, downloaded, origins (counters)
  P:pe:{H}         hash  entry id -> packed peer (ip, port, left, key, uploaded, downloaded, done,
                         source: where it announced from when not ip, else empty, accounts:
                         1 unless the other family's entry of the same client counts)
                         (an entry per peer id and family, as registry.entry_id: the peer id,
                         and "6" after it for an IPv6 address)
  P:ls:{H}         zset  peer_id by last announce time (expiry pops the low end)
  P:sd:{H} P:lc:{H} sets of seeding / leeching IPv4 peer ids (uniform sampling: SRANDMEMBER)
  P:sd6:{H} P:lc6:{H} the same of IPv6 peers (an answer takes the asker's family first, and
                   a UDP one that family only: BEP 15)
  P:npeers         count of peers in all swarms (the global bound)
  P:rt:SOURCE      token bucket of one announce source (expires when full again)

An announce is one Lua script (one round trip, atomic): register check, rate limit, expiry,
peer update, counters and the peer sample, with the same rules as MemoryRegistry. Time is the
Redis server's clock by default: nodes' monotonic clocks differ, the caller's `now` would not
order announces from different nodes. Tests may pass clock="caller" to drive time themselves.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping
from typing import Any, Literal

import redis.asyncio as aioredis

from s3torrent.tracker.protocol import (
    PEER_ID_LENGTH,
    AnnounceEvent,
    AnnounceRequest,
    PeerAddress,
    ScrapeStats,
    is_ipv6,
)
from s3torrent.tracker.registry import (
    PEER_ID_IN_USE,
    RATE_LIMITED,
    SWARM_FULL,
    UNREGISTERED_TORRENT,
    AnnounceFailure,
    AnnounceResult,
    RegistryLimits,
    SwarmStats,
    TorrentRef,
    rate_limit_source,
)

_CLOCK = """
local function clock(now)
  if tonumber(now) >= 0 then return tonumber(now) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function int(x) return string.format('%.0f', x) end
local function unpack_peer(s)
  local f = {}
  for v in string.gmatch(s, '([^\\t]*)\\t?') do f[#f + 1] = v end
  return {ip = f[1], port = f[2], left = tonumber(f[3]), key = f[4],
          up = tonumber(f[5]), down = tonumber(f[6]), done = f[7], src = f[8] or '',
          acc = f[9] or '1'}
end
local function pack_peer(p)
  return table.concat(
    {p.ip, p.port, int(p.left), p.key, int(p.up), int(p.down), p.done, p.src, p.acc}, '\\t')
end
-- The same peer id's entry in the other family (registry._sibling_id).
local function sibling_of(entry)
  if #entry > 20 then return string.sub(entry, 1, 20) end
  return entry .. '6'
end
local function source_of(p)
  if p.src ~= '' then return p.src end
  return p.ip
end
-- sets: a swarm's {seeds, leechers, IPv6 seeds, IPv6 leechers}
local function remove_peer(pe, ls, sets, np, pid)
  local packed = redis.call('HGET', pe, pid)
  redis.call('HDEL', pe, pid)
  redis.call('ZREM', ls, pid)
  for _, s in ipairs(sets) do redis.call('SREM', s, pid) end
  redis.call('DECR', np)
  if packed and unpack_peer(packed).acc == '1' then
    -- The other family's entry of the same client counts from its last totals on.
    local other = sibling_of(pid)
    local sp = redis.call('HGET', pe, other)
    if sp then
      local q = unpack_peer(sp)
      if q.acc ~= '1' then
        q.acc = '1'
        redis.call('HSET', pe, other, pack_peer(q))
      end
    end
  end
end
local function expire(pe, ls, sets, np, deadline)
  local dead = redis.call('ZRANGEBYSCORE', ls, '-inf', '(' .. deadline, 'LIMIT', 0, 1000)
  for _, pid in ipairs(dead) do remove_peer(pe, ls, sets, np, pid) end
  return #dead
end
local function is6(ip) return string.find(ip, ':', 1, true) ~= nil end
"""

# KEYS: reg sw pe ls sd lc npeers sd6 lc6 rate
# ARGV: hash peer_id ip port left key uploaded downloaded event numwant now ttl
#       max_per_torrent max_total rate burst seed exact_limit source family_only
_ANNOUNCE = (
    _CLOCK
    + """
local reg, sw, pe, ls, sd, lc, np, rt = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6],
  KEYS[7], KEYS[10]
local sd6, lc6 = KEYS[8], KEYS[9]
local sets = {sd, lc, sd6, lc6}
local ih, peer_id, ip, port = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
-- This peer id's entry for ip's family.
local pid = peer_id
if is6(ip) then pid = peer_id .. '6' end
local left, key = tonumber(ARGV[5]), ARGV[6]
local up, down, event, numwant = tonumber(ARGV[7]), tonumber(ARGV[8]), ARGV[9], tonumber(ARGV[10])
local now = clock(ARGV[11])
local ttl, maxpt, maxtot = tonumber(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
local rate, burst = tonumber(ARGV[15]), tonumber(ARGV[16])
-- SRANDMEMBER with a count favours members in short hash chains; swarms up to this size are
-- sampled exactly uniformly instead (partial Fisher-Yates, seeded by the caller).
local exact_limit = tonumber(ARGV[18])
-- Where the announce came from when that is not ip (else empty): what a re-decision goes by.
local src = ARGV[19]
-- The asker's family (where it announced from), and whether to answer with it alone.
local asker6 = is6(src ~= '' and src or ip)
local family_only = ARGV[20] == '1'
-- Redis resets Lua's math.random for every script, so use our own generator (Park-Miller,
-- exact in Lua's doubles), seeded by the caller on each call.
local state = tonumber(ARGV[17]) % 2147483646 + 1
local function rand_between(lo, hi)
  state = (state * 16807) % 2147483647
  return lo + (state % (hi - lo + 1))
end
local function sample(set, count)
  local size = redis.call('SCARD', set)
  if size > exact_limit then return redis.call('SRANDMEMBER', set, count) end
  local all = redis.call('SMEMBERS', set)
  local k = math.min(count, #all)
  for i = 1, k do
    local j = rand_between(i, #all)
    all[i], all[j] = all[j], all[i]
  end
  local out = {}
  for i = 1, k do out[i] = all[i] end
  return out
end
local ref = redis.call('HGET', reg, ih)
if not ref then return {'F', 'unregistered'} end
if event ~= 'stopped' then
  local b = redis.call('HMGET', rt, 'tokens', 'stamp')
  local tokens = tonumber(b[1]) or burst
  local stamp = tonumber(b[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
  local allowed = tokens >= 1
  if allowed then tokens = tokens - 1 end
  redis.call('HSET', rt, 'tokens', tostring(tokens), 'stamp', tostring(now))
  redis.call('EXPIRE', rt, math.ceil(burst / math.max(rate, 0.001)) + 1)
  if not allowed then return {'F', 'rate'} end
end
expire(pe, ls, sets, np, now - ttl)
local packed = redis.call('HGET', pe, pid)
local peer = nil
if packed then
  peer = unpack_peer(packed)
  -- The same host is the same source (not the same ip, which a client may name).
  local from = src
  if from == '' then from = ip end
  -- A peer that announced without a key is the same peer from its own source only.
  if not (source_of(peer) == from or (peer.key ~= '' and peer.key == key)) then
    return {'F', 'inuse'}
  end
end
local function account(p)
  if p.acc ~= '1' then
    p.up, p.down = up, down  -- its baseline, should it take over (remove_peer)
    return
  end
  local du, dd = up - p.up, down - p.down
  if du < 0 then du = up end
  if dd < 0 then dd = down end
  if du > 0 then redis.call('HINCRBY', sw, 'uploaded', int(du)) end
  if dd > 0 then redis.call('HINCRBY', sw, 'downloaded', int(dd)) end
  p.up, p.down = up, down
end
local origins = tonumber(redis.call('HGET', sw, 'origins') or '0')
if event == 'stopped' then
  if peer then
    account(peer)
    remove_peer(pe, ls, sets, np, pid)
  end
  return {'R', redis.call('SCARD', sd) + redis.call('SCARD', sd6) + origins,
          redis.call('SCARD', lc) + redis.call('SCARD', lc6), ref, '', {}}
end
local warning = ''
if not peer then
  if redis.call('HLEN', pe) >= maxpt or tonumber(redis.call('GET', np) or '0') >= maxtot then
    warning = 'full'
  else
    -- Counters of a peer first seen without `started` are its baseline (registry.py, _Peer).
    local base_up, base_down = up, down
    if event == 'started' then base_up, base_down = 0, 0 end
    -- The other family's entry of the same client (its key) counts its reports.
    local acc = '1'
    local sp = redis.call('HGET', pe, sibling_of(pid))
    if sp and key ~= '' and unpack_peer(sp).key == key then acc = '0' end
    peer = {ip = ip, port = port, left = left, key = key, up = base_up, down = base_down,
            done = '0', src = src, acc = acc}
    redis.call('INCR', np)
  end
end
if peer then
  account(peer)
  local finished = event == 'completed' or (peer.left > 0 and left == 0)
  if finished and peer.done == '0' then
    peer.done = '1'
    if peer.acc == '1' then redis.call('HINCRBY', sw, 'completed', 1) end
  end
  peer.ip, peer.port, peer.left, peer.src = ip, port, left, src
  if key ~= '' then peer.key = key end
  redis.call('HSET', pe, pid, pack_peer(peer))
  redis.call('ZADD', ls, now, pid)
  local group = lc
  if left == 0 then group = sd end
  if is6(ip) then
    group = lc6
    if left == 0 then group = sd6 end
  end
  for _, s in ipairs(sets) do
    if s ~= group then redis.call('SREM', s, pid) end
  end
  redis.call('SADD', group, pid)
end
local complete = redis.call('SCARD', sd) + redis.call('SCARD', sd6) + origins
local incomplete = redis.call('SCARD', lc) + redis.call('SCARD', lc6)
local chosen, n = {}, 0
-- Leechers want seeds first, seeds only leechers; the asker's family first, the other one
-- only to fill an answer that carries both.
local mine, other = {sd, lc}, {sd6, lc6}
if asker6 then mine, other = {sd6, lc6}, {sd, lc} end
local groups = {mine[1], mine[2], other[1], other[2]}
if family_only then groups = {mine[1], mine[2]} end
if left == 0 then
  if family_only then groups = {mine[2]} else groups = {mine[2], other[2]} end
end
for _, g in ipairs(groups) do
  if n >= numwant then break end
  local ids = sample(g, numwant - n + 1)
  for _, id in ipairs(ids) do
    if id ~= pid then
      local p = redis.call('HGET', pe, id)
      if p then
        local q = unpack_peer(p)
        -- (A set of an older version may hold either family.)
        if not (q.ip == ip and q.port == port) and not (family_only and is6(q.ip) ~= asker6) then
          n = n + 1
          chosen[#chosen + 1] = id
          chosen[#chosen + 1] = q.ip
          chosen[#chosen + 1] = q.port
        end
      end
    end
  end
end
return {'R', complete, incomplete, ref, warning, chosen}
"""
)

# KEYS: reg sw pe ls sd lc npeers sd6 lc6; ARGV: hash now ttl
_SCRAPE = (
    _CLOCK
    + """
local reg, sw, pe, ls, sd, lc, np = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local sets = {sd, lc, KEYS[8], KEYS[9]}
if redis.call('HEXISTS', reg, ARGV[1]) == 0 then return false end
if tonumber(ARGV[3]) >= 0 then
  expire(pe, ls, sets, np, clock(ARGV[2]) - tonumber(ARGV[3]))
end
local c = redis.call('HMGET', sw, 'completed', 'uploaded', 'downloaded', 'origins')
return {redis.call('SCARD', sd) + redis.call('SCARD', KEYS[8]),
        redis.call('SCARD', lc) + redis.call('SCARD', KEYS[9]), c[1] or '0', c[2] or '0',
        c[3] or '0', c[4] or '0'}
"""
)

# KEYS: reg sw pe ls sd lc npeers sd6 lc6
# ARGV: hash, how long (s) the swarm's keys are kept (parked) for a registration back.
_DEREGISTER = """
local reg, sw, pe, ls, sd, lc, np = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
if redis.call('HDEL', reg, ARGV[1]) == 0 then return 0 end
local n = redis.call('HLEN', pe)
if n > 0 then redis.call('DECRBY', np, n) end
for _, k in ipairs({sw, pe, ls, sd, lc, KEYS[8], KEYS[9]}) do redis.call('EXPIRE', k, ARGV[2]) end
return n
"""

# KEYS: reg sw pe ls sd lc npeers sd6 lc6; ARGV: hash ref origins
_REGISTER = """
local reg, sw, pe, ls, sd, lc, np = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
if redis.call('HSET', reg, ARGV[1], ARGV[2]) == 1 then
  -- Registered anew: a parked swarm (deregistered, not yet expired) comes back whole.
  for _, k in ipairs({sw, pe, ls, sd, lc, KEYS[8], KEYS[9]}) do redis.call('PERSIST', k) end
  local n = redis.call('HLEN', pe)
  if n > 0 then redis.call('INCRBY', np, n) end
end
redis.call('HSET', sw, 'origins', ARGV[3])
return 1
"""

# KEYS: reg sw pe ls sd lc npeers sd6 lc6; ARGV: hash, then peer id and source pairs
_DROP = (
    _CLOCK
    + """
local reg, sw, pe, ls, sd, lc, np = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local sets = {sd, lc, KEYS[8], KEYS[9]}
if redis.call('HEXISTS', reg, ARGV[1]) == 0 then return 0 end
local dropped = 0
for i = 2, #ARGV, 2 do
  local packed = redis.call('HGET', pe, ARGV[i])
  if packed and source_of(unpack_peer(packed)) == ARGV[i + 1] then
    remove_peer(pe, ls, sets, np, ARGV[i])
    dropped = dropped + 1
  end
end
return dropped
"""
)

_FAILURES = {
    "unregistered": UNREGISTERED_TORRENT,
    "rate": RATE_LIMITED,
    "inuse": PEER_ID_IN_USE,
    "full": SWARM_FULL,
}


def _ref_json(ref: TorrentRef) -> str:
    return json.dumps(
        {
            "b": ref.bucket,
            "k": ref.key,
            "v": ref.version_id,
            "o": [[host, port] for host, port in ref.origin_seeders],
        },
        separators=(",", ":"),
    )


def _ref_from_json(raw: bytes | str) -> TorrentRef:
    d = json.loads(raw)
    return TorrentRef(d["b"], d["k"], d["v"], tuple((str(h), int(p)) for h, p in d["o"]))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _source_of(packed: str) -> str:
    """Where a packed peer (see the module's docstring) last announced from."""
    fields = packed.split("\t")
    return fields[7] if len(fields) > 7 and fields[7] else fields[0]


# Peers unlisted per script call: a long script blocks every other Redis client.
_DROP_BATCH = 500


# Swarms up to this many seeds (or leechers) are sampled exactly uniformly.
EXACT_SAMPLE_LIMIT = 2048


class RedisRegistry:
    """TrackerRegistry on a Redis server shared by every node."""

    def __init__(
        self,
        client: aioredis.Redis,
        limits: RegistryLimits | None = None,
        *,
        prefix: str = "s3t",
        clock: Literal["redis", "caller"] = "redis",
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self._limits = limits or RegistryLimits()
        self._prefix = prefix
        self._caller_clock = clock == "caller"
        self._rng = rng or random.Random()
        self._announce = client.register_script(_ANNOUNCE)
        self._scrape = client.register_script(_SCRAPE)
        self._deregister = client.register_script(_DEREGISTER)
        self._register = client.register_script(_REGISTER)
        self._drop = client.register_script(_DROP)

    @classmethod
    def from_url(cls, url: str, limits: RegistryLimits | None = None, **kw: Any) -> RedisRegistry:
        return cls(aioredis.Redis.from_url(url), limits, **kw)

    # ---- keys ----

    @property
    def _reg(self) -> str:
        return f"{self._prefix}:reg"

    def _swarm_keys(self, info_hash: bytes) -> list[str]:
        h = info_hash.hex()
        p = self._prefix
        # The {hash} tag keeps one swarm's keys in one Redis Cluster slot.
        return [
            self._reg,
            f"{p}:sw:{{{h}}}",
            f"{p}:pe:{{{h}}}",
            f"{p}:ls:{{{h}}}",
            f"{p}:sd:{{{h}}}",
            f"{p}:lc:{{{h}}}",
            f"{p}:npeers",
            f"{p}:sd6:{{{h}}}",
            f"{p}:lc6:{{{h}}}",
        ]

    def _now(self, now: float) -> float:
        return now if self._caller_clock else -1.0

    # ---- TrackerRegistry ----

    async def register(self, info_hash: bytes, meta: TorrentRef) -> None:
        keys = self._swarm_keys(info_hash)
        await self._register(
            keys=keys, args=[info_hash.hex(), _ref_json(meta), len(meta.origin_seeders)]
        )

    async def deregister(self, info_hash: bytes) -> None:
        """Stop serving the torrent at once; its swarm's keys are kept (expiring after
        `peer_ttl`, when its peers would have) for a registration that comes back: a
        revocation that republishes at once (any change of the bucket's access) had
        emptied the swarm, whose peers announce only every half hour."""
        park = max(1, math.ceil(self._limits.peer_ttl))
        await self._deregister(keys=self._swarm_keys(info_hash), args=[info_hash.hex(), park])

    async def is_registered(self, info_hash: bytes) -> bool:
        return bool(await self.client.hexists(self._reg, info_hash.hex()))  # type: ignore[misc]

    async def registered(self) -> list[bytes]:
        keys = await self.client.hkeys(self._reg)  # type: ignore[misc]
        return [bytes.fromhex(_text(k)) for k in keys]

    async def stats(self, info_hash: bytes) -> SwarmStats:
        row = await self._scrape(keys=self._swarm_keys(info_hash), args=[info_hash.hex(), -1, -1])
        if not row:
            raise KeyError(info_hash)
        seeders, leechers, completed, uploaded, downloaded, _origins = (int(x) for x in row)
        return SwarmStats(completed, seeders, leechers, uploaded, downloaded)

    async def scrape(self, info_hashes: tuple[bytes, ...], now: float) -> dict[bytes, ScrapeStats]:
        async with self.client.pipeline(transaction=False) as pipe:
            for h in info_hashes:
                await self._scrape(
                    keys=self._swarm_keys(h),
                    args=[h.hex(), self._now(now), self._limits.peer_ttl],
                    client=pipe,
                )
            rows = await pipe.execute()
        out: dict[bytes, ScrapeStats] = {}
        for h, row in zip(info_hashes, rows, strict=True):
            if row:
                seeders, leechers, completed, _up, _down, origins = (int(x) for x in row)
                out[h] = ScrapeStats(
                    complete=seeders + origins, incomplete=leechers, downloaded=completed
                )
        return out

    async def announce(self, req: AnnounceRequest, now: float) -> AnnounceResult | AnnounceFailure:
        keys = [
            *self._swarm_keys(req.info_hash),
            f"{self._prefix}:rt:{rate_limit_source(req.source_ip)}",
        ]
        lim = self._limits
        numwant = max(0, req.numwant)
        args: list[bytes | str | int | float] = [
            req.info_hash.hex(),
            req.peer_id,
            req.ip,
            req.port,
            req.left,
            req.key if req.key is not None else "",
            req.uploaded,
            req.downloaded,
            # The events the script tells apart (paused is a regular announce).
            req.event.value if req.event is not AnnounceEvent.PAUSED else "",
            numwant,
            self._now(now),
            lim.peer_ttl,
            lim.max_peers_per_torrent,
            lim.max_peers_total,
            lim.rate_per_ip,
            lim.rate_burst,
            self._rng.randrange(1 << 31),
            EXACT_SAMPLE_LIMIT,
            req.source if req.source is not None else "",
            1 if req.family_only else 0,
        ]
        row = await self._announce(keys=keys, args=args)
        if _text(row[0]) == "F":
            return AnnounceFailure(_FAILURES[_text(row[1])])
        complete, incomplete = int(row[1]), int(row[2])
        ref = _ref_from_json(row[3])
        warning = _FAILURES.get(_text(row[4]))
        if req.event is AnnounceEvent.STOPPED:
            return AnnounceResult(complete, incomplete, ())
        return AnnounceResult(complete, incomplete, self._peers(req, ref, row[5]), warning)

    async def peer_sources(self, info_hash: bytes) -> dict[bytes, str]:
        if not await self.is_registered(info_hash):
            return {}
        sources: dict[bytes, str] = {}
        async for peer_id, packed in self.client.hscan_iter(
            self._swarm_keys(info_hash)[2], count=1000
        ):
            sources[bytes(peer_id)] = _source_of(_text(packed))
        return sources

    async def drop_peers(self, info_hash: bytes, peers: Mapping[bytes, str]) -> int:
        keys = self._swarm_keys(info_hash)
        pairs = list(peers.items())
        dropped = 0
        for start in range(0, len(pairs), _DROP_BATCH):
            args: list[bytes | str] = [info_hash.hex()]
            for peer_id, source in pairs[start : start + _DROP_BATCH]:
                args += (peer_id, source)
            dropped += int(await self._drop(keys=keys, args=args))
        return dropped

    def _peers(
        self, req: AnnounceRequest, ref: TorrentRef, flat: list[Any]
    ) -> tuple[PeerAddress, ...]:
        origins = [PeerAddress(ip, port) for ip, port in ref.origin_seeders]
        if req.family_only:  # those of the asker's family (see the announce script)
            ipv6 = is_ipv6(req.source_ip)
            origins = [o for o in origins if is_ipv6(o.ip) == ipv6]
        origin_addresses = {(o.ip, o.port) for o in origins}
        wanted = max(0, req.numwant - len(origins))
        chosen: list[PeerAddress] = []
        for i in range(0, len(flat), 3):
            if len(chosen) >= wanted:
                break
            # An entry id: the peer id (and "6" for an IPv6 entry).
            peer_id = bytes(flat[i])[:PEER_ID_LENGTH]
            ip, port = _text(flat[i + 1]), int(flat[i + 2])
            if (ip, port) in origin_addresses:
                continue
            chosen.append(PeerAddress(ip, port, peer_id))
        # Random positions spread first connections over the swarm instead of the origin.
        for origin in origins:
            chosen.insert(self._rng.randrange(len(chosen) + 1), origin)
        return tuple(chosen)

    def sweep(self, now: float) -> int:
        """Nothing to sweep: Redis expires peers on its own."""
        return 0

    async def close(self) -> None:
        await self.client.aclose()
