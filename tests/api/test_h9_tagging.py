"""Object tags as S3 takes them (h9 audit, 2026-12-08): an `x-amz-tagging` header with more
tags than parsed is S3's 400, not a 500; and a tag header a copy ignores grants nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3torrent.access import ACCOUNT_ID
from tests.conftest import LiveServer, UserKeys, make_client


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _many_tags(n: int) -> str:
    return "&".join(f"k{i}=v" for i in range(n))


@pytest.mark.parametrize("count", [12, 100])
def test_a_tagging_header_of_many_tags_is_s3s_400(s3: Any, bucket: str, count: int) -> None:
    """Until 2026-12-08 a header of 12 tags or more (one past what the parser was told to
    read) raised out of the parser: a 500 InternalError from PutObject and
    CreateMultipartUpload, where S3 answers 400 BadRequest as it does for 11."""
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging=_many_tags(count))
    assert _code(exc) == ("BadRequest", 400)
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=bucket, Key="t", Tagging=_many_tags(count))
    assert _code(exc) == ("BadRequest", 400)
    s3.put_object(Bucket=bucket, Key="c", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket,
            Key="t",
            CopySource={"Bucket": bucket, "Key": "c"},
            TaggingDirective="REPLACE",
            Tagging=_many_tags(count),
        )
    assert _code(exc) == ("BadRequest", 400)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 1


def test_a_tag_header_a_copy_ignores_grants_no_tag_condition(
    s3: Any, bob_s3: Any, bob: UserKeys, bucket: str
) -> None:
    """A copy under the default COPY directive takes its source's tags and ignores
    x-amz-tagging, so the header's tags are not the request's: until 2026-12-08 they were
    put in the decision's s3:RequestObjectTag values all the same, and a user allowed to
    write only objects tagged owner=bob sent `x-amz-tagging: owner=bob` with a copy of an
    object tagged owner=eve, and wrote an object tagged owner=eve."""
    bob_arn = f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"
    arn = f"arn:aws:s3:::{bucket}/*"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": bob_arn},
                "Action": ["s3:GetObject", "s3:GetObjectTagging"],
                "Resource": arn,
            },
            {
                "Effect": "Allow",
                "Principal": {"AWS": bob_arn},
                "Action": ["s3:PutObject", "s3:PutObjectTagging"],
                "Resource": arn,
                "Condition": {"StringEquals": {"s3:RequestObjectTag/owner": "bob"}},
            },
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    s3.put_object(Bucket=bucket, Key="eves", Body=b"e", Tagging="owner=eve")
    source = {"Bucket": bucket, "Key": "eves"}
    for directive in ("COPY", None):
        extra = {"TaggingDirective": directive} if directive else {}
        with pytest.raises(ClientError) as exc:
            bob_s3.copy_object(
                Bucket=bucket, Key="laundered", CopySource=source, Tagging="owner=bob", **extra
            )
        assert _code(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="laundered")
    # The tags it names are the ones it writes under REPLACE: allowed, and written.
    bob_s3.copy_object(
        Bucket=bucket,
        Key="retagged",
        CopySource=source,
        Tagging="owner=bob",
        TaggingDirective="REPLACE",
    )
    assert s3.get_object_tagging(Bucket=bucket, Key="retagged")["TagSet"] == [
        {"Key": "owner", "Value": "bob"}
    ]


def _bob_policy(bucket: str, bob: UserKeys, *statements: dict[str, Any]) -> str:
    bob_arn = f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"
    arn = f"arn:aws:s3:::{bucket}/*"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Principal": {"AWS": bob_arn}, "Resource": arn, **s} for s in statements
            ],
        }
    )


def test_tag_keys_differing_in_case_meet_an_allow_only_if_both_do(
    s3: Any, bob_s3: Any, bob: UserKeys, bucket: str
) -> None:
    """S3's tag keys are case-sensitive and a condition key's name is not, so the tags
    owner=eve and Owner=bob give s3:RequestObjectTag/owner two values. Until 2026-12-08 a
    plain operator held when any value met it: a user allowed to write only owner=bob
    wrote owner=eve beside Owner=bob, by PutObject and by PutObjectTagging."""
    allowed_owner = {"StringEquals": {"s3:RequestObjectTag/owner": "bob"}}
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_bob_policy(
            bucket,
            bob,
            {"Effect": "Allow", "Action": "s3:GetObject"},
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:PutObjectTagging"],
                "Condition": allowed_owner,
            },
        ),
    )
    with pytest.raises(ClientError) as exc:
        bob_s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="owner=eve&Owner=bob")
    assert _code(exc) == ("AccessDenied", 403)
    bob_s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="owner=bob&Owner=bob")
    both = {"TagSet": [{"Key": "owner", "Value": "eve"}, {"Key": "Owner", "Value": "bob"}]}
    with pytest.raises(ClientError) as exc:
        bob_s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=both)
    assert _code(exc) == ("AccessDenied", 403)
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "owner", "Value": "bob"},
        {"Key": "Owner", "Value": "bob"},
    ]


def test_a_negated_deny_on_a_tag_holds_when_one_of_its_case_variants_differs(
    s3: Any, bob_s3: Any, bob: UserKeys, bucket: str
) -> None:
    """A Deny with StringNotEquals on s3:RequestObjectTag/owner refuses a write whose
    owner tag is not bob. Until 2026-12-08 a negated operator held only when every value
    differed, so owner=eve beside Owner=bob escaped the Deny."""
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_bob_policy(
            bucket,
            bob,
            {"Effect": "Allow", "Action": ["s3:PutObject", "s3:PutObjectTagging"]},
            {
                "Effect": "Deny",
                "Action": "s3:PutObject",
                "Condition": {"StringNotEquals": {"s3:RequestObjectTag/owner": "bob"}},
            },
        ),
    )
    bob_s3.put_object(Bucket=bucket, Key="ok", Body=b"x", Tagging="owner=bob")
    with pytest.raises(ClientError) as exc:
        bob_s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="owner=eve&Owner=bob")
    assert _code(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")


def _with_header(client: Any, operation: str, name: str, value: str) -> None:
    """Send `name: value` (signed) on every `operation` call of client from now on."""

    def add(request: Any, **_: Any) -> None:
        request.headers[name] = value

    client.meta.events.register(f"before-sign.s3.{operation}", add)


def test_a_tag_header_on_put_object_tagging_grants_no_tag_condition(
    server: LiveServer, s3: Any, bob: UserKeys, bucket: str
) -> None:
    """PutObjectTagging sets the tags of its body; an x-amz-tagging header it carries is
    not read. Until 2026-12-08 the header's tags were the request's all the same, beside
    the body's: a user allowed to tag only with owner=bob sent `x-amz-tagging: owner=bob`
    and a body tagging the object classification=public, without the owner tag."""
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_bob_policy(
            bucket,
            bob,
            {
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:PutObjectTagging"],
                "Condition": {"StringEquals": {"s3:RequestObjectTag/owner": "bob"}},
            },
        ),
    )
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="owner=bob")
    sly = make_client(server.endpoint, bob.access_key, bob.secret_key)
    _with_header(sly, "PutObjectTagging", "x-amz-tagging", "owner=bob")
    public = {"TagSet": [{"Key": "classification", "Value": "public"}]}
    with pytest.raises(ClientError) as exc:
        sly.put_object_tagging(Bucket=bucket, Key="k", Tagging=public)
    assert _code(exc) == ("AccessDenied", 403)
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "owner", "Value": "bob"}
    ]


def test_put_object_tagging_is_decided_on_the_tags_of_its_body(
    s3: Any, bob_s3: Any, bob: UserKeys, bucket: str
) -> None:
    """S3's user guide allows s3:PutObjectTagging on a condition on the tags it sets
    (s3:RequestObjectTag/<key>). Until 2026-12-08 the decision asked before the body was
    read had none of its tags, and its refusal was final: such an Allow was never met, and
    a Deny for a tag left out (Null) refused even a body that had it."""
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_bob_policy(
            bucket,
            bob,
            {
                "Effect": "Allow",
                "Action": "s3:PutObjectTagging",
                "Condition": {"StringEquals": {"s3:RequestObjectTag/owner": "bob"}},
            },
            {
                "Effect": "Deny",
                "Action": "s3:PutObjectTagging",
                "Condition": {"Null": {"s3:RequestObjectTag/team": "true"}},
            },
        ),
    )
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")

    def tag(**tags: str) -> None:
        tag_set = [{"Key": k, "Value": v} for k, v in tags.items()]
        bob_s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": tag_set})

    tag(owner="bob", team="web")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "owner", "Value": "bob"},
        {"Key": "team", "Value": "web"},
    ]
    for refused in ({"owner": "eve", "team": "web"}, {"owner": "bob"}, {}):
        with pytest.raises(ClientError) as exc:
            tag(**refused)
        assert _code(exc) == ("AccessDenied", 403)
    # What the policy does not allow at all stays refused, body or not.
    with pytest.raises(ClientError) as exc:
        bob_s3.delete_object_tagging(Bucket=bucket, Key="k")
    assert _code(exc) == ("AccessDenied", 403)
    assert len(s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"]) == 2


def test_a_delete_marker_decided_on_its_body_is_refused_after_the_decision(
    s3: Any, bob_s3: Any, bob: UserKeys, bucket: str
) -> None:
    """Where PutObjectTagging is decided on its body (the policy tests request tags), a
    delete marker named by its version id is S3's 405 to whoever is allowed, and told to
    no one who is not."""
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=_bob_policy(
            bucket,
            bob,
            {
                "Effect": "Allow",
                "Action": "s3:PutObjectVersionTagging",
                "Condition": {"StringEquals": {"s3:RequestObjectTag/owner": "bob"}},
            },
        ),
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]

    def tag(client: Any, owner: str) -> None:
        tag_set = {"TagSet": [{"Key": "owner", "Value": owner}]}
        client.put_object_tagging(Bucket=bucket, Key="k", VersionId=marker, Tagging=tag_set)

    for client, owner, expected in (
        (bob_s3, "eve", ("AccessDenied", 403)),
        (bob_s3, "bob", ("MethodNotAllowed", 405)),
        (s3, "eve", ("MethodNotAllowed", 405)),
    ):
        with pytest.raises(ClientError) as exc:
            tag(client, owner)
        assert _code(exc) == expected
