"""Versioning over the S3 API with boto3: bucket states, version ids on every write, delete
markers, reads/deletes/copies/ACLs/tags by version id, ListObjectVersions, DeleteObjects
with versions, the *Version policy actions."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import UserKeys, sign_request


def _enable(s3: Any, bucket: str, status: str = "Enabled") -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def test_bucket_versioning_states(s3: Any, bucket: str) -> None:
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    _enable(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    _enable(s3, bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    # Never back to unversioned, no MFA delete.
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Off"})
    assert _code(exc)[1] == 400
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": "Enabled", "MFADelete": "Enabled"}
        )
    assert _code(exc) == ("NotImplemented", 501)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"


def test_versions_of_puts_and_reads_by_version(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"before")  # the null version
    head = s3.head_object(Bucket=bucket, Key="k")
    assert "VersionId" not in head  # never-versioned bucket: no version header
    _enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"two" * 1000)["VersionId"]
    assert len({v1, v2, "null"}) == 3
    got = s3.get_object(Bucket=bucket, Key="k")
    assert got["VersionId"] == v2 and got["Body"].read() == b"two" * 1000
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"before"
    assert s3.head_object(Bucket=bucket, Key="k", VersionId=v1)["ContentLength"] == 3
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId="0" * 32)
    assert _code(exc) == ("NoSuchVersion", 404)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId="not-a-version")
    assert _code(exc) == ("InvalidArgument", 400)


def test_delete_marker_lifecycle(s3: Any, bucket: str) -> None:
    _enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    gone = s3.delete_object(Bucket=bucket, Key="k")
    assert gone["DeleteMarker"] is True
    marker = gone["VersionId"]
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k")
    assert _code(exc) == ("NoSuchKey", 404)
    headers = exc.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-delete-marker"] == "true"
    assert headers["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", VersionId=marker)
    assert _code(exc) == ("MethodNotAllowed", 405)
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    # The old version is still there, by id; listing shows the marker as latest.
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    listed = s3.list_object_versions(Bucket=bucket)
    assert [(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [(marker, True)]
    assert [(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [(v1, False)]
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    # Removing the marker brings the version back as current.
    undo = s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    assert undo["DeleteMarker"] is True and undo["VersionId"] == marker
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"one"
    # Deleting the last version for good leaves nothing; the bucket can go.
    s3.delete_object(Bucket=bucket, Key="k", VersionId=v1)
    assert s3.list_object_versions(Bucket=bucket).get("Versions") is None
    s3.delete_bucket(Bucket=bucket)


def test_a_delete_marker_is_named_as_aws_names_it_to_copies_and_acl_puts(
    s3: Any, bucket: str
) -> None:
    """What AWS answers (recorded against AWS itself): a copy whose source's latest version is
    a delete marker is NoSuchKey with the marker in `x-amz-delete-marker` and
    `x-amz-version-id` (it had no such headers here), and an ACL put on such a key is the
    marker's 405 with Method PUT, not NoSuchKey; a marker named by id is 405 with the
    request's own method (it always said GET)."""
    _enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"one")
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    copies = (
        lambda: s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "k"}),
        lambda: s3.upload_part_copy(
            Bucket=bucket,
            Key="m",
            UploadId=upload,
            PartNumber=1,
            CopySource={"Bucket": bucket, "Key": "k"},
        ),
    )
    for copy in copies:
        with pytest.raises(ClientError) as exc:
            copy()
        assert _code(exc) == ("NoSuchKey", 404)
        headers = exc.value.response["ResponseMetadata"]["HTTPHeaders"]
        assert headers["x-amz-delete-marker"] == "true"
        assert headers["x-amz-version-id"] == marker
    for named in ({}, {"VersionId": marker}):
        with pytest.raises(ClientError) as exc:
            s3.put_object_acl(Bucket=bucket, Key="k", ACL="public-read", **named)
        assert _code(exc) == ("MethodNotAllowed", 405)
        assert exc.value.response["Error"]["Method"] == "PUT"
        assert exc.value.response["Error"]["ResourceType"] == "DeleteMarker"
        assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["allow"] == "DELETE"
    # Reads keep theirs: GetObjectAcl of the key is NoSuchKey, of the marker a GET's 405.
    with pytest.raises(ClientError) as exc:
        s3.get_object_acl(Bucket=bucket, Key="k")
    assert _code(exc) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as exc:
        s3.get_object_acl(Bucket=bucket, Key="k", VersionId=marker)
    assert _code(exc) == ("MethodNotAllowed", 405)
    assert exc.value.response["Error"]["Method"] == "GET"
    # Without versioning there is no marker: an ACL put on a missing key is NoSuchKey.
    with pytest.raises(ClientError) as exc:
        s3.put_object_acl(Bucket=bucket, Key="never", ACL="public-read")
    assert _code(exc) == ("NoSuchKey", 404)


