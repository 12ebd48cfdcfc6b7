"""AWS Signature Version 4, verified the way S3 verifies it (header and presigned URL forms).

Pure: the caller hands in the request as received, the current time and a secret lookup.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
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
_SIGV4A_STREAMING = (
    "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
    "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
)
_KNOWN_PAYLOAD_MARKERS = (
    UNSIGNED_PAYLOAD,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    STREAMING_SIGNED_PAYLOAD,
    STREAMING_SIGNED_PAYLOAD_TRAILER,
)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)

_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_UNRESERVED_AND_SLASH = b"-_.~/"
_UNRESERVED = b"-_.~"


@dataclass(frozen=True, slots=True)
class VerifiedAuth:
    """A request whose SigV4 signature checked out, with what aws-chunked decoding needs."""

    access_key: str
    signing_key: bytes
    scope: str
    amz_date: str
    signature: str
    payload_hash: str
    presigned: bool

    @property
    def chunked(self) -> bool:
        """The body is aws-chunked (any STREAMING-* payload marker)."""
        return self.payload_hash.startswith("STREAMING-")

    @property
    def chunks_signed(self) -> bool:
        return self.payload_hash in (STREAMING_SIGNED_PAYLOAD, STREAMING_SIGNED_PAYLOAD_TRAILER)

    @property
    def has_trailer(self) -> bool:
        return self.payload_hash.endswith("-TRAILER")

    @property
    def payload_sha256(self) -> str | None:
        """The hex SHA-256 the body must have, when the client signed one."""
        return self.payload_hash.lower() if _SHA256_HEX.fullmatch(self.payload_hash) else None


@dataclass(frozen=True, slots=True)
class _Credential:
    access_key: str
    date: str
    region: str
    service: str
    terminator: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


@dataclass(frozen=True, slots=True)
class _SignedRequest:
    """What either auth form (header or query) tells us, before checking it."""

    credential: _Credential
    signed_headers: str
    signature: str
    amz_date: str
    request_time: datetime
    payload_hash: str
    presigned: bool


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


def canonical_uri(raw_path: str) -> str:
    """S3's canonical URI: decode once, re-encode each byte; no dot-segment or slash folding."""
    if not raw_path:
        return "/"
    return quote_from_bytes(unquote_to_bytes(utf8_as_sent(raw_path)), safe=_UNRESERVED_AND_SLASH)


_ALL_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _encode_strict(text: str) -> str:
    if _ALL_UNRESERVED.fullmatch(text):
        return text  # nothing to encode (most names and values): skip the byte round trip
    return quote_from_bytes(utf8_as_sent(text), safe=_UNRESERVED)


def canonical_query(query_pairs: Sequence[tuple[str, str]], *, exclude: str | None = None) -> str:
    """Encoded ``name=value`` pairs sorted by encoded name, then value."""
    encoded = sorted(
        (_encode_strict(name), _encode_strict(value))
        for name, value in query_pairs
        if name != exclude
    )
    return "&".join(f"{name}={value}" for name, value in encoded)


def _trim_all(value: str) -> str:
    return " ".join(value.split())


