"""The memo of verified presigned requests (s3/auth.py): a link fetched again is answered
by one lookup, yet everything that can change between uses is asked every time, and any
byte of difference is verified in full. Requests are signed by botocore itself and given
to `authenticate` as aiohttp requests (the live-server side of this is in
tests/api/test_admin_api.py: disabled and rotated keys)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from unittest import mock
from urllib.parse import parse_qsl, quote, urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from s3torrent.access import Principal
from s3torrent.s3 import auth
from s3torrent.s3.errors import S3Error
from s3torrent.s3.sigv4 import VerifiedAuth
from s3torrent.store.rows import User
from s3torrent.store.users import UserDirectory
from tests.unit.test_sigv4 import ACCESS_KEY, NOW, REGION, SECRET, SIGNED_AT, Request
from tests.unit.test_sigv4 import presign as sigv4_presign
from tests.unit.test_sigv4 import sign_header as sigv4_sign_header

Signed = tuple[str, str, dict[str, str]]  # method, path with query, headers
# The same, with the header fields in a chosen order (repeated names allowed).
Sent = Signed | tuple[str, str, list[tuple[str, str]]]


class _NoStore:
    """The metadata behind the directory: knows no one (every user is given in memory)."""

    def all_users(self) -> list[User]:
        return []

    async def user_by_access_key(self, access_key: str) -> User | None:
        return None


def _user(secret: str = SECRET, *, disabled: bool = False) -> User:
    return User("c0ffee" * 10 + "abcd", "linker", ACCESS_KEY, secret, False, 0.0, disabled)


@pytest.fixture
def users() -> UserDirectory:
    directory = UserDirectory(_NoStore())  # type: ignore[arg-type]
    _set(directory, _user())
    return directory


@pytest.fixture(autouse=True)
def _empty_memo() -> Iterator[None]:
    auth._VERIFIED.clear()
    yield
    auth._VERIFIED.clear()


def _set(directory: UserDirectory, user: User) -> None:
    directory._by_key = {user.access_key: user}
    directory._by_id = {user.canonical_id: user}


def _signed(request: Request) -> Signed:
    """test_sigv4's signed request as this file sends it: the query back in the target."""
    method, path, query, headers = request
    target = path + ("?" + urlencode(query, quote_via=quote, safe="-_.~") if query else "")
    return method, target, dict(headers)


def presign(
    method: str, key: str, expires: int = 600, headers: dict[str, str] | None = None
) -> Signed:
    return _signed(sigv4_presign(method, key, headers=headers, expires=expires))


def sign_header(method: str, key: str) -> Signed:
    return _signed(sigv4_sign_header(method, key))


def check(
    signed: Sent,
    users: UserDirectory,
    now: datetime = NOW,
    make: Callable[[], web.Request] | None = None,
) -> tuple[Principal, VerifiedAuth | None]:
    """`authenticate` of the signed request, made by aiohttp's test helper unless `make`
    (called in the event loop) makes it."""
    method, target, headers = signed
    raw_path, _, raw_query = target.partition("?")

    async def go() -> tuple[Principal, VerifiedAuth | None]:
        if make is not None:
            request = make()
        else:
            request = make_mocked_request(method, target, headers=CIMultiDict(headers))
        return await auth.authenticate(
            request,
            raw_path=raw_path,
            query_pairs=parse_qsl(raw_query, keep_blank_values=True),
            users=users,
            region=REGION,
            now=now,
        )

    return asyncio.run(go())


def refused(
    code: str,
    signed: Sent,
    users: UserDirectory,
    now: datetime = NOW,
) -> S3Error:
    with pytest.raises(S3Error) as info:
        check(signed, users, now)
    assert info.value.code == code, info.value
    return info.value


def test_a_link_used_again_is_answered_from_the_memo(users: UserDirectory) -> None:
    link = presign("GET", "memo/key")
    principal, first = check(link, users)
    assert principal.name == "linker" and first is not None
    assert len(auth._VERIFIED) == 1
    with mock.patch.object(auth.sigv4, "verify_request", side_effect=AssertionError("verified")):
        again_principal, again = check(link, users)  # no verification: the memo's answer
    assert again is first and again_principal == principal
    assert check(link, users, SIGNED_AT)[1] is first  # a naive time is read as UTC, as before


def test_the_window_of_the_link_is_checked_on_every_use(users: UserDirectory) -> None:
    link = presign("GET", "memo/window", expires=600)
    check(link, users)
    assert check(link, users, NOW + timedelta(seconds=600))[1] is not None  # the last second
    late = refused("AccessDenied", link, users, NOW + timedelta(seconds=601))
    assert late.message == "Request has expired"
    check(link, users, NOW - timedelta(minutes=15))  # within the clock skew
    early = refused("AccessDenied", link, users, NOW - timedelta(minutes=16))
    assert early.message == "Request is not valid yet"


