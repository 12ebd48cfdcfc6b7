"""From stored rows to the access decision's facts; every channel asks `may()` through here.

ACLs are stored as compact JSON; policies as the JSON the owner sent; decoding is cached by
the stored text, so the hot path does not re-parse a bucket's policy on every request.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache

from s3torrent.access import (
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
from s3torrent.store import metadata as md


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
    return parse_policy(text, bucket=bucket)


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


def owner_of(bucket: md.Bucket, display: str = "") -> Owner:
    return Owner(bucket.owner_id, display)


def bucket_acl(bucket: md.Bucket) -> AccessControlList:
    if bucket.acl:
        return decode_acl(bucket.acl)
    owner = owner_of(bucket)
    return canned_acl("private", owner=owner, bucket_owner=owner)


def object_acl(bucket: md.Bucket, obj: md.ObjectVersion) -> AccessControlList:
    if obj.acl:
        return decode_acl(obj.acl)
    owner = Owner(obj.owner_id, "")
    return canned_acl("private", owner=owner, bucket_owner=owner_of(bucket))


def facts_for(bucket: md.Bucket, obj: md.ObjectVersion | None) -> AccessFacts:
    return AccessFacts(
        bucket_owner=owner_of(bucket),
        bucket_acl=bucket_acl(bucket),
        object_acl=object_acl(bucket, obj) if obj is not None else None,
        policy=decode_policy(bucket.policy, bucket.name) if bucket.policy else None,
        public_access_block=(
            decode_public_access_block(bucket.public_access_block)
            if bucket.public_access_block
            else None
        ),
    )


def may(
    principal: Principal,
    action: str,
    bucket: md.Bucket,
    key: str | None,
    obj: md.ObjectVersion | None,
    ctx: RequestContext,
) -> Decision:
    """The one access decision, for any channel: REST, ?torrent, tracker, seeder, web seed."""
    return decide(principal, action, Resource(bucket.name, key), facts_for(bucket, obj), ctx)


def context(now: datetime, source_ip: str | None, secure: bool, **values: str) -> RequestContext:
    return RequestContext(now=now, source_ip=source_ip, secure_transport=secure, values=values)
