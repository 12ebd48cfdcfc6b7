"""The WebTorrent tracker protocol (JSON over WebSocket), sans IO: messages in, actions out.

Browsers cannot accept connections, so a WebSocket tracker hands out no addresses: an
announce carries WebRTC offers (an `offer_id` and an SDP each), the tracker relays each offer
to one other peer of the swarm, and that peer's `answer` (addressed by `to_peer_id`) is
relayed back to the offerer, who then connects directly. `info_hash`, `peer_id`, `offer_id`
and `to_peer_id` are 20-byte binary strings carried as JSON strings of code points 0-255.

`WsTracker` holds the swarms of one process: which peer ids announced which torrents on
which connection. It never awaits and reads no clock; the WebSocket layer (`tracker/ws.py`)
asks the one access decision before it calls `announce` or `scrape` and performs the
returned `Send` and `Close` actions. A revocation `suspend`s a swarm (nothing is relayed for
it from then on) while the layer asks the decision again for each of its sockets' addresses;
`resume` puts back the peers still admitted and tells the others the torrent is no longer
public: a change that leaves a torrent public (a bucket's tags, a policy statement about
something else) revokes it and publishes it again, and its browsers stay in its swarm.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from s3torrent.tracker.registry import rate_limit_source

ID_LENGTH = 20
_MAX_COUNT = 1 << 62
# Offers relayed to one connection and not answered yet, remembered so that an answer goes
# only to the peer whose offer it answers (oldest forgotten first; WebTorrent gives up on
# an offer after 50 s).
MAX_PENDING_OFFERS = 256
NO_SUCH_OFFER = "answer to no offer of yours"


class WsProtocolError(Exception):
    """A message we cannot read: answered with a `failure reason`, never a crash."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WsLimits:
    # WebTorrent's offers are a few KiB of SDP each, at most 5 per announce.
    max_message_bytes: int = 64 * 1024
    max_offers: int = 10
    max_peers_per_swarm: int = 1000
    max_connections_per_ip: int = 32
    max_swarms_per_connection: int = 64
    max_scrape_hashes: int = 64
    # WebTorrent re-announces every `interval` seconds over its open socket.
    interval: int = 120
    idle_timeout: float = 300.0


@dataclass(frozen=True, slots=True)
class Offer:
    offer_id: bytes
    offer: Any  # the RTCSessionDescription object, relayed as the browser sent it


@dataclass(frozen=True, slots=True)
class WsAnnounce:
    info_hash: bytes
    peer_id: bytes
    event: str | None
    left: int | None  # None: unknown (a browser that has not read the metadata yet)
    uploaded: int
    downloaded: int
    numwant: int
    offers: tuple[Offer, ...]


@dataclass(frozen=True, slots=True)
class WsAnswer:
    info_hash: bytes
    peer_id: bytes
    to_peer_id: bytes
    offer_id: bytes
    answer: Any


@dataclass(frozen=True, slots=True)
class WsScrape:
    info_hashes: tuple[bytes, ...]


WsRequest = WsAnnounce | WsAnswer | WsScrape


