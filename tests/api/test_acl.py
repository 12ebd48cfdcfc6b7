"""ACLs through boto3, the AWS CLI and plain HTTP: canned, header grants, XML bodies, BPA."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, aws_cli

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _canonical_id(client: Any) -> str:
    return str(client.list_buckets()["Owner"]["ID"])


def _anon_get(server: LiveServer, bucket: str, key: str) -> requests.Response:
    return requests.get(f"{server.endpoint}/{bucket}/{key}", timeout=10)


def test_default_bucket_acl_is_owner_full_control(s3: Any, bucket: str) -> None:
    acl = s3.get_bucket_acl(Bucket=bucket)
    assert acl["Owner"]["ID"] == _canonical_id(s3)
    assert acl["Owner"]["DisplayName"] == "root"
    assert [(g["Grantee"]["ID"], g["Permission"]) for g in acl["Grants"]] == [
        (acl["Owner"]["ID"], "FULL_CONTROL")
    ]


def test_private_object_is_hidden_from_bob_and_anonymous(
    s3: Any, bob_s3: Any, server: LiveServer, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="secret", Body=b"alice only")
    with pytest.raises(ClientError) as exc:
        bob_s3.get_object(Bucket=bucket, Key="secret")
    assert _code(exc) == "AccessDenied"
    assert _anon_get(server, bucket, "secret").status_code == 403


def test_public_read_object_acl_makes_object_anonymously_readable(
    s3: Any, server: LiveServer, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="doc", Body=b"hello world")
    assert _anon_get(server, bucket, "doc").status_code == 403
    s3.put_object_acl(Bucket=bucket, Key="doc", ACL="public-read")
    r = _anon_get(server, bucket, "doc")
    assert r.status_code == 200
    assert r.content == b"hello world"
    grants = s3.get_object_acl(Bucket=bucket, Key="doc")["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"} in grants
    s3.put_object_acl(Bucket=bucket, Key="doc", ACL="private")
    assert _anon_get(server, bucket, "doc").status_code == 403


def test_grant_read_header_lets_bob_read(s3: Any, bob_s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="shared", Body=b"for bob")
    bob_id = _canonical_id(bob_s3)
    s3.put_object_acl(Bucket=bucket, Key="shared", GrantRead=f'id="{bob_id}"')
    assert bob_s3.get_object(Bucket=bucket, Key="shared")["Body"].read() == b"for bob"
    grants = s3.get_object_acl(Bucket=bucket, Key="shared")["Grants"]
    assert [(g["Grantee"].get("ID"), g["Permission"]) for g in grants] == [(bob_id, "READ")]
    # READ is not READ_ACP: bob still cannot see or change the ACL.
    with pytest.raises(ClientError) as exc:
        bob_s3.get_object_acl(Bucket=bucket, Key="shared")
    assert _code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        bob_s3.put_object_acl(Bucket=bucket, Key="shared", ACL="public-read")
    assert _code(exc) == "AccessDenied"


def test_access_control_policy_body_round_trips(s3: Any, bob_s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    owner = s3.get_object_acl(Bucket=bucket, Key="k")["Owner"]
    bob_id = _canonical_id(bob_s3)
    policy = {
        "Owner": {"ID": owner["ID"]},
        "Grants": [
            {"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]}, "Permission": "FULL_CONTROL"},
            {"Grantee": {"Type": "CanonicalUser", "ID": bob_id}, "Permission": "READ"},
            {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ_ACP"},
        ],
    }
    s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy=policy)
    got = s3.get_object_acl(Bucket=bucket, Key="k")
    assert got["Owner"]["ID"] == owner["ID"]
    triples = [
        (g["Grantee"]["Type"], g["Grantee"].get("ID") or g["Grantee"].get("URI"), g["Permission"])
        for g in got["Grants"]
    ]
    # The same grants, in S3's order: groups, then the owner, then other users.
    assert triples == [
        ("Group", ALL_USERS, "READ_ACP"),
        ("CanonicalUser", owner["ID"], "FULL_CONTROL"),
        ("CanonicalUser", bob_id, "READ"),
    ]
    bob_grant = got["Grants"][2]["Grantee"]
    assert bob_grant["DisplayName"].startswith("bob")
    assert bob_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_acl_body_with_unknown_user_or_foreign_owner_is_refused(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    owner_id = _canonical_id(s3)
    unknown = {
        "Owner": {"ID": owner_id},
        "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": "f" * 64}, "Permission": "READ"}],
    }
    with pytest.raises(ClientError) as exc:
        s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy=unknown)
    assert _code(exc) == "InvalidArgument"
    foreign = {"Owner": {"ID": "e" * 64}, "Grants": []}
    with pytest.raises(ClientError) as exc:
        s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy=foreign)
    assert _code(exc) == "AccessDenied"


def test_invalid_canned_acl_and_missing_object(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.put_object_acl(Bucket=bucket, Key="k", ACL="world-writable")  # type: ignore[arg-type]
    assert _code(exc) == "InvalidArgument"
    with pytest.raises(ClientError) as exc:
        s3.get_object_acl(Bucket=bucket, Key="missing")
    assert _code(exc) == "NoSuchKey"


def test_public_read_bucket_acl_allows_anonymous_listing(
    s3: Any, server: LiveServer, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="listed", Body=b"x")
    assert requests.get(f"{server.endpoint}/{bucket}", timeout=10).status_code == 403
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    r = requests.get(f"{server.endpoint}/{bucket}", timeout=10)
    assert r.status_code == 200
    assert b"<Key>listed</Key>" in r.content
    # Listing is not reading: the object stays private.
    assert _anon_get(server, bucket, "listed").status_code == 403
    grants = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"} in grants


def test_bucket_write_grant_lets_bob_upload(s3: Any, bob_s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        bob_s3.put_object(Bucket=bucket, Key="from-bob", Body=b"b")
    assert _code(exc) == "AccessDenied"
    bob_id = _canonical_id(bob_s3)
    owner_id = _canonical_id(s3)
    s3.put_bucket_acl(
        Bucket=bucket, GrantWrite=f'id="{bob_id}"', GrantFullControl=f'id="{owner_id}"'
    )
    bob_s3.put_object(Bucket=bucket, Key="from-bob", Body=b"b")
    # bob owns the object he wrote (so he may read its ACL), not the bucket's ACL.
    assert bob_s3.get_object_acl(Bucket=bucket, Key="from-bob")["Owner"]["ID"] == bob_id
    with pytest.raises(ClientError) as exc:
        bob_s3.get_bucket_acl(Bucket=bucket)
    assert _code(exc) == "AccessDenied"


def test_canned_and_header_grants_together_are_refused(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_acl(Bucket=bucket, ACL="private", GrantRead=f'id="{"a" * 64}"')
    assert _code(exc) == "InvalidRequest"


def test_block_public_acls_refuses_public_acls(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration={"BlockPublicAcls": True}
    )
    for call in (
        lambda: s3.put_object_acl(Bucket=bucket, Key="k", ACL="public-read"),
        lambda: s3.put_bucket_acl(Bucket=bucket, ACL="public-read"),
        lambda: s3.put_object(Bucket=bucket, Key="k2", Body=b"x", ACL="public-read"),
        lambda: s3.put_object_acl(Bucket=bucket, Key="k", GrantRead=f'uri="{ALL_USERS}"'),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == "AccessDenied"
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="private")  # non-public ACLs still work


def _aws(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    return aws_cli(server.endpoint, *args, timeout=120)


def test_aws_cli_object_and_bucket_acl(s3: Any, server: LiveServer, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="cli", Body=b"via cli")
    res = _aws(
        server,
        "s3api",
        "put-object-acl",
        "--bucket",
        bucket,
        "--key",
        "cli",
        "--acl",
        "public-read",
    )
    assert res.returncode == 0, res.stderr
    res = _aws(server, "s3api", "get-object-acl", "--bucket", bucket, "--key", "cli")
    assert res.returncode == 0, res.stderr
    grants = json.loads(res.stdout)["Grants"]
    assert {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"} in grants
    assert _anon_get(server, bucket, "cli").content == b"via cli"
    res = _aws(server, "s3api", "put-bucket-acl", "--bucket", bucket, "--acl", "public-read")
    assert res.returncode == 0, res.stderr
    res = _aws(server, "s3api", "get-bucket-acl", "--bucket", bucket)
    assert res.returncode == 0, res.stderr
    assert any(g["Permission"] == "READ" for g in json.loads(res.stdout)["Grants"])


def test_acls_list_group_grants_first_then_owner_then_users(
    s3: Any, bob_s3: Any, bucket: str
) -> None:
    bob_id = _canonical_id(bob_s3)
    owner_id = _canonical_id(s3)
    s3.put_bucket_acl(
        Bucket=bucket,
        GrantRead=f'id="{bob_id}"',
        GrantFullControl=f'id="{owner_id}"',
        GrantReadACP='uri="http://acs.amazonaws.com/groups/global/AllUsers"',
    )
    grants = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    kinds = [
        "group"
        if g["Grantee"]["Type"] == "Group"
        else ("owner" if g["Grantee"].get("ID") == owner_id else "user")
        for g in grants
    ]
    assert kinds == sorted(kinds, key=["group", "owner", "user"].index), kinds
    assert kinds[0] == "group" and "user" in kinds
