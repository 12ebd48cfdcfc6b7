"""CopyObject and UploadPartCopy as S3 defines them (audit h6)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import requests
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.copy import MAX_COPY_SIZE, check_copy_size
from tests.api.test_tracker_http import announce, announce_query, failure_within, peer_id
from tests.conftest import LiveServer, UserKeys, make_client, sign_request
from tests.seeding import fetch_torrent, info_hash_v1


def test_copy_without_storage_class_is_standard(s3: Any, bucket: str) -> None:
    """S3: "If the x-amz-storage-class header is not used, the copied object will be stored
    in the STANDARD Storage Class by default" (the source's class is not copied)."""
    s3.put_object(Bucket=bucket, Key="rr", Body=b"x", StorageClass="REDUCED_REDUNDANCY")
    source = {"Bucket": bucket, "Key": "rr"}
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=source)
    assert "StorageClass" not in s3.head_object(Bucket=bucket, Key="dst")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="dst")["Contents"][0]
    assert listed["StorageClass"] == "STANDARD"
    s3.copy_object(Bucket=bucket, Key="kept", CopySource=source, StorageClass="REDUCED_REDUNDANCY")
    assert s3.head_object(Bucket=bucket, Key="kept")["StorageClass"] == "REDUCED_REDUNDANCY"


def _copy_raw(server: LiveServer, bucket: str, key: str, source: str) -> requests.Response:
    """A CopyObject whose x-amz-copy-source is sent exactly as given (SDKs encode theirs)."""
    url = f"{server.endpoint}/{bucket}/{key}"
    headers = sign_request("PUT", url, {"x-amz-copy-source": source})
    return requests.put(url, headers=headers, timeout=30)


def test_copy_source_query_other_than_version_id_is_refused(
    s3: Any, bucket: str, server: LiveServer
) -> None:
    """The copy source's query names a version and nothing else: a misspelt `versionid`,
    an empty versionId or another parameter had been dropped, and the current version
    copied instead of the one asked for; each is now InvalidArgument, as an empty
    ?versionId= is on a GET."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=bucket, Key="k", Body=b"old")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"new")
    for query in (f"versionid={old}", "versionId=", "versionId", f"versionId={old}&x=1", "x=1"):
        resp = _copy_raw(server, bucket, "dst", f"/{bucket}/k?{query}")
        assert resp.status_code == 400, (query, resp.text)
        assert "<Code>InvalidArgument</Code>" in resp.text, (query, resp.text)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="dst")
    resp = _copy_raw(server, bucket, "dst", f"/{bucket}/k?versionId={old}")
    assert resp.status_code == 200, resp.text
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"old"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("MetadataDirective", "replace"),
        ("MetadataDirective", "copy"),
        ("TaggingDirective", "replace"),
        ("TaggingDirective", "Copy"),
    ],
)
def test_a_directive_is_upper_case_as_on_s3(s3: Any, bucket: str, field: str, value: str) -> None:
    """COPY and REPLACE are S3's directive values, case and all: S3 answers `copy` with
    InvalidArgument "Unknown metadata directive."; a lower-case one had been taken as its
    upper-case value, and the sent value was told back upper-cased."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"x", Metadata={"a": "b"})
    source = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, **{field: value})
    error = exc.value.response["Error"]
    assert (error["Code"], error.get("ArgumentValue")) == ("InvalidArgument", value)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="dst")


def test_a_copy_source_over_5_gib_is_refused_before_it_is_read() -> None:
    """S3 copies at most 5 GiB in one CopyObject (and one UploadPartCopy range): the check
    both run, at its edge, without a 5 GiB object."""
    check_copy_size(MAX_COPY_SIZE)
    check_copy_size(0)
    with pytest.raises(S3Error) as exc:
        check_copy_size(MAX_COPY_SIZE + 1)
    assert (exc.value.code, exc.value.status) == ("InvalidRequest", 400)
    assert str(MAX_COPY_SIZE) in exc.value.message
    assert MAX_COPY_SIZE == 5 * 1024**3


