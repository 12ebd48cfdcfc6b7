"""Audit of the permissions a write implies besides its own action, with boto3 and browser
forms against a live server, as S3's API reference states them: a PutObject (and a
CopyObject, a CreateMultipartUpload, a form POST) that sets an ACL granting anyone but the
object's and bucket's owners needs s3:PutObjectAcl, and one that sets tags needs
s3:PutObjectTagging; a copy that carries its source's tags needs s3:GetObjectTagging on the
source too. A writer the bucket owner allowed s3:PutObject alone published its uploads to
the world (public-read, then the torrent, tracker and seeder serve them)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.api.test_object_lock import _code
from tests.conftest import UserKeys, make_client

_ALL_USERS = 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'


def _allow(s3: Any, bucket: str, user: UserKeys, actions: list[str], **cond: Any) -> None:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::000000000000:user/{user.name}"},
        "Action": actions,
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    if cond:
        statement["Condition"] = cond
    s3.put_bucket_policy(
        Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    )


def _denied(call: Any) -> None:
    with pytest.raises(ClientError) as exc:
        call()
    # A HEAD's answer has no body: its code is its status.
    assert _code(exc) in {("AccessDenied", 403), ("403", 403)}


def _client(server: Any, user: UserKeys) -> Any:
    return make_client(server.endpoint, user.access_key, user.secret_key, signature_version="s3v4")


def _anonymous_status(server: Any, bucket: str, key: str, query: str = "") -> int:
    return requests.get(f"{server.endpoint}/{bucket}/{key}{query}", timeout=10).status_code


def _form_post(client: Any, bucket: str, key: str, fields: dict[str, str]) -> int:
    form = client.generate_presigned_post(
        bucket, key, Fields=fields, Conditions=[{k: v} for k, v in fields.items()], ExpiresIn=300
    )
    files = {"file": ("f", b"x")}
    return requests.post(form["url"], data=form["fields"], files=files, timeout=10).status_code


def test_a_public_acl_on_a_write_needs_put_object_acl(
    s3: Any, server: Any, bob: UserKeys, bucket: str
) -> None:
    """A writer allowed s3:PutObject alone uploaded with x-amz-acl: public-read (or a grant
    header to AllUsers) and the object was anonymously readable, its torrent served: S3 sets
    an ACL with the write only for a requester also allowed s3:PutObjectAcl."""
    bob_s3 = _client(server, bob)
    _allow(s3, bucket, bob, ["s3:PutObject"])
    s3.put_object(Bucket=bucket, Key="src", Body=b"s")
    source = {"Bucket": bucket, "Key": "src"}
    public = {"ACL": "public-read"}
    granted = {"GrantRead": _ALL_USERS}
    for acl in (public, granted):
        _denied(lambda acl=acl: bob_s3.put_object(Bucket=bucket, Key="k", Body=b"x", **acl))
        _denied(lambda acl=acl: bob_s3.create_multipart_upload(Bucket=bucket, Key="k", **acl))
        _denied(
            lambda acl=acl: bob_s3.copy_object(Bucket=bucket, Key="k", CopySource=source, **acl)
        )
    assert _form_post(bob_s3, bucket, "k", {"acl": "public-read"}) == 403
    # Nothing was written, published or left in progress.
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k")
    assert _code(exc)[1] == 404
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert _anonymous_status(server, bucket, "k") == 403
    assert _anonymous_status(server, bucket, "k", "?torrent") == 403


def test_an_acl_for_the_owners_alone_needs_no_more_than_put_object(
    s3: Any, server: Any, bob: UserKeys, bucket: str
) -> None:
    """An ACL that grants nobody but the object's owner and the bucket's owner anything
    (private, bucket-owner-read, bucket-owner-full-control) widens nothing: AWS's own example
    policy for cross-account uploads with bucket-owner-full-control allows s3:PutObject
    alone, and such uploads keep working."""
    bob_s3 = _client(server, bob)
    _allow(s3, bucket, bob, ["s3:PutObject", "s3:AbortMultipartUpload"])
    for canned in ("private", "bucket-owner-read", "bucket-owner-full-control"):
        bob_s3.put_object(Bucket=bucket, Key=canned, Body=b"x", ACL=canned)
        up = bob_s3.create_multipart_upload(Bucket=bucket, Key=canned, ACL=canned)
        bob_s3.abort_multipart_upload(Bucket=bucket, Key=canned, UploadId=up["UploadId"])
    assert _anonymous_status(server, bucket, "private") == 403


def test_with_put_object_acl_the_write_sets_the_acl(
    s3: Any, server: Any, bob: UserKeys, bucket: str
) -> None:
    """Allowed both, as in AWS's example policy conditioned on s3:x-amz-acl, the writer's
    public-read upload is public, and its torrent is served to anyone."""
    bob_s3 = _client(server, bob)
    cond = {"StringEquals": {"s3:x-amz-acl": "public-read"}}
    _allow(s3, bucket, bob, ["s3:PutObject", "s3:PutObjectAcl"], **cond)
    bob_s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read")
    assert _anonymous_status(server, bucket, "k") == 200
    assert _anonymous_status(server, bucket, "k", "?torrent") == 200
    assert _form_post(bob_s3, bucket, "f", {"acl": "public-read"}) == 204


def test_tags_on_a_write_need_put_object_tagging(
    s3: Any, server: Any, bob: UserKeys, bucket: str
) -> None:
    """S3 sets a write's tags (x-amz-tagging; a copy's REPLACE tagging; a form's `tagging`
    field) only for a requester also allowed s3:PutObjectTagging."""
    bob_s3 = _client(server, bob)
    _allow(s3, bucket, bob, ["s3:PutObject", "s3:GetObject"])
    s3.put_object(Bucket=bucket, Key="src", Body=b"s")
    source = {"Bucket": bucket, "Key": "src"}
    _denied(lambda: bob_s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=b"))
    _denied(lambda: bob_s3.create_multipart_upload(Bucket=bucket, Key="k", Tagging="a=b"))
    _denied(
        lambda: bob_s3.copy_object(
            Bucket=bucket, Key="k", CopySource=source, TaggingDirective="REPLACE", Tagging="a=b"
        )
    )
    tagging = "<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>"
    assert _form_post(bob_s3, bucket, "k", {"tagging": tagging}) == 403
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k")
    assert _code(exc)[1] == 404
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    # Without tags the writes are the ordinary ones; with the permission the tags are set.
    bob_s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    bob_s3.copy_object(Bucket=bucket, Key="plain2", CopySource=source, TaggingDirective="REPLACE")
    _allow(s3, bucket, bob, ["s3:PutObject", "s3:PutObjectTagging"])
    bob_s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=b")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [{"Key": "a", "Value": "b"}]


def test_a_copy_carrying_its_sources_tags_needs_both_tagging_permissions(
    s3: Any, server: Any, bob: UserKeys, bucket: str
) -> None:
    """A copy that keeps its source's tags (the default COPY directive) reads them from the
    source and sets them on the copy: as on S3, it needs s3:GetObjectTagging on the source
    and s3:PutObjectTagging on the destination. A reader allowed s3:GetObject alone copied a
    tagged object and so read tags it could not read with GetObjectTagging."""
    bob_s3 = _client(server, bob)
    s3.put_object(Bucket=bucket, Key="tagged", Body=b"s", Tagging="secret=1")
    s3.put_object(Bucket=bucket, Key="bare", Body=b"s")
    tagged = {"Bucket": bucket, "Key": "tagged"}
    _allow(s3, bucket, bob, ["s3:PutObject", "s3:GetObject", "s3:PutObjectTagging"])
    _denied(lambda: bob_s3.copy_object(Bucket=bucket, Key="k", CopySource=tagged))
    _allow(s3, bucket, bob, ["s3:PutObject", "s3:GetObject", "s3:GetObjectTagging"])
    _denied(lambda: bob_s3.copy_object(Bucket=bucket, Key="k", CopySource=tagged))
    # An untagged source needs neither; a REPLACE with no tags reads none.
    bob_s3.copy_object(Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "bare"})
    bob_s3.copy_object(Bucket=bucket, Key="k", CopySource=tagged, TaggingDirective="REPLACE")
    _allow(
        s3,
        bucket,
        bob,
        ["s3:PutObject", "s3:GetObject", "s3:GetObjectTagging", "s3:PutObjectTagging"],
    )
    bob_s3.copy_object(Bucket=bucket, Key="k", CopySource=tagged)
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "secret", "Value": "1"}
    ]


def test_the_owner_and_root_still_set_acls_and_tags(
    s3: Any, server: Any, bob: UserKeys, bucket: str
) -> None:
    """The bucket's owner (here the root user) needs no policy for its own writes' ACLs and
    tags; neither does a user writing to its own bucket."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read", Tagging="a=b")
    assert _anonymous_status(server, bucket, "k") == 200
    bob_s3 = _client(server, bob)
    own = f"{bucket}-bob"
    bob_s3.create_bucket(Bucket=own)
    bob_s3.put_object(Bucket=own, Key="k", Body=b"x", ACL="public-read", Tagging="a=b")
    bob_s3.copy_object(Bucket=own, Key="c", CopySource={"Bucket": own, "Key": "k"})
    assert bob_s3.get_object_tagging(Bucket=own, Key="c")["TagSet"] == [{"Key": "a", "Value": "b"}]
    assert _anonymous_status(server, own, "k") == 200


