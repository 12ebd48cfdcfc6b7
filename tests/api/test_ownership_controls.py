"""Bucket ownership controls, as boto3 uses them: BucketOwnerEnforced disables ACLs (setting
one is AccessControlListNotSupported, stored ones stop counting, the bucket owner owns every
object), BucketOwnerPreferred, ObjectWriter, and x-amz-object-ownership on CreateBucket."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from s3torrent.access import ACCOUNT_ID
from tests.conftest import LiveServer

_ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _rule(rule: str) -> dict[str, Any]:
    return {"Rules": [{"ObjectOwnership": rule}]}


def _owner(s3: Any, bucket: str, key: str) -> str:
    return str(s3.get_object_acl(Bucket=bucket, Key=key)["Owner"]["ID"])


def _canonical_id(client: Any) -> str:
    return str(client.list_buckets()["Owner"]["ID"])


def _let_bob_write(s3: Any, bucket: str, bob: Any) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"},
                "Action": ["s3:PutObject", "s3:GetObjectAcl"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def _new_name(tag: str) -> str:
    return f"own-{tag}-{os.getpid()}-{int(time.time() * 1000) % 100000}"


def test_new_bucket_has_no_controls_and_keeps_acls(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_ownership_controls(Bucket=bucket)
    assert _code(exc) == ("OwnershipControlsNotFoundError", 404)
    s3.put_object(Bucket=bucket, Key="pub", Body=b"x", ACL="public-read")
    assert requests.get(f"{server.endpoint}/{bucket}/pub", timeout=10).status_code == 200


def test_bucket_owner_enforced_disables_acls(server: LiveServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="pub", Body=b"x", ACL="public-read")
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=_rule("BucketOwnerEnforced"))
    got = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
    assert got == _rule("BucketOwnerEnforced")
    # The stored public-read ACL no longer counts.
    assert requests.get(f"{server.endpoint}/{bucket}/pub", timeout=10).status_code == 403
    grants = s3.get_object_acl(Bucket=bucket, Key="pub")["Grants"]
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]
    for call in (
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read"),
        lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x", GrantRead="uri=x"),
        lambda: s3.put_object_acl(Bucket=bucket, Key="pub", ACL="public-read"),
        lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read"),
        lambda: s3.create_multipart_upload(Bucket=bucket, Key="m", ACL="private"),
        lambda: s3.copy_object(
            Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "pub"}, ACL="private"
        ),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == ("AccessControlListNotSupported", 400)
    # The one ACL S3 still takes (canned or as a body), and no ACL at all.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="bucket-owner-full-control")
    s3.put_object(Bucket=bucket, Key="k2", Body=b"x")
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="bucket-owner-full-control")
    owner = s3.get_bucket_acl(Bucket=bucket)["Owner"]
    full = {"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]}, "Permission": "FULL_CONTROL"}
    s3.put_bucket_acl(Bucket=bucket, AccessControlPolicy={"Owner": owner, "Grants": [full]})
    reader = {"Grantee": {"Type": "Group", "URI": _ALL_USERS}, "Permission": "READ"}
    with pytest.raises(ClientError) as exc:
        s3.put_object_acl(
            Bucket=bucket, Key="k", AccessControlPolicy={"Owner": owner, "Grants": [reader]}
        )
    assert _code(exc) == ("AccessControlListNotSupported", 400)
    # Switching back restores what the ACLs said.
    s3.delete_bucket_ownership_controls(Bucket=bucket)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_ownership_controls(Bucket=bucket)
    assert _code(exc)[1] == 404
    assert requests.get(f"{server.endpoint}/{bucket}/pub", timeout=10).status_code == 200


def test_enforced_bucket_owns_what_others_write(
    s3: Any, bob_s3: Any, bob: Any, bucket: str
) -> None:
    _let_bob_write(s3, bucket, bob)
    bob_s3.put_object(Bucket=bucket, Key="before", Body=b"x")
    assert _owner(s3, bucket, "before") == _canonical_id(bob_s3)
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=_rule("BucketOwnerEnforced"))
    bob_s3.put_object(Bucket=bucket, Key="after", Body=b"x")
    root_id = _canonical_id(s3)
    assert _owner(s3, bucket, "after") == root_id
    # Objects written before count as the bucket owner's too while ACLs are off.
    assert _owner(s3, bucket, "before") == root_id


def test_bucket_owner_preferred_takes_objects_written_with_full_control(
    s3: Any, bob_s3: Any, bob: Any, bucket: str
) -> None:
    _let_bob_write(s3, bucket, bob)
    s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls=_rule("BucketOwnerPreferred"))
    bob_s3.put_object(Bucket=bucket, Key="given", Body=b"x", ACL="bucket-owner-full-control")
    bob_s3.put_object(Bucket=bucket, Key="kept", Body=b"x")
    assert _owner(s3, bucket, "given") == _canonical_id(s3)
    assert _owner(s3, bucket, "kept") == _canonical_id(bob_s3)


def test_create_bucket_with_object_ownership(s3: Any) -> None:
    name = _new_name("c")
    s3.create_bucket(Bucket=name, ObjectOwnership="BucketOwnerEnforced")
    got = s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]
    assert got == _rule("BucketOwnerEnforced")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=name, Key="k", Body=b"x", ACL="public-read")
    assert _code(exc) == ("AccessControlListNotSupported", 400)
    writer = _new_name("w")
    s3.create_bucket(Bucket=writer, ObjectOwnership="ObjectWriter")
    assert s3.get_bucket_ownership_controls(Bucket=writer)["OwnershipControls"] == _rule(
        "ObjectWriter"
    )


def test_enforced_with_an_acl_that_grants_others_is_refused(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(
            Bucket=_new_name("bad"), ObjectOwnership="BucketOwnerEnforced", ACL="public-read"
        )
    assert _code(exc) == ("InvalidBucketAclWithObjectOwnership", 400)
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_ownership_controls(
            Bucket=bucket, OwnershipControls=_rule("BucketOwnerEnforced")
        )
    assert _code(exc) == ("InvalidBucketAclWithObjectOwnership", 400)


def test_unknown_ownership_values_are_refused(server: LiveServer, s3: Any, bucket: str) -> None:
    from tests.conftest import sign_request

    url = f"{server.endpoint}/{_new_name('u')}"
    headers = sign_request("PUT", url, {"x-amz-object-ownership": "Everyone"})
    assert requests.put(url, headers=headers, timeout=10).status_code == 400
    body = (
        b'<OwnershipControls xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Rule><ObjectOwnership>Everyone</ObjectOwnership></Rule></OwnershipControls>"
    )
    url = f"{server.endpoint}/{bucket}?ownershipControls"
    headers = sign_request("PUT", url, {}, body)
    resp = requests.put(url, data=body, headers=headers, timeout=10)
    assert resp.status_code == 400 and b"MalformedXML" in resp.content
