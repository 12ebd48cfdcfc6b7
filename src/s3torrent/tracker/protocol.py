"""Tracker wire formats, pure: HTTP announce/scrape (BEP 3, 7, 23, 48) and UDP (BEP 15).

Every transport's parser yields the same `AnnounceRequest` / `ScrapeRequest` values, so one
handler answers all of them. Info-hashes and peer ids stay raw bytes end to end.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Final

# fastbencode is py.typed but re-exports without __all__, which strict mypy rejects.
from fastbencode import bencode  # type: ignore[attr-defined]

_PORT: Final = struct.Struct(">H")
INFO_HASH_LENGTH: Final = 20
PEER_ID_LENGTH: Final = 20
# BEP 3 numbers are 64-bit on every client; anything larger is garbage or an attack on int().
MAX_NUMBER: Final = 2**63 - 1
MAX_QUERY_BYTES: Final = 4096


class TrackerError(Exception):
    """A request the tracker refuses; `reason` is safe to send back to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AnnounceEvent(StrEnum):
    NONE = ""
    STARTED = "started"
    COMPLETED = "completed"
    STOPPED = "stopped"
    # BEP 21: libtorrent sends it for upload-only torrents; it is a regular announce otherwise.
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class AnnounceRequest:
    info_hash: bytes
    peer_id: bytes
    ip: str  # where the peer is reachable, decided by the handler (socket or trusted `ip`)
    port: int
    uploaded: int
    downloaded: int
    left: int
    event: AnnounceEvent
    numwant: int
    compact: bool
    no_peer_id: bool
    key: bytes | None
    trackerid: bytes | None
    # Things the client should know about how its request was read (BEP 3 `warning message`).
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ScrapeRequest:
    info_hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PeerAddress:
    ip: str
    port: int
    peer_id: bytes | None = None  # None for peers we did not learn from an announce (origins)
    # The BEP 23 / BEP 7 entry, packed once here so answering an announce is a byte join:
    # 6 bytes for IPv4, 18 for IPv6, empty when `ip` is not an address literal.
    compact: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compact", pack_compact_peer(self.ip, self.port))


def pack_compact_peer(ip: str, port: int) -> bytes:
    """`ip:port` as a compact peer entry; empty if `ip` is not an IP address literal."""
    # inet_pton and struct, not ipaddress objects (several times slower). Peer ips are
    # canonical already (normalize_ip), so ":" tells the family.
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        return socket.inet_pton(family, ip) + _PORT.pack(port)
    except (OSError, ValueError, struct.error):
        return b""  # not an address literal or port (a misconfigured origin): not packable


@dataclass(frozen=True, slots=True)
class ScrapeStats:
    complete: int
    incomplete: int
    downloaded: int


@lru_cache(maxsize=65536)  # called on every request, for a small set of addresses
def normalize_ip(text: str) -> str:
    """Canonical text of an IP literal; IPv4-mapped IPv6 becomes plain IPv4.

    Dual-stack sockets report IPv4 clients as ::ffff:a.b.c.d; they are IPv4 peers and must
    land in the compact IPv4 list.
    """
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        raise TrackerError("ip must be an IP address literal") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_ipv6(ip: str) -> bool:
    return ":" in ip


# --- HTTP requests -------------------------------------------------------------------------

# Every two-hex-digit escape body, in any letter case, and the byte it stands for.
_ESCAPES: Final = {
    f"{hi}{lo}".encode("ascii"): bytes([int(hi + lo, 16)])
    for hi in "0123456789abcdefABCDEF"
    for lo in "0123456789abcdefABCDEF"
}


def _percent_decode(raw: bytes) -> bytes:
    # Strict, and '+' stays a literal byte: BEP 3 values are RFC 3986 percent-encoded binary,
    # not HTML form text, so a lenient decoder could silently turn a bad hash into another one
    # (urllib's unquote_to_bytes keeps a bad escape as is). A bad or short escape has no entry
    # in _ESCAPES, so the lookup that decodes also validates.
    if b"%" not in raw:
        return raw
    return _decode_escaped(raw)


