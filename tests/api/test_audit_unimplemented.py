"""Audit: a header or parameter that changes what S3 does is acted on or refused with S3's
error, never accepted and ignored (what tests/api/test_refusals.py did not yet cover)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import re
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, sign_request

_names = itertools.count()


def _send(
    server: LiveServer,
    method: str,
    path: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
) -> requests.Response:
    url = f"{server.endpoint}{path}" + (f"?{query}" if query else "")
    signed = sign_request(method, url, dict(headers or {}), body)
    return requests.request(method, url, headers=signed, data=body, timeout=30)


def _code(resp: requests.Response) -> str:
    found = re.search(r"<Code>(.*?)</Code>", resp.text)
    return found.group(1) if found else ""


def _empty_bucket(s3: Any) -> str:
    name = f"unimpl-{os.getpid()}-{next(_names)}"
    s3.create_bucket(Bucket=name)
    return name


# ---- object parameters at a bucket's path ----


@pytest.mark.parametrize(
    ("query", "code"),
    [("versionId=v1", "InvalidArgument"), ("versionId=null", "InvalidArgument"),
     ("versionId=", "InvalidArgument"), ("uploadId=u1", "InvalidRequest"),
     ("partNumber=1", "InvalidRequest")],
)  # fmt: skip
def test_a_bucket_delete_naming_a_version_part_or_upload_is_refused_and_keeps_the_bucket(
    server: LiveServer, s3: Any, query: str, code: str
) -> None:
    """`DELETE /bucket?versionId=v` is a DeleteObject whose key went missing: S3 refuses
    versionId at a bucket's path (400 InvalidArgument, "This operation does not accept a
    version-id.") and partNumber there (400 InvalidRequest). Both were dropped here and the
    request was taken for DeleteBucket: an empty bucket was deleted."""
    name = _empty_bucket(s3)
    resp = _send(server, "DELETE", f"/{name}", query)
    assert resp.status_code == 400, resp.text
    assert _code(resp) == code, resp.text
    s3.head_bucket(Bucket=name)


@pytest.mark.parametrize(
    ("method", "query"),
    [("GET", "versionId=v1"), ("GET", "list-type=2&versionId=v1"),
     ("GET", "versions&versionId=v1"), ("GET", "uploads&versionId=v1"),
     ("GET", "versioning&versionId=null"), ("GET", "partNumber=1"), ("GET", "uploadId=u1"),
     ("POST", "versionId=v1"), ("PUT", "tagging&versionId=v1")],
)  # fmt: skip
def test_bucket_operations_refuse_the_parameters_of_an_object(
    server: LiveServer, s3: Any, method: str, query: str
) -> None:
    name = _empty_bucket(s3)
    s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": "keep", "Value": "me"}]})
    body = b"<Tagging><TagSet></TagSet></Tagging>" if method == "PUT" else b""
    resp = _send(server, method, f"/{name}", query, body=body)
    assert resp.status_code == 400, resp.text
    expected = (
        "InvalidRequest" if "partNumber" in query or "uploadId" in query else "InvalidArgument"
    )
    assert _code(resp) == expected, resp.text
    assert s3.get_bucket_tagging(Bucket=name)["TagSet"] == [{"Key": "keep", "Value": "me"}]
    head = _send(server, "HEAD", f"/{name}", query)
    assert head.status_code == 400


def test_a_bucket_created_with_a_version_id_is_refused_and_not_created(
    server: LiveServer, s3: Any
) -> None:
    name = f"unimpl-new-{os.getpid()}-{next(_names)}"
    resp = _send(server, "PUT", f"/{name}", "versionId=v1")
    assert resp.status_code == 400 and _code(resp) == "InvalidArgument", resp.text
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=name)


def test_object_operations_still_take_their_version_part_and_upload(
    server: LiveServer, s3: Any
) -> None:
    name = _empty_bucket(s3)
    s3.put_object(Bucket=name, Key="k", Body=b"kept")
    assert _send(server, "GET", f"/{name}/k", "versionId=null").content == b"kept"
    assert _send(server, "GET", f"/{name}/k", "partNumber=1").content == b"kept"
    upload = s3.create_multipart_upload(Bucket=name, Key="m")["UploadId"]
    assert _send(server, "GET", f"/{name}/m", f"uploadId={upload}").status_code == 200
    assert _send(server, "DELETE", f"/{name}/k", "versionId=null").status_code == 204
    s3.head_bucket(Bucket=name)


# ---- a part number without its upload ----


@pytest.mark.parametrize(
    ("method", "headers"),
    [("PUT", {}), ("PUT", {"x-amz-copy-source": "{bucket}/src"}), ("DELETE", {}), ("POST", {})],
)
def test_a_part_number_without_its_upload_is_refused_not_taken_for_a_plain_write(
    server: LiveServer, s3: Any, method: str, headers: dict[str, str]
) -> None:
    """An UploadPart (or UploadPartCopy) whose uploadId went missing was routed as a PutObject
    (or CopyObject) and overwrote the key with the part; a DELETE with one deleted the key.
    S3 answers 400 InvalidArgument, 'This operation does not accept partNumber without
    uploadId'."""
    name = _empty_bucket(s3)
    s3.put_object(Bucket=name, Key="k", Body=b"kept")
    s3.put_object(Bucket=name, Key="src", Body=b"part from a copy")
    sent = {k: v.format(bucket=name) for k, v in headers.items()}
    query = "partNumber=1"
    resp = _send(server, method, f"/{name}/k", query, sent, b"a part" if method == "PUT" else b"")
    assert resp.status_code == 400, resp.text
    assert _code(resp) == "InvalidArgument" and "without uploadId" in resp.text, resp.text
    assert s3.get_object(Bucket=name, Key="k")["Body"].read() == b"kept"
    assert s3.list_multipart_uploads(Bucket=name).get("Uploads", []) == []


