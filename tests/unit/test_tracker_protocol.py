"""Tracker wire formats: HTTP announce/scrape parsing and encoding, BEP 15 packets."""

from __future__ import annotations

import contextlib
import struct
from urllib.parse import quote_from_bytes

import pytest
from fastbencode import bdecode, bencode
from hypothesis import given
from hypothesis import strategies as st

from s3torrent.tracker.protocol import (
    AnnounceEvent,
    AnnounceRequest,
    PeerAddress,
    ScrapeStats,
    TrackerError,
    encode_announce_response,
    encode_failure,
    encode_scrape_response,
    parse_http_announce,
    parse_http_scrape,
)
from s3torrent.tracker.udp_protocol import (
    UDP_PROTOCOL_ID,
    UdpAnnounce,
    UdpConnect,
    UdpRequest,
    UdpScrape,
    check_connection_id,
    encode_udp_announce,
    encode_udp_error,
    encode_udp_scrape,
    make_connection_id,
    parse_udp_request,
)

HASH = bytes(range(20))
PEER = b"-XX0001-" + bytes(range(200, 212))


def announce(
    query: bytes, *, remote_ip: str = "10.0.0.1", trust_ip_param: bool = False
) -> AnnounceRequest:
    return parse_http_announce(
        query,
        remote_ip=remote_ip,
        trust_ip_param=trust_ip_param,
        max_numwant=200,
        default_numwant=50,
    )


def client_query(
    info_hash: bytes = HASH, peer_id: bytes = PEER, *, extra: str = "", port: int = 6881
) -> bytes:
    """The query a BEP 3 client sends: binary values percent-encoded, unreserved bytes not."""
    return (
        f"info_hash={quote_from_bytes(info_hash, safe='')}"
        f"&peer_id={quote_from_bytes(peer_id, safe='')}"
        f"&port={port}&uploaded=0&downloaded=0&left=100{extra}"
    ).encode()


def fully_encoded(data: bytes) -> str:
    return "".join(f"%{b:02x}" for b in data)


binary20 = st.binary(min_size=20, max_size=20)
u63 = st.integers(min_value=0, max_value=2**63 - 1)


@given(
    info_hash=binary20,
    peer_id=binary20,
    port=st.integers(1, 65535),
    uploaded=u63,
    downloaded=u63,
    left=u63,
    event=st.sampled_from(list(AnnounceEvent)),
    numwant=st.integers(0, 1000),
    compact=st.booleans(),
    key=st.binary(min_size=1, max_size=16),
    full=st.booleans(),
)
def test_http_announce_round_trips_binary_values(
    info_hash: bytes,
    peer_id: bytes,
    port: int,
    uploaded: int,
    downloaded: int,
    left: int,
    event: AnnounceEvent,
    numwant: int,
    compact: bool,
    key: bytes,
    full: bool,
) -> None:
    encode = fully_encoded if full else (lambda b: quote_from_bytes(b, safe=""))
    parts = [
        f"info_hash={encode(info_hash)}",
        f"peer_id={encode(peer_id)}",
        f"port={port}",
        f"uploaded={uploaded}",
        f"downloaded={downloaded}",
        f"left={left}",
        f"numwant={numwant}",
        f"compact={int(compact)}",
        f"key={encode(key)}",
        "supportcrypto=1",
    ]
    if event is not AnnounceEvent.NONE:
        parts.append(f"event={event.value}")
    req = announce("&".join(parts).encode())
    assert req.info_hash == info_hash
    assert req.peer_id == peer_id
    assert (req.port, req.uploaded, req.downloaded, req.left) == (
        port,
        uploaded,
        downloaded,
        left,
    )
    assert req.event is event
    assert req.numwant == min(numwant, 200)
    assert req.compact is compact
    assert req.key == key
    assert req.ip == "10.0.0.1"


def test_every_byte_value_survives_percent_decoding() -> None:
    for start in range(0, 256, 20):
        info_hash = bytes((start + i) % 256 for i in range(20))
        req = announce(client_query(info_hash))
        assert req.info_hash == info_hash