def canonical_headers(headers: Sequence[tuple[str, str]], signed: Sequence[str]) -> str:
    """One ``name:value\\n`` line per signed header; absent headers sign as empty."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(value)
    return "".join(
        f"{name}:{','.join(_trim_all(v) for v in grouped.get(name, ()))}\n" for name in signed
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


def _hex_bytes(text: str) -> str:
    return " ".join(f"{b:02x}" for b in utf8_as_sent(text))


# ---------------------------------------------------------------- detection


def has_auth(headers: Sequence[tuple[str, str]], query_pairs: Sequence[tuple[str, str]]) -> bool:
    """Whether the request carries any AWS signature (SigV4 or SigV2, header or query)."""
    if any(name.lower() == "authorization" for name, _ in headers):
        return True
    names = {name for name, _ in query_pairs}
    return bool(
        {"X-Amz-Algorithm", "X-Amz-Signature", "X-Amz-Credential"} & names
        or {"Signature", "AWSAccessKeyId"} & names
    )


def _unsupported_mechanism() -> S3Error:
    return S3Error(
        "InvalidRequest",
        "The authorization mechanism you have provided is not supported. "
        "Please use AWS4-HMAC-SHA256.",
    )


def _sigv4a_not_implemented() -> S3Error:
    return S3Error(
        "NotImplemented",
        "SigV4a (AWS4-ECDSA-P256-SHA256) signatures are not supported; "
        "sign requests with AWS4-HMAC-SHA256.",
    )


# ---------------------------------------------------------------- verification


def verify_request(
    *,
    method: str,
    raw_path: str,
    query_pairs: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    now: datetime,
    lookup_secret: Callable[[str], str | None],
    region: str,
    max_skew_seconds: int = 900,
    max_presign_expires: int = 604800,
) -> VerifiedAuth:
    """Check a request's SigV4 signature (Authorization header or presigned query).

    ``raw_path`` is the path as sent (still percent-encoded); ``query_pairs`` are the decoded
    query pairs in order; ``headers`` every header as received. Raises S3Error as S3 would.
    """
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    header_values = _header_values(headers)
    authorization = header_values.get("authorization")
    query_names = {name for name, _ in query_pairs}
    query_auth = bool({"X-Amz-Algorithm", "X-Amz-Signature", "X-Amz-Credential"} & query_names)

    if authorization is not None and query_auth:
        raise S3Error(
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
            extra={"ArgumentName": "Authorization", "ArgumentValue": authorization[0]},
        )
    if authorization is not None:
        if len(authorization) != 1:
            raise S3Error(
                "InvalidArgument",
                "Only one Authorization header is allowed",
                extra={"ArgumentName": "Authorization"},
            )
        signed = _parse_header_auth(authorization[0], header_values, region)
        _check_header_auth_time(signed, header_values, now, max_skew_seconds)
        query_for_signing = query_pairs
    elif query_auth:
        signed = _parse_query_auth(
            query_pairs, header_values, region, now, max_skew_seconds, max_presign_expires
        )
        query_for_signing = [pair for pair in query_pairs if pair[0] != "X-Amz-Signature"]
    elif {"Signature", "AWSAccessKeyId"} & query_names:
        raise _unsupported_mechanism()
    else:
        raise S3Error("AccessDenied", "Access Denied")

    secret = lookup_secret(signed.credential.access_key)
    if secret is None:
        raise S3Error(
            "InvalidAccessKeyId",
            extra={"AWSAccessKeyId": signed.credential.access_key},
        )

    credential = signed.credential
    canonical = canonical_request(
        method, raw_path, query_for_signing, headers, signed.signed_headers, signed.payload_hash
    )
    to_sign = string_to_sign(signed.amz_date, credential.scope, canonical)
    key = signing_key(secret, credential.date, credential.region, credential.service)
    expected = hmac_hex(key, to_sign)
    if not hmac.compare_digest(expected.encode("ascii"), utf8_as_sent(signed.signature)):
        raise S3Error(
            "SignatureDoesNotMatch",
            extra={
                "AWSAccessKeyId": credential.access_key,
                "StringToSign": to_sign,
                "SignatureProvided": signed.signature,
                "StringToSignBytes": _hex_bytes(to_sign),
                "CanonicalRequest": canonical,
                "CanonicalRequestBytes": _hex_bytes(canonical),
            },
        )
    return VerifiedAuth(
        access_key=credential.access_key,
        signing_key=key,
        scope=credential.scope,
        amz_date=signed.amz_date,
        signature=signed.signature,
        payload_hash=signed.payload_hash,
        presigned=signed.presigned,
    )


def _header_values(headers: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(value)
    return grouped


def _single(header_values: dict[str, list[str]], name: str) -> str | None:
    values = header_values.get(name)
    return values[0].strip() if values else None


def _format_server_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_amz_date(value: str) -> datetime | None:
    if not _AMZ_DATE.fullmatch(value):
        return None
    # The regex fixed the layout; slicing is far cheaper than strptime on every request.
    try:
        return datetime(
            int(value[0:4]), int(value[4:6]), int(value[6:8]),
            int(value[9:11]), int(value[11:13]), int(value[13:15]), tzinfo=UTC,
        )  # fmt: skip
    except ValueError:
        return None


def _parse_credential(value: str) -> _Credential | None:
    parts = value.strip().split("/")
    if len(parts) < 5:
        return None
    access_key = "/".join(parts[:-4])
    date, region, service, terminator = parts[-4:]
    if not access_key or not re.fullmatch(r"\d{8}", date) or not region:
        return None
    return _Credential(access_key, date, region, service, terminator)


def _check_credential(
    credential: _Credential, region: str, amz_date: str, code: str, prefix: str
) -> None:
    """Scope checks shared by both forms; ``code`` and ``prefix`` are S3's for that form."""
    if credential.service != SERVICE:
        raise S3Error(
            code,
            f'{prefix}; incorrect service "{credential.service}". '
            f'This endpoint belongs to "{SERVICE}".',
        )
    if credential.terminator != TERMINATOR:
        raise S3Error(
            code,
            f'{prefix}; incorrect terminal "{credential.terminator}". '
            f'This endpoint uses "{TERMINATOR}".',
        )
    if credential.region != region:
        raise S3Error(
            code,
            f"{prefix}; the region '{credential.region}' is wrong; expecting '{region}'",
            extra={"Region": region},
        )
    if credential.date != amz_date[:8]:
        raise S3Error(
            code, f"{prefix}; Invalid credential date. Date is not the same as X-Amz-Date."
        )


