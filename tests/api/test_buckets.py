"""Bucket operations through boto3: list, create (naming rules, ownership), head, delete."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, sign_request, start_server


def _err(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    resp = exc.value.response
    return resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]


def _name(tag: str) -> str:
    return f"b-{tag}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


def test_created_bucket_appears_in_list_buckets(s3: Any) -> None:
    name = _name("list")
    s3.create_bucket(Bucket=name)
    listed = s3.list_buckets()
    names = [b["Name"] for b in listed["Buckets"]]
    assert name in names
    assert names == sorted(names)
    entry = next(b for b in listed["Buckets"] if b["Name"] == name)
    assert abs(entry["CreationDate"].timestamp() - time.time()) < 120
    assert listed["Owner"]["ID"]


@pytest.mark.parametrize(
    "bad",
    [
        "ab",  # too short
        "a" * 64,  # too long
        "UpperCase",
        "under_score",
        "-leading-dash",
        "trailing-dash-",
        "double..dot",
        "192.168.5.4",
        "xn--punycode",
        "dot-.dash",
        "name-s3alias",
    ],
)
def test_create_bucket_rejects_invalid_names(s3: Any, bad: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=bad)
    code, status = _err(exc)
    # boto3 validates some names client-side; what reaches the server must be refused.
    assert (code, status) == ("InvalidBucketName", 400)


def test_create_bucket_rejects_invalid_names_sent_raw(server: LiveServer) -> None:
    import http.client

    from tests.conftest import sign_request

    for bad in ("UpperCase", "ab", "under_score", "10.0.0.1"):
        url = f"{server.endpoint}/{bad}"
        headers = sign_request("PUT", url)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("PUT", f"/{bad}", body=b"", headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 400, (bad, body)
        assert b"<Code>InvalidBucketName</Code>" in body


def test_valid_bucket_name_edge_cases_are_accepted(s3: Any) -> None:
    tag = f"{os.getpid() % 100000:05d}"
    names = ["a" + tag[:1] + "b", ("z" * 58) + tag, f"dots.in.name.{tag}", f"9{tag}-0"]
    assert len(names[1]) == 63
    for name in names:
        s3.create_bucket(Bucket=name)
        s3.head_bucket(Bucket=name)
        s3.delete_bucket(Bucket=name)


def test_create_bucket_with_matching_location_constraint(s3: Any) -> None:
    name = _name("loc")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "us-east-1"})
    assert s3.get_bucket_location(Bucket=name).get("LocationConstraint") in (None, "")
    assert (
        s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"]
        == "us-east-1"
    )


def test_create_bucket_with_foreign_location_constraint_is_refused(s3: Any) -> None:
    name = _name("eu")
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    code, status = _err(exc)
    assert status == 400
    assert code in ("IllegalLocationConstraintException", "InvalidLocationConstraint")
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=name)


def test_create_bucket_configuration_tags_are_the_new_buckets(s3: Any) -> None:
    """CreateBucketConfiguration's <Tags> tag the bucket it creates, as on S3 (they were
    accepted and dropped); invalid ones are refused as PutBucketTagging's are."""
    name = _name("tags")
    tags = [{"Key": "team", "Value": "storage"}, {"Key": "cost", "Value": ""}]
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"Tags": tags})
    assert sorted(s3.get_bucket_tagging(Bucket=name)["TagSet"], key=str) == sorted(tags, key=str)
    bad = _name("badtags")
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(
            Bucket=bad, CreateBucketConfiguration={"Tags": [{"Key": "aws:x", "Value": "v"}]}
        )
    assert _err(exc) == ("InvalidTag", 400)
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=bad)


def test_create_bucket_configuration_of_a_directory_bucket_is_not_implemented(
    server: LiveServer, s3: Any
) -> None:
    """<Location> and <Bucket> describe a directory bucket: refused, not a general purpose
    bucket created in its place; an element S3 does not know is malformed."""
    name = _name("dir")
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(
            Bucket=name,
            CreateBucketConfiguration={
                "Location": {"Type": "AvailabilityZone", "Name": "use1-az4"},
                "Bucket": {"Type": "Directory", "DataRedundancy": "SingleAvailabilityZone"},
            },
        )
    assert _err(exc) == ("NotImplemented", 501)
    junk = b"<CreateBucketConfiguration><Junk>1</Junk></CreateBucketConfiguration>"
    url = f"{server.endpoint}/{name}"
    resp = requests.put(url, data=junk, headers=sign_request("PUT", url, {}, junk), timeout=30)
    assert resp.status_code == 400 and "<Code>MalformedXML</Code>" in resp.text, resp.text
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=name)