@lru_cache(maxsize=8192)
def _decode_escaped(raw: bytes) -> bytes:
    # Cached: the same info-hash comes in every announce of its swarm, and each peer sends
    # the same peer id every time. An exception is not cached, so a bad value costs each time.
    first, *escaped = raw.split(b"%")
    try:
        return first + b"".join([_ESCAPES[part[:2]] + part[2:] for part in escaped])
    except KeyError:
        raise TrackerError("malformed percent-encoding in query") from None


def _split_query(raw_query: bytes, max_bytes: int) -> list[tuple[bytes, bytes]]:
    if len(raw_query) > max_bytes:
        raise TrackerError(f"query longer than {max_bytes} bytes")
    pairs: list[tuple[bytes, bytes]] = []
    for item in raw_query.split(b"&"):
        if not item:
            continue
        name, _, value = item.partition(b"=")
        # Tested here, not only in _percent_decode: most names and values have no escape,
        # and a call per pair is a measurable share of an announce.
        if b"%" in name:
            name = _percent_decode(name)
        if b"%" in value:
            value = _percent_decode(value)
        pairs.append((name, value))
    return pairs


def _parse_number(name: str, raw: bytes) -> int:
    # bytes.isdigit is ASCII-only (and False when empty), unlike int(), which takes "+1", " 1".
    if len(raw) > 19 or not raw.isdigit():
        raise TrackerError(f"{name} must be a non-negative integer below 2**63")
    value = int(raw)
    if value > MAX_NUMBER:
        raise TrackerError(f"{name} must be a non-negative integer below 2**63")
    return value


def _parse_flag(name: str, raw: bytes | None, *, default: bool = False) -> bool:
    if raw is None:
        return default
    if raw == b"0":
        return False
    if raw == b"1":
        return True
    raise TrackerError(f"{name} must be 0 or 1")


def _require_binary(name: str, raw: bytes | None, length: int) -> bytes:
    if raw is None:
        raise TrackerError(f"missing {name}")
    if len(raw) != length:
        raise TrackerError(f"{name} must be {length} bytes, got {len(raw)}")
    return raw


def _parse_port(raw: bytes | None) -> int:
    if raw is None:
        raise TrackerError("missing port")
    port = int(raw) if len(raw) < 6 and raw.isdigit() else _parse_number("port", raw)
    if not 1 <= port <= 65535:
        raise TrackerError("port must be between 1 and 65535")
    return port


def _parse_event(raw: bytes | None) -> AnnounceEvent:
    if raw is None:
        return AnnounceEvent.NONE
    event = _EVENTS.get(raw)
    if event is None:
        raise TrackerError("unknown event")
    return event


_EVENTS: Final = {event.value.encode("ascii"): event for event in AnnounceEvent}


def _clamp_numwant(requested: int | None, max_numwant: int, default_numwant: int) -> int:
    if requested is None:
        return min(default_numwant, max_numwant)
    return min(requested, max_numwant)


_ANNOUNCE_KEYS: Final = frozenset(
    {
        b"info_hash",
        b"peer_id",
        b"ip",
        b"port",
        b"uploaded",
        b"downloaded",
        b"left",
        b"event",
        b"numwant",
        b"compact",
        b"no_peer_id",
        b"key",
        b"trackerid",
    }
)


def _announce_values(raw_query: bytes, max_query_bytes: int) -> dict[bytes, bytes]:
    # _single_values(_split_query(...), _ANNOUNCE_KEYS) in one loop: the hot path of every
    # HTTP announce. Every name and value is decoded (a bad escape anywhere is refused).
    if len(raw_query) > max_query_bytes:
        raise TrackerError(f"query longer than {max_query_bytes} bytes")
    values: dict[bytes, bytes] = {}
    known = _ANNOUNCE_KEYS
    for item in raw_query.split(b"&"):
        if not item:
            continue
        name, _, value = item.partition(b"=")
        if b"%" in item:
            if b"%" in name:
                name = _decode_escaped(name)
            if b"%" in value:
                value = _decode_escaped(value)
        if name in known:
            if name in values:
                raise TrackerError(f"repeated parameter {name.decode('ascii', 'replace')}")
            values[name] = value
    return values


