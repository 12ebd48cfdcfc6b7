"""A bounded fuzz campaign on the auth cores: SigV4, SigV2 and aws-chunked decoding.

Two invariants, after h11's: input in never raises anything but the layer's own error
(S3Error; the canonicalisation functions raise nothing at all), and never costs more than
linear time (a 1 MB input is handled in well under a second).

By default each target runs a few seconds. Set ``S3TORRENT_FUZZ_EXAMPLES`` (examples per
target, e.g. 20000) to run a longer campaign on demand.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3torrent.s3 import sigv2, sigv4
from s3torrent.s3.chunked import AwsChunkedDecoder
from s3torrent.s3.errors import S3Error
from s3torrent.s3.sigv4 import (
    STREAMING_SIGNED_PAYLOAD,
    STREAMING_SIGNED_PAYLOAD_TRAILER,
    VerifiedAuth,
    signing_key,
)

EXAMPLES = int(os.environ.get("S3TORRENT_FUZZ_EXAMPLES", "300"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
NOW = datetime(2013, 5, 24, 0, 0, 0, tzinfo=UTC)
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
MEGABYTE = 1024 * 1024
# Generous for a shared two-core machine; a quadratic path on 1 MB takes minutes, not this.
LINEAR_BUDGET_SECONDS = 1.0


def lookup(key: str) -> str | None:
    return SECRET if key == ACCESS_KEY else None


# Text as aiohttp may hand it over: any code point, including lone surrogates (undecodable
# header bytes arrive as surrogate escapes).
any_text = st.text(st.characters(codec=None), max_size=60)
token = st.sampled_from(
    [
        "AWS4-HMAC-SHA256",
        "AWS4-ECDSA-P256-SHA256",
        "AWS",
        "Credential=",
        f"Credential={ACCESS_KEY}/20130524/us-east-1/s3/aws4_request",
        "SignedHeaders=",
        "SignedHeaders=host;x-amz-date;x-amz-content-sha256",
        "Signature=",
        "Signature=" + "0" * 64,
        ",",
        ";",
        "/",
        "=",
        " ",
        ":",
        "%",
        "%2F",
        "%zz",
        "\udcff",
        "20130524T000000Z",
        "Fri, 24 May 2013 00:00:00 GMT",
        "UNSIGNED-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    ]
)
# Tokens glued with random text reach far deeper into the parsers than random text alone.
structured = st.lists(st.one_of(token, any_text), max_size=8).map("".join)
field = st.one_of(any_text, structured)
header_name = st.one_of(
    st.sampled_from(
        [
            "Host",
            "Authorization",
            "x-amz-date",
            "X-Amz-Date",
            "Date",
            "x-amz-content-sha256",
            "x-amz-acl",
            "X-AMZ-META-A",
            "Content-MD5",
            "Content-Type",
            "x-amz-trailer",
        ]
    ),
    any_text,
)
headers = st.lists(st.tuples(header_name, field), max_size=8)
query_name = st.one_of(
    st.sampled_from(
        [
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-SignedHeaders",
            "X-Amz-Signature",
            "Signature",
            "AWSAccessKeyId",
            "Expires",
            "acl",
            "versionId",
            "x-amz-acl",
        ]
    ),
    any_text,
)
query = st.lists(st.tuples(query_name, field), max_size=8)
method = st.one_of(st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"]), any_text)


# ---------------------------------------------------------------- SigV4


@fuzz
@given(method=method, raw_path=field, query_pairs=query, header_list=headers, signed=field)
def test_sigv4_canonicalisation_never_raises(
    method: str,
    raw_path: str,
    query_pairs: list[tuple[str, str]],
    header_list: list[tuple[str, str]],
    signed: str,
) -> None:
    canonical = sigv4.canonical_request(method, raw_path, query_pairs, header_list, signed, signed)
    assert sigv4.string_to_sign("20130524T000000Z", "scope", canonical).count("\n") == 3
    assert sigv4.canonical_uri(raw_path) == sigv4.canonical_uri(sigv4.canonical_uri(raw_path))
    sigv4.canonical_query(query_pairs, exclude="X-Amz-Signature")
    sigv4.unsigned_headers((name for name, _ in header_list), signed.split(";"))


@fuzz
@given(method=method, raw_path=field, query_pairs=query, header_list=headers)
def test_sigv4_verification_raises_only_s3_error(
    method: str,
    raw_path: str,
    query_pairs: list[tuple[str, str]],
    header_list: list[tuple[str, str]],
) -> None:
    with contextlib.suppress(S3Error):
        sigv4.verify_request(
            method=method,
            raw_path=raw_path,
            query_pairs=query_pairs,
            headers=header_list,
            now=NOW,
            lookup_secret=lookup,
            region="us-east-1",
        )


@fuzz
@given(value=field)
def test_payload_hash_classification_raises_only_s3_error(value: str) -> None:
    try:
        parsed = sigv4.parse_payload_hash(value)
    except S3Error:
        return
    assert parsed in sigv4.PAYLOAD_MARKERS or parsed == value.lower()


# ---------------------------------------------------------------- SigV2


@fuzz
@given(
    method=method,
    raw_path=field,
    query_pairs=query,
    header_list=headers,
    bucket=st.one_of(st.none(), any_text),
    md5=field,
    date=field,
)
def test_sigv2_canonicalisation_never_raises(
    method: str,
    raw_path: str,
    query_pairs: list[tuple[str, str]],
    header_list: list[tuple[str, str]],
    bucket: str | None,
    md5: str,
    date: str,
) -> None:
    resource = sigv2.canonical_resource(raw_path, query_pairs, bucket)
    to_sign = sigv2.string_to_sign(method, md5, md5, date, header_list, resource)
    sigv2.sign(SECRET, to_sign)
    # One line per x-amz-* name, lowercased and sorted (values that hold a line break cannot
    # arrive over HTTP/1.1, so they are left out of this check).
    one_line = [(name, value) for name, value in header_list if "\n" not in value]
    amz = sigv2.canonical_amz_headers(one_line)
    names = sorted({name.lower() for name, _ in one_line if name.lower().startswith("x-amz-")})
    assert [line.partition(":")[0] for line in amz.split("\n")[:-1]] == names


@fuzz
@given(
    method=method,
    raw_path=field,
    query_pairs=query,
    header_list=headers,
    bucket=st.one_of(st.none(), any_text),
)
def test_sigv2_verification_raises_only_s3_error(
    method: str,
    raw_path: str,
    query_pairs: list[tuple[str, str]],
    header_list: list[tuple[str, str]],
    bucket: str | None,
) -> None:
    header_list = [*header_list, ("Authorization", f"AWS {ACCESS_KEY}:c2ln")]
    for candidate in (header_list, header_list[:-1]):
        with contextlib.suppress(S3Error):
            sigv2.verify_request(
                method=method,
                raw_path=raw_path,
                query_pairs=query_pairs,
                headers=candidate,
                now=NOW,
                lookup_secret=lookup,
                virtual_host_bucket=bucket,
            )


# ---------------------------------------------------------------- aws-chunked


def _auth(payload_hash: str) -> VerifiedAuth:
    return VerifiedAuth(
        access_key=ACCESS_KEY,
        signing_key=signing_key(SECRET, "20130524", "us-east-1"),
        scope="20130524/us-east-1/s3/aws4_request",
        amz_date="20130524T000000Z",
        signature=SEED,
        payload_hash=payload_hash,
        presigned=False,
    )


frame_token = st.sampled_from(
    [
        b"0",
        b"1",
        b"3",
        b"ff",
        b"10000",
        b"ffffffffffffffff",
        b";chunk-signature=",
        b";chunk-signature=" + b"0" * 64,
        b"\r\n",
        b"\r",
        b"\n",
        b"abc",
        b"x-amz-checksum-crc32:",
        b"x-amz-checksum-crc32:NSRBwg==",
        b"x-amz-trailer-signature:" + b"0" * 64,
        b":",
        b"\xff",
    ]
)
chunked_body = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(frame_token, st.binary(max_size=8)), max_size=30).map(b"".join),
)


@fuzz
@given(
    body=chunked_body,
    cuts=st.lists(st.integers(0, 400), max_size=6),
    flavour=st.sampled_from(["unsigned", "unsigned-trailer", "signed", "signed-trailer"]),
    declared=st.one_of(
        st.none(), st.lists(st.sampled_from(["x-amz-checksum-crc32", "x-amz-foo"]), max_size=2)
    ),
    expected_length=st.one_of(st.none(), st.integers(0, 400)),
    max_chunk_size=st.integers(0, 1 << 20),
)
def test_chunked_decoding_raises_only_s3_error(
    body: bytes,
    cuts: list[int],
    flavour: str,
    declared: list[str] | None,
    expected_length: int | None,
    max_chunk_size: int,
) -> None:
    signed = flavour.startswith("signed")
    trailer = flavour.endswith("trailer")
    auth = _auth(STREAMING_SIGNED_PAYLOAD_TRAILER if trailer else STREAMING_SIGNED_PAYLOAD)
    points = sorted({cut % (len(body) + 1) for cut in cuts})
    pieces = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    decoded = 0
    with contextlib.suppress(S3Error):
        decoder = AwsChunkedDecoder(
            signed=signed,
            trailer=trailer,
            auth=auth if signed else None,
            max_chunk_size=max_chunk_size,
            expected_length=expected_length,
            declared_trailers=declared,
        )
        for piece in pieces:
            decoded += sum(len(part) for part in decoder.feed(piece))
        decoder.finish()
        assert decoder.done
        assert decoded == decoder.decoded_length <= len(body)


# ---------------------------------------------------------------- linear time


def _best_of_three(run: Callable[[], object]) -> float:
    """The fastest of three runs: noise from other processes only ever adds time."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        with contextlib.suppress(S3Error):
            run()
        best = min(best, time.perf_counter() - started)
    return best