def test_object_attributes_need_the_read_permission_too(
    s3: Any, server: Any, bob: UserKeys, bucket: str
) -> None:
    """GetObjectAttributes tells what a read would (ETag, size, the checksums of the bytes):
    S3's reference asks s3:GetObject and s3:GetObjectAttributes for it, and for a named
    version s3:GetObjectVersion and s3:GetObjectVersionAttributes. A requester allowed
    s3:GetObjectAttributes alone read a private object's SHA-256; one allowed s3:GetObject
    but not s3:GetObjectVersion read an old version's."""
    bob_s3 = _client(server, bob)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=bucket, Key="k", Body=b"old", ChecksumAlgorithm="SHA256")
    s3.put_object(Bucket=bucket, Key="k", Body=b"new", ChecksumAlgorithm="SHA256")
    wanted = ["Checksum", "ObjectSize"]

    def attributes(**version: str) -> Any:
        return bob_s3.get_object_attributes(
            Bucket=bucket, Key="k", ObjectAttributes=wanted, **version
        )

    _allow(s3, bucket, bob, ["s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"])
    _denied(attributes)
    _denied(lambda: attributes(VersionId=old["VersionId"]))
    _allow(s3, bucket, bob, ["s3:GetObject", "s3:GetObjectAttributes"])
    assert attributes()["ObjectSize"] == 3
    _denied(lambda: attributes(VersionId=old["VersionId"]))
    _allow(s3, bucket, bob, ["s3:GetObjectVersion", "s3:GetObjectVersionAttributes"])
    assert attributes(VersionId=old["VersionId"])["ObjectSize"] == 3