def test_plus_is_a_literal_byte_not_a_space() -> None:
    info_hash = b"+" * 20
    req = announce(client_query().replace(quote_from_bytes(HASH, safe="").encode(), info_hash))
    assert req.info_hash == info_hash


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (b"peer_id=" + PEER + b"&port=1&left=0", "missing info_hash"),
        (b"info_hash=" + HASH + b"&port=1&left=0", "missing peer_id"),
        (b"info_hash=%00&peer_id=" + PEER + b"&port=1&left=0", "info_hash must be 20 bytes"),
        (client_query(port=0), "port must be between 1 and 65535"),
        (client_query(port=65536), "port must be between 1 and 65535"),
        (client_query(extra="&numwant=-1"), "numwant must be a non-negative integer"),
        (client_query(extra="&event=finished"), "unknown event"),
        (client_query(extra="&compact=yes"), "compact must be 0 or 1"),
        (client_query().replace(b"left=100", b"left=9223372036854775808"), "left must be"),
        (client_query().replace(b"left=100", b"left=+1"), "left must be"),
        (client_query().replace(b"left=100", b"left=1_0"), "left must be"),
        (client_query(extra="&port=1"), "repeated parameter port"),
        (client_query(extra="&x=%zz"), "malformed percent-encoding"),
        (client_query(extra="&%zz=1"), "malformed percent-encoding"),  # in an unknown name
        (client_query(extra="&key=%4"), "malformed percent-encoding"),  # a short escape
        (client_query(extra="&p%6Frt=1"), "repeated parameter port"),  # an escaped name
        (client_query(extra="&x=" + "a" * 5000), "query longer than"),
        (client_query().replace(b"&left=100", b""), "missing left"),
    ],
)
def test_bad_announce_is_refused_with_a_reason(query: bytes, reason: str) -> None:
    with pytest.raises(TrackerError) as caught:
        announce(query)
    assert caught.value.reason.startswith(reason)


def test_escaped_names_and_empty_pairs_read_as_plain_ones() -> None:
    query = client_query(extra="&&n%75mwant=7&=&x").replace(b"peer_id=", b"peer%5Fid=")
    req = announce(query)
    assert (req.peer_id, req.numwant, req.port) == (announce(client_query()).peer_id, 7, 6881)


def test_announce_fields_keep_the_order_the_parsers_build_them_in() -> None:
    # parse_http_announce, the UDP parser and the relay's decoder pass them positionally.
    assert AnnounceRequest._fields == (
        "info_hash",
        "peer_id",
        "ip",
        "port",
        "uploaded",
        "downloaded",
        "left",
        "event",
        "numwant",
        "compact",
        "no_peer_id",
        "key",
        "trackerid",
        "warnings",
        "source",
        "family_only",
    )


def test_unknown_repeated_parameters_are_ignored() -> None:
    req = announce(client_query(extra="&ipv6=::1&ipv6=::2"))
    assert req.port == 6881


def test_numwant_defaults_and_is_capped() -> None:
    assert announce(client_query()).numwant == 50
    assert announce(client_query(extra="&numwant=100000")).numwant == 200


def test_ip_param_only_when_trusted() -> None:
    query = client_query(extra="&ip=192.0.2.7")
    assert announce(query).ip == "10.0.0.1"
    assert announce(query, trust_ip_param=True).ip == "192.0.2.7"
    # Only where its peers reach it: the access decision goes by where it came from.
    assert announce(query).source_ip == "10.0.0.1"
    assert announce(query, trust_ip_param=True).source_ip == "10.0.0.1"
    assert announce(client_query(), trust_ip_param=True).source is None


def test_ipv4_mapped_remote_is_plain_ipv4() -> None:
    assert announce(client_query(), remote_ip="::ffff:10.1.2.3").ip == "10.1.2.3"


@given(st.binary(max_size=600))
def test_http_garbage_raises_only_tracker_error(data: bytes) -> None:
    for query in (data, client_query() + b"&" + data, data + b"&" + client_query()):
        with contextlib.suppress(TrackerError):
            announce(query)
        with contextlib.suppress(TrackerError):
            parse_http_scrape(query, 10)


