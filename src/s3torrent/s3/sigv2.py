"""AWS Signature Version 2 for S3, verified the way S3 verifies it (header and presigned forms).

Pure, like :mod:`s3torrent.s3.sigv4`: the caller hands in the request as received, the current
time and a secret lookup. SigV2 signs no payload itself, but it signs every x-amz-* header: the
result carries x-amz-content-sha256 when the request names one (the body layer holds the body to
it, as for any request), else ``UNSIGNED-PAYLOAD``; Content-MD5 (which is signed) is checked by
the body layer too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from s3torrent.s3.errors import S3Error
from s3torrent.s3.sigv4 import (
    STREAMING_SIGNED_PAYLOAD,
    STREAMING_SIGNED_PAYLOAD_TRAILER,
    UNSIGNED_PAYLOAD,
    VerifiedAuth,
    parse_payload_hash,
    refuse_repeated_headers,
    utf8_as_sent,
)

SCHEME = "AWS"

# Query parameters that select a sub-resource (another operation, version or response override)
# and therefore belong in the signed resource. This is the list S3 documents, plus what botocore's
# HmacV1Auth signs, plus every further sub-resource our router maps to another operation: an
# unsigned one would let anyone holding a presigned URL turn it into that other operation.
SUBRESOURCES = frozenset(
    {
        # S3's documented list
        "acl", "cors", "delete", "lifecycle", "location", "logging", "notification",
        "partNumber", "policy", "publicAccessBlock", "requestPayment", "restore", "tagging",
        "torrent", "uploadId", "uploads", "versionId", "versioning", "versions", "website",
        # response header overrides
        "response-cache-control", "response-content-disposition", "response-content-encoding",
        "response-content-language", "response-content-type", "response-expires",
        # also signed by botocore
        "accelerate", "analytics", "defaultObjectAcl", "inventory", "metrics", "object-lock",
        "replication", "select", "select-type", "storageClass",
        # other operation-selecting sub-resources (SigV4-only at AWS; signing them is harmless)
        "attributes", "encryption", "intelligent-tiering", "legal-hold", "ownershipControls",
        "policyStatus", "retention", "session",
    }
)  # fmt: skip

_QUERY_AUTH_PARAMS = ("AWSAccessKeyId", "Signature", "Expires")
_SIGV4_QUERY_PARAMS = frozenset({"X-Amz-Algorithm", "X-Amz-Signature", "X-Amz-Credential"})
_EPOCH = re.compile(r"\d{1,12}")
_AMZ_BASIC_DATE = re.compile(r"\d{8}T\d{6}Z")


# ---------------------------------------------------------------- detection


def _scheme(authorization: str) -> str:
    return authorization.strip().partition(" ")[0]


def is_sigv2(headers: Sequence[tuple[str, str]], query_pairs: Sequence[tuple[str, str]]) -> bool:
    """Whether the request's signature is SigV2 (``AWS`` header or ``Signature`` query form)."""
    authorization = [value for name, value in headers if name.lower() == "authorization"]
    if authorization:
        return _scheme(authorization[0]) == SCHEME
    names = {name for name, _ in query_pairs}
    if _SIGV4_QUERY_PARAMS & names:
        return False
    return bool({"Signature", "AWSAccessKeyId"} & names)


# ---------------------------------------------------------------- primitives


