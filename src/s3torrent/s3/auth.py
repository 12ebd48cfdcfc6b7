"""Who is asking: SigV4 verification at the edge, turned into an access Principal."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

from aiohttp import web
from multidict import CIMultiDict

from s3torrent.access import ANONYMOUS, Principal
from s3torrent.s3 import sigv2, sigv4
from s3torrent.s3.errors import S3Error
from s3torrent.s3.quick import is_quick
from s3torrent.store.users import UserDirectory

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_SIGV2_KEY = re.compile(r"^\s*AWS\s+([^:\s]+):")


def _access_key_hint(request: web.Request, query_pairs: Sequence[tuple[str, str]]) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        m = _CREDENTIAL.search(auth) or _SIGV2_KEY.match(auth)
        return m.group(1) if m else None
    for k, v in query_pairs:
        if k == "X-Amz-Credential":
            return v.split("/", 1)[0]
        if k == "AWSAccessKeyId":
            return v
    return None


async def authenticate(
    request: web.Request,
    *,
    raw_path: str,
    query_pairs: Sequence[tuple[str, str]],
    users: UserDirectory,
    region: str,
    now: datetime,
    virtual_host_bucket: str | None = None,
) -> tuple[Principal, sigv4.VerifiedAuth | None]:
    """The request's principal: anonymous when unsigned, else the verified user."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)  # as verify_request reads it
    # Only presigned requests are kept, and they carry their signature in the query.
    memo_key = (
        (request.method, raw_path, tuple(query_pairs), _memo_fields(request), region)
        if query_pairs
        else None
    )
    known = _VERIFIED.get(memo_key) if memo_key is not None else None
    if known is not None:
        checked_with, verified = known
        assert verified.valid_between is not None
        valid_from, valid_to = verified.valid_between
        if valid_from <= now <= valid_to:
            # The key's state is asked on every use: disabled, deleted or rotated, it misses
            # and the request is verified in full (and refused as S3 refuses it).
            user = users.active_by_access_key(verified.access_key)
            if user is not None and user.secret_key == checked_with:
                return _principal(user.canonical_id, user.name, user.is_root), verified
    refuse_session_token(request.headers, query_pairs)
    headers = list(request.headers.items())
    if not sigv4.has_auth(headers, query_pairs):
        return ANONYMOUS, None
    hint = _access_key_hint(request, query_pairs)
    if hint is not None and users.active_by_access_key(hint) is None:
        # Keys added with `s3torrent user add` while the server runs are looked up once.
        await users.refresh_if_unknown(hint)

    def lookup_secret(access_key: str) -> str | None:
        # A disabled user's key is refused as S3 refuses an inactive one: InvalidAccessKeyId.
        user = users.active_by_access_key(access_key)
        return user.secret_key if user else None

    if sigv2.is_sigv2(headers, query_pairs):
        verified = sigv2.verify_request(
            method=request.method,
            raw_path=raw_path,
            query_pairs=query_pairs,
            headers=headers,
            now=now,
            lookup_secret=lookup_secret,
            virtual_host_bucket=virtual_host_bucket,
        )
    else:
        verified = sigv4.verify_request(
            method=request.method,
            raw_path=raw_path,
            query_pairs=query_pairs,
            headers=headers,
            now=now,
            lookup_secret=lookup_secret,
            region=region,
        )
    user = users.active_by_access_key(verified.access_key)
    assert user is not None and user.secret_key is not None  # verify_request found it
    if memo_key is not None and verified.valid_between is not None:
        _remember(memo_key, user.secret_key, verified)
    return _principal(user.canonical_id, user.name, user.is_root), verified


SESSION_TOKEN: Final = "x-amz-security-token"


def refuse_session_token(
    fields: Mapping[str, str], query_pairs: Sequence[tuple[str, str]] = ()
) -> None:
    """x-amz-security-token (a header, a form field, or in the query) names the temporary
    credentials a request is signed with, and the session policy that narrows them. There
    are none here: any token is one S3 does not know, 400 InvalidToken, never ignored (the
    request would be served under the key's full rights)."""
    if SESSION_TOKEN in fields or any(n.lower() == SESSION_TOKEN for n, _ in query_pairs):
        raise S3Error("InvalidToken")