def _number(name: str, raw: bytes | None, default: int) -> int:
    if raw is None:
        return default
    # 18 digits are always below 2**63; longer, signed or empty values take the strict path.
    if len(raw) < 19 and raw.isdigit():
        return int(raw)
    return _parse_number(name, raw)


def parse_http_announce(
    raw_query: bytes,
    *,
    remote_ip: str,
    trust_ip_param: bool,
    max_numwant: int,
    default_numwant: int,
    max_query_bytes: int = MAX_QUERY_BYTES,
) -> AnnounceRequest:
    """Parse a raw (still percent-encoded) announce query string; raise TrackerError."""
    values = _announce_values(raw_query, max_query_bytes)
    get = values.get
    info_hash = get(b"info_hash")
    if info_hash is None or len(info_hash) != INFO_HASH_LENGTH:
        info_hash = _require_binary("info_hash", info_hash, INFO_HASH_LENGTH)
    peer_id = get(b"peer_id")
    if peer_id is None or len(peer_id) != PEER_ID_LENGTH:
        peer_id = _require_binary("peer_id", peer_id, PEER_ID_LENGTH)
    port = _parse_port(get(b"port"))
    left_raw = get(b"left")
    if left_raw is None:
        # Without it we cannot tell a seed from a leecher, and guessing skews every peer list.
        raise TrackerError("missing left")
    left = _number("left", left_raw, 0)
    uploaded = _number("uploaded", get(b"uploaded"), 0)
    downloaded = _number("downloaded", get(b"downloaded"), 0)
    numwant_raw = get(b"numwant")
    requested = None if numwant_raw is None else _number("numwant", numwant_raw, 0)
    ip_raw = get(b"ip")
    warnings: tuple[str, ...] = ()
    if trust_ip_param and ip_raw:
        ip = normalize_ip(ip_raw.decode("ascii", "replace"))
    else:
        ip = normalize_ip(remote_ip)
        if ip_raw:
            warnings = ("ip parameter ignored; peers see the address you connected from",)
    if requested is not None and requested > max_numwant:
        warnings = (*warnings, f"numwant capped at {max_numwant}")
    event_raw = get(b"event")
    compact_raw = get(b"compact")
    no_peer_id_raw = get(b"no_peer_id")
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=peer_id,
        ip=ip,
        port=port,
        uploaded=uploaded,
        downloaded=downloaded,
        left=left,
        event=AnnounceEvent.NONE if event_raw is None else _parse_event(event_raw),
        numwant=_clamp_numwant(requested, max_numwant, default_numwant),
        # BEP 23: compact is what every current client wants; a client that says nothing gets
        # it too (as opentracker does), and only an explicit compact=0 gets the dict list.
        compact=True
        if compact_raw is None or compact_raw == b"1"
        else _parse_flag("compact", compact_raw, default=True),
        no_peer_id=False if no_peer_id_raw is None else _parse_flag("no_peer_id", no_peer_id_raw),
        key=get(b"key"),
        trackerid=get(b"trackerid"),
        warnings=warnings,
    )


def parse_http_scrape(
    raw_query: bytes, max_hashes: int, *, max_query_bytes: int = MAX_QUERY_BYTES
) -> ScrapeRequest:
    """Parse a scrape query: zero or more info_hash values (zero means a full scrape)."""
    hashes: dict[bytes, None] = {}  # ordered set: a repeated hash is answered once
    for name, value in _split_query(raw_query, max_query_bytes):
        if name != b"info_hash":
            continue
        hashes[_require_binary("info_hash", value, INFO_HASH_LENGTH)] = None
        if len(hashes) > max_hashes:
            raise TrackerError(f"at most {max_hashes} info_hash values per scrape")
    return ScrapeRequest(tuple(hashes))


# --- HTTP responses ------------------------------------------------------------------------