def test_bucket_with_only_noncurrent_versions_is_not_empty(s3: Any, bucket: str) -> None:
    _enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    s3.delete_object(Bucket=bucket, Key="k")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert _code(exc) == ("BucketNotEmpty", 409)


def test_suspended_bucket_writes_null_versions(s3: Any, bucket: str) -> None:
    _enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    _enable(s3, bucket, "Suspended")
    # A write that makes the null version answers without x-amz-version-id, as S3 does;
    # reads of it then name it "null".
    assert "VersionId" not in s3.put_object(Bucket=bucket, Key="k", Body=b"n1")
    assert "VersionId" not in s3.put_object(Bucket=bucket, Key="k", Body=b"n2")
    assert s3.head_object(Bucket=bucket, Key="k")["VersionId"] == "null"
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [v["VersionId"] for v in versions] == ["null", v1]
    got = s3.get_object(Bucket=bucket, Key="k", VersionId="null")
    assert got["VersionId"] == "null" and got["Body"].read() == b"n2"
    copied = s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "k"})
    assert "VersionId" not in copied and copied["CopySourceVersionId"] == "null"
    up = s3.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="m", UploadId=up, PartNumber=1, Body=b"mp")
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    done = s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=up, MultipartUpload=parts)
    assert "VersionId" not in done
    # A retried completion is answered as the first was.
    again = s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=up, MultipartUpload=parts)
    assert "VersionId" not in again and again["ETag"] == done["ETag"]
    assert s3.head_object(Bucket=bucket, Key="m")["VersionId"] == "null"
    gone = s3.delete_object(Bucket=bucket, Key="k")
    assert gone["DeleteMarker"] is True and gone["VersionId"] == "null"


def test_multipart_and_copy_create_versions(s3: Any, bucket: str) -> None:
    _enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="src", Body=b"first")["VersionId"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"second")
    copied = s3.copy_object(
        Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src", "VersionId": v1}
    )
    assert copied["CopySourceVersionId"] == v1 and copied["VersionId"] not in (None, "null")
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"first"
    up = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="dst", UploadId=up, PartNumber=1, Body=b"mp")
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="dst",
        UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert done["VersionId"] not in (None, "null", copied["VersionId"])
    versions = s3.list_object_versions(Bucket=bucket, Prefix="dst")["Versions"]
    assert [v["VersionId"] for v in versions] == [done["VersionId"], copied["VersionId"]]


def test_acl_and_tags_by_version(s3: Any, bucket: str) -> None:
    _enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"two")
    s3.put_object_acl(Bucket=bucket, Key="k", VersionId=v1, ACL="public-read")
    grants = s3.get_object_acl(Bucket=bucket, Key="k", VersionId=v1)["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("AllUsers") for g in grants)
    current = s3.get_object_acl(Bucket=bucket, Key="k")["Grants"]
    assert not any(g["Grantee"].get("URI", "").endswith("AllUsers") for g in current)
    s3.put_object_tagging(
        Bucket=bucket, Key="k", VersionId=v1, Tagging={"TagSet": [{"Key": "a", "Value": "1"}]}
    )
    got = s3.get_object_tagging(Bucket=bucket, Key="k", VersionId=v1)
    assert got["TagSet"] == [{"Key": "a", "Value": "1"}] and got["VersionId"] == v1
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == []


def test_conditional_writes_compare_with_the_current_version(s3: Any, bucket: str) -> None:
    _enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"one")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", IfNoneMatch="*")
    assert _code(exc) == ("PreconditionFailed", 412)
    s3.delete_object(Bucket=bucket, Key="k")
    # Behind a delete marker the key is absent: create-only succeeds.
    s3.put_object(Bucket=bucket, Key="k", Body=b"again", IfNoneMatch="*")


