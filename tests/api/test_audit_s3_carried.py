"""Audit of S3 semantics carried over from earlier audits, against S3's API reference:
query parameters that are not UTF-8, object lock (legal hold's three states, default
retention in years, locked versions against every way of removing them), and the integrity
headers S3 requires on some requests."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.api.test_object_lock import _code, _later
from tests.conftest import UserKeys, sign_request


@pytest.fixture
def locked(s3: Any) -> str:
    name = f"clock-{os.getpid()}-{os.urandom(3).hex()}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


# ---- query parameters that are not UTF-8 ----

_LISTINGS = ("", "&list-type=2", "&versions", "&uploads")
_PARAMETERS = {
    "": ("prefix", "delimiter", "marker"),
    "&list-type=2": ("prefix", "delimiter", "start-after", "continuation-token"),
    "&versions": ("prefix", "delimiter", "key-marker"),
    "&uploads": ("prefix", "delimiter", "key-marker"),
}


@pytest.mark.parametrize("encoding", ["", "&encoding-type=url"])
@pytest.mark.parametrize("listing", _LISTINGS)
def test_a_listing_parameter_that_is_not_utf8_is_invalid_uri(
    s3: Any, bucket: str, server: Any, listing: str, encoding: str
) -> None:
    """%FF decodes to no UTF-8 string: S3 answers 400 InvalidURI, as for such a key in the
    path. The byte was replaced by U+FFFD, so a signed request failed its signature
    (SignatureDoesNotMatch: the canonical query differed from the client's) and an anonymous
    one listed from another prefix or marker than the one sent."""
    s3.put_object(Bucket=bucket, Key="a\ufffdb", Body=b"x")
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    for name in _PARAMETERS[listing]:
        url = f"{server.endpoint}/{bucket}?{name}=a%FFb{listing}{encoding}"
        for headers in (sign_request("GET", url), {}):
            resp = requests.get(url, headers=headers, timeout=5)
            assert resp.status_code == 400, (name, resp.content)
            assert b"<Code>InvalidURI</Code>" in resp.content, (name, resp.content)


def test_a_listing_parameter_of_utf8_bytes_still_lists(s3: Any, bucket: str, server: Any) -> None:
    s3.put_object(Bucket=bucket, Key="a\u00e9b", Body=b"x")
    url = f"{server.endpoint}/{bucket}?list-type=2&prefix=a%C3%A9&encoding-type=url"
    resp = requests.get(url, headers=sign_request("GET", url), timeout=5)
    assert resp.status_code == 200
    assert b"<Key>a%C3%A9b</Key>" in resp.content


# ---- object lock against every way of removing a locked version ----


def _allow(s3: Any, bucket: str, user: UserKeys, actions: list[str]) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::000000000000:user/{user.name}"},
                "Action": actions,
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def _body(s3: Any, bucket: str, key: str, vid: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key, VersionId=vid)["Body"].read())


def test_delete_objects_bypass_needs_its_permission(
    s3: Any, bob_s3: Any, bob: UserKeys, locked: str
) -> None:
    """DeleteObjects with x-amz-bypass-governance-retention, by a user with
    s3:DeleteObjectVersion but without s3:BypassGovernanceRetention: that key's error, the
    version stays; with the permission, it goes."""
    vid = s3.put_object(
        Bucket=locked,
        Key="g",
        Body=b"gov",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=_later(3600),
    )["VersionId"]
    _allow(s3, locked, bob, ["s3:DeleteObjectVersion", "s3:GetObjectVersion"])
    delete = {"Objects": [{"Key": "g", "VersionId": vid}]}
    for bypass in (False, True):
        out = bob_s3.delete_objects(Bucket=locked, Delete=delete, BypassGovernanceRetention=bypass)
        assert [e["Code"] for e in out["Errors"]] == ["AccessDenied"]
    assert _body(s3, locked, "g", vid) == b"gov"
    _allow(s3, locked, bob, ["s3:DeleteObjectVersion", "s3:BypassGovernanceRetention"])
    out = bob_s3.delete_objects(Bucket=locked, Delete=delete, BypassGovernanceRetention=True)
    assert out.get("Errors", []) == [] and out["Deleted"][0]["VersionId"] == vid


def test_a_locked_null_version_survives_every_removal(s3: Any, bucket: str, server: Any) -> None:
    """A version written before the bucket was versioned and locked (the null version),
    then put under COMPLIANCE: a write of its key, DeleteObject and DeleteObjects by
    versionId null, a PUT or copy naming its version id, all leave it as it was."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"first")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object_lock_configuration(
        Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"}
    )
    s3.put_object_retention(
        Bucket=bucket,
        Key="k",
        VersionId="null",
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": _later(3600)},
    )
    s3.put_object(Bucket=bucket, Key="k", Body=b"second")
    s3.copy_object(
        Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "k", "VersionId": "null"}
    )
    url = f"{server.endpoint}/{bucket}/k?versionId=null"
    resp = requests.put(url, data=b"third", headers=sign_request("PUT", url, body=b"third"))
    assert resp.status_code in (200, 400), resp.content
    with pytest.raises(ClientError) as exc:
        s3.delete_object(Bucket=bucket, Key="k", VersionId="null", BypassGovernanceRetention=True)
    assert _code(exc) == ("AccessDenied", 403)
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k", "VersionId": "null"}]})
    assert [e["Code"] for e in out["Errors"]] == ["AccessDenied"]
    assert _body(s3, bucket, "k", "null") == b"first"
    head = s3.head_object(Bucket=bucket, Key="k", VersionId="null")
    assert head["ObjectLockMode"] == "COMPLIANCE"


def test_governance_retention_is_removed_only_with_the_bypass(
    s3: Any, bob_s3: Any, bob: UserKeys, locked: str
) -> None:
    vid = s3.put_object(
        Bucket=locked,
        Key="g",
        Body=b"gov",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=_later(3600),
    )["VersionId"]
    _allow(s3, locked, bob, ["s3:PutObjectRetention", "s3:GetObjectRetention"])
    for bypass in (False, True):
        with pytest.raises(ClientError) as exc:
            bob_s3.put_object_retention(
                Bucket=locked,
                Key="g",
                VersionId=vid,
                Retention={},
                BypassGovernanceRetention=bypass,
            )
        assert _code(exc) == ("AccessDenied", 403)
    assert s3.get_object_retention(Bucket=locked, Key="g", VersionId=vid)["Retention"]["Mode"] == (
        "GOVERNANCE"
    )