def sign(secret: str, string_to_sign: str) -> str:
    """Base64 HMAC-SHA1 of ``string_to_sign`` under ``secret``: a SigV2 signature."""
    digest = hmac.new(utf8_as_sent(secret), utf8_as_sent(string_to_sign), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def canonical_amz_headers(amz: Sequence[tuple[str, str]]) -> str:
    """``name:value\\n`` per x-amz-* header: names lowercased and sorted, repeats joined by ","."""
    grouped: dict[str, list[str]] = {}
    for name, value in amz:
        lowered = name.lower()
        if lowered.startswith("x-amz-"):
            grouped.setdefault(lowered, []).append(value.strip())
    return "".join(f"{name}:{','.join(grouped[name])}\n" for name in sorted(grouped))


def _resource_path(raw_path: str, virtual_host_bucket: str | None) -> str:
    """The path part of the resource: bucket first, and a bucket alone ends with "/"."""
    path = raw_path or "/"
    if virtual_host_bucket is not None:
        return f"/{virtual_host_bucket}{path}"
    if path != "/" and "/" not in path[1:]:
        # Path-style bucket requests ("/bucket") sign "/bucket/", like virtual-hosted ones do.
        return path + "/"
    return path


def _subresources(query_pairs: Sequence[tuple[str, str]]) -> str:
    signed = sorted(
        ((name, value) for name, value in query_pairs if name in SUBRESOURCES),
        key=lambda pair: pair[0],
    )
    if not signed:
        return ""
    return "?" + "&".join(f"{name}={value}" if value else name for name, value in signed)


def canonical_resource(
    raw_path: str,
    query_pairs: Sequence[tuple[str, str]],
    virtual_host_bucket: str | None = None,
) -> str:
    """The path as the client encoded it (bucket first), then the signed sub-resources, sorted.

    Sub-resource values are the decoded ones; an empty value signs as the bare name.
    """
    return _resource_path(raw_path, virtual_host_bucket) + _subresources(query_pairs)


def string_to_sign(
    method: str,
    content_md5: str,
    content_type: str,
    date: str,
    amz_headers: Sequence[tuple[str, str]],
    resource: str,
) -> str:
    """The SigV2 string to sign; ``date`` is the Date header, Expires, or "" with x-amz-date."""
    return (
        f"{method.upper()}\n{content_md5.strip()}\n{content_type.strip()}\n{date.strip()}\n"
        + canonical_amz_headers(amz_headers)
        + resource
    )


def _hex_bytes(text: str) -> str:
    # bytes.hex runs in C: an error response must not cost a Python step per byte.
    return utf8_as_sent(text).hex(" ")


def _format_server_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_http_date(value: str) -> datetime | None:
    """An RFC 1123 date (what SigV2 clients send), or ISO 8601 basic as SigV4 clients do."""
    value = value.strip()
    if _AMZ_BASIC_DATE.fullmatch(value):
        try:
            return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _only_one_mechanism(authorization: str) -> S3Error:
    return S3Error(
        "InvalidArgument",
        "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
        "Signature query string parameter or the Authorization header should be specified",
        extra={"ArgumentName": "Authorization", "ArgumentValue": authorization},
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
    virtual_host_bucket: str | None = None,
    max_skew_seconds: int = 900,
) -> VerifiedAuth:
    """Check a request's SigV2 signature (``Authorization: AWS`` header or presigned query).

    ``raw_path`` is the path as sent (still percent-encoded, no query); ``query_pairs`` are the
    decoded query pairs in order; ``headers`` every header as received. For virtual-hosted
    requests pass the bucket taken from Host. Raises S3Error as S3 would.
    """
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name.lower(), []).append(value)
    authorization = grouped.get("authorization")
    query_names = {name for name, _ in query_pairs}
    params: dict[str, str] = {}
    for name, value in query_pairs:
        params.setdefault(name, value)

    def header(name: str) -> str | None:
        values = grouped.get(name)
        return values[0].strip() if values else None

    amz_headers = list(headers)  # only the x-amz-* ones are signed
    if authorization is not None:
        if len(authorization) != 1:
            raise S3Error(
                "InvalidArgument",
                "Only one Authorization header is allowed",
                extra={"ArgumentName": "Authorization"},
            )
        if (_SIGV4_QUERY_PARAMS | {"Signature", "AWSAccessKeyId"}) & query_names:
            raise _only_one_mechanism(authorization[0])
        access_key, signature = _parse_header(authorization[0])
        request_time = _check_header_time(header, now, max_skew_seconds)
        # With x-amz-date the Date line is empty (S3's rule); botocore keeps the Date header's
        # value there anyway, so that is accepted as a second reading.
        dates = [""] if header("x-amz-date") is not None else []
        dates.append(header("date") or "")
        content_md5 = header("content-md5") or ""
        content_type = header("content-type") or ""
        presigned = False
    elif {"Signature", "AWSAccessKeyId"} & query_names:
        if _SIGV4_QUERY_PARAMS & query_names:
            raise _only_one_mechanism(params.get("X-Amz-Algorithm", ""))
        for name in _QUERY_AUTH_PARAMS:
            if sum(1 for n, _ in query_pairs if n == name) > 1:
                # One would be read and the other not (Signature is not signed itself).
                raise S3Error(
                    "InvalidArgument",
                    f"The query parameter {name} was given more than once.",
                    extra={"ArgumentName": name},
                )
        if any(not params.get(name) for name in _QUERY_AUTH_PARAMS):
            raise S3Error(
                "AccessDenied",
                "Query-string authentication requires the Signature, Expires and "
                "AWSAccessKeyId parameters",
            )
        access_key = params["AWSAccessKeyId"]
        # An unencoded "+" in the URL arrives as a space; base64 never contains one.
        signature = params["Signature"].replace(" ", "+")
        expires = params["Expires"].strip()
        _check_expires(expires, now)
        request_time = now
        dates = [expires]
        # Presigned URLs may carry signed headers as query parameters (botocore moves x-amz-*,
        # Content-MD5 and Content-Type there); headers actually sent still count.
        amz_headers += [(n, v) for n, v in query_pairs if n.lower().startswith("x-amz-")]
        content_md5 = header("content-md5") or params.get("content-md5", "")
        content_type = header("content-type") or params.get("content-type", "")
        presigned = True
    else:
        raise S3Error("AccessDenied", "Access Denied")

    secret = lookup_secret(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId", extra={"AWSAccessKeyId": access_key})

    subresources = _subresources(query_pairs)
    # S3's reading first; a client that signed a bare "/bucket" path as sent is accepted too.
    paths = [_resource_path(raw_path, virtual_host_bucket), raw_path or "/"]
    candidates = list(
        dict.fromkeys(
            string_to_sign(
                method, content_md5, content_type, date, amz_headers, path + subresources
            )
            for path in (paths if virtual_host_bucket is None else paths[:1])
            for date in dates
        )
    )
    provided = utf8_as_sent(signature)
    # Every candidate is checked (no early exit), so timing does not reveal which one matched.
    matched = [hmac.compare_digest(sign(secret, c).encode("ascii"), provided) for c in candidates]
    if not any(matched):
        to_sign = candidates[0]
        raise S3Error(
            "SignatureDoesNotMatch",
            extra={
                "AWSAccessKeyId": access_key,
                "StringToSign": to_sign,
                "SignatureProvided": signature,
                "StringToSignBytes": _hex_bytes(to_sign),
            },
        )
    # Signed joined by commas, as SigV4 signs them: one value, not two (sigv4's doc).
    refuse_repeated_headers(grouped)
    return VerifiedAuth(
        access_key=access_key,
        signing_key=b"",
        scope="",
        amz_date=request_time.strftime("%Y%m%dT%H%M%SZ"),
        signature=signature,
        payload_hash=_payload_hash(header("x-amz-content-sha256")),
        presigned=presigned,
    )


def _payload_hash(sent: str | None) -> str:
    """The signed x-amz-content-sha256, classified as SigV4's is (a digest the body must
    have, an unsigned or unsigned-trailer marker), else UNSIGNED-PAYLOAD. Signed chunks
    are SigV4's (each chains from the request's SigV4 signature): refused here."""
    if sent is None:
        return UNSIGNED_PAYLOAD
    payload_hash = parse_payload_hash(sent)
    if payload_hash in (STREAMING_SIGNED_PAYLOAD, STREAMING_SIGNED_PAYLOAD_TRAILER):
        raise S3Error(
            "InvalidRequest",
            "Signed aws-chunked payloads need a SigV4 signature (AWS4-HMAC-SHA256).",
        )
    return payload_hash


def _parse_header(value: str) -> tuple[str, str]:
    """``AWS AccessKeyId:Signature`` -> (access key, signature)."""
    scheme, _, credentials = value.strip().partition(" ")
    access_key, sep, signature = credentials.strip().rpartition(":")
    if scheme != SCHEME or not sep or not access_key or not signature:
        raise S3Error(
            "InvalidArgument",
            "AWS authorization header is invalid.  Expected AwsAccessKeyId:signature",
            extra={"ArgumentName": "Authorization", "ArgumentValue": value},
        )
    return access_key, signature


def _check_header_time(
    header: Callable[[str], str | None], now: datetime, max_skew_seconds: int
) -> datetime:
    """The request time from x-amz-date, else Date; too far from ``now`` is RequestTimeTooSkewed."""
    raw = header("x-amz-date") or header("date")
    moment = _parse_http_date(raw) if raw else None
    if raw is None or moment is None:
        raise S3Error(
            "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header"
        )
    if abs((moment - now).total_seconds()) > max_skew_seconds:
        raise S3Error(
            "RequestTimeTooSkewed",
            extra={
                "RequestTime": raw,
                "ServerTime": _format_server_time(now),
                "MaxAllowedSkewMilliseconds": str(max_skew_seconds * 1000),
            },
        )
    return moment


def _check_expires(expires: str, now: datetime) -> None:
    if not _EPOCH.fullmatch(expires):
        raise S3Error("AccessDenied", f"Invalid date (should be seconds since epoch): {expires}")
    try:
        expires_at = datetime.fromtimestamp(int(expires), UTC)
    except (OverflowError, OSError, ValueError):
        return  # beyond what a datetime holds: far in the future
    if expires_at < now:
        raise S3Error(
            "AccessDenied",
            "Request has expired",
            extra={
                "Expires": _format_server_time(expires_at),
                "ServerTime": _format_server_time(now),
            },
        )