# ---- conditions on the writes of an object's sub-resources ----


@pytest.mark.parametrize(
    ("name", "value"),
    [("If-Match", '"0123456789abcdef0123456789abcdef"'), ("If-None-Match", "*"),
     ("If-Unmodified-Since", "Sat, 01 Jan 2000 00:00:00 GMT"),
     ("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")],
)  # fmt: skip
def test_conditions_on_tagging_retention_and_legal_hold_writes_are_refused_not_skipped(
    server: LiveServer, s3: Any, name: str, value: str
) -> None:
    """S3 takes conditions on PutObject, CopyObject, CompleteMultipartUpload and DeleteObject
    (its conditional requests guide); a tag, retention or legal-hold write carrying one is
    refused as PutObjectAcl's already was. Each failing condition here was skipped: the tags
    were replaced, deleted, the retention and hold set, on an object the client had not seen."""
    bucket = f"unimpl-lock-{os.getpid()}-{next(_names)}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept", Tagging="keep=me")
    tags = b"<Tagging><TagSet><Tag><Key>new</Key><Value>x</Value></Tag></TagSet></Tagging>"
    retention = b"<Retention><Mode>GOVERNANCE</Mode>"
    retention += b"<RetainUntilDate>2030-01-01T00:00:00Z</RetainUntilDate></Retention>"
    hold = b"<LegalHold><Status>ON</Status></LegalHold>"
    md5 = {
        body: base64.b64encode(hashlib.md5(body).digest()).decode()
        for body in (tags, retention, hold)
    }
    calls = [("PUT", "tagging", tags), ("DELETE", "tagging", b""), ("PUT", "retention", retention),
             ("PUT", "legal-hold", hold)]  # fmt: skip
    for method, sub, body in calls:
        headers = {name: value, **({"Content-MD5": md5[body]} if body else {})}
        resp = _send(server, method, f"/{bucket}/k", f"{sub}=", headers, body)
        assert resp.status_code == 501, (sub, resp.text)
        assert _code(resp) == "NotImplemented", resp.text
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "keep", "Value": "me"}
    ]
    head = s3.head_object(Bucket=bucket, Key="k")
    assert "ObjectLockMode" not in head and head.get("ObjectLockLegalHoldStatus") != "ON"
    # Without a condition, each is acted on.
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "n", "Value": "v"}]})
    s3.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "OFF"})


