"""Who is asking: SigV4 verification at the edge, turned into an access Principal."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from datetime import datetime

from aiohttp import web

from s3torrent.access import ANONYMOUS, Principal
from s3torrent.s3 import sigv2, sigv4
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
    assert user is not None  # verify_request found its secret
    return _principal(user.canonical_id, user.name, user.is_root), verified


@functools.lru_cache(maxsize=1024)
def _principal(canonical_id: str, name: str, is_root: bool) -> Principal:
    """A user's Principal (immutable), built once per identity rather than per request."""
    return Principal.user(canonical_id, name, is_root=is_root)
