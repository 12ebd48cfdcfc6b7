"""From stored rows to the access decision's facts; every channel asks `may()` through here.

The stored forms are read through two small Protocols (a bucket row and an object row), so
access never depends on how or where they are stored.

ACLs are stored as compact JSON; policies as the JSON the owner sent; decoding is cached by
the stored text, so the hot path does not re-parse a bucket's policy on every request.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from s3torrent.access import (
    ANONYMOUS,
    AccessControlList,
    AccessFacts,
    BucketPolicy,
    CanonicalUser,
    Decision,
    Grant,
    Group,
    Owner,
    Permission,
    Principal,
    PublicAccessBlock,
    RequestContext,
    Resource,
    canned_acl,
    decide,
    parse_policy,
)
from s3torrent.access.conditions import network as policy_network
from s3torrent.access.conditions import parse_date
from s3torrent.access.ownership import acls_disabled
from s3torrent.access.policy import bind_principals


class StoredBucket(Protocol):
    """A bucket's stored access settings (ACL and Block Public Access as JSON, the policy as
    its owner sent it)."""

    @property
    def name(self) -> str: ...
    @property
    def owner_id(self) -> str: ...
    @property
    def acl(self) -> str | None: ...
    @property
    def policy(self) -> str | None: ...
    @property
    def public_access_block(self) -> str | None: ...
    @property
    def settings(self) -> Mapping[str, Any]: ...
    @property
    def region(self) -> str: ...
    @property
    def policy_users(self) -> Mapping[str, str] | None: ...


class StoredObject(Protocol):
    """An object version's owner, stored ACL and tags (what s3:ExistingObjectTag tests)."""

    @property
    def owner_id(self) -> str: ...
    @property
    def acl(self) -> str | None: ...
    @property
    def tags(self) -> Sequence[tuple[str, str]]: ...


def encode_acl(acl: AccessControlList) -> str:
    grants = []
    for g in acl.grants:
        if isinstance(g.grantee, CanonicalUser):
            grants.append(["id", g.grantee.id, g.grantee.display_name, g.permission.value])
        else:
            grants.append(["uri", g.grantee.uri, "", g.permission.value])
    return json.dumps(
        {"owner": [acl.owner.id, acl.owner.display_name], "grants": grants}, separators=(",", ":")
    )


@lru_cache(maxsize=4096)
def decode_acl(text: str) -> AccessControlList:
    raw = json.loads(text)
    grants: list[Grant] = []
    for kind, ident, name, perm in raw["grants"]:
        grantee = CanonicalUser(ident, name) if kind == "id" else Group(ident)
        grants.append(Grant(grantee, Permission(perm)))
    return AccessControlList(Owner(*raw["owner"]), tuple(grants))


@lru_cache(maxsize=1024)
def decode_policy(text: str, bucket: str) -> BucketPolicy:
    # A stored policy: one accepted before PutBucketPolicy's later checks still reads.
    return parse_policy(text, bucket=bucket, strict=False)


PolicyUsers = tuple[tuple[str, str], ...]


def _policy_users(bucket: StoredBucket) -> PolicyUsers | None:
    """The bucket policy's user bindings, hashable (None: a policy stored before them,
    whose user ARNs match by name)."""
    users = bucket.policy_users
    return None if users is None else tuple(sorted(users.items()))


@lru_cache(maxsize=1024)
def bound_policy(text: str, bucket: str, users: PolicyUsers | None) -> BucketPolicy:
    """The stored policy as decisions read it: its user ARNs bound to their users."""
    policy = decode_policy(text, bucket)
    return policy if users is None else bind_principals(policy, dict(users))


@lru_cache(maxsize=1024)
def decode_public_access_block(text: str) -> PublicAccessBlock:
    raw = json.loads(text)
    return PublicAccessBlock(**raw)


def encode_public_access_block(pab: PublicAccessBlock) -> str:
    return json.dumps(
        {
            "block_public_acls": pab.block_public_acls,
            "ignore_public_acls": pab.ignore_public_acls,
            "block_public_policy": pab.block_public_policy,
            "restrict_public_buckets": pab.restrict_public_buckets,
        },
        sort_keys=True,
    )


