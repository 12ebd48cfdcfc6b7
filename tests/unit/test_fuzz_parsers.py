"""A bounded fuzz campaign on the parsers that read what strangers send.

XML request bodies (CompleteMultipartUpload, Delete, CreateBucketConfiguration and
AccessControlPolicy, through the parsing the handlers do), bencode and .torrent files, the
tracker's HTTP query and UDP packet parsers, and the peer wire codec. Two invariants, after
h11's: bytes in never raise anything but the layer's own error (S3Error, AccessError,
MetainfoError, TrackerError, ProtocolError), and never cost more than linear time (inputs of
a quarter megabyte, or that much work at a layer's size bound, are handled well within two
seconds; a quadratic step takes minutes).

By default each target runs a few seconds. Set ``S3TORRENT_FUZZ_EXAMPLES`` (examples per
target, e.g. 20000) to run a longer campaign on demand.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import fastbencode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3torrent.access import AccessError, acl_from_xml
from s3torrent.peer.handshake import Handshake, peer_ut_metadata_id, ut_metadata_request
from s3torrent.peer.messages import MAX_EXTENDED_PAYLOAD
from s3torrent.peer.wire import MessageDecoder, ProtocolError
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.multipart import _requested_parts
from s3torrent.store import rows as md
from s3torrent.torrent.metainfo import MetainfoError, parse_torrent
from s3torrent.tracker.protocol import (
    MAX_QUERY_BYTES,
    TrackerError,
    parse_http_announce,
    parse_http_scrape,
)
from s3torrent.tracker.udp_protocol import (
    parse_udp_request,
)

EXAMPLES = int(os.environ.get("S3TORRENT_FUZZ_EXAMPLES", "200"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Large enough that a quadratic step costs minutes; small enough that the linear cost stays
# far below the budget even on a shared, loaded two-core machine.
BIG = 256 * 1024
LINEAR_BUDGET_SECONDS = 2.0
OWNER_ID = "a" * 64


def within_budget(fn: Callable[[], object], *errors: type[BaseException]) -> None:
    """Run fn on a large input: only the layer's errors, and in linear time."""
    started = time.perf_counter()
    with contextlib.suppress(errors):
        fn()
    elapsed = time.perf_counter() - started
    assert elapsed < LINEAR_BUDGET_SECONDS, f"{elapsed:.2f} s"


# ---------------------------------------------------------------- XML request bodies

UPLOAD = md.Upload("u1", "b", "k", OWNER_ID, 0.0, checksum_algorithm="CRC32")
NAMES = [
    "CompleteMultipartUpload",
    "Part",
    "PartNumber",
    "ETag",
    "ChecksumCRC32",
    "Delete",
    "Object",
    "Key",
    "VersionId",
    "Quiet",
    "CreateBucketConfiguration",
    "LocationConstraint",
    "AccessControlPolicy",
    "Owner",
    "ID",
    "DisplayName",
    "AccessControlList",
    "Grant",
    "Grantee",
    "Permission",
    "URI",
    "EmailAddress",
]
NAMESPACES = ["", ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"', ' xmlns="urn:other"']
XSI = ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type='
TEXTS = st.one_of(
    st.sampled_from(
        [
            "1",
            "0",
            "10000",
            "-1",
            "+1",
            " 7 ",
            "١",  # an Arabic-Indic digit: int() takes it, S3 does not
            "9" * 40,
            '"etag"',
            "true",
            "FULL_CONTROL",
            "READ",
            "CanonicalUser",
            "Group",
            "http://acs.amazonaws.com/groups/global/AllUsers",
            OWNER_ID,
            "us-east-1",
            "",
        ]
    ),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=20),
)


def _element(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda name, ns, attr, body: f"<{name}{ns}{attr}>{body}</{name}>",
        st.sampled_from(NAMES),
        st.sampled_from(NAMESPACES),
        st.one_of(
            st.just(""),
            st.sampled_from(["CanonicalUser", "Group", "AmazonCustomerByEmail", "x"]).map(
                lambda t: XSI + quoteattr(t)
            ),
        ),
        children,
    )