# A request's x-amz-* query parameters that are not a header moved there: SigV4's own
# (its auth, and a session token naming temporary credentials), and x-amz-content-sha256,
# which S3 does not read from the query (the signature's payload hash is the header's).
_QUERY_OWN: Final = frozenset(
    {
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
        "x-amz-expires",
        "x-amz-signedheaders",
        "x-amz-signature",
        "x-amz-security-token",
        "x-amz-content-sha256",
    }
)
# Headers read before the request is authenticated (the router picks CopyObject or
# UploadPartCopy by x-amz-copy-source): from a query, they would reach a handler routed
# without them, so they stay refused there.
_NOT_FROM_QUERY: Final = "x-amz-copy-source"


# What SigV2 signs from a presigned URL's query when the request does not send it as a
# header (boto3's SigV2 presigner moves both there): sigv2.verify_request reads these names.
_SIGV2_CONTENT: Final = ("content-md5", "content-type")


def query_headers(
    query_pairs: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    auth: sigv4.VerifiedAuth | None,
) -> list[tuple[str, str]]:
    """The headers a verified request carries in its query string: its x-amz-* parameters
    (names lower-cased) but SigV4's own, which S3 obeys as headers (boto3's SigV2 presigner
    moves every x-amz-* header there; SDKs hoist them into SigV4 URLs), and for a SigV2
    presigned URL the Content-MD5 and Content-Type it signed from there.

    Only call this once the signature checked out (`auth`; None for an anonymous request).
    Only a signed parameter is obeyed: SigV4 signs the whole query (in the URL or under an
    Authorization header alike), a SigV2 presigned URL signs its x-amz-* parameters among
    its canonical x-amz-* headers (sigv2.verify_request). A SigV2 Authorization header signs
    none of them and an anonymous request nothing: such a parameter is refused as an
    unsigned x-amz-* header is, 403 AccessDenied naming it, never ignored (it asks for what
    the request would not get: an ACL, a customer key, metadata). A name sent twice (twice
    in the query, or in the query and as a header, which both signatures sign as one joined
    value) is refused, as a repeated header is (sigv4.refuse_repeated_headers): neither
    value is picked."""
    sigv2 = auth is not None and auth.presigned and not auth.scope
    if auth is None or not (auth.presigned or auth.scope):
        _refuse_unsigned(query_pairs)
        return []
    hoisted: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in query_pairs:
        lowered = name.lower()
        if sigv2 and name in _SIGV2_CONTENT and name not in headers:
            # Signed as the header when the header is sent; then this one is not read.
            if name in seen:
                raise _sent_twice(name)
            seen.add(name)
            hoisted.append((name, _header_value(name, value)))
            continue
        if not _is_header(lowered):
            continue
        if lowered.startswith(_NOT_FROM_QUERY):
            raise S3Error(
                "NotImplemented",
                f"The header {lowered} is not implemented in a request's query string; "
                "send it as a header.",
            )
        if lowered in seen or lowered in headers:
            raise _sent_twice(lowered)
        seen.add(lowered)
        hoisted.append((lowered, _header_value(lowered, value)))
    return hoisted


def _is_header(lowered: str) -> bool:
    """Whether a query parameter (its name lower-cased) is an x-amz-* header moved there."""
    return lowered.startswith("x-amz-") and lowered not in _QUERY_OWN


def _refuse_unsigned(query_pairs: Sequence[tuple[str, str]]) -> None:
    unsigned = sorted({n.lower() for n, _ in query_pairs if _is_header(n.lower())})
    if unsigned:
        raise S3Error(
            "AccessDenied",
            "There were headers present in the request which were not signed",
            extra={"HeadersNotSigned": ", ".join(unsigned)},
        )