def _sigv4(header_list: list[tuple[str, str]], raw_path: str = "/b/k", q: str = "") -> None:
    sigv4.verify_request(
        method="GET",
        raw_path=raw_path,
        query_pairs=[("X-Amz-Credential", q)] if q else [],
        headers=header_list,
        now=NOW,
        lookup_secret=lookup,
        region="us-east-1",
    )


def _sigv2(header_list: list[tuple[str, str]], raw_path: str = "/b/k") -> None:
    sigv2.verify_request(
        method="GET",
        raw_path=raw_path,
        query_pairs=[],
        headers=header_list,
        now=NOW,
        lookup_secret=lookup,
    )


def _feed(decoder: AwsChunkedDecoder, body: bytes, step: int) -> None:
    for start in range(0, len(body), step):
        decoder.feed(body[start : start + step])
    decoder.finish()


def _header_auth(signed_headers: str, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [
        ("Host", "h"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        (
            "Authorization",
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20130524/us-east-1/s3/aws4_request, "
            f"SignedHeaders={signed_headers}, Signature={'0' * 64}",
        ),
        *extra,
    ]


M = MEGABYTE
MANY_HEADERS = [(f"x-amz-meta-{i}", "v") for i in range(M // 16)]
LINEAR_CASES: dict[str, Callable[[], object]] = {
    "sigv4 canonical uri of percent escapes": lambda: sigv4.canonical_uri("/%41%zz" * (M // 6)),
    "sigv4 canonical query of 1 MB value": lambda: sigv4.canonical_query([("a", "é ~" * (M // 3))]),
    "sigv4 canonical headers of whitespace": lambda: sigv4.canonical_headers(
        [("x-amz-a", " \t a " * (M // 5))], ["x-amz-a"]
    ),
    "sigv4 authorization of commas": lambda: _sigv4(
        [("Authorization", "AWS4-HMAC-SHA256 " + ",=" * (M // 2))]
    ),
    "sigv4 credential of slashes": lambda: _sigv4(
        [("Authorization", "AWS4-HMAC-SHA256 Credential=" + "/" * M)]
    ),
    "sigv4 signed headers list of 1 MB": lambda: _sigv4(
        _header_auth("host;" + "a;" * (M // 2), [])
    ),
    "sigv4 many unsigned amz headers": lambda: _sigv4(_header_auth("host", MANY_HEADERS)),
    "sigv4 full verification of 1 MB path": lambda: _sigv4(
        _header_auth("host;x-amz-content-sha256;x-amz-date", []),
        raw_path="/b/" + "%E2%82" * (M // 6),
    ),
    "sigv4 presigned credential of 1 MB": lambda: _sigv4([("Host", "h")], q="a/" * (M // 2)),
    "sigv4 date header of 1 MB": lambda: _sigv4(
        [*_header_auth("host", []), ("Date", "Fri, " * (M // 5))][1:]
    ),
    "sigv2 authorization of colons": lambda: _sigv2(
        [("Authorization", "AWS " + ":" * M), ("Date", "Fri, 24 May 2013 00:00:00 GMT")]
    ),
    "sigv2 many amz headers": lambda: _sigv2(
        [
            ("Authorization", f"AWS {ACCESS_KEY}:c2ln"),
            ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
            *MANY_HEADERS,
        ]
    ),
    "sigv2 canonical amz headers of 1 MB": lambda: sigv2.canonical_amz_headers(
        [("x-amz-a", " " * M + "v")]
    ),
    "chunked endless chunk line": lambda: _feed(
        AwsChunkedDecoder(signed=False, trailer=False), b"1" * M, 1
    ),
    "chunked 1 MB of one-byte chunks": lambda: _feed(
        AwsChunkedDecoder(signed=False, trailer=False), b"1\r\na\r\n" * (M // 6) + b"0\r\n\r\n", M
    ),
    "chunked 100 KB of one-byte chunks fed byte by byte": lambda: _feed(
        AwsChunkedDecoder(signed=False, trailer=False), b"1\r\na\r\n" * (M // 60), 1
    ),
    "chunked 1 MB chunk fed in small pieces": lambda: _feed(
        AwsChunkedDecoder(signed=True, trailer=False, auth=_auth(STREAMING_SIGNED_PAYLOAD)),
        b"100000;chunk-signature=" + b"0" * 64 + b"\r\n" + b"a" * M + b"\r\n",
        512,
    ),
    "chunked endless trailers": lambda: _feed(
        AwsChunkedDecoder(signed=False, trailer=True), b"0\r\n" + b"a:b\r\n" * (M // 5), 4096
    ),
}


@pytest.mark.parametrize("case", sorted(LINEAR_CASES))
def test_one_megabyte_inputs_are_handled_in_linear_time(case: str) -> None:
    elapsed = _best_of_three(LINEAR_CASES[case])
    assert elapsed < LINEAR_BUDGET_SECONDS, f"{case}: {elapsed:.3f}s"