@given(st.lists(binary20, min_size=1, max_size=10))
def test_scrape_round_trips_hashes_in_order(hashes: list[bytes]) -> None:
    query = "&".join(f"info_hash={quote_from_bytes(h, safe='')}" for h in hashes).encode()
    assert parse_http_scrape(query, 10).info_hashes == tuple(dict.fromkeys(hashes))


def test_scrape_caps_hash_count() -> None:
    query = "&".join(f"info_hash={fully_encoded(bytes([i]) * 20)}" for i in range(3)).encode()
    with pytest.raises(TrackerError):
        parse_http_scrape(query, 2)


def test_compact_response_splits_ipv4_and_ipv6() -> None:
    peers = [PeerAddress("1.2.3.4", 6881, PEER), PeerAddress("2001:db8::1", 51413, None)]
    body = bdecode(
        encode_announce_response(
            interval=1800,
            min_interval=60,
            complete=3,
            incomplete=4,
            peers=peers,
            compact=True,
            no_peer_id=False,
        )
    )
    assert body[b"peers"] == bytes([1, 2, 3, 4]) + (6881).to_bytes(2, "big")
    assert body[b"peers6"] == bytes.fromhex("20010db8000000000000000000000001") + (51413).to_bytes(
        2, "big"
    )
    assert (body[b"interval"], body[b"min interval"]) == (1800, 60)
    assert (body[b"complete"], body[b"incomplete"]) == (3, 4)


def test_dict_response_carries_peer_ids_unless_asked_not_to() -> None:
    peers = [PeerAddress("1.2.3.4", 6881, PEER), PeerAddress("::1", 1, None)]
    common = {"interval": 1, "min_interval": 1, "complete": 0, "incomplete": 0, "peers": peers}
    with_ids = bdecode(encode_announce_response(compact=False, no_peer_id=False, **common))  # type: ignore[arg-type]
    assert with_ids[b"peers"] == [
        {b"ip": b"1.2.3.4", b"port": 6881, b"peer id": PEER},
        {b"ip": b"::1", b"port": 1},
    ]
    without = bdecode(encode_announce_response(compact=False, no_peer_id=True, **common))  # type: ignore[arg-type]
    assert b"peer id" not in without[b"peers"][0]


def test_warning_and_tracker_id_are_encoded() -> None:
    body = bdecode(
        encode_announce_response(
            interval=1,
            min_interval=1,
            complete=0,
            incomplete=0,
            peers=[],
            compact=True,
            no_peer_id=False,
            warning="slow down",
            tracker_id=b"abc",
        )
    )
    assert body[b"warning message"] == b"slow down"
    assert body[b"tracker id"] == b"abc"
    assert body[b"peers"] == b""


def test_failure_and_scrape_bodies() -> None:
    assert bdecode(encode_failure("unregistered torrent")) == {
        b"failure reason": b"unregistered torrent"
    }
    files = {b"\xff" * 20: ScrapeStats(complete=1, incomplete=2, downloaded=3)}
    assert bdecode(encode_scrape_response(files)) == {
        b"files": {b"\xff" * 20: {b"complete": 1, b"incomplete": 2, b"downloaded": 3}}
    }


# --- UDP -----------------------------------------------------------------------------------


def udp(packet: bytes, *, trust_ip_param: bool = False) -> UdpRequest:
    return parse_udp_request(
        packet,
        remote_ip="10.0.0.1",
        trust_ip_param=trust_ip_param,
        max_numwant=200,
        default_numwant=50,
    )


def udp_announce(packet: bytes, *, trust_ip_param: bool = False) -> AnnounceRequest:
    parsed = udp(packet, trust_ip_param=trust_ip_param)
    assert isinstance(parsed, UdpAnnounce)
    return parsed.request