def _pack_compact(peers: Iterable[PeerAddress], *, ipv6: bool) -> bytes:
    # The entries are packed already, so this is one join.
    size = 18 if ipv6 else 6
    return b"".join([peer.compact for peer in peers if len(peer.compact) == size])


def split_compact(peers: Sequence[PeerAddress]) -> tuple[bytes, bytes]:
    """The BEP 23 (IPv4) and BEP 7 (IPv6) compact lists of `peers`, unpackable ones left out."""
    entries = [peer.compact for peer in peers]
    joined = b"".join(entries)
    # The hot path of every announce: all IPv4, one join (an empty entry is an unpackable
    # origin, which could make a mix of lengths add up to 6 per peer).
    if len(joined) == 6 * len(entries) and b"" not in entries:
        return joined, b""
    return _pack_compact(peers, ipv6=False), _pack_compact(peers, ipv6=True)


def encode_announce_response(
    *,
    interval: int,
    min_interval: int,
    complete: int,
    incomplete: int,
    peers: Sequence[PeerAddress],
    compact: bool,
    no_peer_id: bool,
    warning: str | None = None,
    tracker_id: bytes | None = None,
) -> bytes:
    """Bencoded announce answer: BEP 23 `peers` + BEP 7 `peers6` when compact, else dicts."""
    if compact:
        # Written out, keys in bencode's sorted order: a dict and a general encoder cost more
        # than the rest of the answer.
        peers4, peers6 = split_compact(peers)
        parts = [
            b"d8:completei%de10:incompletei%de8:intervali%de12:min intervali%de5:peers%d:"
            % (complete, incomplete, interval, min_interval, len(peers4)),
            peers4,
        ]
        if peers6:
            parts += (b"6:peers6%d:" % len(peers6), peers6)
        if tracker_id is not None:
            parts += (b"10:tracker id%d:" % len(tracker_id), tracker_id)
        if warning is not None:
            text = warning.encode("utf-8")
            parts += (b"15:warning message%d:" % len(text), text)
        parts.append(b"e")
        return b"".join(parts)
    body: dict[bytes, object] = {
        b"interval": interval,
        b"min interval": min_interval,
        b"complete": complete,
        b"incomplete": incomplete,
    }
    entries: list[dict[bytes, object]] = []
    for peer in peers:
        entry: dict[bytes, object] = {b"ip": peer.ip.encode("ascii"), b"port": peer.port}
        if not no_peer_id and peer.peer_id is not None:
            entry[b"peer id"] = peer.peer_id
        entries.append(entry)
    body[b"peers"] = entries
    if warning is not None:
        body[b"warning message"] = warning.encode("utf-8")
    if tracker_id is not None:
        body[b"tracker id"] = tracker_id
    return bytes(bencode(body))


def encode_failure(reason: str) -> bytes:
    return bytes(bencode({b"failure reason": reason.encode("utf-8")}))


def encode_scrape_response(files: Mapping[bytes, ScrapeStats]) -> bytes:
    """BEP 48 body: `files` keyed by raw info-hash bytes."""
    body = {
        b"files": {
            info_hash: {
                b"complete": stats.complete,
                b"incomplete": stats.incomplete,
                b"downloaded": stats.downloaded,
            }
            for info_hash, stats in files.items()
        }
    }
    return bytes(bencode(body))


# --- UDP (BEP 15) --------------------------------------------------------------------------

UDP_PROTOCOL_ID: Final = 0x41727101980
ACTION_CONNECT: Final = 0
ACTION_ANNOUNCE: Final = 1
ACTION_SCRAPE: Final = 2
ACTION_ERROR: Final = 3
UDP_ANNOUNCE_SIZE: Final = 98
# BEP 15: a scrape answer must fit one datagram, which caps a request at about 74 hashes.
UDP_MAX_SCRAPE_HASHES: Final = 74
# Keep answers inside one Ethernet-sized datagram so they are never fragmented.
UDP_MAX_PAYLOAD: Final = 1452
_UDP_HEADER: Final = struct.Struct(">QiI")  # connection id / protocol id, action, transaction
_UDP_ANNOUNCE_BODY: Final = struct.Struct(">20s20sqqqiIIiH")
_UDP_EVENTS: Final = {
    0: AnnounceEvent.NONE,
    1: AnnounceEvent.COMPLETED,
    2: AnnounceEvent.STARTED,
    3: AnnounceEvent.STOPPED,
    4: AnnounceEvent.PAUSED,  # libtorrent's value for BEP 21 paused
}