# ---- the paging parameters of the other ListObjects version ----


@pytest.mark.parametrize(
    ("query", "name", "message"),
    [("start-after=l%2Fa", "start-after", "startAfter only supported"),
     ("continuation-token=x", "continuation-token", "continuation-token only supported"),
     ("start-after=l%2Fa&continuation-token=x", "continuation-token", "continuation-token only"),
     ("list-type=2&marker=l%2Fa", "marker", "Marker unsupported")],
)  # fmt: skip
def test_a_listing_refuses_the_paging_parameters_of_the_other_version(
    server: LiveServer, s3: Any, query: str, name: str, message: str
) -> None:
    """ListObjects (V1) pages by marker, ListObjectsV2 by continuation-token and start-after.
    The other version's parameter was dropped and the first page answered again (a client
    paging by it looped on that page); S3 refuses it with 400 InvalidArgument naming it."""
    bucket = _empty_bucket(s3)
    for key in ("l/a", "l/b"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    resp = _send(server, "GET", f"/{bucket}", f"prefix=l%2F&{query}")
    assert resp.status_code == 400, resp.text
    assert _code(resp) == "InvalidArgument" and message in resp.text, resp.text
    assert f"<ArgumentName>{name}</ArgumentName>" in resp.text
    # Each version's own parameter pages as before.
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket, Marker="l/a")["Contents"]] == ["l/b"]
    listed = s3.list_objects_v2(Bucket=bucket, StartAfter="l/a")["Contents"]
    assert [o["Key"] for o in listed] == ["l/b"]


# ---- elements of a request body that S3's schema does not define ----