def test_list_object_versions_paginates_with_markers(s3: Any, bucket: str) -> None:
    _enable(s3, bucket)
    written: dict[str, list[str]] = {}
    for key in ("a", "b/1", "b/2", "c"):
        for n in range(3):
            vid = s3.put_object(Bucket=bucket, Key=key, Body=b"%d" % n)["VersionId"]
            written.setdefault(key, []).insert(0, vid)
    s3.delete_object(Bucket=bucket, Key="c")
    seen: list[tuple[str, str]] = []
    kwargs: dict[str, Any] = {"Bucket": bucket, "MaxKeys": 2}
    while True:
        page = s3.list_object_versions(**kwargs)
        entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
        assert len(entries) <= 2
        seen += [(e["Key"], e["VersionId"]) for e in entries]
        if not page["IsTruncated"]:
            break
        kwargs.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"])
    # Every version exactly once, plus c's delete marker.
    expected = {(k, v) for k, vs in written.items() for v in vs}
    assert expected <= set(seen) and len(seen) == len(set(seen)) == len(expected) + 1
    # With a delimiter: b/ is one common prefix.
    page = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["b/"]
    assert {v["Key"] for v in page["Versions"]} == {"a", "c"}
    # Paginated with a delimiter: the prefix comes once.
    prefixes: list[str] = []
    kwargs = {"Bucket": bucket, "Delimiter": "/", "MaxKeys": 1}
    while True:
        page = s3.list_object_versions(**kwargs)
        prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if not page["IsTruncated"]:
            break
        kwargs["KeyMarker"] = page["NextKeyMarker"]
        if "NextVersionIdMarker" in page:
            kwargs["VersionIdMarker"] = page["NextVersionIdMarker"]
        else:
            kwargs.pop("VersionIdMarker", None)
    assert prefixes == ["b/"]


def test_list_object_versions_url_encoding(s3: Any, bucket: str) -> None:
    _enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="sp ace", Body=b"x")
    page = s3.list_object_versions(Bucket=bucket, EncodingType="url")
    assert [v["Key"] for v in page["Versions"]] == ["sp%20ace"]


def test_delete_objects_with_versions(s3: Any, bucket: str) -> None:
    _enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"1")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="k", Body=b"2")["VersionId"]
    s3.put_object(Bucket=bucket, Key="other", Body=b"o")
    out = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "k", "VersionId": v1}, {"Key": "other"}]},
    )
    by_key = {d["Key"]: d for d in out["Deleted"]}
    assert by_key["k"]["VersionId"] == v1
    assert by_key["other"]["DeleteMarker"] is True and by_key["other"]["DeleteMarkerVersionId"]
    versions = s3.list_object_versions(Bucket=bucket, Prefix="k")["Versions"]
    assert [v["VersionId"] for v in versions] == [v2]