@dataclass(frozen=True, slots=True)
class UdpConnect:
    transaction_id: int


@dataclass(frozen=True, slots=True)
class UdpAnnounce:
    connection_id: int
    transaction_id: int
    request: AnnounceRequest


@dataclass(frozen=True, slots=True)
class UdpScrape:
    connection_id: int
    transaction_id: int
    request: ScrapeRequest


UdpRequest = UdpConnect | UdpAnnounce | UdpScrape


def udp_transaction_id(packet: bytes) -> int | None:
    """The transaction id of any BEP 15 request, to address an error to; None if too short."""
    if len(packet) < _UDP_HEADER.size:
        return None
    return int.from_bytes(packet[12:16], "big")


def parse_udp_request(
    packet: bytes,
    *,
    remote_ip: str,
    trust_ip_param: bool,
    max_numwant: int,
    default_numwant: int,
    max_scrape_hashes: int = UDP_MAX_SCRAPE_HASHES,
) -> UdpRequest:
    """Parse one BEP 15 request datagram; raise TrackerError."""
    if len(packet) < _UDP_HEADER.size:
        raise TrackerError("packet too short")
    connection_id, action, transaction_id = _UDP_HEADER.unpack_from(packet)
    if action == ACTION_CONNECT:
        if connection_id != UDP_PROTOCOL_ID:
            raise TrackerError("bad protocol id")
        return UdpConnect(transaction_id)
    if action == ACTION_ANNOUNCE:
        request = _parse_udp_announce(
            packet,
            remote_ip=remote_ip,
            trust_ip_param=trust_ip_param,
            max_numwant=max_numwant,
            default_numwant=default_numwant,
        )
        return UdpAnnounce(connection_id, transaction_id, request)
    if action == ACTION_SCRAPE:
        return UdpScrape(
            connection_id, transaction_id, _parse_udp_scrape(packet, max_scrape_hashes)
        )
    raise TrackerError("unknown action")


def _parse_udp_announce(
    packet: bytes, *, remote_ip: str, trust_ip_param: bool, max_numwant: int, default_numwant: int
) -> AnnounceRequest:
    # Longer packets carry BEP 41 options (URL data); they change nothing we answer.
    if len(packet) < UDP_ANNOUNCE_SIZE:
        raise TrackerError("announce packet too short")
    (info_hash, peer_id, downloaded, left, uploaded, event_code, ip_raw, key, numwant, port) = (
        _UDP_ANNOUNCE_BODY.unpack_from(packet, _UDP_HEADER.size)
    )
    if min(downloaded, left, uploaded) < 0:
        raise TrackerError("negative transfer counter")
    if port == 0:
        raise TrackerError("port must be between 1 and 65535")
    event = _UDP_EVENTS.get(event_code)
    if event is None:
        raise TrackerError("unknown event")
    if trust_ip_param and ip_raw != 0:
        ip = str(ipaddress.IPv4Address(ip_raw))
    else:
        ip = normalize_ip(remote_ip)
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=peer_id,
        ip=ip,
        port=port,
        uploaded=uploaded,
        downloaded=downloaded,
        left=left,
        event=event,
        # BEP 15: -1 means "default"; other negatives are nonsense we read the same way.
        numwant=_clamp_numwant(None if numwant < 0 else numwant, max_numwant, default_numwant),
        compact=True,
        no_peer_id=True,
        key=key.to_bytes(4, "big"),
        trackerid=None,
    )