_BOGUS = "<IfUnmodifiedSince>2000-01-01T00:00:00Z</IfUnmodifiedSince>"
_UNKNOWN_ELEMENT_BODIES = [
    ("POST", "", "delete", f"<Delete><Object><Key>k</Key>{_BOGUS}</Object></Delete>"),
    ("POST", "", "delete", f"<Delete>{_BOGUS}<Object><Key>k</Key></Object></Delete>"),
    ("PUT", "", "versioning",
     f"<VersioningConfiguration><Status>Suspended</Status>{_BOGUS}</VersioningConfiguration>"),
    ("PUT", "", "tagging",
     f"<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value>{_BOGUS}</Tag></TagSet></Tagging>"),
    ("PUT", "k", "tagging", f"<Tagging><TagSet></TagSet>{_BOGUS}</Tagging>"),
    ("PUT", "", "cors",
     "<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*"
     "</AllowedOrigin><AllowedHeaders>*</AllowedHeaders></CORSRule></CORSConfiguration>"),
    ("PUT", "", "ownershipControls",
     "<OwnershipControls><Rule><ObjectOwnership>BucketOwnerPreferred</ObjectOwnership>"
     f"{_BOGUS}</Rule></OwnershipControls>"),
    ("PUT", "", "object-lock",
     "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule>"
     f"<DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days>{_BOGUS}</DefaultRetention>"
     "</Rule></ObjectLockConfiguration>"),
    ("PUT", "k", "retention",
     "<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>2030-01-01T00:00:00Z</RetainUntilDate>"
     f"{_BOGUS}</Retention>"),
    ("PUT", "k", "legal-hold", f"<LegalHold><Status>ON</Status>{_BOGUS}</LegalHold>"),
    ("PUT", "", "logging",
     "<BucketLoggingStatus><LoggingEnabled><TargetBucket>{bucket}</TargetBucket><TargetPrefix>"
     f"logs/</TargetPrefix>{_BOGUS}</LoggingEnabled></BucketLoggingStatus>"),
    ("PUT", "", "requestPayment",
     f"<RequestPaymentConfiguration><Payer>BucketOwner</Payer>{_BOGUS}</RequestPaymentConfiguration>"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "key", "sub", "body"),
    _UNKNOWN_ELEMENT_BODIES,
    ids=[f"{m}-{s}-{i}" for i, (m, _, s, _) in enumerate(_UNKNOWN_ELEMENT_BODIES)],
)
def test_a_body_element_s3_does_not_define_is_malformed_not_ignored(
    server: LiveServer, s3: Any, method: str, key: str, sub: str, body: str
) -> None:
    """S3 validates a request body against its schema and answers MalformedXML for an
    element it does not define (ceph/ceph#23486 shows AWS's answer for a tagging body). Here
    the handlers read the elements they knew and dropped the rest: a condition in a
    DeleteObjects entry, a misspelt CORS element (AllowedHeaders), anything in a lock rule,
    a retention or a legal hold was accepted, and the rest of the body acted on."""
    bucket = f"unimpl-xml-{os.getpid()}-{next(_names)}"
    s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept", Tagging="keep=me")
    raw = body.replace("{bucket}", bucket).encode()
    md5 = base64.b64encode(hashlib.md5(raw).digest()).decode()
    path = f"/{bucket}/{key}" if key else f"/{bucket}"
    resp = _send(server, method, path, f"{sub}=", {"Content-MD5": md5}, raw)
    assert resp.status_code == 400, resp.text
    assert _code(resp) == "MalformedXML", resp.text
    # Nothing was acted on.
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "keep", "Value": "me"}
    ]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    head = s3.head_object(Bucket=bucket, Key="k")
    assert "ObjectLockMode" not in head and head.get("ObjectLockLegalHoldStatus") != "ON"
    assert "Rule" not in s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=bucket)
    for read in (s3.get_bucket_cors, s3.get_bucket_ownership_controls, s3.get_bucket_tagging):
        with pytest.raises(ClientError):
            read(Bucket=bucket)


@pytest.mark.parametrize(
    ("algorithm", "element", "code"),
    [(None, "ChecksumCRC32", "InvalidPart"), ("CRC32", "ChecksumSHA256", "InvalidPart"),
     (None, "ChecksumSHA512", "InvalidPart"), (None, "Size", "MalformedXML")],
)  # fmt: skip
def test_a_completion_naming_a_part_checksum_the_upload_does_not_keep_is_refused(
    server: LiveServer, s3: Any, algorithm: str | None, element: str, code: str
) -> None:
    """A part in CompleteMultipartUpload may name its checksum of the upload's algorithm,
    which is checked. One of another algorithm (any, for an upload created without one) was
    checked against nothing and the upload completed, however wrong the value: S3 answers
    InvalidPart (as versity/versitygw, which is tested against S3, does)."""
    bucket = _empty_bucket(s3)
    kw = {"ChecksumAlgorithm": algorithm} if algorithm else {}
    upload = s3.create_multipart_upload(Bucket=bucket, Key="m", **kw)["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="m", UploadId=upload, PartNumber=1, Body=b"p", **kw)
    own = f"<ChecksumCRC32>{part['ChecksumCRC32']}</ChecksumCRC32>" if algorithm else ""
    body = (
        f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{part['ETag']}</ETag>"
        f"{own}<{element}>AAAAAA==</{element}></Part></CompleteMultipartUpload>"
    ).encode()
    resp = _send(server, "POST", f"/{bucket}/m", f"uploadId={upload}", body=body)
    assert resp.status_code == 400, resp.text
    assert _code(resp) == code, resp.text
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="m")
    # The upload is still there, and completes with what it keeps.
    done = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    if algorithm:
        done["Parts"][0]["ChecksumCRC32"] = part["ChecksumCRC32"]
    s3.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload, MultipartUpload=done)
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"p"