def test_an_anonymous_copy_is_refused_even_where_anyone_may_read_and_write(
    s3: Any, bucket: str, server: LiveServer
) -> None:
    """S3: "All copy requests must be authenticated" (CopyObject and UploadPartCopy), and
    it answers an anonymous one 403 "Anonymous users cannot copy objects" even when the
    source is public and the destination publicly writable. Here anyone allowed
    s3:GetObject and s3:PutObject could have the server copy up to 5 GiB per unsigned
    request."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    s3.put_object(Bucket=bucket, Key="src", Body=b"public bytes")
    anonymous = make_client(server.endpoint, signature_version=UNSIGNED)
    # The policy does let anyone read and write: a plain anonymous PUT is fine.
    anonymous.put_object(Bucket=bucket, Key="written", Body=b"w")
    source = {"Bucket": bucket, "Key": "src"}
    with pytest.raises(ClientError) as exc:
        anonymous.copy_object(Bucket=bucket, Key="dst", CopySource=source)
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="dst")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    with pytest.raises(ClientError) as exc:
        anonymous.upload_part_copy(
            Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, CopySource=source
        )
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload).get("Parts", []) == []
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload)


def test_a_copys_torrent_follows_the_destinations_readability(
    s3: Any, bucket: str, server: LiveServer
) -> None:
    """A copy's torrent is the destination's to decide: a public copy of a private object
    is announced, a private copy over a public object revokes the old torrent at once, and
    so does a self-copy that drops the public grant (REPLACE, no ACL)."""
    s3.put_object(Bucket=bucket, Key="pub", Body=os.urandom(40_000), ACL="public-read")
    old = info_hash_v1(fetch_torrent(server.endpoint, bucket, "pub"))
    assert b"failure reason" not in announce(server, announce_query(old, peer_id(1), 6001))
    s3.put_object(Bucket=bucket, Key="priv", Body=os.urandom(40_000))
    private = {"Bucket": bucket, "Key": "priv"}
    s3.copy_object(Bucket=bucket, Key="pub", CopySource=private)
    assert failure_within(server, old, 1.0) == "unregistered torrent"
    s3.copy_object(Bucket=bucket, Key="open", CopySource=private, ACL="public-read")
    opened = info_hash_v1(fetch_torrent(server.endpoint, bucket, "open"))
    assert b"failure reason" not in announce(server, announce_query(opened, peer_id(2), 6002))
    again = {"Bucket": bucket, "Key": "open"}
    s3.copy_object(Bucket=bucket, Key="open", CopySource=again, MetadataDirective="REPLACE")
    assert failure_within(server, opened, 1.0) == "unregistered torrent"


def test_a_source_read_is_one_decision_of_acl_and_policy(
    s3: Any, bucket: str, bob: UserKeys, bob_s3: Any
) -> None:
    """bob copies root's object into his own bucket: refused until the object's ACL grants
    him READ, then allowed (the copy is his), then refused again by a bucket policy Deny
    the ACL cannot outweigh, for CopyObject and UploadPartCopy alike."""
    mine = f"{bucket}-bob"
    bob_s3.create_bucket(Bucket=mine)
    s3.put_object(Bucket=bucket, Key="k", Body=b"secret")
    source = {"Bucket": bucket, "Key": "k"}
    with pytest.raises(ClientError) as exc:
        bob_s3.copy_object(Bucket=mine, Key="c", CopySource=source)
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    bob_id = bob_s3.list_buckets()["Owner"]["ID"]
    root_id = s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]
    s3.put_object_acl(
        Bucket=bucket, Key="k", GrantRead=f"id={bob_id}", GrantFullControl=f"id={root_id}"
    )
    bob_s3.copy_object(Bucket=mine, Key="c", CopySource=source)
    assert bob_s3.get_object(Bucket=mine, Key="c")["Body"].read() == b"secret"
    assert bob_s3.get_object_acl(Bucket=mine, Key="c")["Owner"]["ID"] == bob_id
    deny = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/k",
    }
    policy = {"Version": "2012-10-17", "Statement": [deny]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    upload = bob_s3.create_multipart_upload(Bucket=mine, Key="m")["UploadId"]
    try:
        with pytest.raises(ClientError) as exc:
            bob_s3.copy_object(Bucket=mine, Key="c2", CopySource=source)
        assert exc.value.response["Error"]["Code"] == "AccessDenied"
        with pytest.raises(ClientError) as exc:
            bob_s3.upload_part_copy(
                Bucket=mine, Key="m", UploadId=upload, PartNumber=1, CopySource=source
            )
        assert exc.value.response["Error"]["Code"] == "AccessDenied"
    finally:
        s3.delete_bucket_policy(Bucket=bucket)
        bob_s3.abort_multipart_upload(Bucket=mine, Key="m", UploadId=upload)
        bob_s3.delete_object(Bucket=mine, Key="c")
        bob_s3.delete_bucket(Bucket=mine)
