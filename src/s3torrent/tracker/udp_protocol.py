"""Tracker wire formats over UDP (BEP 15), pure: requests in, the same `AnnounceRequest` /
`ScrapeRequest` values as HTTP out, answers and stateless connection ids."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import Final, NamedTuple

from s3torrent.tracker.protocol import (
    INFO_HASH_LENGTH,
    AnnounceEvent,
    AnnounceRequest,
    PeerAddress,
    ScrapeRequest,
    ScrapeStats,
    TrackerError,
    clamp_numwant,
    normalize_ip,
    split_compact,
)

# --- UDP (BEP 15) --------------------------------------------------------------------------

UDP_PROTOCOL_ID: Final = 0x41727101980
ACTION_CONNECT: Final = 0
ACTION_ANNOUNCE: Final = 1
ACTION_SCRAPE: Final = 2
ACTION_ERROR: Final = 3
# The actions a client asks for. Anything else (an error, another tracker's answer, noise)
# is never answered: two UDP services that answer each other's errors, or one tracker whose
# answer comes back to itself, loop for ever on one datagram with a spoofed source.
UDP_REQUEST_ACTIONS: Final = frozenset({ACTION_CONNECT, ACTION_ANNOUNCE, ACTION_SCRAPE})
UDP_ANNOUNCE_SIZE: Final = 98
# BEP 15: a scrape answer must fit one datagram, which caps a request at about 74 hashes.
UDP_MAX_SCRAPE_HASHES: Final = 74
# Keep answers inside one Ethernet-sized datagram so they are never fragmented.
UDP_MAX_PAYLOAD: Final = 1452
_UDP_HEADER: Final = struct.Struct(">QiI")  # connection id / protocol id, action, transaction
# Header and body together: an announce is read with one unpack.
_UDP_ANNOUNCE: Final = struct.Struct(">QiI20s20sqqqiIIiH")
_UDP_EVENTS: Final = {
    0: AnnounceEvent.NONE,
    1: AnnounceEvent.COMPLETED,
    2: AnnounceEvent.STARTED,
    3: AnnounceEvent.STOPPED,
    4: AnnounceEvent.PAUSED,  # libtorrent's value for BEP 21 paused
}


class UdpConnect(NamedTuple):
    transaction_id: int


class UdpAnnounce(NamedTuple):
    connection_id: int
    transaction_id: int
    request: AnnounceRequest


class UdpScrape(NamedTuple):
    connection_id: int
    transaction_id: int
    request: ScrapeRequest


UdpRequest = UdpConnect | UdpAnnounce | UdpScrape


def udp_transaction_id(packet: bytes) -> int | None:
    """The transaction id of any BEP 15 request, to address an error to; None if too short."""
    if len(packet) < _UDP_HEADER.size:
        return None
    return int.from_bytes(packet[12:16], "big")


def udp_action(packet: bytes) -> int:
    """The action of a BEP 15 request at least a header long (udp_transaction_id first)."""
    return int.from_bytes(packet[8:12], "big", signed=True)


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
        return _parse_udp_announce(
            packet,
            remote_ip=remote_ip,
            trust_ip_param=trust_ip_param,
            max_numwant=max_numwant,
            default_numwant=default_numwant,
        )
    if action == ACTION_SCRAPE:
        return UdpScrape(
            connection_id, transaction_id, _parse_udp_scrape(packet, max_scrape_hashes)
        )
    raise TrackerError("unknown action")


def _parse_udp_announce(
    packet: bytes, *, remote_ip: str, trust_ip_param: bool, max_numwant: int, default_numwant: int
) -> UdpAnnounce:
    # Longer packets carry BEP 41 options (URL data); they change nothing we answer.
    if len(packet) < UDP_ANNOUNCE_SIZE:
        raise TrackerError("announce packet too short")
    (
        connection_id,
        _,
        transaction_id,
        info_hash,
        peer_id,
        downloaded,
        left,
        uploaded,
        event_code,
        ip_raw,
        key,
        numwant,
        port,
    ) = _UDP_ANNOUNCE.unpack_from(packet)
    if downloaded < 0 or left < 0 or uploaded < 0:
        raise TrackerError("negative transfer counter")
    if port == 0:
        raise TrackerError("port must be between 1 and 65535")
    event = _UDP_EVENTS.get(event_code)
    if event is None:
        raise TrackerError("unknown event")
    source = None
    if trust_ip_param and ip_raw != 0:
        ip = str(ipaddress.IPv4Address(ip_raw))
        remote = normalize_ip(remote_ip)
        if remote != ip:
            source = remote  # the decision and the rate limit go by where it came from
    else:
        ip = normalize_ip(remote_ip)
    request = AnnounceRequest(  # positional, in the fields' order (see AnnounceRequest)
        info_hash,
        peer_id,
        ip,
        port,
        uploaded,
        downloaded,
        left,
        event,
        # numwant. BEP 15: -1 means "default"; other negatives are nonsense we read so too.
        clamp_numwant(None if numwant < 0 else numwant, max_numwant, default_numwant),
        True,  # compact
        True,  # no_peer_id
        key.to_bytes(4, "big"),
        None,  # trackerid
        (),  # warnings
        source,
        True,  # family_only: the answer carries the socket's family alone
    )
    return UdpAnnounce(connection_id, transaction_id, request)


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
    peers4, peers6 = split_compact(peers)
    return head + (peers6 if ipv6 else peers4)[: room * entry_size]


def encode_udp_scrape(transaction_id: int, stats: Sequence[ScrapeStats]) -> bytes:
    """Positional answer: one (seeders, completed, leechers) triple per requested hash."""
    out = bytearray(struct.pack(">iI", ACTION_SCRAPE, transaction_id))
    for entry in stats:
        out += struct.pack(
            ">iii", _i32(entry.complete), _i32(entry.downloaded), _i32(entry.incomplete)
        )
    return bytes(out)


def encode_udp_error(transaction_id: int, message: str, *, within: int | None = None) -> bytes:
    """An error answer; with `within`, cut to that many bytes (the request's size)."""
    answer = struct.pack(">iI", ACTION_ERROR, transaction_id) + message.encode("utf-8")
    return answer if within is None else answer[:within]


def _i32(value: int) -> int:
    # Counts are int32 on the wire; saturate rather than let struct raise on a huge swarm.
    return min(value, 2**31 - 1)


# --- UDP connection ids --------------------------------------------------------------------

CONNECTION_ID_BUCKET_SECONDS: Final = 60
# The buckets accepted, by age: the two before the current one, so an id is accepted for at
# least 120 s (BEP 15 asks for two minutes) and at most 180 s; and the next one, since an id
# may come from another node, whose (wall) clock may be a little ahead of ours.
_CONNECTION_ID_AGES_ACCEPTED: Final = (-1, 0, 1, 2)
_SECRET_PURPOSE: Final = b"s3torrent BEP 15 connection ids"


def derive_udp_secret(shared: str) -> bytes:
    """The key of connection ids, derived from a secret every process of a deployment holds
    alike (the root user's secret key, in the metadata database): an id one worker or node
    gave is then valid on every other one behind the same UDP address, and across
    restarts. One-way: neither the ids nor the key tell anything of that secret."""
    return hmac.new(shared.encode("utf-8"), _SECRET_PURPOSE, hashlib.sha256).digest()


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
    for expected in _accepted_ids(secret, normalize_ip(addr[0]), bucket):
        # Compare every bucket in constant time so timing says nothing about which one matched.
        valid |= hmac.compare_digest(candidate, expected)
    return valid


@lru_cache(maxsize=16384)
def _accepted_ids(secret: bytes, ip: str, bucket: int) -> tuple[bytes, ...]:
    return tuple(
        _connection_id(secret, ip, bucket - age).to_bytes(8, "big")
        for age in _CONNECTION_ID_AGES_ACCEPTED
    )