def _check_signed_headers(signed_headers: str, code: str, message: str) -> None:
    names = signed_headers.split(";")
    if not signed_headers or any(not name for name in names):
        raise S3Error(code, message)
    if "host" not in (name.lower() for name in names):
        raise S3Error(code, f"{message} The host header must be signed.")


def _payload_hash(header_values: dict[str, list[str]], *, required: bool) -> str:
    value = _single(header_values, "x-amz-content-sha256")
    if value is None:
        if required:
            raise S3Error(
                "InvalidRequest",
                "Missing required header for this request: x-amz-content-sha256",
            )
        return UNSIGNED_PAYLOAD
    if value in _SIGV4A_STREAMING:
        raise _sigv4a_not_implemented()
    if value in _KNOWN_PAYLOAD_MARKERS or _SHA256_HEX.fullmatch(value):
        return value
    raise S3Error(
        "InvalidArgument",
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD, "
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER or a valid sha256 value.",
        extra={"ArgumentName": "x-amz-content-sha256", "ArgumentValue": value},
    )


_HEADER_PREFIX = "The authorization header is malformed"
_MALFORMED_CREDENTIAL = (
    'the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
)


def _parse_header_auth(
    value: str, header_values: dict[str, list[str]], region: str
) -> _SignedRequest:
    value = value.strip()
    algorithm, _, rest = value.partition(" ")
    if algorithm == "AWS":
        raise _unsupported_mechanism()
    if algorithm == SIGV4A_ALGORITHM:
        raise _sigv4a_not_implemented()
    if algorithm != ALGORITHM:
        raise S3Error(
            "InvalidArgument",
            "Unsupported Authorization Type",
            extra={"ArgumentName": "Authorization", "ArgumentValue": value},
        )
    components: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, component = part.strip().partition("=")
        if sep:
            components[name.strip()] = component.strip()
    credential_text = components.get("Credential")
    signed_headers = components.get("SignedHeaders")
    signature = components.get("Signature")
    if credential_text is None or signed_headers is None or signature is None:
        raise S3Error(
            "AuthorizationHeaderMalformed",
            f"{_HEADER_PREFIX}; the authorization header requires three components: "
            "Credential, SignedHeaders, and Signature.",
        )
    credential = _parse_credential(credential_text)
    if credential is None:
        raise S3Error("AuthorizationHeaderMalformed", f"{_HEADER_PREFIX}; {_MALFORMED_CREDENTIAL}")
    _check_signed_headers(
        signed_headers, "AuthorizationHeaderMalformed", f"{_HEADER_PREFIX}; bad SignedHeaders."
    )

    amz_date, request_time = _header_request_time(header_values)
    _check_credential(credential, region, amz_date, "AuthorizationHeaderMalformed", _HEADER_PREFIX)
    return _SignedRequest(
        credential=credential,
        signed_headers=signed_headers,
        signature=signature,
        amz_date=amz_date,
        request_time=request_time,
        payload_hash=_payload_hash(header_values, required=True),
        presigned=False,
    )


def _header_request_time(header_values: dict[str, list[str]]) -> tuple[str, datetime]:
    """The request time from X-Amz-Date, else Date (RFC 1123), as (amz_date, datetime)."""
    invalid = S3Error(
        "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"
    )
    amz_date = _single(header_values, "x-amz-date")
    if amz_date is not None:
        parsed = _parse_amz_date(amz_date)
        if parsed is None:
            raise invalid
        return amz_date, parsed
    date = _single(header_values, "date")
    if date is None:
        raise invalid
    try:
        moment = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise invalid from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y%m%dT%H%M%SZ"), moment