def owner_of(bucket: StoredBucket, display: str = "") -> Owner:
    return Owner(bucket.owner_id, display)


def bucket_acl(bucket: StoredBucket) -> AccessControlList:
    """The bucket's ACL in force (with ACLs disabled: the owner's full control only)."""
    if bucket.acl and not acls_disabled(bucket.settings):
        return decode_acl(bucket.acl)
    owner = owner_of(bucket)
    return canned_acl("private", owner=owner, bucket_owner=owner)


def object_acl(bucket: StoredBucket, obj: StoredObject) -> AccessControlList:
    """The object's ACL in force; with ACLs disabled the bucket owner owns every object and
    the stored ACL (kept for a later switch back) grants nothing."""
    if acls_disabled(bucket.settings):
        owner = owner_of(bucket)
        return canned_acl("private", owner=owner, bucket_owner=owner)
    if obj.acl:
        return decode_acl(obj.acl)
    owner = Owner(obj.owner_id, "")
    return canned_acl("private", owner=owner, bucket_owner=owner_of(bucket))


def facts_for(bucket: StoredBucket, obj: StoredObject | None) -> AccessFacts:
    acls_off = acls_disabled(bucket.settings)
    users = _policy_users(bucket) if bucket.policy else None
    if obj is None:
        return _facts(
            bucket.name, bucket.owner_id, bucket.acl, acls_off, bucket.policy, users,
            bucket.public_access_block, False, None, None,
        )  # fmt: skip
    return _facts(
        bucket.name, bucket.owner_id, bucket.acl, acls_off, bucket.policy, users,
        bucket.public_access_block, True, obj.owner_id, obj.acl,
    )  # fmt: skip


@lru_cache(maxsize=4096)
def _facts(
    name: str,
    owner_id: str,
    acl: str | None,
    acls_off: bool,
    policy: str | None,
    users: PolicyUsers | None,
    public_access_block: str | None,
    has_object: bool,
    object_owner_id: str | None,
    object_acl_text: str | None,
) -> AccessFacts:
    """The facts of one stored state, cached by that state: every field the facts are built
    from is in the key, so a changed ACL, policy, setting or owner is a new entry (never a
    stale one). Only the facts are cached; `decide` still runs per request, with its context.
    Everything cached is immutable (frozen dataclasses and tuples)."""
    owner = Owner(owner_id, "")
    if acl and not acls_off:
        b_acl = decode_acl(acl)
    else:
        b_acl = canned_acl("private", owner=owner, bucket_owner=owner)
    o_acl: AccessControlList | None = None
    if has_object:
        if acls_off:
            o_acl = canned_acl("private", owner=owner, bucket_owner=owner)
        elif object_acl_text:
            o_acl = decode_acl(object_acl_text)
        else:
            writer = Owner(object_owner_id or "", "")
            o_acl = canned_acl("private", owner=writer, bucket_owner=owner)
    return AccessFacts(
        bucket_owner=owner,
        bucket_acl=b_acl,
        object_acl=o_acl,
        policy=bound_policy(policy, name, users) if policy else None,
        public_access_block=(
            decode_public_access_block(public_access_block) if public_access_block else None
        ),
    )


def may(
    principal: Principal,
    action: str,
    bucket: StoredBucket,
    key: str | None,
    obj: StoredObject | None,
    ctx: RequestContext,
) -> Decision:
    """The one access decision, for any channel: REST, ?torrent, tracker, seeder, web seed.

    The object's tags are a fact of the object, not of the request: where the bucket's policy
    tests s3:ExistingObjectTag, they are the tags of `obj` as given here (its stored row), on
    every channel. The torrent channels' contexts carry no tags of their own, and a REST
    request's were read when it began (a response in flight is asked again on a fresh row)."""
    if obj is not None and bucket.policy and tests_object_tags(bucket.policy, bucket.name):
        ctx = with_object_tags(ctx, obj.tags)
    if bucket.policy and _REGION_KEY in policy_condition_keys(bucket.policy, bucket.name):
        # Requests for a bucket are made to its region (S3 redirects the others), on
        # every channel alike.
        ctx = ctx.with_values({"aws:RequestedRegion": bucket.region})
    return decide(principal, action, Resource(bucket.name, key), facts_for(bucket, obj), ctx)