xml_elements = st.recursive(
    TEXTS.map(escape),
    lambda inner: _element(st.lists(inner, max_size=5).map("".join)),
    max_leaves=30,
)
xml_junk = st.sampled_from(
    [
        "",
        "&amp;",
        "&foo;",
        "&#0;",
        "&#x110000;",
        "<![CDATA[x]]>",
        "<?pi x?>",
        "<!-- c -->",
        '<!DOCTYPE a [<!ENTITY e "x">]>',
        "<a",
        "</b>",
        "\x00",
        "\ud800",
    ]
)
xml_documents = st.builds(
    lambda prolog, junk, body, tail: (prolog + junk + body + tail).encode("utf-8", "replace"),
    st.sampled_from(["", '<?xml version="1.0" encoding="UTF-8"?>', '<?xml version="1.0"?>\n']),
    xml_junk,
    xml_elements,
    xml_junk,
)


def _parts(body: bytes) -> object:
    return _requested_parts(s3xml.parse(body), UPLOAD)


def _delete_keys(body: bytes) -> object:
    # What delete_objects reads from its body, in the same steps.
    root = s3xml.parse(body)
    if s3xml.local(root.tag) != "Delete":
        raise S3Error("MalformedXML")
    quiet = (s3xml.text(root, "Quiet") or "").strip().lower() == "true"
    keys = []
    for entry in s3xml.children(root, "Object"):
        key = s3xml.text(entry, "Key")
        if not key:
            raise S3Error("MalformedXML")
        keys.append(len(key.encode()))
    return quiet, keys


def _location(body: bytes) -> object:
    # What create_bucket reads from its body.
    root = s3xml.parse(body)
    if s3xml.local(root.tag) != "CreateBucketConfiguration":
        raise S3Error("MalformedXML")
    return s3xml.text(root, "LocationConstraint")


def _acl(body: bytes) -> object:
    return acl_from_xml(body, expected_owner_id=OWNER_ID, known_user=lambda _id: None)


XML_PARSERS: list[Callable[[bytes], object]] = [s3xml.parse, _parts, _delete_keys, _location]


def _xml_all(body: bytes) -> None:
    for parser in XML_PARSERS:
        with contextlib.suppress(S3Error):
            parser(body)
    with contextlib.suppress(AccessError):
        _acl(body)


@fuzz
@given(st.binary(max_size=400))
def test_xml_bodies_from_random_bytes_raise_only_s3_errors(body: bytes) -> None:
    _xml_all(body)


@fuzz
@given(xml_documents)
def test_xml_bodies_from_s3_like_documents_raise_only_s3_errors(body: bytes) -> None:
    _xml_all(body)


@fuzz
@given(st.lists(st.tuples(st.integers(-5, 10**6), TEXTS), max_size=12))
def test_complete_multipart_upload_accepts_only_ascending_numbered_parts(
    parts: list[tuple[int, str]],
) -> None:
    body = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>" for n, etag in parts
    )
    try:
        requested = _parts(f"<CompleteMultipartUpload>{body}</CompleteMultipartUpload>".encode())
    except S3Error:
        return
    assert isinstance(requested, list)
    numbers = [n for n, _, _ in requested]
    assert numbers == sorted(set(numbers)) and all(n >= 0 for n in numbers)