def test_delete_objects_answers_a_repeated_entry_once(s3: Any, bucket: str) -> None:
    # Recorded from AWS: the same key twice (or the same key and version id twice) is
    # deleted and reported once -- one delete marker, not two; a bare key and that key
    # with <VersionId>null</VersionId> are two different entries.
    _enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}, {"Key": "k"}]})
    assert len(out["Deleted"]) == 1 and out["Deleted"][0]["DeleteMarker"] is True
    markers = s3.list_object_versions(Bucket=bucket, Prefix="k")["DeleteMarkers"]
    assert [m["VersionId"] for m in markers] == [out["Deleted"][0]["DeleteMarkerVersionId"]]
    v1 = s3.put_object(Bucket=bucket, Key="v", Body=b"1")["VersionId"]
    s3.put_object(Bucket=bucket, Key="v", Body=b"2")
    out = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "v", "VersionId": v1}, {"Key": "v", "VersionId": v1}]},
    )
    assert out["Deleted"] == [{"Key": "v", "VersionId": v1}]
    _enable(s3, bucket, "Suspended")
    s3.put_object(Bucket=bucket, Key="n", Body=b"null")
    out = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "n", "VersionId": "null"}, {"Key": "n", "VersionId": "null"}]},
    )
    assert out["Deleted"] == [{"Key": "n", "VersionId": "null"}]
    s3.put_object(Bucket=bucket, Key="b", Body=b"null")
    out = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "b"}, {"Key": "b", "VersionId": "null"}]}
    )
    assert len(out["Deleted"]) == 2


def test_delete_of_a_version_not_there_names_it(s3: Any, bucket: str) -> None:
    # Recorded from AWS (test_vid_null_string): DELETE ?versionId=null of a key that has
    # no null version is a 204 that still names the version asked for.
    _enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    out = s3.delete_object(Bucket=bucket, Key="k", VersionId="null")
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert out["VersionId"] == "null" and "DeleteMarker" not in out
    gone = s3.put_object(Bucket=bucket, Key="g", Body=b"x")["VersionId"]
    s3.delete_object(Bucket=bucket, Key="g", VersionId=gone)
    out = s3.delete_object(Bucket=bucket, Key="g", VersionId=gone)
    assert out["VersionId"] == gone and "DeleteMarker" not in out
    assert len(s3.list_object_versions(Bucket=bucket, Prefix="k")["Versions"]) == 1