def test_create_bucket_checks_the_bodys_content_md5(server: LiveServer, s3: Any) -> None:
    name = _name("md5")
    body = b"<CreateBucketConfiguration><LocationConstraint>us-east-1</LocationConstraint>"
    body += b"</CreateBucketConfiguration>"
    url = f"{server.endpoint}/{name}"
    wrong = {"Content-MD5": base64.b64encode(hashlib.md5(b"other").digest()).decode()}
    resp = requests.put(url, data=body, headers=sign_request("PUT", url, wrong, body), timeout=30)
    assert resp.status_code == 400 and "<Code>BadDigest</Code>" in resp.text, resp.text
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=name)
    right = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}
    resp = requests.put(url, data=body, headers=sign_request("PUT", url, right, body), timeout=30)
    assert resp.status_code == 200, resp.text
    s3.head_bucket(Bucket=name)


def test_recreating_own_bucket_in_us_east_1_succeeds_as_aws_legacy(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="kept", Body=b"x")
    assert s3.create_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    # Nothing was reset by it.
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"x"


def test_recreating_own_bucket_with_another_acl_is_bucket_already_exists(
    s3: Any, bucket: str
) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=bucket, ACL="public-read")
    assert _err(exc) == ("BucketAlreadyExists", 409)


def test_recreating_own_bucket_elsewhere_is_bucket_already_owned_by_you(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--region", "eu-west-1")
    try:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=srv.endpoint,
            aws_access_key_id=ROOT_AK,
            aws_secret_access_key=ROOT_SK,
            region_name="eu-west-1",
        )
        conf = {"LocationConstraint": "eu-west-1"}
        client.create_bucket(Bucket="mine-eu", CreateBucketConfiguration=conf)
        with pytest.raises(ClientError) as exc:
            client.create_bucket(Bucket="mine-eu", CreateBucketConfiguration=conf)
        assert _err(exc) == ("BucketAlreadyOwnedByYou", 409)
    finally:
        srv.stop()


def test_list_buckets_pages_with_max_buckets_and_filters(s3: Any) -> None:
    names = sorted(_name(f"pg{i}") for i in range(5))
    for n in names:
        s3.create_bucket(Bucket=n)
    prefix = names[0][: names[0].index("pg")]
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"MaxBuckets": 2, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3.list_buckets(**kwargs)
        pages += 1
        got = [b["Name"] for b in page["Buckets"]]
        assert len(got) <= 2
        seen += got
        token = page.get("ContinuationToken")
        if not token:
            break
    assert [n for n in seen if n in names] == names
    assert pages >= 3
    assert s3.list_buckets(Prefix=prefix, BucketRegion="eu-west-1")["Buckets"] == []
    with pytest.raises(ClientError) as exc:
        s3.list_buckets(MaxBuckets=10001)
    assert _err(exc)[1] == 400


def test_creating_another_users_bucket_is_bucket_already_exists(
    s3: Any, bob_s3: Any, bucket: str
) -> None:
    with pytest.raises(ClientError) as exc:
        bob_s3.create_bucket(Bucket=bucket)
    assert _err(exc) == ("BucketAlreadyExists", 409)


def test_other_user_lists_only_own_buckets(s3: Any, bob_s3: Any, bucket: str) -> None:
    mine = _name("bobs")
    bob_s3.create_bucket(Bucket=mine)
    names = [b["Name"] for b in bob_s3.list_buckets()["Buckets"]]
    assert mine in names
    assert bucket not in names


def test_head_bucket_of_missing_bucket_is_404(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket=_name("missing"))
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_head_bucket_of_other_users_bucket_is_403(bob_s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        bob_s3.head_bucket(Bucket=bucket)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_delete_non_empty_bucket_is_bucket_not_empty(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert _err(exc) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket=bucket, Key="k")
    s3.delete_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as exc2:
        s3.head_bucket(Bucket=bucket)
    assert exc2.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_delete_missing_bucket_is_no_such_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=_name("gone"))
    assert _err(exc) == ("NoSuchBucket", 404)


def test_deleted_bucket_name_can_be_created_again(s3: Any) -> None:
    name = _name("again")
    s3.create_bucket(Bucket=name)
    s3.delete_bucket(Bucket=name)
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)


def test_get_bucket_location_of_us_east_1_is_empty(s3: Any, bucket: str) -> None:
    resp = s3.get_bucket_location(Bucket=bucket)
    assert resp.get("LocationConstraint") in (None, "")


def test_get_bucket_location_of_missing_bucket_is_no_such_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_location(Bucket=_name("nol"))
    assert _err(exc) == ("NoSuchBucket", 404)


def test_operations_on_missing_bucket_are_no_such_bucket(s3: Any) -> None:
    name = _name("none")
    for call in (
        lambda: s3.put_object(Bucket=name, Key="k", Body=b"1"),
        lambda: s3.get_object(Bucket=name, Key="k"),
        lambda: s3.list_objects_v2(Bucket=name),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _err(exc) == ("NoSuchBucket", 404)
