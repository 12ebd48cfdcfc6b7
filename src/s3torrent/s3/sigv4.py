"""AWS Signature Version 4, verified the way S3 verifies it (header and presigned URL forms).

Pure: the caller hands in the request as received, the current time and a secret lookup.
The signing primitives (canonical request, strings to sign, keys) are in
:mod:`s3torrent.s3.sigv4_signing` and importable from here as well.
"""

from __future__ import annotations

import functools
import hmac
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from s3torrent.s3.errors import S3Error

# The signing primitives live in sigv4_signing; they are re-exported so callers keep one
# import path for everything SigV4.
from s3torrent.s3.sigv4_signing import (
    ALGORITHM,
    EMPTY_SHA256,
    PAYLOAD_MARKERS,
    SERVICE,
    SIGV4A_ALGORITHM,
    SIGV4A_STREAMING,
    STREAMING_SIGNED_PAYLOAD,
    STREAMING_SIGNED_PAYLOAD_TRAILER,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    TERMINATOR,
    UNSIGNED_PAYLOAD,
    canonical_headers,
    canonical_query,
    canonical_request,
    canonical_uri,
    chunk_string_to_sign,
    hmac_hex,
    is_sha256_hex,
    parse_payload_hash,
    signing_key,
    sigv4a_not_implemented,
    string_to_sign,
    trailer_string_to_sign,
    utf8_as_sent,
)

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "PAYLOAD_MARKERS",
    "PRESIGN_PARAMS",
    "SERVICE",
    "SIGV4A_ALGORITHM",
    "SIGV4A_STREAMING",
    "STREAMING_SIGNED_PAYLOAD",
    "STREAMING_SIGNED_PAYLOAD_TRAILER",
    "STREAMING_UNSIGNED_PAYLOAD_TRAILER",
    "TERMINATOR",
    "UNSIGNED_PAYLOAD",
    "VerifiedAuth",
    "canonical_headers",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "chunk_string_to_sign",
    "has_auth",
    "hmac_hex",
    "is_sha256_hex",
    "must_be_signed",
    "parse_payload_hash",
    "refuse_repeated_headers",
    "signing_key",
    "string_to_sign",
    "trailer_string_to_sign",
    "unsigned_headers",
    "utf8_as_sent",
    "verify_request",
]

PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)

_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")


@dataclass(frozen=True, slots=True)
class VerifiedAuth:
    """A request whose SigV4 signature checked out, with what aws-chunked decoding needs."""

    access_key: str
    signing_key: bytes
    scope: str
    amz_date: str
    signature: str
    payload_hash: str  # a payload marker, or the hex SHA-256 lowercased (parse_payload_hash)
    presigned: bool
    # A presigned request's window: from its date less the allowed clock skew to its expiry
    # (both UTC). Inside it, the same request checks out again with the same secret, which
    # is what s3/auth.py's memo of verified requests relies on. None for a header signature.
    valid_between: tuple[datetime, datetime] | None = None

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
        return self.payload_hash if is_sha256_hex(self.payload_hash) else None


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
    expires_at: datetime | None = None  # a presigned URL's expiry


def _hex_bytes(text: str) -> str:
    # bytes.hex runs in C: an error response must not cost a Python step per byte.
    return utf8_as_sent(text).hex(" ")


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


# ---------------------------------------------------------------- signed headers

# Besides every x-amz-* header: Host (which request this is) and Content-MD5 (which body).
_SIGNED_WHEN_PRESENT = frozenset({"host", "content-md5"})


def must_be_signed(name: str) -> bool:
    """Whether a header present in a request must be listed in its SignedHeaders.

    S3's rule for both SigV4 forms: every ``x-amz-*`` header, Host and Content-MD5. The
    presigned form's own X-Amz-* parameters travel in the query string, which is signed
    whole (but for X-Amz-Signature), so no header is exempt.
    """
    lowered = name.lower()
    return lowered.startswith("x-amz-") or lowered in _SIGNED_WHEN_PRESENT


def unsigned_headers(present: Iterable[str], signed: Collection[str]) -> list[str]:
    """The present headers (lowercased, sorted) that must be signed and are not in ``signed``."""
    signed_names = {name.lower() for name in signed}
    return sorted(
        {
            name.lower()
            for name in present
            if must_be_signed(name) and name.lower() not in signed_names
        }
    )


