"""The small-request path's shortcuts (issue #21) give exactly what the long way gives.

Each shortcut skips work only where the result cannot differ: a query field with nothing
to decode, a path or query value with nothing to encode, access facts cached by every
stored field they are built from. The decision itself is never cached.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote_from_bytes, unquote_to_bytes

from hypothesis import given
from hypothesis import strategies as st

from s3torrent.access import ANONYMOUS, Principal
from s3torrent.access import facts as authz
from s3torrent.s3 import server
from s3torrent.s3.errors import S3Error
from s3torrent.s3.server import query_pairs_of
from s3torrent.s3.sigv4_signing import canonical_query, canonical_uri

QUERY_ALPHABET = "aZ09-_.~=&%+;/ éF2€\x00"
PATH_ALPHABET = "aZ09-_.~/%+ é2F€"


def _pairs_or_error(raw: str) -> list[tuple[str, str]] | str:
    """query_pairs_of(raw), or the S3 error code it raises."""
    try:
        return query_pairs_of(raw)
    except S3Error as exc:
        return exc.code


def _parse_qsl_or_error(raw: str) -> list[tuple[str, str]] | str:
    """parse_qsl with blank values, or InvalidURI where a field is not UTF-8."""
    try:
        return parse_qsl(raw, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        return "InvalidURI"


@given(st.text(alphabet=QUERY_ALPHABET, max_size=40))
def test_query_pairs_are_parse_qsl_with_blank_values(raw: str) -> None:
    assert _pairs_or_error(raw) == _parse_qsl_or_error(raw)


@given(st.text(alphabet=QUERY_ALPHABET, max_size=40))
def test_decoded_fields_answer_the_same_the_second_time(raw: str) -> None:
    first = _pairs_or_error(raw)
    assert _pairs_or_error(raw) == first == _parse_qsl_or_error(raw)


def test_decoded_field_memo_is_bounded_in_count_and_size() -> None:
    for i in range(server._DECODED_MAX * 3):
        assert query_pairs_of(f"k=v%2F{i}") == [("k", f"v/{i}")]
        assert len(server._DECODED) <= server._DECODED_MAX
    long_value = "%41" * server._DECODED_MAX_CHARS
    assert query_pairs_of(f"k={long_value}") == [("k", "A" * server._DECODED_MAX_CHARS)]
    assert long_value not in server._DECODED


@given(st.text(alphabet=PATH_ALPHABET, max_size=40))
def test_canonical_uri_is_decode_then_strict_encode(raw: str) -> None:
    slow = quote_from_bytes(unquote_to_bytes(raw.encode("utf-8", "surrogateescape")), safe=b"-_.~/")
    assert canonical_uri(raw) == (slow if raw else "/")


@given(
    st.lists(
        st.tuples(
            st.text(alphabet=PATH_ALPHABET, max_size=12), st.text(PATH_ALPHABET, max_size=12)
        ),
        max_size=6,
    )
)
def test_canonical_query_encodes_every_byte_but_unreserved(pairs: list[tuple[str, str]]) -> None:
    def enc(text: str) -> str:
        return quote_from_bytes(text.encode("utf-8", "surrogateescape"), safe=b"-_.~")

    expected = "&".join(f"{n}={v}" for n, v in sorted((enc(n), enc(v)) for n, v in pairs))
    # Twice: the second answer comes from the encoding cache and must be the same.
    assert canonical_query(pairs) == expected
    assert canonical_query(pairs) == expected


OWNER = "a" * 64
OTHER = "b" * 64


@dataclass
class Bucket:
    name: str = "photos"
    owner_id: str = OWNER
    acl: str | None = None
    policy: str | None = None
    public_access_block: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    region: str = "us-east-1"
    policy_users: dict[str, str] | None = None


@dataclass
class Obj:
    owner_id: str = OWNER
    acl: str | None = None


def _policy(effect: str, condition: dict[str, Any] | None = None) -> str:
    statement: dict[str, Any] = {
        "Effect": effect,
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::photos/*",
    }
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _may(principal: Principal, bucket: Bucket, obj: Obj, now: datetime = NOW) -> bool:
    ctx = authz.context(now, "192.0.2.1", False)
    return authz.may(principal, "s3:GetObject", bucket, "k", obj, ctx).allowed


def test_a_changed_policy_is_never_answered_from_the_cache() -> None:
    bucket, obj = Bucket(), Obj()
    assert not _may(ANONYMOUS, bucket, obj)
    bucket.policy = _policy("Allow")
    assert _may(ANONYMOUS, bucket, obj)
    bucket.policy = None
    assert not _may(ANONYMOUS, bucket, obj)


def test_a_changed_acl_or_owner_is_never_answered_from_the_cache() -> None:
    other = Principal.user(OTHER, "bob")
    bucket, obj = Bucket(), Obj()
    assert not _may(other, bucket, obj)
    obj.owner_id = OTHER
    assert _may(other, bucket, obj)
    # Bucket owner enforced: the object's writer no longer owns it; the bucket owner does.
    bucket.settings = {"object_ownership": "BucketOwnerEnforced"}
    assert not _may(other, bucket, obj)
    assert _may(Principal.user(OWNER, "alice"), bucket, obj)


def test_a_time_conditioned_policy_is_decided_at_each_request_time() -> None:
    until = NOW + timedelta(hours=1)
    bucket = Bucket(
        policy=_policy(
            "Allow", {"DateLessThan": {"aws:CurrentTime": until.strftime("%Y-%m-%dT%H:%M:%SZ")}}
        )
    )
    assert _may(ANONYMOUS, bucket, Obj(), NOW)
    assert not _may(ANONYMOUS, bucket, Obj(), until + timedelta(seconds=1))
    assert _may(ANONYMOUS, bucket, Obj(), NOW)


class _CountingHeaders(dict[str, str]):
    """Headers that count their lookups."""

    lookups = 0

    def get(self, key: str, default: Any = None) -> Any:
        type(self).lookups += 1
        return super().get(key, default)


def test_condition_values_are_worked_out_only_when_read_and_from_the_snapshot() -> None:
    """A request's condition values (server._ConditionValues) are the eager function's,
    computed once, on first use: a decision without a bucket policy never reads a header."""
    headers = _CountingHeaders(
        {"x-amz-acl": "public-read", "User-Agent": "aws-cli/2", "x-amz-tagging": "a=1&b=2"}
    )
    query = {"prefix": "logs/", "versionId": "v1"}
    _CountingHeaders.lookups = 0
    now = datetime(2026, 12, 7, tzinfo=UTC)
    lazy = server._ConditionValues(query, headers, None, now, tagged=True)
    assert _CountingHeaders.lookups == 0
    eager = server.condition_values(query, headers, tagged=True)
    reads = _CountingHeaders.lookups
    assert reads > 0
    assert dict(lazy) == eager
    assert eager["s3:x-amz-acl"] == "public-read" and eager["s3:prefix"] == "logs/"
    assert eager["s3:RequestObjectTag/b"] == "2" and eager["aws:UserAgent"] == "aws-cli/2"
    # Computed once: reading again looks nothing up (the lazy one also asks for a lock date).
    assert lazy["s3:versionid"] == "v1" and len(lazy) == len(eager)
    assert _CountingHeaders.lookups == 2 * reads + 1
    assert len(lazy) == len(eager)
    assert _CountingHeaders.lookups == 2 * reads + 1
    # What the request held when its context was made, not later: the query is the
    # snapshot's (a dict the request never changes).
    ctx_values = server._ConditionValues({"prefix": "a/"}, {}, None, now)
    assert dict(ctx_values) == {"s3:prefix": "a/"}


def test_endpoints_hash_by_identity_and_stay_usable_as_keys() -> None:
    from s3torrent.s3.routing import Endpoint

    table = {endpoint: endpoint.value[0] for endpoint in Endpoint}
    assert len(table) == len(list(Endpoint))
    assert all(table[endpoint] == endpoint.name for endpoint in Endpoint)
    assert hash(Endpoint.GetObject) == object.__hash__(Endpoint.GetObject)
    assert Endpoint["GetObject"] is Endpoint.GetObject
    assert Endpoint(("GetObject", "s3:GetObject", "object")) is Endpoint.GetObject


def test_the_routing_memo_is_bounded_and_skips_long_lines() -> None:
    memo = server._RoutedMemo()
    routed: Any = ("target", (), {}, "endpoint", "params")
    for i in range(3 * memo.MAX_ENTRIES):
        memo.keep(("GET", f"/b/k{i}", "h"), routed)
        assert len(memo) <= memo.MAX_ENTRIES
    memo.clear()
    memo.keep(("GET", "/b/" + "k" * memo.MAX_LINE, "h"), routed)
    memo.keep(("GET", "/b/short", "h"), routed)
    assert list(memo) == [("GET", "/b/short", "h")]
