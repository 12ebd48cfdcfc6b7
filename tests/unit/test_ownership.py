"""Object Ownership rules (pure): who owns a new object, which ACL is in force, and which
requests are refused while ACLs are disabled."""

from __future__ import annotations

import pytest

from s3torrent.access import Owner, canned_acl
from s3torrent.access import facts as authz
from s3torrent.access.ownership import (
    SETTING,
    ObjectOwnership,
    effective_ownership,
    new_object_owner,
    only_owner_full_control,
    settable_without_acls,
)
from s3torrent.s3.errors import S3Error
from s3torrent.s3.refusals import refuse_acls
from s3torrent.s3.routing import Endpoint
from s3torrent.store import rows as md

ENFORCED = {SETTING: "BucketOwnerEnforced"}
PREFERRED = {SETTING: "BucketOwnerPreferred"}


def test_without_a_setting_acls_are_enabled_and_the_writer_owns() -> None:
    assert effective_ownership({}) is ObjectOwnership.OBJECT_WRITER
    assert new_object_owner({}, "writer", "owner", "bucket-owner-full-control") == "writer"


def test_enforced_gives_everything_to_the_bucket_owner() -> None:
    assert new_object_owner(ENFORCED, "writer", "owner", None) == "owner"


def test_preferred_takes_objects_written_with_full_control_only() -> None:
    assert new_object_owner(PREFERRED, "w", "o", "BUCKET-OWNER-FULL-CONTROL") == "o"
    assert new_object_owner(PREFERRED, "w", "o", "private") == "w"
    assert new_object_owner(PREFERRED, "w", "o", None) == "w"


def test_ownership_values_are_spelled_exactly() -> None:
    assert ObjectOwnership.parse("ObjectWriter") is ObjectOwnership.OBJECT_WRITER
    assert ObjectOwnership.parse("objectwriter") is None


def test_stored_acls_do_not_count_while_enforced() -> None:
    public = canned_acl("public-read", owner=Owner("w", ""), bucket_owner=Owner("o", ""))
    text = authz.encode_acl(public)
    bucket = md.Bucket("b", "o", 0.0, "us-east-1", acl=text, settings=ENFORCED)
    obj = md.ObjectVersion("b", "k", "v", 1, '"e"', 0.0, "w", acl=text)
    assert only_owner_full_control(authz.bucket_acl(bucket))
    in_force = authz.object_acl(bucket, obj)
    assert in_force.owner.id == "o"
    assert settable_without_acls(in_force, "o")
    enabled = md.Bucket("b", "o", 0.0, "us-east-1", acl=text)
    assert not only_owner_full_control(authz.object_acl(enabled, obj))


@pytest.mark.parametrize(
    ("endpoint", "headers"),
    [
        (Endpoint.PutObject, {"x-amz-acl": "public-read"}),
        (Endpoint.PutObject, {"x-amz-grant-read": "uri=x"}),
        (Endpoint.CopyObject, {"x-amz-acl": "private"}),
        (Endpoint.CreateMultipartUpload, {"x-amz-grant-full-control": "id=x"}),
        (Endpoint.PutObjectAcl, {"x-amz-acl": "public-read"}),
        (Endpoint.PutBucketAcl, {"x-amz-acl": "authenticated-read"}),
    ],
)
def test_acl_setting_requests_are_refused_while_enforced(
    endpoint: Endpoint, headers: dict[str, str]
) -> None:
    with pytest.raises(S3Error) as exc:
        refuse_acls(endpoint, headers, ENFORCED)
    assert (exc.value.code, exc.value.status) == ("AccessControlListNotSupported", 400)
    refuse_acls(endpoint, headers, PREFERRED)
    refuse_acls(endpoint, headers, None)


def test_bucket_owner_full_control_and_reads_pass_while_enforced() -> None:
    refuse_acls(Endpoint.PutObject, {"x-amz-acl": "bucket-owner-full-control"}, ENFORCED)
    refuse_acls(Endpoint.PutObject, {}, ENFORCED)
    refuse_acls(Endpoint.GetObjectAcl, {"x-amz-acl": "public-read"}, ENFORCED)
