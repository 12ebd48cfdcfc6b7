"""Events across nodes: the local EventBus relayed through one Redis pub/sub channel (one per
database number: `events_channel`).

Every event published on this node's bus goes out as JSON (with our node id); every event
another node sent is published on our bus, so its subscribers (revocation, the seeder's
connections, hashing jobs) act on it as on their own. Pub/sub is fire-and-forget: a node that
is cut off from Redis misses the events published meanwhile, so every subscription after the
first one calls `on_gap` once Redis confirms it (the node decides again everything it decided
on events: PublicTorrents.missed_events). Until 2026-12-07 nothing did: a node back from a gap kept
seeding and web-seeding a torrent another node revoked during it. The confirmation, not the
reconnection, is the point: every event published after it reaches us, and one published
before it was committed before it, so the decisions taken after it read that commit. redis-py
reconnects a subscription by itself (its retries) and subscribes again, so a gap may never
raise here: its confirmation is what we see.

A connection can also go silent without closing (Redis's host gone, a NAT or firewall that
dropped its state): reads then wait for ever and writes go into the kernel's buffer, and
until 2026-12-07 a node so cut off never heard another event, nor sent one (a publish
waited for its reply for good, and every later event queued behind it). So the
subscription is pinged every `ping_every` seconds and given up (then subscribed again, which
ends the gap as above) once nothing at all, not even a pong, came for `silent_after`; and a
publish that is not answered within `publish_timeout` is tried again on a new connection.

While the subscription is down, `on_gap` is also called every `cut_off_every` seconds:
the node decides again from the database, so a revocation another node commits meanwhile
stops it within about a second of being noticed (a refused or closed connection at once, a
silent one after `silent_after`), not when Redis is back. Until 2026-12-07 a node cut off
went on seeding and web-seeding what another node revoked for as long as the cut lasted.

The mirror case, a revocation made through a node that is cut off, reaches no other node:
its commit is in the database but its event waits in that node's queue, and the others'
subscriptions never broke. So every node queues a beat every `beat_every` seconds behind its
events (a beat heard means the events before it were), and a node not heard from for
`silent_after` makes the others decide again every `cut_off_every` seconds until it is heard
again, or for `forget_after` (then it is taken for stopped; a node that stops says goodbye
and is not waited for). Until 2026-12-07 the others went on tracking, seeding and web-seeding
what such a node revoked for as long as its cut lasted.

Events wait for Redis in a bounded queue (`max_queued`); one that does not fit is dropped,
and the next message this node sends is a gap marker, on which every other node calls
`on_gap` as above. Until 2026-12-07 a node that could not reach Redis for long enough
dropped its events silently: the other nodes, whose own subscriptions never broke, kept
serving what those events revoked.

A node tells its own messages from the others' by its process's `instance`, not by its
node id alone, and claims its node id in Redis (`s3t:node:ID`, renewed with every beat and
expiring `silent_after` + `beat_every` after the last): a node started under an id another
running node holds (a copied data directory, whose `node-id` came with it, or the same
S3TORRENT_NODE_ID twice) waits for the claim to expire, as a crashed predecessor's does,
and refuses to start if it is renewed. Until 2026-12-08 such twins started, and each
ignored the other's events as its own: a revocation made through one never reached the
other. A twin that still meets us (the claim lost with a Redis restart, or an older
version that sends no instance) is logged as an error and its events are applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import secrets
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from s3torrent.config import StartupError
from s3torrent.events import Event, EventBus, decode_event_from, encode_event
from s3torrent.failures import logged_failure

log = logging.getLogger(__name__)

_MAX_QUEUED = 100_000
PING_EVERY = 1.0
SILENT_AFTER = 3.0
PUBLISH_TIMEOUT = 2.0
# While the subscription is down, or another node has gone silent: how often what events
# decided is decided again.
CUT_OFF_EVERY = 1.0
# Each node says it is there this often; one not heard for SILENT_AFTER may be cut off with
# events it cannot send, until FORGET_AFTER (then it is taken for stopped).
BEAT_EVERY = 1.0
FORGET_AFTER = 60.0


CHANNEL = "s3t:events"
# The key a running node's claim of its node id lives under (NODE_CLAIM + node id).
NODE_CLAIM = "s3t:node:"
# Takes the claim (KEYS[1]) for instance ARGV[1] for ARGV[2] ms if free or ours; returns the
# other holder's instance if another holds it.
_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
# Gives the claim up if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def events_channel(client: aioredis.Redis, base: str = CHANNEL) -> str:
    """The relay's channel for the database `client` selected. Pub/sub channels are one
    namespace for a whole Redis server, whatever database a client selected (keys are per
    database): two deployments on one server told apart by their database numbers
    (redis://host/1, redis://host/2) heard each other's events and beats until 2026-12-07.
    Database 0 keeps the name it had, so nodes upgraded one by one still hear each other."""
    db = int(client.connection_pool.connection_kwargs.get("db") or 0)
    return base if db == 0 else f"{base}:db{db}"


class RedisEventRelay:
    """Subscribe it to the bus, `start()` it, and events flow both ways."""

    def __init__(
        self,
        bus: EventBus,
        client: aioredis.Redis,
        *,
        channel: str | None = None,
        node_id: str | None = None,
        reconnect_delay: float = 0.5,
        on_gap: Callable[[], None] | None = None,
        ping_every: float = PING_EVERY,
        silent_after: float = SILENT_AFTER,
        publish_timeout: float = PUBLISH_TIMEOUT,
        max_queued: int = _MAX_QUEUED,
        cut_off_every: float = CUT_OFF_EVERY,
        beat_every: float = BEAT_EVERY,
        forget_after: float = FORGET_AFTER,
    ) -> None:
        self.bus = bus
        self.client = client
        self.channel = channel if channel is not None else events_channel(client)
        self.node_id = node_id or secrets.token_hex(8)
        # This process: what tells our own messages from those of another process that
        # has our node id (see the module's doc).
        self.instance = secrets.token_hex(8)
        self._claim_key = NODE_CLAIM + self.node_id
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._twins: set[str | None] = set()
        self.reconnect_delay = reconnect_delay
        self.on_gap = on_gap
        self.ping_every = ping_every
        self.silent_after = silent_after
        self.publish_timeout = publish_timeout
        self.cut_off_every = cut_off_every
        self.beat_every = beat_every
        self.forget_after = forget_after
        # When each other node was last heard (loop time), and which of them are silent.
        self._heard: dict[str, float] = {}
        self._silent: set[str] = set()
        self._silence_decided = 0.0
        self._beat = _control_message(self.node_id, "beat", self.instance)
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue(max_queued)
        # Events dropped since the last gap marker went out (see the module's doc).
        self._lost = False
        self._relaying = False
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self.last_error = ""
        """Why the last subscription failed (for a start that timed out)."""
        self.sent = 0
        self.received = 0
        self.dropped = 0
        self.gaps = 0

    @classmethod
    def from_url(cls, bus: EventBus, url: str, **kw: Any) -> RedisEventRelay:
        return cls(bus, aioredis.Redis.from_url(url), **kw)

    def on_event(self, event: Event) -> None:
        """Subscribed to the local bus: queue our own events for the channel."""
        if self._relaying:
            return  # came from another node: do not echo it back
        try:
            self._outbox.put_nowait(encode_event(event, self.node_id, self.instance))
        except asyncio.QueueFull:
            if not self._lost:
                log.warning("event relay: queue full; dropping events (the others will re-decide)")
            self.dropped += 1
            self._lost = True

    @property
    def claim_ttl(self) -> float:
        """How long our claim of the node id outlives our last beat."""
        return self.silent_after + self.beat_every

    async def start(self, timeout: float = 10.0) -> None:
        """Claim the node id, then start relaying; returns once subscribed (bounded by
        timeout). StartupError if another running node holds our node id."""
        await self._claim_node_id(timeout)
        self.bus.subscribe(self.on_event)
        self._tasks = [
            asyncio.create_task(self._send_forever()),
            asyncio.create_task(self._receive_forever()),
            asyncio.create_task(self._beat_forever()),
        ]
        await asyncio.wait_for(self._subscribed.wait(), timeout)

    async def _send_forever(self) -> None:
        while True:
            payload = await self._outbox.get()
            if self._lost:
                # Before what is queued: the others decide again from the database, which
                # holds every dropped event's commit already.
                self._lost = False
                await self._publish(_control_message(self.node_id, "gap", self.instance))
            await self._publish(payload)
            if payload is not self._beat:
                self.sent += 1

    async def _beat_forever(self) -> None:
        """Queued behind our events: a node that hears our beat has heard them all. The
        first goes at once, so the others know us from our start."""
        while True:
            with contextlib.suppress(asyncio.QueueFull):
                self._outbox.put_nowait(self._beat)
            await self._renew_claim()
            await asyncio.sleep(self.beat_every)

    async def _try_claim(self) -> str | None:
        """Take or renew our claim of the node id; the other holder's instance, if any."""
        held = await asyncio.wait_for(
            self._claim(
                keys=[self._claim_key],
                args=[self.instance, max(1, math.ceil(self.claim_ttl * 1000))],
            ),
            self.publish_timeout,
        )
        return None if held is None else _text(held)

    async def _claim_node_id(self, timeout: float) -> None:
        """Take the node id's claim, waiting for one that is not renewed (a predecessor
        that crashed) to expire; StartupError if it is renewed (another running node)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.claim_ttl + 0.5
        try:
            async with asyncio.timeout(max(timeout, self.claim_ttl + 1.0)):
                while (held := await self._try_claim()) is not None:
                    if loop.time() >= deadline:
                        raise StartupError(_twin_refusal(self.node_id, held))
                    await asyncio.sleep(min(0.2, self.beat_every))
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
            self.last_error = str(exc)
            raise TimeoutError(self.last_error) from exc

    async def _renew_claim(self) -> None:
        try:
            held = await self._try_claim()
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError, TimeoutError):
            return  # Redis out of reach: the subscription's own checks deal with it
        if held is not None:
            self._twin(held)

    def _twin(self, instance: str | None) -> None:
        """Another process runs under our node id: say so (once per process); its messages
        are taken as another node's, never ignored as ours."""
        if instance in self._twins:
            return
        self._twins.add(instance)
        log.error(
            "event relay: another running process uses this node id %r (%s); its events "
            "are applied here, but hashing claims and leases are not safe: %s",
            self.node_id,
            f"instance {instance}" if instance else "an older version",
            _TWIN_ADVICE,
        )

    async def _publish(self, payload: bytes) -> None:
        while True:
            try:
                # Cancelled on timeout, redis-py drops the connection: the next try takes a
                # new one.
                await asyncio.wait_for(
                    self.client.publish(self.channel, payload), self.publish_timeout
                )
                return
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                log.warning("event relay: publish failed (%s); retrying", exc)
                await asyncio.sleep(self.reconnect_delay)

    async def _receive_forever(self) -> None:
        loop = asyncio.get_running_loop()
        decided = -self.cut_off_every
        while True:
            # Confirmations too: each one after the first ends a gap (see the module's doc).
            pubsub = self.client.pubsub(ignore_subscribe_messages=False)
            try:
                await asyncio.wait_for(pubsub.subscribe(self.channel), self.silent_after)
                heard = pinged = loop.time()
                while True:
                    msg = await pubsub.get_message(timeout=self.ping_every)
                    now = loop.time()
                    if msg is not None:
                        heard = now  # a message, a confirmation or a pong: the line is alive
                        if msg.get("type") == "message":
                            self._deliver(msg["data"])
                        elif msg.get("type") == "subscribe":
                            self._confirmed()
                    if now - heard >= self.silent_after:
                        raise aioredis.TimeoutError(f"nothing heard for {now - heard:.1f} s")
                    self._check_others(now)
                    if now - pinged >= self.ping_every:
                        pinged = now
                        await asyncio.wait_for(pubsub.ping(), self.ping_every)
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                self.last_error = str(exc)
                log.warning("event relay: subscription lost (%s); events may be missed", exc)
                if self._subscribed.is_set() and loop.time() - decided >= self.cut_off_every:
                    decided = loop.time()
                    self._decide_while_cut_off()
                await asyncio.sleep(self.reconnect_delay)
            finally:
                with logged_failure(log, "event relay: closing the subscription"):
                    # Bounded: closing a silent connection may wait for the peer.
                    await asyncio.wait_for(pubsub.aclose(), self.ping_every)  # type: ignore[no-untyped-call]

    def _confirmed(self) -> None:
        """Redis confirmed our subscription: the first time, we are started; after that,
        events published since the last one may have been missed."""
        if not self._subscribed.is_set():
            self._subscribed.set()
            return
        self._gap("subscribed again")

    def _heard_from(self, node: str) -> None:
        self._heard[node] = asyncio.get_running_loop().time()
        if node in self._silent:
            self._silent.discard(node)
            log.warning("event relay: node %s heard again", node)

    def _check_others(self, now: float) -> None:
        """Another node not heard for `silent_after` may be the one cut off: a revocation
        made there is committed but its event cannot leave it, and our own subscription
        never broke. Decide again from the database every `cut_off_every` seconds until
        it is heard again (its events then arrive) or `forget_after` has passed."""
        for node, heard in list(self._heard.items()):
            if now - heard >= self.forget_after:
                del self._heard[node]
                self._silent.discard(node)
            elif now - heard >= self.silent_after and node not in self._silent:
                self._silent.add(node)
                log.warning("event relay: node %s silent; deciding again until heard", node)
        if self._silent and now - self._silence_decided >= self.cut_off_every:
            self._silence_decided = now
            self._decide_while_cut_off()

    def _decide_while_cut_off(self) -> None:
        """Cut off from the channel, we hear no revocation another node makes: decide again
        from the database (which holds each one's commit) every `cut_off_every` seconds
        until subscribed again, rather than go on serving on what we last heard."""
        if self.on_gap is not None:
            with logged_failure(log, "event relay: deciding again while cut off"):
                self.on_gap()

    def _gap(self, why: str) -> None:
        self.gaps += 1
        log.warning("event relay: %s; deciding again what events decided", why)
        if self.on_gap is not None:
            with logged_failure(log, "event relay: after a gap"):
                self.on_gap()

    def _deliver(self, raw: bytes) -> None:
        try:
            sender, instance, event = decode_event_from(raw)
        except ValueError:
            control = _control_sender(raw)
            if control is None:
                log.warning("event relay: ignoring a malformed message")
                return
            node, kind, instance = control
            if node == self.node_id:
                if instance == self.instance:
                    return
                self._twin(instance)
            if kind == "bye":  # stopped: nothing more to wait for
                self._heard.pop(node, None)
                self._silent.discard(node)
                return
            self._heard_from(node)
            if kind == "gap":
                self._gap(f"node {node} dropped events")
            return
        if sender == self.node_id:
            if instance == self.instance:
                return
            self._twin(instance)
        self._heard_from(sender)
        self.received += 1
        self._relaying = True
        try:
            self.bus.publish(event, relayed=True)
        finally:
            self._relaying = False

    async def close(self, drain_timeout: float = 2.0) -> None:
        """Send what is queued (bounded), then stop."""
        deadline = asyncio.get_running_loop().time() + drain_timeout
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(_control_message(self.node_id, "bye", self.instance))
        while not self._outbox.empty() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError), logged_failure(log, "event relay"):
                await task
        with logged_failure(log, "event relay: giving up the node id's claim"):
            await asyncio.wait_for(
                self._release(keys=[self._claim_key], args=[self.instance]), self.publish_timeout
            )
        with logged_failure(log, "event relay: closing the Redis client"):
            await self.client.aclose()


_TWIN_ADVICE = (
    "give each node its own S3TORRENT_NODE_ID, or, on a node whose data directory is a "
    "copy of another's, delete data_dir/node-id so that it makes one of its own"
)


def _twin_refusal(node_id: str, holder: str) -> str:
    return (
        f"the node id {node_id!r} is in use by another running s3torrent node on this Redis "
        f"(instance {holder}); two nodes under one id ignore each other's events, "
        f"revocations included: {_TWIN_ADVICE}"
    )


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _control_message(node: str, kind: str, instance: str) -> bytes:
    """A message of the relay's own: a gap marker, a beat or a goodbye."""
    return json.dumps({"node": node, kind: True, "inst": instance}).encode()


def _control_sender(raw: bytes) -> tuple[str, str, str | None] | None:
    """(node, "gap" | "beat" | "bye", sending instance or None) of a relay's own message,
    or None if raw is not one."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(node := body.get("node"), str):
        return None
    instance = body.get("inst")
    for kind in ("gap", "beat", "bye"):
        if body.get(kind) is True:
            return node, kind, instance if isinstance(instance, str) else None
    return None
