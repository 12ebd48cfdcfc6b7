"""S3 Object Ownership: who owns a new object, and whether ACLs count at all.

- `BucketOwnerEnforced`: ACLs are disabled. Stored ACLs are kept but ignored (the bucket
  owner has full control of the bucket and of every object in it, nobody else is granted
  anything by an ACL); requests that would set an ACL are refused.
- `BucketOwnerPreferred`: a write carrying `x-amz-acl: bucket-owner-full-control` makes
  the bucket owner the object's owner; otherwise the writer owns it.
- `ObjectWriter`: the writer owns what it writes (S3's behaviour before ownership controls).

A bucket without the setting behaves as `ObjectWriter`. This server's default for new
buckets is to store nothing, so ACLs stay enabled: publishing a torrent is most often done
with a `public-read` ACL, which BucketOwnerEnforced (AWS's default since 2023) would refuse.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from s3torrent.access.acl import AccessControlList, CanonicalUser, Permission

# The key under which a bucket's settings hold its ownership rule.
SETTING = "object_ownership"
BUCKET_OWNER_FULL_CONTROL = "bucket-owner-full-control"


class ObjectOwnership(StrEnum):
    BUCKET_OWNER_ENFORCED = "BucketOwnerEnforced"
    BUCKET_OWNER_PREFERRED = "BucketOwnerPreferred"
    OBJECT_WRITER = "ObjectWriter"

    @classmethod
    def parse(cls, value: str) -> ObjectOwnership | None:
        """The rule a client named (exact spelling, as S3 requires), or None."""
        try:
            return cls(value.strip())
        except ValueError:
            return None


def stored_ownership(settings: Mapping[str, Any]) -> ObjectOwnership | None:
    """The rule a bucket's settings hold; None when no ownership controls are set."""
    raw = settings.get(SETTING)
    return ObjectOwnership.parse(raw) if isinstance(raw, str) else None


def effective_ownership(settings: Mapping[str, Any]) -> ObjectOwnership:
    """The rule in force: the stored one, else ObjectWriter (ACLs enabled)."""
    return stored_ownership(settings) or ObjectOwnership.OBJECT_WRITER


def acls_disabled(settings: Mapping[str, Any]) -> bool:
    return effective_ownership(settings) is ObjectOwnership.BUCKET_OWNER_ENFORCED


def new_object_owner(
    settings: Mapping[str, Any], writer_id: str, bucket_owner_id: str, canned: str | None
) -> str:
    """Who owns an object written by `writer_id` with canned ACL `canned` (or none)."""
    rule = effective_ownership(settings)
    if rule is ObjectOwnership.BUCKET_OWNER_ENFORCED:
        return bucket_owner_id
    if rule is ObjectOwnership.BUCKET_OWNER_PREFERRED and (
        canned is not None and canned.strip().lower() == BUCKET_OWNER_FULL_CONTROL
    ):
        return bucket_owner_id
    return writer_id


def settable_without_acls(acl: AccessControlList, bucket_owner_id: str) -> bool:
    """With ACLs disabled, the one ACL S3 still takes: full control to the bucket owner
    (bucket-owner-full-control, or the same written as an AccessControlPolicy)."""
    return all(
        isinstance(g.grantee, CanonicalUser)
        and g.grantee.id == bucket_owner_id
        and g.permission is Permission.FULL_CONTROL
        for g in acl.grants
    )


def only_owner_full_control(acl: AccessControlList) -> bool:
    """True when the ACL grants nothing beyond its owner's full control (S3's condition for
    turning BucketOwnerEnforced on)."""
    return all(
        isinstance(g.grantee, CanonicalUser)
        and g.grantee.id == acl.owner.id
        and g.permission is Permission.FULL_CONTROL
        for g in acl.grants
    )