_OBJECT_TAG_KEY = "s3:existingobjecttag/"
_REGION_KEY = "aws:requestedregion"


def with_object_tags(ctx: RequestContext, tags: Sequence[tuple[str, str]]) -> RequestContext:
    """ctx with s3:ExistingObjectTag/<key> naming exactly these tags (any it held dropped)."""
    values: dict[str, str | Sequence[str]] = {
        name: value
        for name, value in ctx.values.items()
        if not name.lower().startswith(_OBJECT_TAG_KEY)
    }
    for tag_key, tag_value in tags:
        values[f"s3:ExistingObjectTag/{tag_key}"] = tag_value
    return replace(ctx, values=values)


def context(
    now: datetime, source_ip: str | None, secure: bool, **values: str | Sequence[str]
) -> RequestContext:
    """The context of one request: when, from where, over TLS or not, and condition values."""
    return RequestContext(now=now, source_ip=source_ip, secure_transport=secure, values=values)


def may_torrent(bucket: StoredBucket, key: str, obj: StoredObject, ctx: RequestContext) -> bool:
    """May anonymous callers in ctx fetch this object by BitTorrent? Yes when an anonymous
    GetObject is allowed and GetObjectTorrent is not explicitly denied: every anonymously
    readable object has a torrent, and a Deny opts an object or prefix out."""
    if not may(ANONYMOUS, "s3:GetObject", bucket, key, obj, ctx).allowed:
        return False
    return not may(ANONYMOUS, "s3:GetObjectTorrent", bucket, key, obj, ctx).explicit_deny


_TIME_KEYS = frozenset({"aws:currenttime", "aws:epochtime"})
# Operators whose answer on a time key never changes with the time (the key is always there).
_TIMELESS_OPERATORS = frozenset({"Null", "Bool"})


@lru_cache(maxsize=1024)
def policy_condition_keys(text: str, bucket: str) -> frozenset[str]:
    """Every condition key a stored policy tests (lower case)."""
    policy = decode_policy(text, bucket)
    return frozenset(c.key for s in policy.statements for c in s.conditions)


@lru_cache(maxsize=1024)
def policy_time_boundaries(text: str, bucket: str) -> tuple[datetime, ...]:
    """The instants at which a stored policy's time conditions may change a decision, sorted."""
    policy = decode_policy(text, bucket)
    moments: set[datetime] = set()
    for statement in policy.statements:
        for condition in statement.conditions:
            if condition.key not in _TIME_KEYS:
                continue
            for value in condition.values:
                moment = _instant(value)
                if moment is None:
                    continue
                # The request's time is whole seconds (aws:CurrentTime, aws:EpochTime): a
                # decision changes only on a whole second, the one at or just after the
                # value's instant and the next.
                second = moment.replace(microsecond=0)
                moments.add(second)
                moments.add(second + timedelta(seconds=1))
    return tuple(sorted(moments))


def _instant(value: str) -> datetime | None:
    """The instant a time condition's value names, as its operator reads it: a date or
    whole epoch seconds (parse_date), or, for a numeric operator on aws:EpochTime, epoch
    seconds with a fraction or an exponent (1796000000.5, 1.796e9). None: no instant (the
    policy parser took it, so no operator compares it as a time either)."""
    try:
        return parse_date(value)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        number = float(value)
        return datetime.fromtimestamp(number, tz=UTC) if math.isfinite(number) else None
    except (ValueError, OverflowError, OSError):
        return None


@lru_cache(maxsize=1024)
def policy_time_is_textual(text: str, bucket: str) -> bool:
    """Whether the policy matches a time key as text that may change its answer at any
    whole second: a wildcard (StringLike "2026-12-07T18:*") or a value naming no instant."""
    return any(
        condition.key in _TIME_KEYS
        and condition.base not in _TIMELESS_OPERATORS
        and (
            condition.base in ("StringLike", "StringNotLike")
            or any(_instant(value) is None for value in condition.values)
        )
        for statement in decode_policy(text, bucket).statements
        for condition in statement.conditions
    )