def _parse_udp_scrape(packet: bytes, max_hashes: int) -> ScrapeRequest:
    body = packet[_UDP_HEADER.size :]
    if not body or len(body) % INFO_HASH_LENGTH:
        raise TrackerError("scrape body must be a non-empty list of 20-byte info-hashes")
    count = len(body) // INFO_HASH_LENGTH
    if count > max_hashes:
        raise TrackerError(f"at most {max_hashes} info-hashes per scrape")
    # Duplicates are kept: UDP scrape answers are positional.
    return ScrapeRequest(
        tuple(body[i : i + INFO_HASH_LENGTH] for i in range(0, len(body), INFO_HASH_LENGTH))
    )


def encode_udp_connect(transaction_id: int, connection_id: int) -> bytes:
    return struct.pack(">iIQ", ACTION_CONNECT, transaction_id, connection_id)


def encode_udp_announce(
    transaction_id: int,
    interval: int,
    leechers: int,
    seeders: int,
    peers: Sequence[PeerAddress],
    ipv6: bool,
) -> bytes:
    """BEP 15 answer; only peers of the request socket's family, as many as fit one datagram."""
    head = struct.pack(
        ">iIiii", ACTION_ANNOUNCE, transaction_id, interval, _i32(leechers), _i32(seeders)
    )
    entry_size = 18 if ipv6 else 6
    room = (UDP_MAX_PAYLOAD - len(head)) // entry_size
    addresses = _pack_compact(peers, ipv6=ipv6)[: room * entry_size]
    return head + addresses


def encode_udp_scrape(transaction_id: int, stats: Sequence[ScrapeStats]) -> bytes:
    """Positional answer: one (seeders, completed, leechers) triple per requested hash."""
    out = bytearray(struct.pack(">iI", ACTION_SCRAPE, transaction_id))
    for entry in stats:
        out += struct.pack(
            ">iii", _i32(entry.complete), _i32(entry.downloaded), _i32(entry.incomplete)
        )
    return bytes(out)


def encode_udp_error(transaction_id: int, message: str) -> bytes:
    return struct.pack(">iI", ACTION_ERROR, transaction_id) + message.encode("utf-8")


def _i32(value: int) -> int:
    # Counts are int32 on the wire; saturate rather than let struct raise on a huge swarm.
    return min(value, 2**31 - 1)


# --- UDP connection ids --------------------------------------------------------------------

CONNECTION_ID_BUCKET_SECONDS: Final = 60
# Current bucket plus two before it: an id is accepted for at least 120 s (BEP 15 asks for two
# minutes) and at most 180 s.
_CONNECTION_ID_BUCKETS_ACCEPTED: Final = 3


def _connection_id_for(secret: bytes, addr: tuple[str, int], bucket: int) -> int:
    # Bound to the IP only, as opentracker does: the IP is what spoofing would fake, while
    # the port legitimately differs (libtorrent shares one connection id among every
    # session of a process; NATs may rebind the source port between requests).
    return _connection_id(secret, normalize_ip(addr[0]), bucket)


@lru_cache(maxsize=16384)
def _connection_id(secret: bytes, ip: str, bucket: int) -> int:
    # Cached: every announce checks up to three buckets, and an HMAC costs more than the
    # rest of a UDP announce; a client's ids change only once a minute.
    digest = hmac.new(secret, f"{ip}|{bucket}".encode("ascii"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big")


def make_connection_id(secret: bytes, addr: tuple[str, int], now: float) -> int:
    """A stateless, unforgeable BEP 15 connection id bound to the client address and time."""
    return _connection_id_for(secret, addr, int(now // CONNECTION_ID_BUCKET_SECONDS))


def check_connection_id(
    secret: bytes, addr: tuple[str, int], connection_id: int, now: float
) -> bool:
    if not 0 <= connection_id < 2**64:
        return False
    bucket = int(now // CONNECTION_ID_BUCKET_SECONDS)
    candidate = connection_id.to_bytes(8, "big")
    valid = False
    for age in range(_CONNECTION_ID_BUCKETS_ACCEPTED):
        expected = _connection_id_for(secret, addr, bucket - age).to_bytes(8, "big")
        # Compare every bucket in constant time so timing says nothing about which one matched.
        valid |= hmac.compare_digest(candidate, expected)
    return valid
