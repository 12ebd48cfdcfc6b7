"""Audit of the policy language on a live server: PutBucketPolicy refuses what IAM's grammar
refuses, and what it accepts is enforced as IAM would enforce it."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
import requests
from botocore.exceptions import ClientError

from s3torrent.access import ACCOUNT_ID
from tests.api.test_torrent import announce, get_torrent, http, torrent_url, v1_info_hash
from tests.conftest import LiveServer, UserKeys


def _anon_get(server: LiveServer, bucket: str, key: str) -> int:
    return requests.get(f"{server.endpoint}/{bucket}/{key}", timeout=10).status_code


def test_a_policy_with_a_duplicate_name_is_refused(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    """Public read with a Deny on secret/* whose statement names Resource twice: before, the
    second Resource silently replaced the first and anyone read secret/."""
    s3.put_object(Bucket=bucket, Key="secret/k", Body=b"s")
    text = (
        '{"Version": "2012-10-17", "Statement": ['
        '{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",'
        f' "Resource": "arn:aws:s3:::{bucket}/*"}},'
        '{"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",'
        f' "Resource": "arn:aws:s3:::{bucket}/secret/*",'
        f' "Resource": "arn:aws:s3:::{bucket}/tmp/*"}}]}}'
    )
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert exc.value.response["Error"]["Code"] == "MalformedPolicy"
    assert _anon_get(server, bucket, "secret/k") == 403


def _home_policy(bucket: str) -> str:
    """The IAM user guide's home-folder policy, as a bucket policy: every user of the
    account lists and reads/writes only under home/<their name>/."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ListOwnHome",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
                    "Action": "s3:ListBucket",
                    "Resource": f"arn:aws:s3:::{bucket}",
                    "Condition": {"StringLike": {"s3:prefix": ["home/${aws:username}/*"]}},
                },
                {
                    "Sid": "OwnHome",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
                    "Action": ["s3:GetObject", "s3:PutObject"],
                    "Resource": f"arn:aws:s3:::{bucket}/home/${{aws:username}}/*",
                },
            ],
        }
    )


def test_policy_variables_resolve_to_the_caller(
    s3: Any, bucket: str, bob: UserKeys, bob_s3: Any
) -> None:
    """Before, ${aws:username} was matched as the literal text: bob could not reach his own
    home folder, and anyone could reach one literally named ${aws:username}."""
    s3.put_bucket_policy(Bucket=bucket, Policy=_home_policy(bucket))
    bob_s3.put_object(Bucket=bucket, Key=f"home/{bob.name}/notes", Body=b"mine")
    got = bob_s3.get_object(Bucket=bucket, Key=f"home/{bob.name}/notes")["Body"].read()
    assert got == b"mine"
    listed = bob_s3.list_objects_v2(Bucket=bucket, Prefix=f"home/{bob.name}/")
    assert [o["Key"] for o in listed["Contents"]] == [f"home/{bob.name}/notes"]
    s3.put_object(Bucket=bucket, Key="home/carol/notes", Body=b"hers")
    s3.put_object(Bucket=bucket, Key="home/${aws:username}/notes", Body=b"literal")
    for key in ("home/carol/notes", "home/${aws:username}/notes"):
        with pytest.raises(ClientError) as exc:
            bob_s3.get_object(Bucket=bucket, Key=key)
        assert exc.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        bob_s3.list_objects_v2(Bucket=bucket, Prefix="home/carol/")
    assert exc.value.response["Error"]["Code"] == "AccessDenied"


def _per_user_read(bucket: str, version: str) -> str:
    return json.dumps(
        {
            "Version": version,
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{bucket}/${{aws:username}}/*",
                }
            ],
        }
    )


def test_an_anonymous_caller_has_no_username_on_any_channel(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    """A 2008-10-17 policy reads `${aws:username}` as text (IAM does too): the object named
    so is public, and REST, ?torrent and the tracker agree. In 2012-10-17 it is a variable,
    which an anonymous caller has no value for: the statement covers nothing, on every
    channel. Before, the 2012-10-17 policy was read as text too and the object stayed public."""
    key = "${aws:username}/k"
    s3.put_object(Bucket=bucket, Key=key, Body=b"literal")
    s3.put_bucket_policy(Bucket=bucket, Policy=_per_user_read(bucket, "2008-10-17"))
    assert _anon_get(server, bucket, quote(key)) == 200
    torrent = get_torrent(server.endpoint, bucket, key)
    assert b"failure reason" not in announce(server.endpoint, v1_info_hash(torrent))

    s3.put_bucket_policy(Bucket=bucket, Policy=_per_user_read(bucket, "2012-10-17"))
    assert _anon_get(server, bucket, quote(key)) == 403
    status, _, _ = http("GET", torrent_url(server.endpoint, bucket, key))
    assert status == 403
    assert b"failure reason" in announce(server.endpoint, v1_info_hash(torrent))


@pytest.mark.parametrize(
    "resource",
    [
        "/${aws:UserAgent}/*",  # a key this server does not resolve: refused, not ignored
        "/${aws:username/*",  # never closed
        "/${aws:username, nobody}/*",  # a default must be quoted
    ],
)
def test_unsupported_or_malformed_variables_are_refused(
    s3: Any, bucket: str, resource: str
) -> None:
    policy = json.loads(_per_user_read(bucket, "2012-10-17"))
    policy["Statement"][0]["Resource"] = f"arn:aws:s3:::{bucket}{resource}"
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert exc.value.response["Error"]["Code"] == "MalformedPolicy"


def test_a_tag_deny_holds_when_another_tag_differs_only_in_case(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    """Public read, except objects tagged env=prod. Before, tagging one env=prod and also
    Env=dev let the second tag replace the first in the decision: REST and ?torrent served
    it anonymously."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {"StringEquals": {"s3:ExistingObjectTag/env": "prod"}},
            },
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    s3.put_object(Bucket=bucket, Key="open", Body=b"o", Tagging="env=test")
    assert _anon_get(server, bucket, "open") == 200
    s3.put_object(Bucket=bucket, Key="prod", Body=b"p", Tagging="env=prod&Env=dev")
    assert _anon_get(server, bucket, "prod") == 403
    status, _, _ = http("GET", torrent_url(server.endpoint, bucket, "prod"))
    assert status in (403, 404)


def test_a_version_id_deny_holds_in_a_multi_object_delete(
    s3: Any, bucket: str, bob: UserKeys, bob_s3: Any
) -> None:
    """A Deny on DeleteObjectVersion for one s3:VersionId: a DeleteObjects entry naming
    that version asks the same decision as DELETE ?versionId= does. Before, the entry's
    decision had no s3:VersionId, so the Deny did not apply and the version was deleted."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    kept = s3.put_object(Bucket=bucket, Key="k", Body=b"keep")["VersionId"]
    other = s3.put_object(Bucket=bucket, Key="k", Body=b"other")["VersionId"]
    statement = {
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"},
        "Action": "s3:DeleteObjectVersion",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    allow = {
        **statement,
        "Action": ["s3:DeleteObject", "s3:DeleteObjectVersion"],
        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
    }
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", **allow},
            {
                "Effect": "Deny",
                **statement,
                "Condition": {"StringEquals": {"s3:VersionId": kept}},
            },
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    with pytest.raises(ClientError) as exc:
        bob_s3.delete_object(Bucket=bucket, Key="k", VersionId=kept)
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    result = bob_s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "k", "VersionId": kept}, {"Key": "k", "VersionId": other}]},
    )
    assert [e["Code"] for e in result.get("Errors", [])] == ["AccessDenied"]
    assert [d["VersionId"] for d in result["Deleted"]] == [other]
    versions = s3.list_object_versions(Bucket=bucket, Prefix="k")["Versions"]
    assert [v["VersionId"] for v in versions] == [kept]


def test_a_policy_granting_deletes_on_objects_covers_a_multi_object_delete(
    s3: Any, bucket: str, bob: UserKeys, bob_s3: Any
) -> None:
    """S3 decides each key of a DeleteObjects as its DELETE: s3:DeleteObject on
    bucket/* is what `aws s3 rm --recursive` needs. Before, the whole request was first
    asked s3:DeleteObject on the bucket itself, which that grant does not cover: 403."""
    for key in ("tmp/a", "tmp/b", "keep/c"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"},
                "Action": "s3:DeleteObject",
                "Resource": f"arn:aws:s3:::{bucket}/tmp/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    objects = [{"Key": k} for k in ("tmp/a", "tmp/b", "keep/c")]
    result = bob_s3.delete_objects(Bucket=bucket, Delete={"Objects": objects})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["tmp/a", "tmp/b"]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("keep/c", "AccessDenied")]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["keep/c"]


def _bob_statement(bob: UserKeys, bucket: str, **fields: Any) -> dict[str, Any]:
    return {
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"},
        "Resource": f"arn:aws:s3:::{bucket}/*",
        **fields,
    }


def _denied(call: Any) -> bool:
    try:
        call()
    except ClientError as exc:
        return bool(exc.response["Error"]["Code"] == "AccessDenied")
    return False


def test_request_tag_conditions_hold_for_every_tag_and_for_put_object_tagging(
    s3: Any, bucket: str, bob: UserKeys, bob_s3: Any
) -> None:
    """s3:RequestObjectTagKeys is multi-valued (one value per tag key) and PutObjectTagging
    has it and s3:RequestObjectTag/<key> from its body, as S3 defines. Before, the keys were
    one comma-joined value, so a Deny on ForAnyValue "classification" missed a PUT tagged
    classification=x&team=y, and PutObjectTagging had neither key: it retagged freely."""
    actions = ["s3:PutObject", "s3:PutObjectTagging"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", **_bob_statement(bob, bucket, Action=actions)},
            {
                "Effect": "Deny",
                **_bob_statement(bob, bucket, Action=actions),
                "Condition": {
                    "ForAnyValue:StringEquals": {"s3:RequestObjectTagKeys": ["classification"]}
                },
            },
            {
                "Effect": "Deny",
                **_bob_statement(bob, bucket, Action="s3:PutObjectTagging"),
                "Condition": {"StringEquals": {"s3:RequestObjectTag/team": "admins"}},
            },
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    put = bob_s3.put_object
    assert _denied(lambda: put(Bucket=bucket, Key="a", Body=b"a", Tagging="classification=x"))
    assert _denied(
        lambda: put(Bucket=bucket, Key="a", Body=b"a", Tagging="team=y&classification=x")
    )
    put(Bucket=bucket, Key="b", Body=b"b", Tagging="team=y&project=p")
    # Retagging: an object of the bucket owner's, which the bucket policy reaches.
    s3.put_object(Bucket=bucket, Key="a", Body=b"a", Tagging="team=y")

    def retag(*tags: tuple[str, str]) -> Any:
        tag_set = [{"Key": k, "Value": v} for k, v in tags]
        return lambda: bob_s3.put_object_tagging(
            Bucket=bucket, Key="a", Tagging={"TagSet": tag_set}
        )

    assert _denied(retag(("classification", "public")))
    assert _denied(retag(("project", "p"), ("team", "admins")))
    retag(("team", "z"))()
    tags = s3.get_object_tagging(Bucket=bucket, Key="a")["TagSet"]
    assert tags == [{"Key": "team", "Value": "z"}]


def test_for_all_values_on_request_tag_keys_sees_each_key(
    s3: Any, bucket: str, bob: UserKeys, bob_s3: Any
) -> None:
    """Allow PutObject only with tags among team and project (ForAllValues): before, the
    keys were one value "team,project", never among them, so every tagged PUT was refused."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                # A write's tags need s3:PutObjectTagging too (PutObject's reference).
                **_bob_statement(bob, bucket, Action=["s3:PutObject", "s3:PutObjectTagging"]),
                "Condition": {
                    "ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": ["team", "project"]}
                },
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    bob_s3.put_object(Bucket=bucket, Key="b", Body=b"b", Tagging="team=t&project=p")
    bob_s3.put_object(Bucket=bucket, Key="c", Body=b"c")  # no tags: the empty set, true
    assert _denied(
        lambda: bob_s3.put_object(Bucket=bucket, Key="d", Body=b"d", Tagging="team=t&cost=1")
    )


def test_the_documented_conditional_write_policy_is_enforced(
    s3: Any, bucket: str, bob: UserKeys, bob_s3: Any
) -> None:
    """S3's user guide enforces conditional writes with a Deny on s3:PutObject when
    s3:if-none-match is Null and s3:ObjectCreationOperation is true (PutObject, CopyObject,
    CompleteMultipartUpload; false for CreateMultipartUpload and the parts). Before, that key
    was never filled, so the Bool never held and unconditional overwrites went through."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", **_bob_statement(bob, bucket, Action="s3:PutObject")},
            {
                "Sid": "RequireIfNoneMatch",
                "Effect": "Deny",
                **_bob_statement(bob, bucket, Action="s3:PutObject"),
                "Condition": {
                    "Null": {"s3:if-none-match": "true"},
                    "Bool": {"s3:ObjectCreationOperation": "true"},
                },
            },
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert _denied(lambda: bob_s3.put_object(Bucket=bucket, Key="k", Body=b"1"))
    bob_s3.put_object(Bucket=bucket, Key="k", Body=b"1", IfNoneMatch="*")
    source = {"Bucket": bucket, "Key": "k"}
    assert _denied(lambda: bob_s3.copy_object(Bucket=bucket, Key="c", CopySource=source))
    upload = bob_s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    etag = bob_s3.upload_part(Bucket=bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"part")[
        "ETag"
    ]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}

    def complete(**extra: Any) -> Any:
        return bob_s3.complete_multipart_upload(
            Bucket=bucket, Key="m", UploadId=upload, MultipartUpload=parts, **extra
        )

    assert _denied(complete)
    complete(IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"part"