def test_an_upload_created_naming_a_version_is_refused(server: LiveServer, s3: Any) -> None:
    """CreateMultipartUpload starts what will be a new version and names none, as PutObject
    and CompleteMultipartUpload do, which refuse ?versionId= (400 InvalidArgument, 'This
    operation does not accept a version-id.'); it was dropped and an upload created."""
    bucket = _empty_bucket(s3)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    version = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["VersionId"]
    resp = _send(server, "POST", f"/{bucket}/k", f"uploads=&versionId={version}")
    assert resp.status_code == 400, resp.text
    assert _code(resp) == "InvalidArgument" and "version-id" in resp.text
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# ---- two operations named at once ----


@pytest.mark.parametrize(
    ("method", "key", "query", "named"),
    [("PUT", "", "tagging&versioning", "tagging, versioning"),
     ("DELETE", "", "cors&policy", "cors, policy"),
     ("GET", "", "acl&versioning", "acl, versioning"),
     ("PUT", "k", "acl&tagging", "acl, tagging"),
     ("DELETE", "k", "tagging&uploadId=u", "tagging, uploadId"),
     ("GET", "k", "torrent&partNumber=1", "partNumber, torrent"),
     ("GET", "", "acl&partNumber=1", "acl, partNumber")],
)  # fmt: skip
def test_a_request_naming_two_operations_is_refused_not_taken_for_one_of_them(
    server: LiveServer, s3: Any, method: str, key: str, query: str, named: str
) -> None:
    """`PUT /bucket?tagging&versioning` names two operations; the router took the first of
    its table and dropped the other (a DELETE ?cors&policy deleted the policy and kept the
    CORS rules). S3 refuses it: 400 InvalidArgument, "Conflicting query string parameters:
    acl, versioning" (recorded from AWS by brekkylab/backlot), and so does this server."""
    bucket = _empty_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept", Tagging="keep=me")
    s3.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]},
    )
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "keep", "Value": "me"}]})
    body = b"<Tagging><TagSet></TagSet></Tagging>" if method == "PUT" else b""
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    path = f"/{bucket}/{key}" if key else f"/{bucket}"
    resp = _send(server, method, path, query, {"Content-MD5": md5} if body else {}, body)
    assert resp.status_code == 400, resp.text
    assert _code(resp) == "InvalidArgument", resp.text
    assert f"Conflicting query string parameters: {named}" in resp.text
    assert "<ArgumentName>ResourceType</ArgumentName>" in resp.text
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "keep", "Value": "me"}]
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [
        {"Key": "keep", "Value": "me"}
    ]
    assert s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    # Each alone is its operation, with the parameters that go with it.
    assert _send(server, "GET", f"/{bucket}", "acl").status_code == 200
    assert _send(server, "GET", f"/{bucket}/k", "tagging&versionId=null").status_code == 200


@pytest.mark.parametrize("where", ["policy", "owner", "grant", "grantee"])
def test_an_acl_body_element_s3_does_not_define_is_refused_and_the_acl_kept(
    server: LiveServer, s3: Any, where: str
) -> None:
    """An AccessControlPolicy holding an element S3's schema does not define was applied
    with the element dropped; S3 validates the body (MalformedACLError for an ACL)."""
    bucket = _empty_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept", ACL="public-read")
    owner = s3.get_object_acl(Bucket=bucket, Key="k")["Owner"]["ID"]
    bogus = "<Bogus>1</Bogus>"
    grantee = (
        '<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">'
        f"<ID>{owner}</ID>{bogus if where == 'grantee' else ''}</Grantee>"
    )
    grant = f"<Grant>{grantee}<Permission>FULL_CONTROL</Permission>"
    grant += f"{bogus if where == 'grant' else ''}</Grant>"
    body = (
        f"<AccessControlPolicy><Owner><ID>{owner}</ID>{bogus if where == 'owner' else ''}"
        f"</Owner><AccessControlList>{grant}</AccessControlList>"
        f"{bogus if where == 'policy' else ''}</AccessControlPolicy>"
    ).encode()
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    resp = _send(server, "PUT", f"/{bucket}/k", "acl=", {"Content-MD5": md5}, body)
    assert resp.status_code == 400, resp.text
    assert _code(resp) == "MalformedACLError", resp.text
    grants = s3.get_object_acl(Bucket=bucket, Key="k")["Grants"]
    assert any(g["Grantee"].get("URI", "").endswith("AllUsers") for g in grants)