@pytest.mark.parametrize(
    "body",
    [
        b"<a>" * (BIG // 6) + b"</a>" * (BIG // 6),
        b"<CompleteMultipartUpload>"
        + b"<Part><PartNumber>1</PartNumber><ETag>e</ETag></Part>" * (BIG // 52)
        + b"</CompleteMultipartUpload>",
        b"<Delete>" + b"<Object><Key>k</Key></Object>" * (BIG // 30) + b"</Delete>",
        b"<Delete><Object><Key>" + b"k" * BIG + b"</Key></Object></Delete>",
        b"<Delete " + b" ".join(b"a%d='1'" % i for i in range(BIG // 12)) + b"/>",
        b"<Delete " + b" ".join(b"xmlns:p%d='u%d'" % (i, i) for i in range(BIG // 24)) + b"/>",
        b"<AccessControlPolicy><AccessControlList>"
        + b"<Grant><Grantee xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' "
        b"xsi:type='Group'><URI>x</URI></Grantee><Permission>READ</Permission></Grant>"
        * (BIG // 180)
        + b"</AccessControlList></AccessControlPolicy>",
        b"<CreateBucketConfiguration>" + b"&amp;" * (BIG // 5) + b"</CreateBucketConfiguration>",
        b"<a>" + b"<![CDATA[" * (BIG // 9),
    ],
    ids=[
        "deep",
        "many-parts",
        "many-keys",
        "long-key",
        "many-attributes",
        "many-namespaces",
        "many-grants",
        "many-entities",
        "cdata-openers",
    ],
)
def test_xml_bodies_are_parsed_in_linear_time(body: bytes) -> None:
    for parser in [*XML_PARSERS, _acl]:
        within_budget(lambda p=parser: p(body), S3Error, AccessError)


# ---------------------------------------------------------------- bencode and .torrent files

bencode_values = st.recursive(
    st.one_of(st.integers(-(2**70), 2**70), st.binary(max_size=24)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(
            st.sampled_from(
                [
                    b"info",
                    b"name",
                    b"length",
                    b"piece length",
                    b"pieces",
                    b"files",
                    b"meta version",
                    b"file tree",
                    b"",
                    b"pieces root",
                    b"piece layers",
                    b"announce",
                    b"announce-list",
                    b"url-list",
                    b"creation date",
                    b"path",
                ]
            )
            | st.binary(max_size=8),
            inner,
            max_size=6,
        ),
    ),
    max_leaves=16,
)


def _parse_torrent(data: bytes) -> None:
    with contextlib.suppress(MetainfoError):
        parse_torrent(data)


@fuzz
@given(st.binary(max_size=400))
def test_torrent_parse_of_random_bytes_raises_only_metainfo_error(data: bytes) -> None:
    _parse_torrent(data)


@fuzz
@given(bencode_values, bencode_values)
def test_torrent_parse_of_any_bencode_raises_only_metainfo_error(info: Any, extra: Any) -> None:
    _parse_torrent(fastbencode.bencode(info))  # type: ignore[attr-defined]
    _parse_torrent(fastbencode.bencode({b"info": info, b"x": extra}))  # type: ignore[attr-defined]
    if isinstance(extra, dict):
        _parse_torrent(fastbencode.bencode({**extra, b"info": info}))  # type: ignore[attr-defined]


@fuzz
@given(bencode_values, st.integers(0, 400), st.binary(min_size=1, max_size=4))
def test_torrent_parse_of_cut_or_spliced_bencode_raises_only_metainfo_error(
    value: Any, at: int, splice: bytes
) -> None:
    data = fastbencode.bencode({b"info": value})  # type: ignore[attr-defined]
    at = min(at, len(data))
    _parse_torrent(data[:at])
    _parse_torrent(data[:at] + splice + data[at:])


HALF = BIG // 2


@pytest.mark.parametrize(
    "data",
    [
        b"d4:info" + b"l" * HALF + b"e" * HALF + b"e",
        b"l" * HALF + b"e" * HALF,
        b"d4:infodee",
        b"d4:infod4:name1:x12:piece lengthi1e6:pieces0:5:filesl"
        + b"d6:lengthi0ee" * (BIG // 14)
        + b"eee",
        b"d4:infod12:meta versioni2e12:piece lengthi16384e4:name1:x9:file tree"
        + b"d1:a" * (BIG // 8)
        + b"d0:d6:lengthi0eee"
        + b"e" * (BIG // 8)
        + b"ee",
        b"d4:infod" + b"".join(b"6:k%05dle" % i for i in range(BIG // 11)) + b"ee",
        b"d4:infod4:name" + b"%d:" % BIG + b"x" * BIG + b"ee",
        b"d4:infod6:lengthi" + b"9" * 4300 + b"e" + b"ee",
        b"d4:info" + b"9" * BIG + b":",
    ],
    ids=[
        "deep-info",
        "deep-top",
        "empty-info",
        "many-files",
        "deep-file-tree",
        "many-keys",
        "long-name",
        "long-integer",
        "long-length-prefix",
    ],
)
def test_torrent_parse_is_linear(data: bytes) -> None:
    within_budget(lambda: parse_torrent(data), MetainfoError)


# ---------------------------------------------------------------- tracker: HTTP query, UDP

ANNOUNCE_ARGS = {
    "remote_ip": "10.0.0.1",
    "trust_ip_param": True,
    "max_numwant": 50,
    "default_numwant": 30,
}
query_names = st.sampled_from(
    [
        b"info_hash",
        b"peer_id",
        b"port",
        b"left",
        b"uploaded",
        b"downloaded",
        b"event",
        b"numwant",
        b"compact",
        b"no_peer_id",
        b"ip",
        b"key",
        b"trackerid",
        b"x",
    ]
)
query_values = st.one_of(
    st.binary(max_size=24),
    st.sampled_from(
        [b"%41" * 20, b"%4", b"%zz", b"%", b"6881", b"0", b"65536", b"9" * 20, b"::1", b"started"]
    ),
)
queries = st.lists(
    st.tuples(query_names, st.sampled_from([b"=", b"", b"=="]), query_values), max_size=16
).map(lambda pairs: b"&".join(name + sep + value for name, sep, value in pairs))


def _tracker_http(query: bytes, *, max_query_bytes: int = 4096) -> None:
    for trust in (True, False):
        try:
            request = parse_http_announce(
                query, **{**ANNOUNCE_ARGS, "trust_ip_param": trust}, max_query_bytes=max_query_bytes
            )
        except TrackerError:
            pass
        else:
            assert len(request.info_hash) == 20 and len(request.peer_id) == 20
            assert 1 <= request.port <= 65535
            assert 0 <= request.numwant <= 50
    try:
        scrape = parse_http_scrape(query, 100, max_query_bytes=max_query_bytes)
    except TrackerError:
        pass
    else:
        assert all(len(h) == 20 for h in scrape.info_hashes)


@fuzz
@given(st.binary(max_size=400))
def test_tracker_http_query_of_random_bytes_raises_only_tracker_error(query: bytes) -> None:
    _tracker_http(query)


@fuzz
@given(queries)
def test_tracker_http_query_of_announce_like_pairs_raises_only_tracker_error(
    query: bytes,
) -> None:
    _tracker_http(query)


def _tracker_udp(packet: bytes) -> None:
    for remote in ("10.0.0.1", "::1", "bogus"):
        with contextlib.suppress(TrackerError):
            parse_udp_request(packet, **{**ANNOUNCE_ARGS, "remote_ip": remote})


udp_packets = st.builds(
    lambda cid, action, tid, body: struct.pack(">QII", cid, action, tid) + body,
    st.sampled_from([0x41727101980, 0, 2**64 - 1]),
    st.integers(0, 4),
    st.integers(0, 2**32 - 1),
    st.binary(max_size=120),
)


@fuzz
@given(st.one_of(st.binary(max_size=200), udp_packets))
def test_tracker_udp_packets_raise_only_tracker_error(packet: bytes) -> None:
    _tracker_udp(packet)


@pytest.mark.parametrize(
    "pattern",
    [b"%41", b"a=b&", b"&", b"x=%41&", b"=", b"%%", b"info_hash=%00%00%00%00%00&"],
    ids=["escapes", "pairs", "ampersands", "extras", "equals", "bad-escapes", "many-hashes"],
)
def test_tracker_http_query_parsing_is_linear(pattern: bytes) -> None:
    # Queries are bounded (MAX_QUERY_BYTES): BIG bytes of work are many queries at the
    # bound, and one query far beyond it is refused before any of it is looked at.
    at_bound = pattern * (MAX_QUERY_BYTES // len(pattern))

    def run() -> None:
        for _ in range(BIG // MAX_QUERY_BYTES // 4):  # four parses per call
            _tracker_http(at_bound, max_query_bytes=MAX_QUERY_BYTES)

    within_budget(run)
    with pytest.raises(TrackerError):
        parse_http_scrape(pattern * (BIG // len(pattern)), 10**6)


def test_tracker_udp_parsing_is_linear() -> None:
    scrape = struct.pack(">QII", 0x41727101980, 2, 7) + os.urandom(20 * 3270)
    within_budget(lambda: [_tracker_udp(scrape) for _ in range(100)])


# ---------------------------------------------------------------- peer wire codec


def _wire(chunks: list[bytes], max_length: int = 1 << 17) -> None:
    decoder = MessageDecoder(max_length)
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            assert decoder.buffered <= max_length + 4
    except ProtocolError:
        pass


def _extension_payloads(payload: bytes) -> None:
    for parse in (lambda p: peer_ut_metadata_id(p, 3), ut_metadata_request):
        with contextlib.suppress(ProtocolError):
            parse(payload)


frames = st.builds(
    lambda msg_id, payload: struct.pack(">IB", len(payload) + 1, msg_id) + payload,
    st.integers(0, 255),
    st.binary(max_size=40),
)


@fuzz
@given(st.lists(st.one_of(frames, st.binary(max_size=12)), max_size=20))
def test_wire_frames_raise_only_protocol_error(chunks: list[bytes]) -> None:
    _wire(chunks)
    _wire([b"".join(chunks)])


@fuzz
@given(st.one_of(st.binary(max_size=200), bencode_values.map(fastbencode.bencode)))  # type: ignore[attr-defined]
def test_extension_payloads_and_handshakes_raise_only_protocol_error(payload: bytes) -> None:
    _extension_payloads(payload)
    with contextlib.suppress(ProtocolError):
        Handshake.parse(payload)


@pytest.mark.parametrize(
    "stream",
    [
        struct.pack(">IBI", 5, 4, 7) * (BIG // 9),  # HAVE after HAVE
        struct.pack(">I", 0) * (BIG // 4),  # keep-alives
        struct.pack(">IB", 1 + 100_000, 5) + b"\xff" * 100_000,  # one large bitfield
    ],
    ids=["haves", "keep-alives", "bitfield"],
)
def test_wire_decoding_is_linear(stream: bytes) -> None:
    for size in (1, 1000, len(stream)):
        if size == 1 and len(stream) > 200_000:
            stream = stream[:200_000]  # a byte at a time: the per-call cost, not the total
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        within_budget(lambda c=chunks: _wire(c))


@pytest.mark.parametrize(
    "make",
    [
        lambda n: b"d1:m" + b"l" * n + b"e" * n + b"e",
        lambda n: b"d" + b"".join(b"6:k%05di1e" % i for i in range(n // 10)) + b"e",
        lambda n: b"d8:msg_typei0e5:piecei" + b"9" * n + b"ee",
    ],
    ids=["deep", "many-keys", "long-integer"],
)
def test_extension_payload_decoding_is_linear(make: Callable[[int], bytes]) -> None:
    # Extended payloads are bounded (MAX_EXTENDED_PAYLOAD): BIG bytes of work are many
    # payloads at the bound, and a frame beyond it is refused by the decoder.
    payload = make(MAX_EXTENDED_PAYLOAD // 2 - 4)[:MAX_EXTENDED_PAYLOAD]
    within_budget(lambda: [_extension_payloads(payload) for _ in range(BIG // len(payload) // 2)])
    # The bound a connection sets (connection.py), refused on the frame's header alone.
    decoder = MessageDecoder(payload_limits={20: MAX_EXTENDED_PAYLOAD})
    with pytest.raises(ProtocolError):
        decoder.feed(struct.pack(">IB", MAX_EXTENDED_PAYLOAD + 2, 20))