def test_a_disabled_or_rotated_key_is_refused_although_the_link_was_remembered(
    users: UserDirectory,
) -> None:
    link = presign("GET", "memo/state")
    check(link, users)
    _set(users, _user(disabled=True))
    refused("InvalidAccessKeyId", link, users)
    _set(users, _user())
    check(link, users)
    _set(users, _user(secret=SECRET[::-1]))  # the same key id, another secret
    refused("SignatureDoesNotMatch", link, users)
    _set(users, _user())
    assert check(link, users)[1] is not None


def test_any_difference_from_the_remembered_request_is_verified_in_full(
    users: UserDirectory,
) -> None:
    method, target, headers = link = presign("GET", "memo/diff")
    check(link, users)
    # An unsigned x-amz header added to a captured link must not be obeyed.
    refused("AccessDenied", (method, target, {**headers, "x-amz-acl": "public-read"}), users)
    refused("SignatureDoesNotMatch", ("PUT", target, headers), users)
    other_key = target.replace("memo/diff", "memo/dif")
    refused("SignatureDoesNotMatch", (method, other_key, headers), users)
    refused("SignatureDoesNotMatch", (method, target, {**headers, "Host": "elsewhere.test"}), users)
    signature = dict(parse_qsl(target.partition("?")[2]))["X-Amz-Signature"]
    forged = target.replace(signature, ("0" if signature[0] != "0" else "1") + signature[1:])
    refused("SignatureDoesNotMatch", (method, forged, headers), users)
    refused("SignatureDoesNotMatch", (method, target + "&versionId=1", headers), users)
    assert len(auth._VERIFIED) == 1


def test_the_same_fields_in_another_order_are_the_same_request_but_not_the_same_values(
    users: UserDirectory,
) -> None:
    # wrk sends a presigned PUT's Host and Content-Length in either order; an aiohttp-parsed
    # request is remembered with its fields in name order, so both orders are one entry.
    method, target, headers = presign("PUT", "memo/order", headers={"Content-Length": "4"})
    fields = sorted(headers.items())
    assert len(fields) == 2
    first = check((method, target, fields), users)[1]
    with mock.patch.object(auth.sigv4, "verify_request", side_effect=AssertionError("verified")):
        assert check((method, target, fields[::-1]), users)[1] is first
    assert len(auth._VERIFIED) == 1
    # The values of one name are signed in the order they came (joined by commas): sent the
    # other way round they are another request, whatever the case of their names.
    method, target, headers = presign("PUT", "memo/repeated", headers={"x-amz-meta-a": "1,2"})
    host = ("Host", headers["Host"])
    as_signed = [host, ("X-Amz-Meta-A", "1"), ("x-amz-meta-a", "2")]
    assert check((method, target, as_signed), users)[1] is not None
    swapped = [host, ("x-amz-meta-a", "2"), ("X-Amz-Meta-A", "1")]
    refused("SignatureDoesNotMatch", (method, target, swapped), users)
    host_last = [*as_signed[1:], host]
    with mock.patch.object(auth.sigv4, "verify_request", side_effect=AssertionError("verified")):
        assert check((method, target, host_last), users)[1] is not None  # Host moved only


class _Transport:
    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else None


def test_a_quick_put_with_its_fields_in_another_order_is_the_same_request(
    users: UserDirectory,
) -> None:
    """A PUT the quick path answers is keyed like aiohttp's, fields in name order (wrk sends
    them either way); a quick GET's head keeps its order (its bytes are its memo key)."""
    from s3torrent.s3.quick import QuickConnection, QuickHead, make_request

    method, target, headers = presign("PUT", "memo/quick", headers={"Content-Length": "4"})
    fields = sorted(headers.items())

    def quick_check(ordered: list[tuple[str, str]]) -> VerifiedAuth | None:
        lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in ordered]
        head = QuickHead.parse("\r\n".join(lines).encode())
        assert head is not None and head.body_length == 4

        def make() -> web.Request:
            return make_request(head, QuickConnection(_Transport()), 1024, b"abcd")

        return check((method, target, ordered), users, make=make)[1]

    first = quick_check(fields)
    assert first is not None
    with mock.patch.object(auth.sigv4, "verify_request", side_effect=AssertionError("verified")):
        assert quick_check(fields[::-1]) is first
    assert len(auth._VERIFIED) == 1


def test_header_signatures_and_long_requests_are_not_kept_and_the_memo_is_bounded(
    users: UserDirectory,
) -> None:
    header_signed = sign_header("GET", "memo/header")
    assert check(header_signed, users)[1] is not check(header_signed, users)[1]
    long_link = presign("GET", "memo/" + "x" * (auth._MEMO_CHARS + 1))
    assert check(long_link, users)[1] is not check(long_link, users)[1]
    assert not auth._VERIFIED
    for n in range(auth._MEMO_ENTRIES + 50):
        check(presign("GET", f"memo/many-{n}"), users)
    assert len(auth._VERIFIED) == auth._MEMO_ENTRIES
    newest = presign("GET", f"memo/many-{auth._MEMO_ENTRIES + 49}")
    assert check(newest, users)[1] is check(newest, users)[1]
