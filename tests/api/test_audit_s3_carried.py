"""Audit of S3 semantics carried over from earlier audits, against S3's API reference:
query parameters that are not UTF-8, object lock (legal hold's three states, default
retention in years, locked versions against every way of removing them), and the integrity
headers S3 requires on some requests."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.api.test_cli_tools import aws, ok
from tests.api.test_object_lock import _code, _later
from tests.conftest import (
    LiveServer,
    UserKeys,
    rclone_env,
    s3cmd_command,
    sign_request,
)


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


# ---- the integrity header S3 requires ----

_CORS = (
    b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod>"
    b"<AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>"
)
_LIFECYCLE = (
    b"<LifecycleConfiguration><Rule><ID>r</ID><Filter><Prefix>x/</Prefix></Filter>"
    b"<Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"
    b"</LifecycleConfiguration>"
)
_LOCK_CONFIGURATION = (
    b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>"
    b"</ObjectLockConfiguration>"
)
_RETENTION_DATE = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
# Each operation S3 requires Content-MD5 or a checksum on (that this server implements):
# method, where (after the bucket), body.
_STRICT = {
    "DeleteObjects": ("POST", "?delete=", b"<Delete><Object><Key>k</Key></Object></Delete>"),
    "PutBucketCors": ("PUT", "?cors=", _CORS),
    "PutBucketLifecycleConfiguration": ("PUT", "?lifecycle=", _LIFECYCLE),
    "PutObjectLockConfiguration": ("PUT", "?object-lock=", _LOCK_CONFIGURATION),
    "PutObjectLegalHold": ("PUT", "/k?legal-hold=", b"<LegalHold><Status>OFF</Status></LegalHold>"),
    "PutObjectRetention": (
        "PUT",
        "/k?retention=",
        b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>"
        + _RETENTION_DATE.encode()
        + b"</RetainUntilDate></Retention>",
    ),
}


def _send(server: Any, bucket: str, operation: str, headers: dict[str, str]) -> requests.Response:
    method, where, body = _STRICT[operation]
    url = f"{server.endpoint}/{bucket}{where}"
    signed = sign_request(method, url, headers=headers, body=body)
    return requests.request(method, url, data=body, headers=signed, timeout=5)


def _crc32(body: bytes) -> str:
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("operation", list(_STRICT))
def test_an_operation_that_requires_a_checksum_takes_only_one_with_a_value(
    s3: Any, locked: str, server: Any, operation: str
) -> None:
    """Content-MD5 or an x-amz-checksum-<algorithm> value: x-amz-checksum-type, -algorithm
    or -mode (which name no value) passed for the required header, and the body went
    unchecked. A value that is sent is checked: a wrong CRC32 or MD5 is BadDigest."""
    s3.put_object(Bucket=locked, Key="k", Body=b"x")
    body = _STRICT[operation][2]
    for header in (
        {},
        {"x-amz-checksum-type": "FULL_OBJECT"},
        {"x-amz-checksum-algorithm": "CRC32"},
        {"x-amz-checksum-mode": "ENABLED"},
        {"x-amz-sdk-checksum-algorithm": "CRC32"},
    ):
        resp = _send(server, locked, operation, header)
        assert resp.status_code == 400, (header, resp.content)
        assert b"<Code>InvalidRequest</Code>" in resp.content, (header, resp.content)
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    for header in ({"x-amz-checksum-crc32": _crc32(b"other")}, {"Content-MD5": wrong_md5}):
        resp = _send(server, locked, operation, header)
        assert resp.status_code == 400, (header, resp.content)
        assert b"<Code>BadDigest</Code>" in resp.content, (header, resp.content)
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    for header in (
        {"x-amz-checksum-crc32": _crc32(body)},
        {"x-amz-sdk-checksum-algorithm": "CRC32", "x-amz-checksum-crc32": _crc32(body)},
        {"Content-MD5": md5},
    ):
        if operation == "DeleteObjects":
            s3.put_object(Bucket=locked, Key="k", Body=b"x")
        resp = _send(server, locked, operation, header)
        assert resp.status_code == 200, (header, resp.content)


def test_the_cli_s3cmd_and_rclone_send_a_checksum_where_one_is_required(
    s3: Any, locked: str, server: LiveServer, tmp_path: Path
) -> None:
    """The clients' own requests pass the requirement: the AWS CLI (botocore) sends
    x-amz-checksum-crc32 on each of these operations, s3cmd Content-MD5 on its multi-object
    delete, CORS and lifecycle writes; rclone deletes one key at a time (DeleteObject)."""
    for key in ("a", "b", "c"):
        s3.put_object(Bucket=locked, Key=f"d/{key}", Body=b"x")
    (tmp_path / "cors.json").write_text(
        json.dumps({"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]})
    )
    rule = {"ID": "r", "Filter": {"Prefix": "x/"}, "Status": "Enabled", "Expiration": {"Days": 1}}
    (tmp_path / "lc.json").write_text(json.dumps({"Rules": [rule]}))
    s3api = ("s3api", "--bucket", locked)
    for args in (
        ("delete-objects", "--delete", "Objects=[{Key=d/a}]"),
        ("put-bucket-cors", "--cors-configuration", f"file://{tmp_path / 'cors.json'}"),
        ("put-bucket-lifecycle-configuration", "--lifecycle-configuration",
         f"file://{tmp_path / 'lc.json'}"),
        ("put-object-lock-configuration", "--object-lock-configuration",
         "ObjectLockEnabled=Enabled"),
        ("put-object-legal-hold", "--key", "d/b", "--legal-hold", "Status=OFF"),
        ("put-object-retention", "--key", "d/b", "--retention",
         f"Mode=GOVERNANCE,RetainUntilDate={_RETENTION_DATE}"),
    ):  # fmt: skip
        ok(aws(server, tmp_path, *s3api[:1], args[0], *s3api[1:], *args[1:]))
    ok(aws(server, tmp_path, "s3", "rm", "--recursive", f"s3://{locked}/d/c"))
    s3cmd = s3cmd_command(server.endpoint, tmp_path)
    (tmp_path / "cors.xml").write_bytes(_CORS)
    (tmp_path / "lc.xml").write_bytes(_LIFECYCLE)
    plain = f"{locked}-p"
    s3.create_bucket(Bucket=plain)
    for key in ("a", "b"):
        s3.put_object(Bucket=plain, Key=f"d/{key}", Body=b"x")
    for args in (
        ("setcors", str(tmp_path / "cors.xml"), f"s3://{plain}"),
        ("setlifecycle", str(tmp_path / "lc.xml"), f"s3://{plain}"),
        ("del", "--recursive", f"s3://{plain}/d/"),
    ):
        res = subprocess.run([*s3cmd, *args], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, (args, res.stderr)
    assert "Contents" not in s3.list_objects_v2(Bucket=plain)
    s3.put_object(Bucket=plain, Key="r/a", Body=b"x")
    env = rclone_env(server.endpoint)
    res = subprocess.run(
        ["rclone", "delete", f"s3t:{plain}/r"], capture_output=True, text=True, timeout=120, env=env
    )
    assert res.returncode == 0, res.stderr
    assert "Contents" not in s3.list_objects_v2(Bucket=plain)
    cors = s3.get_bucket_cors(Bucket=plain)["CORSRules"]
    assert cors[0]["AllowedMethods"] == ["GET"]


# ---- a legal hold: ON, OFF, or never set ----


def _hold_header(client: Any, bucket: str, key: str, **version: str) -> set[str | None]:
    """The x-amz-object-lock-legal-hold header HEAD and GET answer (None: none)."""
    seen: set[str | None] = set()
    for read in (client.head_object, client.get_object):
        headers = read(Bucket=bucket, Key=key, **version)["ResponseMetadata"]["HTTPHeaders"]
        seen.add(headers.get("x-amz-object-lock-legal-hold"))
    return seen


def test_a_legal_hold_never_set_is_not_reported(s3: Any, locked: str) -> None:
    """S3's HeadObject reference: the header "is not returned if the specified version of
    this object has never had a legal hold applied"; GetObjectLegalHold answers such a
    version NoSuchObjectLockConfiguration. One set OFF, or ON then OFF, is told OFF. Every
    version without a hold was reported OFF by GetObjectLegalHold."""
    vid = s3.put_object(Bucket=locked, Key="k", Body=b"x")["VersionId"]
    assert _hold_header(s3, locked, "k") == {None}
    with pytest.raises(ClientError) as exc:
        s3.get_object_legal_hold(Bucket=locked, Key="k")
    assert _code(exc) == ("NoSuchObjectLockConfiguration", 404)
    s3.put_object_legal_hold(Bucket=locked, Key="k", VersionId=vid, LegalHold={"Status": "OFF"})
    assert _hold_header(s3, locked, "k") == {"OFF"}
    assert s3.get_object_legal_hold(Bucket=locked, Key="k")["LegalHold"] == {"Status": "OFF"}
    s3.put_object_legal_hold(Bucket=locked, Key="k", VersionId=vid, LegalHold={"Status": "ON"})
    assert _hold_header(s3, locked, "k") == {"ON"}
    s3.put_object_legal_hold(Bucket=locked, Key="k", VersionId=vid, LegalHold={"Status": "OFF"})
    assert _hold_header(s3, locked, "k", VersionId=vid) == {"OFF"}
    # A version written over it has no hold of its own; the older one keeps its OFF.
    s3.put_object(Bucket=locked, Key="k", Body=b"y")
    assert _hold_header(s3, locked, "k") == {None}
    assert _hold_header(s3, locked, "k", VersionId=vid) == {"OFF"}


def test_a_writes_own_legal_hold_off_is_reported_off(s3: Any, locked: str) -> None:
    """x-amz-object-lock-legal-hold: OFF on PutObject, CopyObject or CreateMultipartUpload
    sets the hold (OFF); without the header the new version has none."""
    s3.put_object(Bucket=locked, Key="put", Body=b"x", ObjectLockLegalHoldStatus="OFF")
    assert _hold_header(s3, locked, "put") == {"OFF"}
    s3.copy_object(
        Bucket=locked,
        Key="copy",
        CopySource={"Bucket": locked, "Key": "put"},
        ObjectLockLegalHoldStatus="OFF",
    )
    assert _hold_header(s3, locked, "copy") == {"OFF"}
    s3.copy_object(Bucket=locked, Key="plain", CopySource={"Bucket": locked, "Key": "put"})
    assert _hold_header(s3, locked, "plain") == {None}
    for status, told in (("OFF", "OFF"), (None, None)):
        extra = {"ObjectLockLegalHoldStatus": status} if status else {}
        up = s3.create_multipart_upload(Bucket=locked, Key="mp", **extra)["UploadId"]
        part = s3.upload_part(Bucket=locked, Key="mp", UploadId=up, PartNumber=1, Body=b"p")
        s3.complete_multipart_upload(
            Bucket=locked,
            Key="mp",
            UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
        assert _hold_header(s3, locked, "mp") == {told}


def test_a_legal_hold_off_is_told_only_to_who_may_read_it(
    s3: Any, bob_s3: Any, bob: UserKeys, locked: str
) -> None:
    s3.put_object(Bucket=locked, Key="k", Body=b"x", ObjectLockLegalHoldStatus="OFF")
    _allow(s3, locked, bob, ["s3:GetObject"])
    assert _hold_header(bob_s3, locked, "k") == {None}
    _allow(s3, locked, bob, ["s3:GetObject", "s3:GetObjectLegalHold"])
    assert _hold_header(bob_s3, locked, "k") == {"OFF"}


def test_governance_turns_compliance_only_with_the_bypass(s3: Any, locked: str) -> None:
    """As S3 does (tested against it by ceph, rgw PR 42505): GOVERNANCE becomes COMPLIANCE,
    even with a later date, only when governance is bypassed; COMPLIANCE never goes back."""
    vid = s3.put_object(
        Bucket=locked,
        Key="g",
        Body=b"gov",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=_later(3600),
    )["VersionId"]
    later = {"Mode": "COMPLIANCE", "RetainUntilDate": _later(7200)}
    with pytest.raises(ClientError) as exc:
        s3.put_object_retention(Bucket=locked, Key="g", VersionId=vid, Retention=later)
    assert _code(exc) == ("AccessDenied", 403)
    s3.put_object_retention(
        Bucket=locked, Key="g", VersionId=vid, Retention=later, BypassGovernanceRetention=True
    )
    back = {"Mode": "GOVERNANCE", "RetainUntilDate": _later(9000)}
    with pytest.raises(ClientError) as exc:
        s3.put_object_retention(
            Bucket=locked, Key="g", VersionId=vid, Retention=back, BypassGovernanceRetention=True
        )
    assert _code(exc) == ("AccessDenied", 403)
    assert s3.head_object(Bucket=locked, Key="g", VersionId=vid)["ObjectLockMode"] == "COMPLIANCE"