def udp_announce_packet(
    *,
    connection_id: int = 7,
    transaction_id: int = 9,
    info_hash: bytes = HASH,
    peer_id: bytes = PEER,
    downloaded: int = 1,
    left: int = 2,
    uploaded: int = 3,
    event: int = 2,
    ip: int = 0,
    key: int = 0xDEADBEEF,
    numwant: int = -1,
    port: int = 6881,
) -> bytes:
    return struct.pack(
        ">QiI20s20sqqqiIIiH",
        connection_id,
        1,
        transaction_id,
        info_hash,
        peer_id,
        downloaded,
        left,
        uploaded,
        event,
        ip,
        key,
        numwant,
        port,
    )


def test_udp_connect_parses() -> None:
    assert udp(struct.pack(">QiI", UDP_PROTOCOL_ID, 0, 0xFFFFFFFF)) == UdpConnect(0xFFFFFFFF)
    with pytest.raises(TrackerError):
        udp(struct.pack(">QiI", 1234, 0, 5))


@given(
    info_hash=binary20,
    peer_id=binary20,
    downloaded=u63,
    left=u63,
    uploaded=u63,
    event=st.sampled_from([0, 1, 2, 3]),
    numwant=st.integers(-1, 2**31 - 1),
    port=st.integers(1, 65535),
    transaction_id=st.integers(0, 2**32 - 1),
)
def test_udp_announce_round_trips(
    info_hash: bytes,
    peer_id: bytes,
    downloaded: int,
    left: int,
    uploaded: int,
    event: int,
    numwant: int,
    port: int,
    transaction_id: int,
) -> None:
    packet = udp_announce_packet(
        transaction_id=transaction_id,
        info_hash=info_hash,
        peer_id=peer_id,
        downloaded=downloaded,
        left=left,
        uploaded=uploaded,
        event=event,
        numwant=numwant,
        port=port,
    )
    assert len(packet) == 98
    parsed = udp(packet)
    assert isinstance(parsed, UdpAnnounce)
    assert parsed.transaction_id == transaction_id
    req = parsed.request
    assert (req.info_hash, req.peer_id, req.port) == (info_hash, peer_id, port)
    assert (req.downloaded, req.left, req.uploaded) == (downloaded, left, uploaded)
    assert req.event is [AnnounceEvent.NONE, AnnounceEvent.COMPLETED, AnnounceEvent.STARTED,
                         AnnounceEvent.STOPPED][event]  # fmt: skip
    assert req.numwant == (50 if numwant == -1 else min(numwant, 200))
    assert req.ip == "10.0.0.1"


def test_udp_ip_field_only_when_trusted() -> None:
    packet = udp_announce_packet(ip=0xC0000207)
    assert udp_announce(packet).ip == "10.0.0.1"
    assert udp_announce(packet, trust_ip_param=True).ip == "192.0.2.7"
    assert udp_announce(packet, trust_ip_param=True).source_ip == "10.0.0.1"


def test_udp_announce_with_bep41_options_is_accepted() -> None:
    assert isinstance(udp(udp_announce_packet() + b"\x02\x05/path"), UdpAnnounce)


@pytest.mark.parametrize(
    "packet",
    [
        udp_announce_packet()[:97],
        udp_announce_packet(port=0),
        udp_announce_packet(left=-1),
        udp_announce_packet(event=9),
        struct.pack(">QiI", 7, 2, 1),
        struct.pack(">QiI", 7, 2, 1) + b"x" * 21,
        struct.pack(">QiI", 7, 2, 1) + b"x" * 20 * 75,
        struct.pack(">QiI", 7, 5, 1),
        b"short",
    ],
)
def test_bad_udp_packets_are_refused(packet: bytes) -> None:
    with pytest.raises(TrackerError):
        udp(packet)


def test_udp_scrape_keeps_positions() -> None:
    hashes = [b"a" * 20, b"b" * 20, b"a" * 20]
    parsed = udp(struct.pack(">QiI", 7, 2, 3) + b"".join(hashes))
    assert isinstance(parsed, UdpScrape)
    assert (parsed.connection_id, parsed.transaction_id) == (7, 3)
    assert list(parsed.request.info_hashes) == hashes


@given(st.binary(max_size=200))
def test_udp_garbage_raises_only_tracker_error(data: bytes) -> None:
    for packet in (data, struct.pack(">QiI", 7, 1, 1) + data, struct.pack(">QiI", 7, 2, 1) + data):
        with contextlib.suppress(TrackerError):
            udp(packet)