def next_time_boundary(bucket: StoredBucket, now: datetime) -> datetime | None:
    """The next instant after now when the bucket's policy may decide differently."""
    if not bucket.policy:
        return None
    if policy_time_is_textual(bucket.policy, bucket.name):
        # Until 2026-12-07 such a policy had no boundary: a decision cached by the tracker
        # or the seeder held until the next write, past the time the policy ended it.
        return now.replace(microsecond=0) + timedelta(seconds=1)
    for moment in policy_time_boundaries(bucket.policy, bucket.name):
        if moment > now:
            return moment
    return None


# Outside every network a policy is likely to name (TEST-NET-1, RFC 5737; 2001:db8::/32,
# RFC 3849): where a policy names one of them, the addresses next to its networks serve.
_OUTSIDE_SAMPLES = ("192.0.2.1", "2001:db8::1")


@lru_cache(maxsize=1024)
def policy_source_samples(text: str, bucket: str) -> tuple[str | None, ...]:
    """Caller addresses that between them meet each aws:SourceIp condition of a stored
    policy and fail it: no address, the first address of every network it names, the
    addresses just below and above each, and two addresses no policy is likely to name.
    Publication asks the anonymous decision from each: a torrent public to some address is
    published, and every channel then decides for its own peer (PublicTorrents.admits). A
    combination the samples miss leaves a torrent unpublished, never served to the wrong
    peer."""
    samples: list[str | None] = [None, *_OUTSIDE_SAMPLES]
    for statement in decode_policy(text, bucket).statements:
        for condition in statement.conditions:
            if condition.key != "aws:sourceip":
                continue
            for value in condition.values:
                try:
                    network = policy_network(value)
                except ValueError:
                    continue
                first, last = int(network.network_address), int(network.broadcast_address)
                top = (1 << network.max_prefixlen) - 1
                kind = ipaddress.IPv4Address if network.version == 4 else ipaddress.IPv6Address
                samples += [str(kind(n)) for n in (first, first - 1, last + 1) if 0 <= n <= top]
    return tuple(dict.fromkeys(samples))


@lru_cache(maxsize=1024)
def tests_object_tags(text: str, bucket: str) -> bool:
    """Whether a stored policy tests an object's tags (s3:ExistingObjectTag/<key>)."""
    return any(key.startswith(_OBJECT_TAG_KEY) for key in policy_condition_keys(text, bucket))


_REQUEST_TAG_KEY = "s3:requestobjecttag"


def tests_request_tags(bucket: StoredBucket) -> bool:
    """Whether the bucket's policy tests the tags a request sets (s3:RequestObjectTag/<key>,
    s3:RequestObjectTagKeys): a PutObjectTagging is then decided on its body's."""
    if not bucket.policy:
        return False
    keys = policy_condition_keys(bucket.policy, bucket.name)
    return any(key.startswith(_REQUEST_TAG_KEY) for key in keys)


# Request headers whose condition keys a policy may test on any HTTP request, REST's or the
# web seed's (s3.server.condition_values fills them for REST): (header, condition key).
REQUEST_HEADER_KEYS = (("User-Agent", "aws:UserAgent"), ("Referer", "aws:Referer"))


def header_values(bucket: StoredBucket, headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The condition values of these request headers that the bucket's policy tests (none
    for most buckets): what a decision on an HTTP request depends on besides its address
    and time, so a cached decision must be keyed by them too."""
    if not bucket.policy:
        return ()
    tested = policy_condition_keys(bucket.policy, bucket.name)
    return tuple(
        (key, value)
        for header, key in REQUEST_HEADER_KEYS
        if key.lower() in tested and (value := headers.get(header))
    )


def depends_on_source(bucket: StoredBucket) -> bool:
    """Whether decisions on this bucket depend on the caller's address."""
    return bool(bucket.policy) and "aws:sourceip" in policy_condition_keys(
        bucket.policy or "", bucket.name
    )
