"""Tracker wire formats, pure: HTTP announce/scrape (BEP 3, 7, 23, 48) and UDP (BEP 15).

Every transport's parser yields the same `AnnounceRequest` / `ScrapeRequest` values, so one
handler answers all of them. Info-hashes and peer ids stay raw bytes end to end.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Final, NamedTuple

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


class AnnounceRequest(NamedTuple):
    """One announce, whatever its transport. A named tuple, not a frozen dataclass: every
    announce builds one, and a frozen dataclass's 14 checked assignments cost more than
    the registry's whole update (1.3 us against 0.25 us here). The parsers build it with
    positional arguments (keywords cost about as much again): its fields keep this order
    (`tests/unit/test_tracker_protocol.py` holds it)."""

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
    # Where the announce came from when that is not `ip`: an `ip` the client named, believed
    # under trust_ip_param, is only where its peers reach it. None: `ip` is where it came from.
    source: str | None = None
    # Peers of the source's family only (a UDP answer carries one family, BEP 15); else
    # that family first and the other after it (an HTTP answer's `peers` and `peers6`).
    family_only: bool = False

    @property
    def source_ip(self) -> str:
        """Where the announce came from (the socket's peer, or the client a trusted proxy
        names): what the access decision (aws:SourceIp) and the rate limit go by, never an
        address the client only claims."""
        return self.ip if self.source is None else self.source


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


def _decode(raw: bytes) -> bytes:
    first, *escaped = raw.split(b"%")
    try:
        return first + b"".join([_ESCAPES[part[:2]] + part[2:] for part in escaped])
    except KeyError:
        raise TrackerError("malformed percent-encoding in query") from None


# Cached: the same info-hash comes in every announce of its swarm, and each peer sends the
# same peer id every time. An exception is not cached, so a bad value costs each time.
_decode_cached: Final = lru_cache(maxsize=8192)(_decode)
# The longest value cached: a 32-byte hash escaped whole. Longer ones (nothing a client
# repeats) are decoded each time: cached, announces each with a different 4 KB escaped
# value kept about 46 MB in the cache for good.
_MAX_CACHED_ESCAPED: Final = 96


def _decode_escaped(raw: bytes) -> bytes:
    return _decode_cached(raw) if len(raw) <= _MAX_CACHED_ESCAPED else _decode(raw)


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


def clamp_numwant(requested: int | None, max_numwant: int, default_numwant: int) -> int:
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
    # HTTP announce. Every name and value is decoded (a bad escape anywhere is refused). A
    # known name is tested first: it never holds an escape, and an unknown pair (empty ones
    # included) only needs its escapes checked (0.85x the time of testing for escapes first).
    if len(raw_query) > max_query_bytes:
        raise TrackerError(f"query longer than {max_query_bytes} bytes")
    values: dict[bytes, bytes] = {}
    known = _ANNOUNCE_KEYS
    decode = _decode_escaped
    for item in raw_query.split(b"&"):
        name, _, value = item.partition(b"=")
        if name not in known:
            if b"%" in name:
                name = decode(name)
            if name not in known:
                if b"%" in value:
                    decode(value)
                continue
        if b"%" in value:
            value = decode(value)
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
    source = None
    if trust_ip_param and ip_raw:
        ip = normalize_ip(ip_raw.decode("ascii", "replace"))
        remote = normalize_ip(remote_ip)
        if remote != ip:
            source = remote
    else:
        ip = normalize_ip(remote_ip)
        if ip_raw:
            warnings = ("ip parameter ignored; peers see the address you connected from",)
    if requested is not None and requested > max_numwant:
        warnings = (*warnings, f"numwant capped at {max_numwant}")
    event_raw = get(b"event")
    compact_raw = get(b"compact")
    no_peer_id_raw = get(b"no_peer_id")
    # Positional, in the fields' order (keywords cost 0.6 us more per announce):
    return AnnounceRequest(
        info_hash,
        peer_id,
        ip,
        port,
        uploaded,
        downloaded,
        left,
        AnnounceEvent.NONE if event_raw is None else _parse_event(event_raw),
        clamp_numwant(requested, max_numwant, default_numwant),  # numwant
        # compact. BEP 23: what every current client wants; a client that says nothing gets
        # it too (as opentracker does), and only an explicit compact=0 gets the dict list.
        True
        if compact_raw is None or compact_raw == b"1"
        else _parse_flag("compact", compact_raw, default=True),
        False if no_peer_id_raw is None else _parse_flag("no_peer_id", no_peer_id_raw),
        get(b"key"),
        get(b"trackerid"),
        warnings,
        source,
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
        peers4, peers6 = split_compact(peers)
        return encode_compact_announce(
            interval=interval,
            min_interval=min_interval,
            complete=complete,
            incomplete=incomplete,
            peers4=peers4,
            peers6=peers6,
            warning=warning,
            tracker_id=tracker_id,
        )
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


def encode_compact_announce(
    *,
    interval: int,
    min_interval: int,
    complete: int,
    incomplete: int,
    peers4: bytes,
    peers6: bytes,
    warning: str | None = None,
    tracker_id: bytes | None = None,
) -> bytes:
    """A compact announce answer from packed peer lists (BEP 23 `peers`, BEP 7 `peers6`)."""
    # Written out, keys in bencode's sorted order: a dict and a general encoder cost more
    # than the rest of the answer.
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