def _check_header_auth_time(
    signed: _SignedRequest,
    header_values: dict[str, list[str]],
    now: datetime,
    max_skew_seconds: int,
) -> None:
    if abs((signed.request_time - now).total_seconds()) > max_skew_seconds:
        raw = _single(header_values, "x-amz-date") or _single(header_values, "date") or ""
        raise S3Error(
            "RequestTimeTooSkewed",
            extra={
                "RequestTime": raw,
                "ServerTime": _format_server_time(now),
                "MaxAllowedSkewMilliseconds": str(max_skew_seconds * 1000),
            },
        )


_QUERY_PREFIX = "Error parsing the X-Amz-Credential parameter"


def _parse_query_auth(
    query_pairs: Sequence[tuple[str, str]],
    header_values: dict[str, list[str]],
    region: str,
    now: datetime,
    max_skew_seconds: int,
    max_presign_expires: int,
) -> _SignedRequest:
    params: dict[str, str] = {}
    for name, value in query_pairs:
        params.setdefault(name, value)
    if any(name not in params for name in PRESIGN_PARAMS):
        raise S3Error(
            "AuthorizationQueryParametersError",
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
            "and X-Amz-Expires parameters.",
        )
    algorithm = params["X-Amz-Algorithm"]
    if algorithm == SIGV4A_ALGORITHM:
        raise _sigv4a_not_implemented()
    if algorithm != ALGORITHM:
        raise S3Error(
            "AuthorizationQueryParametersError",
            f'X-Amz-Algorithm only supports "{ALGORITHM}"',
        )
    amz_date = params["X-Amz-Date"]
    request_time = _parse_amz_date(amz_date)
    if request_time is None:
        raise S3Error(
            "AuthorizationQueryParametersError",
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        )
    expires = _parse_expires(params["X-Amz-Expires"], max_presign_expires)
    credential = _parse_credential(params["X-Amz-Credential"])
    if credential is None:
        raise S3Error(
            "AuthorizationQueryParametersError", f"{_QUERY_PREFIX}; {_MALFORMED_CREDENTIAL}"
        )
    _check_credential(
        credential, region, amz_date, "AuthorizationQueryParametersError", _QUERY_PREFIX
    )
    signed_headers = params["X-Amz-SignedHeaders"]
    _check_signed_headers(
        signed_headers,
        "AuthorizationQueryParametersError",
        "Error parsing the X-Amz-SignedHeaders parameter.",
    )

    # A presigned URL is meant to be used later, so only a date in the future beyond the
    # allowed skew is a clock problem; age is governed by X-Amz-Expires instead.
    if (request_time - now).total_seconds() > max_skew_seconds:
        raise S3Error("AccessDenied", "Request is not valid yet")
    expires_at = request_time + timedelta(seconds=expires)
    if now > expires_at:
        raise S3Error(
            "AccessDenied",
            "Request has expired",
            extra={
                "X-Amz-Expires": str(expires),
                "Expires": _format_server_time(expires_at),
                "ServerTime": _format_server_time(now),
            },
        )

    signed_names = {name.lower() for name in signed_headers.split(";")}
    unsigned = sorted(
        name for name in header_values if name.startswith("x-amz-") and name not in signed_names
    )
    if unsigned:
        raise S3Error(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            extra={"HeadersNotSigned": ", ".join(unsigned)},
        )
    return _SignedRequest(
        credential=credential,
        signed_headers=signed_headers,
        signature=params["X-Amz-Signature"],
        amz_date=amz_date,
        request_time=request_time,
        payload_hash=_payload_hash(header_values, required=False),
        presigned=True,
    )


def _parse_expires(value: str, max_presign_expires: int) -> int:
    if not re.fullmatch(r"-?\d{1,18}", value.strip()):
        raise S3Error("AuthorizationQueryParametersError", "X-Amz-Expires should be a number")
    expires = int(value.strip())
    if expires < 0:
        raise S3Error("AuthorizationQueryParametersError", "X-Amz-Expires must be non-negative")
    if expires > max_presign_expires:
        raise S3Error(
            "AuthorizationQueryParametersError",
            "X-Amz-Expires must be less than a week (in seconds) that is 604800"
            if max_presign_expires == 604800
            else f"X-Amz-Expires must be at most {max_presign_expires} seconds",
        )
    return expires
