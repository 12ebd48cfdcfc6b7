"""SigV4 signing primitives: signing key, canonical request, strings to sign, payload markers.

Pure and shared by the verifier (:mod:`s3torrent.s3.sigv4`) and the aws-chunked decoder. Both
sides of a signature are computed here, so what we check is exactly what a client signs.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Sequence
from urllib.parse import quote_from_bytes, unquote_to_bytes

from s3torrent.s3.errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
SIGV4A_ALGORITHM = "AWS4-ECDSA-P256-SHA256"
SERVICE = "s3"
TERMINATOR = "aws4_request"

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
SIGV4A_STREAMING = (
    "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
    "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
)
PAYLOAD_MARKERS = (
    UNSIGNED_PAYLOAD,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    STREAMING_SIGNED_PAYLOAD,
    STREAMING_SIGNED_PAYLOAD_TRAILER,
)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_UNRESERVED_AND_SLASH = b"-_.~/"
_UNRESERVED = b"-_.~"


# ---------------------------------------------------------------- primitives


def utf8_as_sent(text: str) -> bytes:
    # aiohttp hands over undecodable header bytes as surrogate escapes; give them back as sent.
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def hmac_hex(signing_key: bytes, msg: str) -> str:
    """Hex HMAC-SHA256 of ``msg`` under ``signing_key``: the form every SigV4 signature takes."""
    return hmac.new(signing_key, utf8_as_sent(msg), hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """The SigV4 signing key; cached because it only changes daily per credential."""
    key = hmac.new(utf8_as_sent("AWS4" + secret), utf8_as_sent(date), hashlib.sha256).digest()
    for part in (region, service, TERMINATOR):
        key = hmac.new(key, utf8_as_sent(part), hashlib.sha256).digest()
    return key


def chunk_string_to_sign(
    amz_date: str, scope: str, previous_signature: str, chunk_data_sha256_hex: str
) -> str:
    """String to sign for one aws-chunked data chunk (STREAMING-AWS4-HMAC-SHA256-PAYLOAD)."""
    return "\n".join(
        (
            "AWS4-HMAC-SHA256-PAYLOAD",
            amz_date,
            scope,
            previous_signature,
            EMPTY_SHA256,
            chunk_data_sha256_hex,
        )
    )


def trailer_string_to_sign(
    amz_date: str, scope: str, previous_signature: str, trailer_sha256_hex: str
) -> str:
    """String to sign for the trailing headers of a signed aws-chunked body."""
    return "\n".join(
        ("AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous_signature, trailer_sha256_hex)
    )


# ---------------------------------------------------------------- payload hash


def parse_payload_hash(value: str) -> str:
    """Classify an ``x-amz-content-sha256`` value: a marker as sent, a hex digest lowercased.

    Hex digits are case-insensitive, so the digest is normalised here, once, for every later
    comparison with the body's SHA-256; anything else is S3's InvalidArgument (or
    NotImplemented for the SigV4a streaming markers).
    """
    if value in PAYLOAD_MARKERS:
        return value
    if _SHA256_HEX.fullmatch(value):
        return value.lower()
    if value in SIGV4A_STREAMING:
        raise sigv4a_not_implemented()
    raise S3Error(
        "InvalidArgument",
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD, "
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER or a valid sha256 value.",
        extra={"ArgumentName": "x-amz-content-sha256", "ArgumentValue": value},
    )


def is_sha256_hex(payload_hash: str) -> bool:
    """Whether a parsed payload hash is a digest the body must match (not a marker)."""
    return len(payload_hash) == 64 and _SHA256_HEX.fullmatch(payload_hash) is not None


def sigv4a_not_implemented() -> S3Error:
    return S3Error(
        "NotImplemented",
        "SigV4a (AWS4-ECDSA-P256-SHA256) signatures are not supported; "
        "sign requests with AWS4-HMAC-SHA256.",
    )


# ---------------------------------------------------------------- canonical request


_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.~/-]*")


def canonical_uri(raw_path: str) -> str:
    """S3's canonical URI: decode once, re-encode each byte; no dot-segment or slash folding."""
    if not raw_path:
        return "/"
    if _PLAIN_PATH.fullmatch(raw_path):
        # No '%' and nothing to encode (most keys): decoding and re-encoding give it back.
        return raw_path
    return quote_from_bytes(unquote_to_bytes(utf8_as_sent(raw_path)), safe=_UNRESERVED_AND_SLASH)


_ALL_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _encode_strict(text: str) -> str:
    if _ALL_UNRESERVED.fullmatch(text):
        return text  # nothing to encode (most names and values): skip the byte round trip
    return _quote_strict(text)


@functools.lru_cache(maxsize=1024)
def _quote_strict(text: str) -> str:
    # Cached: the values that need encoding repeat (a presigned URL's X-Amz-Credential holds
    # '/', and is the same for a user all day); a pure function of its argument, bounded.
    return quote_from_bytes(utf8_as_sent(text), safe=_UNRESERVED)


def canonical_query(query_pairs: Sequence[tuple[str, str]], *, exclude: str | None = None) -> str:
    """Encoded ``name=value`` pairs sorted by encoded name, then value."""
    encoded = sorted(
        (_encode_strict(name), _encode_strict(value))
        for name, value in query_pairs
        if name != exclude
    )
    return "&".join([f"{name}={value}" for name, value in encoded])


def _trim_all(value: str) -> str:
    return " ".join(value.split())


def canonical_headers(headers: Sequence[tuple[str, str]], signed: Sequence[str]) -> str:
    """One ``name:value\n`` line per signed header; absent headers sign as empty."""
    wanted = set(signed)
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in wanted:
            grouped.setdefault(lowered, []).append(value)
    return "".join(
        [f"{name}:{','.join([_trim_all(v) for v in grouped.get(name, ())])}\n" for name in signed]
    )


def canonical_request(
    method: str,
    raw_path: str,
    query_pairs: Sequence[tuple[str, str]],
    headers: Sequence[tuple[str, str]],
    signed_headers: str,
    payload_hash: str,
) -> str:
    """The SigV4 canonical request; ``signed_headers`` is the client's ``a;b;c`` list verbatim."""
    names = [name.lower() for name in signed_headers.split(";")]
    return "\n".join(
        (
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(query_pairs),
            canonical_headers(headers, names),
            signed_headers,
            payload_hash,
        )
    )


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    """The SigV4 string to sign for a canonical request."""
    return "\n".join(
        (ALGORITHM, amz_date, scope, hashlib.sha256(utf8_as_sent(canonical)).hexdigest())
    )