def test_version_actions_in_policies(
    s3: Any, bob_s3: Any, bob: UserKeys, bucket: str, server: Any
) -> None:
    _enable(s3, bucket)
    v1 = s3.put_object(Bucket=bucket, Key="k", Body=b"one")["VersionId"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"two")
    arn = f"arn:aws:s3:::{bucket}/*"
    bob_arn = f"arn:aws:iam::000000000000:user/{bob.name}"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": bob_arn}, "Action": "s3:GetObject",
             "Resource": arn},
            {"Effect": "Allow", "Principal": {"AWS": bob_arn}, "Action": "s3:DeleteObject",
             "Resource": arn},
        ],
    }  # fmt: skip
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    # The current version: allowed. A named version needs s3:GetObjectVersion.
    assert bob_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    with pytest.raises(ClientError) as exc:
        bob_s3.get_object(Bucket=bucket, Key="k", VersionId=v1)
    assert _code(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        bob_s3.delete_object(Bucket=bucket, Key="k", VersionId=v1)
    assert _code(exc) == ("AccessDenied", 403)
    # Anonymous: nothing by version either.
    resp = requests.get(f"{server.endpoint}/{bucket}/k?versionId={v1}", timeout=5)
    assert resp.status_code == 403
    policy["Statement"][0]["Action"] = ["s3:GetObject", "s3:GetObjectVersion"]  # type: ignore[index]
    policy["Statement"][1]["Action"] = ["s3:DeleteObject", "s3:DeleteObjectVersion"]  # type: ignore[index]
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert bob_s3.get_object(Bucket=bucket, Key="k", VersionId=v1)["Body"].read() == b"one"
    bob_s3.delete_object(Bucket=bucket, Key="k", VersionId=v1)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="k", VersionId=v1)
    assert _code(exc)[1] == 404


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("query", ["versionId=", "versionId"])
def test_an_empty_version_id_is_named_as_such(
    s3: Any, bucket: str, server: Any, method: str, query: str
) -> None:
    # Recorded from AWS (GetObject test_1_4/test_1_5, DeleteObject test_empty_vid_*,
    # test_vid_no_value_*): 400 InvalidArgument "Version id cannot be the empty string".
    _enable(s3, bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    url = f"{server.endpoint}/{bucket}/k?{query}"
    resp = requests.request(method, url, headers=sign_request(method, url), timeout=5)
    assert resp.status_code == 400
    assert b"<Code>InvalidArgument</Code>" in resp.content
    assert b"<Message>Version id cannot be the empty string</Message>" in resp.content
    assert b"<ArgumentName>versionId</ArgumentName>" in resp.content
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"


@pytest.mark.parametrize(
    ("query", "message", "value"),
    [
        # Recorded from AWS (ListObjectVersions test_dependency_standalone,
        # test_empty_vid_standalone_no_key, test_empty_vid_standalone_with_key,
        # test_empty_vid_with_empty_key_over_encoding, test_dependency_empty_key_standalone,
        # test_version_id_over_encoding, test_dependency_over_encoding): a key-marker that is
        # there but empty counts as given; the version-id-marker is checked before the
        # encoding-type; max-keys before both.
        ("version-id-marker=bad-vid", "cannot be specified without a key marker.", b"bad-vid"),
        ("version-id-marker=", "cannot be specified without a key marker.", b""),
        ("key-marker=k&version-id-marker=", "A version-id marker cannot be empty.", b""),
        ("key-marker=&version-id-marker=", "A version-id marker cannot be empty.", b""),
        ("key-marker=&version-id-marker=bad-vid", "Invalid version id specified", b"bad-vid"),
        (
            "encoding-type=invalid&key-marker=k&version-id-marker=bad-vid",
            "Invalid version id specified",
            b"bad-vid",
        ),
        (
            "encoding-type=invalid&version-id-marker=bad-vid",
            "cannot be specified without a key marker.",
            b"bad-vid",
        ),
    ],
)
def test_list_versions_markers_are_checked_as_s3_checks_them(
    bucket: str, server: Any, query: str, message: str, value: bytes
) -> None:
    url = f"{server.endpoint}/{bucket}?versions&{query}"
    resp = requests.get(url, headers=sign_request("GET", url), timeout=5)
    assert resp.status_code == 400, resp.content
    assert b"<Code>InvalidArgument</Code>" in resp.content
    assert message.encode() in resp.content
    assert b"<ArgumentName>version-id-marker</ArgumentName>" in resp.content
    if value:
        assert b"<ArgumentValue>" + value + b"</ArgumentValue>" in resp.content


def test_list_versions_with_an_empty_key_marker_and_a_version_id_marker(
    s3: Any, bucket: str, server: Any
) -> None:
    # Recorded from AWS (test_dependency_empty_key_with_valid_vid): 200, a listing.
    _enable(s3, bucket)
    vid = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["VersionId"]
    url = f"{server.endpoint}/{bucket}?versions&key-marker=&version-id-marker={vid}"
    resp = requests.get(url, headers=sign_request("GET", url), timeout=5)
    assert resp.status_code == 200, resp.content
    assert f"<VersionIdMarker>{vid}</VersionIdMarker>".encode() in resp.content
    assert b"<Key>k</Key>" in resp.content


def test_list_versions_max_keys_as_s3_takes_it(s3: Any, bucket: str, server: Any) -> None:
    # Recorded from AWS (ListObjectVersions test_invalid_max_keys_returns_400[negative],
    # [int32-overflow], test_valid_max_keys_returns_200[int32-max]).
    def get(query: str) -> requests.Response:
        url = f"{server.endpoint}/{bucket}?versions&{query}"
        return requests.get(url, headers=sign_request("GET", url), timeout=5)

    resp = get("max-keys=-1")
    assert resp.status_code == 400
    assert b"<Message>max-keys cannot be negative</Message>" in resp.content
    assert b"<ArgumentName>max-keys</ArgumentName>" in resp.content
    resp = get("max-keys=2147483648")
    assert resp.status_code == 400
    assert b"Provided max-keys not an integer or within integer range" in resp.content
    assert b"<ArgumentValue>2147483648</ArgumentValue>" in resp.content
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    resp = get("max-keys=2147483647")
    assert resp.status_code == 200
    assert b"<MaxKeys>2147483647</MaxKeys>" in resp.content and b"<Key>k</Key>" in resp.content


@pytest.mark.parametrize("name", ["key-marker", "prefix"])
def test_list_versions_refuses_a_null_character(bucket: str, server: Any, name: str) -> None:
    # Recorded from AWS (ListObjectVersions test_null_byte_key_marker, test_null_byte_prefix,
    # test_null_key_vs_invalid_encoding): 400, after the encoding-type is checked.
    url = f"{server.endpoint}/{bucket}?versions&{name}=%00&max-keys=1"
    resp = requests.get(url, headers=sign_request("GET", url), timeout=5)
    assert resp.status_code == 400
    assert b"<Code>InvalidArgument</Code>" in resp.content
    assert (
        b"<Message>Value must be a sequence of Unicode characters and cannot include Null."
        b"</Message>" in resp.content
    )
    assert f"<ArgumentName>{name}</ArgumentName>".encode() in resp.content
    url = f"{server.endpoint}/{bucket}?versions&{name}=%00&encoding-type=invalid"
    resp = requests.get(url, headers=sign_request("GET", url), timeout=5)
    assert resp.status_code == 400 and b"<ArgumentName>encoding-type<" in resp.content


def test_list_versions_empty_max_keys_and_delimiter_are_as_if_absent(
    s3: Any, bucket: str, server: Any
) -> None:
    # Recorded from AWS (ListObjectVersions test_empty_max_keys_treated_as_default,
    # test_empty_delimiter_same_as_absent): max-keys= lists up to 1000 and says so;
    # delimiter= groups nothing and is echoed as an empty <Delimiter/>.
    s3.put_object(Bucket=bucket, Key="a/b", Body=b"x")
    url = f"{server.endpoint}/{bucket}?versions&max-keys=&delimiter="
    resp = requests.get(url, headers=sign_request("GET", url), timeout=5)
    assert resp.status_code == 200, resp.content
    assert b"<MaxKeys>1000</MaxKeys>" in resp.content and b"<Key>a/b</Key>" in resp.content
    assert b"<Delimiter />" in resp.content or b"<Delimiter></Delimiter>" in resp.content
    assert b"CommonPrefixes" not in resp.content


def test_torrent_takes_no_version_id(s3: Any, bucket: str, server: Any) -> None:
    _enable(s3, bucket)
    vid = s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 100)["VersionId"]
    url = f"{server.endpoint}/{bucket}/k?torrent=&versionId={vid}"
    resp = requests.get(url, headers=sign_request("GET", url), timeout=5)
    assert resp.status_code == 400 and b"InvalidArgument" in resp.content