@dataclass(frozen=True, slots=True)
class Send:
    """Send this JSON text on connection `conn`."""

    conn: int
    text: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close connection `conn` (after what was queued for it is sent)."""

    conn: int
    reason: str


Action = Send | Close


def binary_string(value: bytes) -> str:
    """A binary id as the JSON string WebTorrent uses: one code point per byte."""
    return value.decode("latin-1")


def _binary_id(params: dict[str, Any], name: str) -> bytes:
    value = params.get(name)
    if not isinstance(value, str) or len(value) != ID_LENGTH:
        raise WsProtocolError(f"invalid {name}")
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        raise WsProtocolError(f"invalid {name}") from None


def _count(params: dict[str, Any], name: str) -> int:
    value = params.get(name, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WsProtocolError(f"invalid {name}")
    if isinstance(value, float) and not math.isfinite(value):
        raise WsProtocolError(f"invalid {name}")
    return max(0, min(int(value), _MAX_COUNT))


def parse_message(text: str | bytes, limits: WsLimits) -> WsRequest:
    """One client message as a request value; WsProtocolError for anything else."""
    if len(text) > limits.max_message_bytes:
        raise WsProtocolError("message too large")
    try:
        params = json.loads(text)
    except (ValueError, RecursionError):
        raise WsProtocolError("invalid JSON") from None
    if not isinstance(params, dict):
        raise WsProtocolError("a message is a JSON object")
    action = params.get("action")
    if action == "announce":
        return _parse_announce(params, limits)
    if action == "scrape":
        return _parse_scrape(params, limits)
    raise WsProtocolError("invalid action")


def _parse_announce(params: dict[str, Any], limits: WsLimits) -> WsAnnounce | WsAnswer:
    info_hash = _binary_id(params, "info_hash")
    peer_id = _binary_id(params, "peer_id")
    if "answer" in params:
        return WsAnswer(
            info_hash,
            peer_id,
            _binary_id(params, "to_peer_id"),
            _binary_id(params, "offer_id"),
            params["answer"],
        )
    event = params.get("event")
    if event is not None and event not in ("started", "stopped", "completed", "update"):
        raise WsProtocolError("invalid event")
    raw_offers = params.get("offers") or []
    if not isinstance(raw_offers, list):
        raise WsProtocolError("invalid offers")
    if len(raw_offers) > limits.max_offers:
        raise WsProtocolError(f"too many offers (at most {limits.max_offers})")
    offers = []
    for raw in raw_offers:
        if not isinstance(raw, dict) or "offer" not in raw:
            raise WsProtocolError("invalid offer")
        offers.append(Offer(_binary_id(raw, "offer_id"), raw["offer"]))
    left_raw = params.get("left")
    # WebTorrent sends left=Infinity (JSON null) before it knows the torrent's length.
    left = None if left_raw is None else _count(params, "left")
    numwant = min(_count(params, "numwant"), len(offers))
    return WsAnnounce(
        info_hash,
        peer_id,
        event,
        left,
        _count(params, "uploaded"),
        _count(params, "downloaded"),
        numwant,
        tuple(offers),
    )


def _parse_scrape(params: dict[str, Any], limits: WsLimits) -> WsScrape:
    raw = params.get("info_hash")
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not items:
        raise WsProtocolError("full scrape not supported")
    if len(items) > limits.max_scrape_hashes:
        raise WsProtocolError(f"too many info_hash (at most {limits.max_scrape_hashes})")
    return WsScrape(tuple(_binary_id({"info_hash": item}, "info_hash") for item in items))


def failure(reason: str, action: str | None = None, info_hash: bytes | None = None) -> str:
    """A `failure reason` message, naming the action and torrent when they are known."""
    body: dict[str, Any] = {"failure reason": reason}
    if action is not None:
        body["action"] = action
    if info_hash is not None:
        body["info_hash"] = binary_string(info_hash)
    return json.dumps(body)


def _increase(reported: int, before: int) -> int:
    """What a counter grew by; a browser that restarted counts from zero again."""
    return reported - before if reported >= before else reported


@dataclass(slots=True)
class _Peer:
    conn: int
    seeding: bool
    # What the browser last reported, to add only what it transferred since.
    uploaded: int = 0
    downloaded: int = 0
    # Its `completed` was counted: once per peer, as the HTTP tracker's registry counts.
    completed: bool = False


@dataclass(slots=True)
class _Connection:
    ip: str
    # (info hash, peer id) pairs this connection announced and has not stopped.
    memberships: set[tuple[bytes, bytes]] = field(default_factory=set)
    # Offers relayed to it, by offer id: (info hash, the offerer's peer id).
    offers: dict[bytes, tuple[bytes, bytes]] = field(default_factory=dict)

    def offered(self, offer_id: bytes, info_hash: bytes, peer_id: bytes) -> None:
        self.offers.pop(offer_id, None)
        self.offers[offer_id] = (info_hash, peer_id)
        if len(self.offers) > MAX_PENDING_OFFERS:
            del self.offers[next(iter(self.offers))]


@dataclass(frozen=True, slots=True)
class WsSwarmStats:
    complete: int
    incomplete: int
    completed: int  # `completed` events seen (scrape's `downloaded`)
    uploaded: int  # bytes, summed from each browser's reported increases
    downloaded: int


@dataclass(slots=True)
class _Suspended:
    """A swarm taken out of relaying while its torrent's access is decided again."""

    generation: int
    peers: dict[bytes, _Peer]