def test_the_tag_count_is_told_only_to_who_may_read_the_tags(
    s3: Any, server: Any, bob: UserKeys, bucket: str
) -> None:
    """S3's GetObject and HeadObject give x-amz-tagging-count only "when you have the
    relevant permission to read object tags": a reader allowed s3:GetObject alone (or anyone,
    of a public-read object) learnt how many tags an object has."""
    bob_s3 = _client(server, bob)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1&b=2", ACL="public-read")

    def counts(client: Any) -> set[str | None]:
        seen = set()
        for read in (client.head_object, client.get_object):
            headers = read(Bucket=bucket, Key="k")["ResponseMetadata"]["HTTPHeaders"]
            seen.add(headers.get("x-amz-tagging-count"))
        return seen

    assert counts(s3) == {"2"}  # the owner
    anonymous = requests.get(f"{server.endpoint}/{bucket}/k", timeout=10)
    assert anonymous.status_code == 200
    assert "x-amz-tagging-count" not in anonymous.headers
    _allow(s3, bucket, bob, ["s3:GetObject"])
    assert counts(bob_s3) == {None}
    _allow(s3, bucket, bob, ["s3:GetObject", "s3:GetObjectTagging"])
    assert counts(bob_s3) == {"2"}


def test_a_bucket_write_grant_carries_the_acl_and_tags_of_the_write(
    s3: Any, server: Any, bob: UserKeys, bucket: str
) -> None:
    """An ACL grant of WRITE on a bucket is S3's older model, which has no finer
    permission: its grantee (a user, or anyone under public-read-write) may set the ACL
    and tags of what it writes (ceph's s3-tests post anonymous forms with `acl` and
    `tagging` into a public-read-write bucket), and it owns what it writes. A policy's
    explicit Deny of s3:PutObjectAcl or s3:PutObjectTagging still refuses them."""
    bob_s3 = _client(server, bob)
    owner_id = s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]
    bob_id = bob_s3.list_buckets()["Owner"]["ID"]
    s3.put_bucket_acl(
        Bucket=bucket, GrantFullControl=f'id="{owner_id}"', GrantWrite=f'id="{bob_id}"'
    )
    bob_s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read", Tagging="a=1")
    assert _anonymous_status(server, bucket, "k") == 200
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    url = f"{server.endpoint}/{bucket}/anon"
    published = requests.put(url, data=b"x", headers={"x-amz-acl": "public-read"}, timeout=10)
    assert published.status_code == 200
    assert _anonymous_status(server, bucket, "anon") == 200
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["s3:PutObjectAcl", "s3:PutObjectTagging"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(deny))
    assert requests.put(url, data=b"x", timeout=10).status_code == 200
    refused = requests.put(url + "2", data=b"x", headers={"x-amz-acl": "public-read"}, timeout=10)
    assert refused.status_code == 403
    # Nothing was written (anyone may list a public-read-write bucket: NoSuchKey).
    assert _anonymous_status(server, bucket, "anon2") == 404
    _denied(lambda: bob_s3.put_object(Bucket=bucket, Key="t", Body=b"x", Tagging="a=1"))
    _denied(lambda: bob_s3.put_object(Bucket=bucket, Key="p", Body=b"x", ACL="public-read"))