def test_other_users_and_anonymous_cannot_touch_versioning(
    s3: Any, bob_s3: Any, bucket: str, server: Any
) -> None:
    with pytest.raises(ClientError) as exc:
        bob_s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert _code(exc) == ("AccessDenied", 403)
    _enable(s3, bucket)
    vid = s3.put_object(Bucket=bucket, Key="k", Body=b"x")["VersionId"]
    for call in (
        lambda: bob_s3.list_object_versions(Bucket=bucket),
        lambda: bob_s3.get_object(Bucket=bucket, Key="k", VersionId=vid),
        lambda: bob_s3.delete_object(Bucket=bucket, Key="k", VersionId=vid),
        lambda: bob_s3.get_bucket_versioning(Bucket=bucket),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert _code(exc) == ("AccessDenied", 403)
    for path in ("?versions", f"k?versionId={vid}", "?versioning"):
        url = (
            f"{server.endpoint}/{bucket}/{path}"
            if path[0] != "?"
            else f"{server.endpoint}/{bucket}{path}"
        )
        assert requests.get(url, timeout=5).status_code == 403
    assert (
        requests.delete(f"{server.endpoint}/{bucket}/k?versionId={vid}", timeout=5).status_code
        == 403
    )
    assert s3.get_object(Bucket=bucket, Key="k", VersionId=vid)["Body"].read() == b"x"