def refuse_repeated_headers(header_values: Mapping[str, Sequence[str]]) -> None:
    """Refuse a signed request that sends an x-amz-* header as more than one field
    (``header_values``: values by lower-case name).

    Both signature versions sign a header's fields joined by commas, so `a,b` in one field
    and `a` and `b` in two carry the same signature, and whoever holds a captured request
    may send either; a handler reading one field would act on a value nobody signed (the
    part of a split x-amz-copy-source before its comma, another object). S3 joins a
    repeated header into one comma-separated value: user metadata and the content headers
    are stored so (ops/objects.stored_headers); every other x-amz-* header, which no
    client sends twice, is refused rather than read two ways."""
    for name, values in header_values.items():
        if len(values) > 1 and name.startswith("x-amz-") and not name.startswith("x-amz-meta-"):
            raise S3Error(
                "InvalidArgument",
                f"The header {name} was sent more than once; send it once, its values "
                "separated by commas.",
                extra={"ArgumentName": name, "ArgumentValue": ",".join(values)[:64]},
            )


def _refuse_unsigned_headers(header_values: dict[str, list[str]], signed_headers: str) -> None:
    # header_values' names are lower case already: unsigned_headers without lowering them again.
    signed_names = set(signed_headers.lower().split(";"))
    unsigned = sorted(
        name
        for name in header_values
        if (name.startswith("x-amz-") or name in _SIGNED_WHEN_PRESENT) and name not in signed_names
    )
    if unsigned:
        raise S3Error(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            extra={"HeadersNotSigned": ", ".join(unsigned)},
        )


# ---------------------------------------------------------------- verification


def verify_request(
    *,
    method: str,
    raw_path: str,
    query_pairs: Sequence[tuple[str, str]],
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
    # Only what was signed may be obeyed: an unsigned x-amz-acl or x-amz-copy-source added to
    # a captured request would otherwise be acted on under the signer's name.
    _refuse_unsigned_headers(header_values, signed.signed_headers)

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
    refuse_repeated_headers(header_values)
    valid_between = None
    if signed.expires_at is not None:
        earliest = signed.request_time - timedelta(seconds=max_skew_seconds)
        valid_between = (earliest, signed.expires_at)
    return VerifiedAuth(
        access_key=credential.access_key,
        signing_key=key,
        scope=credential.scope,
        amz_date=signed.amz_date,
        signature=signed.signature,
        payload_hash=parse_payload_hash(signed.payload_hash),
        presigned=signed.presigned,
        valid_between=valid_between,
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


@functools.lru_cache(maxsize=1024)
def _parse_amz_date(value: str) -> datetime | None:
    # Cached (bounded): requests of the same second, and every use of a presigned URL,
    # carry the same date; the result is immutable.
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


@functools.lru_cache(maxsize=1024)
def _parse_credential(value: str) -> _Credential | None:
    # Cached (bounded): a user's credential scope is the same all day; the result is frozen.
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
    names = signed_headers.lower().split(";")
    if not signed_headers or "" in names:
        raise S3Error(code, message)
    if "host" not in names:
        raise S3Error(code, f"{message} The host header must be signed.")


def _payload_hash(header_values: dict[str, list[str]], *, required: bool) -> str:
    """x-amz-content-sha256 as sent (it is what the client signed), after checking its form."""
    value = _single(header_values, "x-amz-content-sha256")
    if value is None:
        if required:
            raise S3Error(
                "InvalidRequest",
                "Missing required header for this request: x-amz-content-sha256",
            )
        return UNSIGNED_PAYLOAD
    parse_payload_hash(value)
    return value


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
        raise sigv4a_not_implemented()
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
            name = name.strip()
            if name in components:
                # One would be read and the other not: neither is picked.
                raise S3Error(
                    "AuthorizationHeaderMalformed",
                    f"{_HEADER_PREFIX}; the component {name[:32]} was given more than once.",
                )
            components[name] = component.strip()
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
        if name in params and name in PRESIGN_PARAMS:
            # One would be read and the other not (X-Amz-Signature is not signed itself).
            raise S3Error(
                "AuthorizationQueryParametersError",
                f"The query parameter {name} was given more than once.",
            )
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
        raise sigv4a_not_implemented()
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
    # 0 is below S3's minimum (1): expired at once, not valid for the rest of its second.
    if now > expires_at or expires == 0:
        raise S3Error(
            "AccessDenied",
            "Request has expired",
            extra={
                "X-Amz-Expires": str(expires),
                "Expires": _format_server_time(expires_at),
                "ServerTime": _format_server_time(now),
            },
        )

    return _SignedRequest(
        credential=credential,
        signed_headers=signed_headers,
        signature=params["X-Amz-Signature"],
        amz_date=amz_date,
        request_time=request_time,
        payload_hash=_payload_hash(header_values, required=False),
        presigned=True,
        expires_at=expires_at,
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