def test_naming_a_version_needs_the_version_actions(
    s3: Any, server: Any, bob: UserKeys, bucket: str
) -> None:
    """S3 asks the *Version action of an operation that names a version (even the current
    one): HeadObject s3:GetObjectVersion, GetObjectAcl s3:GetObjectVersionAcl,
    Get/PutObjectTagging s3:Get/PutObjectVersionTagging; ListObjectVersions asks
    s3:ListBucketVersions, not s3:ListBucket."""
    bob_s3 = _client(server, bob)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    vid = s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="a=1")["VersionId"]
    plain = ["s3:GetObject", "s3:GetObjectAcl", "s3:GetObjectTagging", "s3:PutObjectTagging"]
    tags = {"TagSet": [{"Key": "a", "Value": "2"}]}
    calls = [
        lambda **v: bob_s3.head_object(Bucket=bucket, Key="k", **v),
        lambda **v: bob_s3.get_object_acl(Bucket=bucket, Key="k", **v),
        lambda **v: bob_s3.get_object_tagging(Bucket=bucket, Key="k", **v),
        lambda **v: bob_s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tags, **v),
    ]
    _allow(s3, bucket, bob, plain)
    for call in calls:
        call()
        _denied(lambda call=call: call(VersionId=vid))
    versioned = [
        "s3:GetObjectVersion",
        "s3:GetObjectVersionAcl",
        "s3:GetObjectVersionTagging",
        "s3:PutObjectVersionTagging",
    ]
    _allow(s3, bucket, bob, versioned)
    for call in calls:
        call(VersionId=vid)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::000000000000:user/{bob.name}"},
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    bob_s3.list_objects_v2(Bucket=bucket)
    _denied(lambda: bob_s3.list_object_versions(Bucket=bucket))