class WsTracker:
    """The WebSocket swarms of one process, and the connections in them."""

    def __init__(self, limits: WsLimits | None = None, rng: random.Random | None = None):
        self.limits = limits or WsLimits()
        self._rng = rng or random.Random()
        self._swarms: dict[bytes, dict[bytes, _Peer]] = {}
        self._completed: dict[bytes, int] = {}
        # Per swarm: bytes uploaded and downloaded, as the browsers reported them.
        self._transferred: dict[bytes, list[int]] = {}
        self._connections: dict[int, _Connection] = {}
        self._per_ip: dict[str, int] = {}
        self._suspended: dict[bytes, _Suspended] = {}
        self._generation = 0

    # ---- connections ----

    def connect(self, conn: int, ip: str) -> bool:
        """A new connection from ip; False when its source (an IPv4 address, an IPv6 /64:
        one subscriber, as the announce budget counts) has too many already."""
        source = rate_limit_source(ip)
        if self._per_ip.get(source, 0) >= self.limits.max_connections_per_ip:
            return False
        self._per_ip[source] = self._per_ip.get(source, 0) + 1
        self._connections[conn] = _Connection(ip)
        return True

    def disconnect(self, conn: int) -> None:
        """The connection closed: it leaves every swarm it was in."""
        state = self._connections.pop(conn, None)
        if state is None:
            return
        source = rate_limit_source(state.ip)
        left = self._per_ip.get(source, 1) - 1
        if left:
            self._per_ip[source] = left
        else:
            self._per_ip.pop(source, None)
        for info_hash, peer_id in state.memberships:
            self._remove(info_hash, peer_id, conn)

    @property
    def connections(self) -> int:
        return len(self._connections)

    def peers(self, info_hash: bytes) -> int:
        return len(self._swarms.get(info_hash, {}))

    def _remove(self, info_hash: bytes, peer_id: bytes, conn: int) -> None:
        """Take conn's peer_id out of the swarm (another socket's peer of that id stays)."""
        swarm = self._swarms.get(info_hash)
        peer = swarm.get(peer_id) if swarm is not None else None
        if swarm is None or peer is None or peer.conn != conn:
            return
        del swarm[peer_id]
        if not swarm:
            del self._swarms[info_hash]

    # ---- requests ----

    def refuse(self, conn: int, request: WsRequest, reason: str) -> list[Action]:
        """The access decision said no: the announce or scrape gets a failure reason."""
        if isinstance(request, WsScrape):
            return [Send(conn, failure(reason, "scrape"))]
        return [Send(conn, failure(reason, "announce", request.info_hash))]

    def announce(self, conn: int, request: WsAnnounce) -> list[Action]:
        """An admitted announce: join (or leave) the swarm and relay the offers."""
        state = self._connections.get(conn)
        if state is None:
            return [Close(conn, "not connected")]
        info_hash, peer_id = request.info_hash, request.peer_id
        swarm = self._swarms.get(info_hash, {})
        known = swarm.get(peer_id)
        if known is not None and known.conn != conn:
            return [Send(conn, failure("peer id in use", "announce", info_hash))]
        if request.event == "stopped":
            self._remove(info_hash, peer_id, conn)
            # Also out of a suspended swarm: it is not put back.
            state.memberships.discard((info_hash, peer_id))
            return []
        if known is None:
            if len(swarm) >= self.limits.max_peers_per_swarm:
                return [Send(conn, failure("swarm full", "announce", info_hash))]
            if len(state.memberships) >= self.limits.max_swarms_per_connection:
                return [Send(conn, failure("too many torrents on one socket", "announce"))]
            swarm = self._swarms.setdefault(info_hash, swarm)
            known = swarm[peer_id] = _Peer(conn, seeding=False)
            if request.event != "started":
                # Totals since the browser started the torrent, first seen here on this
                # socket (WebTorrent announces so when its socket comes back): counted
                # before, or not known to be new; they are its baseline (registry._Peer).
                known.uploaded, known.downloaded = request.uploaded, request.downloaded
            state.memberships.add((info_hash, peer_id))
        seeding = request.left == 0
        if seeding and not known.completed and request.event == "completed":
            known.completed = True
            self._completed[info_hash] = self._completed.get(info_hash, 0) + 1
        known.seeding = seeding
        totals = self._transferred.setdefault(info_hash, [0, 0])
        totals[0] += _increase(request.uploaded, known.uploaded)
        totals[1] += _increase(request.downloaded, known.downloaded)
        known.uploaded, known.downloaded = request.uploaded, request.downloaded
        actions: list[Action] = [Send(conn, self._announce_response(info_hash))]
        others = [(pid, p) for pid, p in swarm.items() if p.conn != conn]
        chosen = self._rng.sample(others, min(request.numwant, len(others)))
        for (_, target), offer in zip(chosen, request.offers, strict=False):
            target_state = self._connections.get(target.conn)
            if target_state is not None:
                target_state.offered(offer.offer_id, info_hash, peer_id)
            relayed = {
                "action": "announce",
                "offer": offer.offer,
                "offer_id": binary_string(offer.offer_id),
                "peer_id": binary_string(peer_id),
                "info_hash": binary_string(info_hash),
            }
            actions.append(Send(target.conn, json.dumps(relayed)))
        return actions

    def answer(self, conn: int, request: WsAnswer) -> list[Action]:
        """Relay an answer to the offerer: only a member of the swarm may answer, and only
        an offer relayed to it from that peer, once."""
        swarm = self._swarms.get(request.info_hash, {})
        sender = swarm.get(request.peer_id)
        if sender is None or sender.conn != conn:
            return [Send(conn, failure("answer from outside the swarm", "announce"))]
        state = self._connections.get(conn)
        offered = state.offers.pop(request.offer_id, None) if state is not None else None
        if offered != (request.info_hash, request.to_peer_id):
            return [Send(conn, failure(NO_SUCH_OFFER, "announce", request.info_hash))]
        target = swarm.get(request.to_peer_id)
        if target is None:
            return []  # the offerer left meanwhile; its browser times the offer out
        relayed = {
            "action": "announce",
            "answer": request.answer,
            "offer_id": binary_string(request.offer_id),
            "peer_id": binary_string(request.peer_id),
            "info_hash": binary_string(request.info_hash),
        }
        return [Send(target.conn, json.dumps(relayed))]

    def scrape(self, conn: int, admitted: tuple[bytes, ...]) -> list[Action]:
        """Counts of the admitted info-hashes (others are left out, as HTTP scrape does)."""
        files = {}
        for info_hash in admitted:
            stats = self.stats(info_hash)
            files[binary_string(info_hash)] = {
                "complete": stats.complete,
                "incomplete": stats.incomplete,
                "downloaded": stats.completed,
            }
        return [Send(conn, json.dumps({"action": "scrape", "files": files}))]

    def stats(self, info_hash: bytes) -> WsSwarmStats:
        swarm = self._swarms.get(info_hash, {})
        complete = sum(1 for p in swarm.values() if p.seeding)
        uploaded, downloaded = self._transferred.get(info_hash, (0, 0))
        return WsSwarmStats(
            complete,
            len(swarm) - complete,
            self._completed.get(info_hash, 0),
            uploaded,
            downloaded,
        )

    def revoke(self, info_hash: bytes, reason: str = "torrent is no longer public") -> list[Action]:
        """The torrent stopped being public: tell its peers, and close sockets left idle."""
        generation = self.suspend(info_hash)
        return [] if generation is None else self.resume(info_hash, generation, (), reason)

    def suspend(self, info_hash: bytes) -> int | None:
        """The torrent was revoked: relay nothing for it from now on, and hold its peers
        until `resume` with the generation returned (None: it had none). A later suspension
        before that resume holds them too, and only its own resume counts. The counters
        start again from zero, as for a swarm registered again."""
        swarm = self._swarms.pop(info_hash, None)
        self._completed.pop(info_hash, None)
        self._transferred.pop(info_hash, None)
        held = self._suspended.get(info_hash)
        if not swarm and held is None:
            return None
        self._generation += 1
        if held is None:
            held = self._suspended[info_hash] = _Suspended(self._generation, {})
        held.generation = self._generation
        for peer_id, peer in (swarm or {}).items():
            held.peers[peer_id] = peer
        return held.generation

    def suspended_addresses(self, info_hash: bytes) -> dict[int, str]:
        """The connections (and their addresses) holding peers of a suspended swarm."""
        held = self._suspended.get(info_hash)
        if held is None:
            return {}
        found = {p.conn: self._connections.get(p.conn) for p in held.peers.values()}
        return {conn: state.ip for conn, state in found.items() if state is not None}

    def resume(
        self,
        info_hash: bytes,
        generation: int,
        admitted: Collection[int],
        reason: str = "torrent is no longer public",
    ) -> list[Action]:
        """The decision was asked again for suspension `generation`: the peers of the
        connections in `admitted` rejoin the swarm (unless they left, or rejoined by
        announcing meanwhile); the others are told the reason, and a socket left with no
        torrent is closed. A stale generation (suspended again since) does nothing."""
        held = self._suspended.get(info_hash)
        if held is None or held.generation != generation:
            return []
        del self._suspended[info_hash]
        actions: list[Action] = []
        text = failure(reason, "announce", info_hash)
        for peer_id, peer in held.peers.items():
            state = self._connections.get(peer.conn)
            if state is None or (info_hash, peer_id) not in state.memberships:
                continue  # gone, or stopped meanwhile
            swarm = self._swarms.get(info_hash, {})
            current = swarm.get(peer_id)
            if current is not None and current.conn == peer.conn:
                continue  # announced again meanwhile, and was admitted
            if peer.conn in admitted and current is None:
                self._swarms.setdefault(info_hash, swarm)[peer_id] = peer
                continue
            actions.append(Send(peer.conn, text))
            state.memberships.discard((info_hash, peer_id))
            if not state.memberships:
                actions.append(Close(peer.conn, reason))
        return actions

    def _announce_response(self, info_hash: bytes) -> str:
        stats = self.stats(info_hash)
        return json.dumps(
            {
                "action": "announce",
                "interval": self.limits.interval,
                "info_hash": binary_string(info_hash),
                "complete": stats.complete,
                "incomplete": stats.incomplete,
            }
        )