def test_udp_announce_answer_follows_socket_family() -> None:
    peers = [PeerAddress("1.2.3.4", 1), PeerAddress("::2", 2), PeerAddress("5.6.7.8", 3)]
    v4 = encode_udp_announce(5, 1800, leechers=2, seeders=1, peers=peers, ipv6=False)
    assert struct.unpack_from(">iIiii", v4) == (1, 5, 1800, 2, 1)
    assert v4[20:] == bytes([1, 2, 3, 4, 0, 1, 5, 6, 7, 8, 0, 3])
    v6 = encode_udp_announce(5, 1800, leechers=2, seeders=1, peers=peers, ipv6=True)
    assert v6[20:] == bytes(15) + b"\x02\x00\x02"


def test_udp_announce_answer_fits_one_datagram() -> None:
    peers = [PeerAddress(f"10.0.{i // 256}.{i % 256}", 1) for i in range(1000)]
    assert len(encode_udp_announce(1, 1, 0, 0, peers, ipv6=False)) <= 1452


def test_udp_scrape_and_error_encoding() -> None:
    body = encode_udp_scrape(4, [ScrapeStats(1, 2, 3), ScrapeStats(2**40, 0, 0)])
    assert struct.unpack(">iIiiiiii", body) == (2, 4, 1, 3, 2, 2**31 - 1, 0, 0)
    assert encode_udp_error(4, "nope") == struct.pack(">iI", 3, 4) + b"nope"


def test_connection_id_valid_for_two_minutes_and_bound_to_address() -> None:
    secret = b"s" * 32
    addr = ("10.0.0.1", 6881)
    issued_at = 1000.0 * 60 + 59.9  # the end of a bucket: the worst case
    cid = make_connection_id(secret, addr, issued_at)
    assert check_connection_id(secret, addr, cid, issued_at)
    assert check_connection_id(secret, addr, cid, issued_at + 120)
    assert not check_connection_id(secret, addr, cid, issued_at + 181)
    assert not check_connection_id(secret, ("10.0.0.2", 6881), cid, issued_at)
    # Another port of the same host shares it (libtorrent reuses ids across its sessions).
    assert check_connection_id(secret, ("10.0.0.1", 6882), cid, issued_at)
    assert not check_connection_id(b"t" * 32, addr, cid, issued_at)
    assert not check_connection_id(secret, addr, cid ^ 1, issued_at)


_ADDRESSES = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.sampled_from(["origin.example", ""]),  # not address literals: never packed
)


@given(
    peers=st.lists(
        st.builds(PeerAddress, _ADDRESSES, st.integers(1, 65535), st.none()), max_size=12
    ),
    counts=st.tuples(st.integers(-5, 2**40), st.integers(0, 2**40)),
    warning=st.none() | st.text(max_size=20),
    tracker_id=st.none() | st.binary(max_size=8),
)
def test_compact_answer_is_the_bencoding_of_its_dict(
    peers: list[PeerAddress],
    counts: tuple[int, int],
    warning: str | None,
    tracker_id: bytes | None,
) -> None:
    # The compact answer is written out by hand: it must be exactly what the encoder makes.
    expected: dict[bytes, object] = {
        b"interval": 1800,
        b"min interval": 60,
        b"complete": counts[0],
        b"incomplete": counts[1],
        b"peers": b"".join(p.compact for p in peers if len(p.compact) == 6),
    }
    peers6 = b"".join(p.compact for p in peers if len(p.compact) == 18)
    if peers6:
        expected[b"peers6"] = peers6
    if warning is not None:
        expected[b"warning message"] = warning.encode()
    if tracker_id is not None:
        expected[b"tracker id"] = tracker_id
    written = encode_announce_response(
        interval=1800,
        min_interval=60,
        complete=counts[0],
        incomplete=counts[1],
        peers=peers,
        compact=True,
        no_peer_id=False,
        warning=warning,
        tracker_id=tracker_id,
    )
    assert written == bytes(bencode(expected))