def _header_value(name: str, value: str) -> str:
    """`value` as a header holds it: trimmed, as SigV2 signs it (str.strip, in
    sigv2.canonical_amz_headers and string_to_sign), so that whitespace added around a
    signed value (which SigV2 leaves signed) is not obeyed; refused when no header could
    hold it: a line break would end the header (stored, a Content-Type holding one made
    every later GET fail), as for response-*."""
    if "\r" in value or "\n" in value:
        raise S3Error(
            "InvalidArgument",
            f"Header value cannot be represented using ISO-8859-1: {name}",
            extra={"ArgumentName": name},
        )
    return value.strip()


def _sent_twice(name: str) -> S3Error:
    return S3Error(
        "InvalidArgument",
        f"The header {name} was sent more than once; send it once.",
        extra={"ArgumentName": name},
    )


def with_query_headers(request: web.Request, hoisted: Sequence[tuple[str, str]]) -> web.Request:
    """`request` as its handlers see it: the headers it was sent with and `hoisted`."""
    headers = CIMultiDict(request.headers)
    headers.extend(hoisted)
    return request.clone(headers=headers)


# Presigned SigV4 requests that checked out, by the request exactly as received: method,
# path as sent, query pairs (the signature among them), every header's bytes, and the
# region. A published presigned link is fetched again and again by the same clients; its
# verification is a pure function of that request, the key's secret and the time, so the
# answer holds while the key is active with the secret it was checked with and the time is
# inside the window the URL allows (VerifiedAuth.valid_between). Anything else (one header
# more, a moment too late) misses and is verified in full, errors included. Header-signed
# requests are not kept: their date changes each second. Keyed by what the request brought
# (the quick path hands the same objects for the same bytes, whose hashes are kept), a use
# costs one lookup, where the whole prelude (the headers listed, the mechanism detected,
# the memo key built from decoded strings) ran before. Bounded: at most _MEMO_ENTRIES
# requests of at most _MEMO_CHARS characters, oldest out first.
_MemoKey = tuple[str, str, tuple[tuple[str, str], ...], tuple[tuple[bytes, bytes], ...], str]


def _folded_name(field: tuple[bytes, bytes]) -> bytes:
    return field[0].lower()


def _memo_fields(request: web.Request) -> tuple[tuple[bytes, bytes], ...]:
    """The request's header fields as the memo keys them.

    A GET or HEAD the quick path answers is memoized by its exact bytes (s3/quick.py), so
    its fields come as the very tuple the last request from that client brought, kept as
    they came. Any other request (aiohttp's, and a quick PUT) has its fields in name order
    (case folded, a stable sort: the fields of one name keep their order, which is all the
    signature covers of it; the raw names stay in the key, case and all), because a client
    may send the same fields in another order each time: wrk does (a Lua table's order),
    and a memo keyed by arrival order held half of a cycle of presigned PUTs at best, each
    verified in full every time. Two requests with the same key carry the same values
    under every name, in the same order, so they verify alike."""
    raw = request.raw_headers
    if len(raw) < 2 or (is_quick(request) and request.method != "PUT"):
        return raw
    return tuple(sorted(raw, key=_folded_name))


_MEMO_ENTRIES: Final = 1024
_MEMO_CHARS: Final = 4096
_VERIFIED: dict[_MemoKey, tuple[str, sigv4.VerifiedAuth]] = {}


def _remember(key: _MemoKey, secret: str, verified: sigv4.VerifiedAuth) -> None:
    _method, raw_path, query_pairs, raw_headers, _region = key
    size = len(raw_path)
    size += sum(len(name) + len(value) for name, value in query_pairs)
    size += sum(len(name) + len(value) for name, value in raw_headers)
    if size > _MEMO_CHARS:
        return
    if len(_VERIFIED) >= _MEMO_ENTRIES:
        _VERIFIED.pop(next(iter(_VERIFIED)), None)  # the oldest
    _VERIFIED[key] = (secret, verified)


@functools.lru_cache(maxsize=1024)
def _principal(canonical_id: str, name: str, is_root: bool) -> Principal:
    """A user's Principal (immutable), built once per identity rather than per request."""
    return Principal.user(canonical_id, name, is_root=is_root)