def test_a_bucket_created_with_an_unknown_element_in_its_tags_is_refused(
    server: LiveServer, s3: Any
) -> None:
    name = f"unimpl-tags-{os.getpid()}-{next(_names)}"
    body = (
        b"<CreateBucketConfiguration><Tags><Tag><Key>a</Key><Value>b</Value><Bogus>1</Bogus>"
        b"</Tag></Tags></CreateBucketConfiguration>"
    )
    resp = _send(server, "PUT", f"/{name}", body=body)
    assert resp.status_code == 400 and _code(resp) == "MalformedXML", resp.text
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=name)


@pytest.mark.parametrize(
    ("method", "key", "query"),
    [("DELETE", "", "location=1"), ("DELETE", "", "object-lock=1"), ("DELETE", "", "delete=1"),
     ("PUT", "k", "torrent=1"), ("PUT", "k", "versioning=Enabled"), ("DELETE", "k", "restore=1"),
     ("PUT", "k", "location=x")],
)  # fmt: skip
def test_a_write_naming_a_sub_resource_with_a_value_is_not_taken_for_a_plain_write(
    server: LiveServer, s3: Any, method: str, key: str, query: str
) -> None:
    """A sub-resource is one by its name, whatever its value (S3 refuses ?website=v as the
    website sub-resource with a value). A write naming one with a value that has no route
    for that method was taken for the plain write: `DELETE /bucket?location=1` deleted an
    empty bucket, `PUT /bucket/key?torrent=1` overwrote the key. Refused as NotImplemented,
    as the same names without a value already were."""
    bucket = _empty_bucket(s3)
    if key:
        s3.put_object(Bucket=bucket, Key=key, Body=b"kept")
    path = f"/{bucket}/{key}" if key else f"/{bucket}"
    resp = _send(server, method, path, query, body=b"overwrite" if method == "PUT" else b"")
    assert resp.status_code == 501, resp.text
    assert _code(resp) == "NotImplemented", resp.text
    s3.head_bucket(Bucket=bucket)
    if key:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"kept"


@pytest.mark.parametrize(
    ("name", "value"),
    [("If-Match", '"0123456789abcdef0123456789abcdef"'), ("If-None-Match", "*"),
     ("If-Unmodified-Since", "Sat, 01 Jan 2000 00:00:00 GMT")],
)  # fmt: skip
def test_a_condition_on_a_delete_objects_request_is_refused_and_nothing_is_deleted(
    server: LiveServer, s3: Any, name: str, value: str
) -> None:
    """DeleteObjects takes a condition per entry (<ETag>), none on the request; one sent as
    a header was skipped and every key deleted."""
    bucket = _empty_bucket(s3)
    s3.put_object(Bucket=bucket, Key="k", Body=b"kept")
    body = b"<Delete><Object><Key>k</Key></Object></Delete>"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    resp = _send(server, "POST", f"/{bucket}", "delete=", {"Content-MD5": md5, name: value}, body)
    assert resp.status_code == 501, resp.text
    assert _code(resp) == "NotImplemented", resp.text
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"kept"
