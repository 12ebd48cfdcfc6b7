"""Headers and parameters the server does not act on are refused, never accepted and ignored.

Every row of s3torrent.s3.refusals.REFUSALS is tried on every endpoint it names, with raw
signed requests, and must answer its error without changing anything; the values a row
accepts, and the default flows of the clients, keep working.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from s3torrent.access.principals import ACCOUNT_ID
from s3torrent.s3.errors import S3Error
from s3torrent.s3.refusals import REFUSALS, Refusal
from s3torrent.s3.routing import Endpoint
from tests.conftest import LiveServer, rclone_env, s3cmd_command, sign_request

_names = itertools.count()


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: str = ""
    headers: dict[str, str] | None = None
    body: bytes = b""


@dataclass
class Fixture:
    server: LiveServer
    bucket: str
    upload_id: str

    def call(self, endpoint: Endpoint) -> Call:
        b, u = self.bucket, self.upload_id
        copy = {"x-amz-copy-source": f"/{b}/obj"}
        xml = b"<Delete><Object><Key>obj</Key></Object></Delete>"
        md5 = base64.b64encode(hashlib.md5(xml).digest()).decode()
        done = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
        done += b"<ETag>x</ETag></Part></CompleteMultipartUpload>"
        tags = b"<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>"
        retention = b"<Retention><Mode>GOVERNANCE</Mode>"
        retention += b"<RetainUntilDate>2030-01-01T00:00:00Z</RetainUntilDate></Retention>"
        hold = b"<LegalHold><Status>ON</Status></LegalHold>"
        calls = {
            Endpoint.PutObject: Call("PUT", f"/{b}/new-{next(_names)}", body=b"data"),
            Endpoint.CopyObject: Call("PUT", f"/{b}/copy-{next(_names)}", headers=copy),
            Endpoint.CreateMultipartUpload: Call("POST", f"/{b}/mp2", "uploads="),
            Endpoint.CreateBucket: Call("PUT", f"/refused-{os.getpid()}-{next(_names)}"),
            Endpoint.DeleteObject: Call("DELETE", f"/{b}/obj"),
            Endpoint.DeleteObjects: Call(
                "POST", f"/{b}", "delete=", {"Content-MD5": md5}, body=xml
            ),
            Endpoint.GetObject: Call("GET", f"/{b}/obj"),
            Endpoint.HeadObject: Call("HEAD", f"/{b}/obj"),
            Endpoint.GetObjectAcl: Call("GET", f"/{b}/obj", "acl="),
            Endpoint.PutObjectAcl: Call("PUT", f"/{b}/obj", "acl=", {"x-amz-acl": "private"}),
            Endpoint.GetObjectTorrent: Call("GET", f"/{b}/obj", "torrent="),
            Endpoint.PutObjectTagging: Call("PUT", f"/{b}/obj", "tagging=", body=tags),
            Endpoint.DeleteObjectTagging: Call("DELETE", f"/{b}/obj", "tagging="),
            Endpoint.PutObjectRetention: Call("PUT", f"/{b}/obj", "retention=", body=retention),
            Endpoint.PutObjectLegalHold: Call("PUT", f"/{b}/obj", "legal-hold=", body=hold),
            Endpoint.GetObjectAttributes: Call(
                "GET", f"/{b}/obj", "attributes=", {"x-amz-object-attributes": "ETag"}
            ),
            Endpoint.UploadPart: Call("PUT", f"/{b}/mp", f"partNumber=1&uploadId={u}", body=b"p"),
            Endpoint.UploadPartCopy: Call(
                "PUT", f"/{b}/mp", f"partNumber=1&uploadId={u}", headers=copy
            ),
            Endpoint.AbortMultipartUpload: Call("DELETE", f"/{b}/mp", f"uploadId={u}"),
            Endpoint.CompleteMultipartUpload: Call("POST", f"/{b}/mp", f"uploadId={u}", body=done),
        }
        return calls[endpoint]

    def send(self, call: Call, extra: dict[str, str], query: str = "") -> requests.Response:
        q = "&".join(p for p in (call.query, query) if p)
        url = f"{self.server.endpoint}{call.path}" + (f"?{q}" if q else "")
        headers = {**(call.headers or {}), **extra}
        signed = sign_request(call.method, url, headers, call.body)
        return requests.request(call.method, url, headers=signed, data=call.body, timeout=30)


@pytest.fixture(scope="module")
def fx(server: LiveServer, s3: Any) -> Iterator[Fixture]:
    name = f"refusals-{os.getpid()}"
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="obj", Body=b"original")
    upload_id = s3.create_multipart_upload(Bucket=name, Key="mp")["UploadId"]
    yield Fixture(server, name, upload_id)


def _refused_value(refusal: Refusal) -> str:
    if "since" in refusal.name.lower() or "date" in refusal.name or "time" in refusal.name:
        return "Wed, 01 Jan 2020 00:00:00 GMT"
    return "not-acted-on"


def _cases() -> list[tuple[Refusal, Endpoint]]:
    every = [Endpoint.PutObject, Endpoint.GetObject, Endpoint.CreateMultipartUpload]
    return [(r, e) for r in REFUSALS for e in (sorted(r.endpoints, key=str) or every)]


def _code(resp: requests.Response) -> str:
    text = resp.text
    start = text.find("<Code>")
    return text[start + 6 : text.find("</Code>")] if start >= 0 else ""


@pytest.mark.parametrize(
    ("refusal", "endpoint"), _cases(), ids=lambda v: v.op if isinstance(v, Endpoint) else v.name
)
def test_every_refused_header_and_parameter_is_refused_with_its_error(
    fx: Fixture, s3: Any, refusal: Refusal, endpoint: Endpoint
) -> None:
    call = fx.call(endpoint)
    value = _refused_value(refusal)
    if refusal.in_query:
        resp = fx.send(call, {}, f"{refusal.name}={value}")
    else:
        resp = fx.send(call, {refusal.name: value})
    assert resp.status_code == S3Error(refusal.code).status, resp.text
    if call.method != "HEAD":
        assert _code(resp) == refusal.code, resp.text
    # Nothing happened: the object is intact, no new key or bucket appeared.
    assert s3.get_object(Bucket=fx.bucket, Key="obj")["Body"].read() == b"original"
    if endpoint in (Endpoint.PutObject, Endpoint.CopyObject):
        with pytest.raises(ClientError):
            s3.head_object(Bucket=fx.bucket, Key=call.path.rsplit("/", 1)[1])
    if endpoint is Endpoint.CreateBucket:
        with pytest.raises(ClientError):
            s3.head_bucket(Bucket=call.path.lstrip("/"))


def test_the_lock_retention_from_the_issue_is_refused_and_nothing_is_stored(
    s3: Any, bucket: str
) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(
            Bucket=bucket,
            Key="locked",
            Body=b"x",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate="2030-01-01T00:00:00Z",
        )
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert exc.value.response["Error"]["Code"] == "InvalidRequest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="locked")


def test_accepted_values_are_acted_on(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="std", Body=b"s", StorageClass="STANDARD")
    s3.put_object(Bucket=bucket, Key="rr", Body=b"r", StorageClass="REDUCED_REDUNDANCY")
    assert s3.head_object(Bucket=bucket, Key="rr")["StorageClass"] == "REDUCED_REDUNDANCY"
    assert s3.get_object(Bucket=bucket, Key="std", VersionId="null")["Body"].read() == b"s"
    s3.head_object(Bucket=bucket, Key="std", VersionId="null")
    s3.copy_object(
        Bucket=bucket,
        Key="copy",
        CopySource={"Bucket": bucket, "Key": "std"},
        TaggingDirective="COPY",
    )
    s3.copy_object(
        Bucket=bucket, Key="copy2", CopySource={"Bucket": bucket, "Key": "std", "VersionId": "null"}
    )
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket,
            Key="copy3",
            CopySource={"Bucket": bucket, "Key": "std", "VersionId": "v1"},
        )
    assert exc.value.response["Error"]["Code"] == "InvalidArgument"
    name = f"{bucket}-ok"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=False, ObjectOwnership="ObjectWriter")
    s3.delete_object(Bucket=bucket, Key="std", VersionId="null")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="std")


def test_expected_bucket_owner_is_checked(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"k")
    owner = s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]
    for ok in (owner, ACCOUNT_ID):
        s3.head_object(Bucket=bucket, Key="k", ExpectedBucketOwner=ok)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", ExpectedBucketOwner="111122223333")
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"new", ExpectedBucketOwner="111122223333")
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"k"
    src = {"Bucket": bucket, "Key": "k"}
    with pytest.raises(ClientError) as exc:
        s3.copy_object(
            Bucket=bucket, Key="c", CopySource=src, ExpectedSourceBucketOwner="111122223333"
        )
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    s3.copy_object(Bucket=bucket, Key="c", CopySource=src, ExpectedSourceBucketOwner=owner)


# ---- the default flows of other clients send nothing the table refuses ----


def _run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    import subprocess

    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, f"{cmd[:3]}: {res.stdout[-1500:]} {res.stderr[-1500:]}"
    return res.stdout


@pytest.mark.skipif(
    not shutil.which("rclone") and not os.environ.get("S3TORRENT_REQUIRE_ENGINES"),
    reason="rclone is not installed (scripts/test.sh installs it and requires it)",
)
def test_rclone_default_flow_passes(server: LiveServer, s3: Any, tmp_path: Path) -> None:
    env = rclone_env(server.endpoint)
    src = tmp_path / "src"
    src.mkdir()
    (src / "small.txt").write_bytes(b"small file\n")
    (src / "big.bin").write_bytes(os.urandom(6 * 1024 * 1024 + 5))
    name = f"rclone-{os.getpid()}"
    _run(["rclone", "mkdir", f"s3t:{name}"], env)
    # A cutoff below the big file's size: its upload is multipart.
    _run(["rclone", "copy", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M",
          str(src), f"s3t:{name}/dir"], env)  # fmt: skip
    listed = _run(["rclone", "ls", f"s3t:{name}"], env)
    assert "dir/small.txt" in listed and "dir/big.bin" in listed
    back = tmp_path / "back"
    _run(["rclone", "copy", f"s3t:{name}/dir", str(back)], env)
    assert (back / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    _run(["rclone", "check", str(src), f"s3t:{name}/dir"], env)
    _run(["rclone", "purge", f"s3t:{name}"], env)
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=name)


@pytest.mark.skipif(
    not shutil.which("s3cmd") and not os.environ.get("S3TORRENT_REQUIRE_ENGINES"),
    reason="s3cmd is not installed (scripts/test.sh installs it and requires it)",
)
def test_s3cmd_default_flow_passes(server: LiveServer, tmp_path: Path) -> None:
    base = s3cmd_command(server.endpoint, tmp_path)
    name = f"s3cmd-{os.getpid()}"
    small = tmp_path / "small.txt"
    small.write_bytes(b"small file\n")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(6 * 1024 * 1024 + 5))
    _run([*base, "mb", f"s3://{name}"])
    _run([*base, "put", str(small), f"s3://{name}/small.txt"])
    _run([*base, "put", "--multipart-chunk-size-mb=5", str(big), f"s3://{name}/big.bin"])
    listed = _run([*base, "ls", f"s3://{name}"])
    assert "small.txt" in listed and "big.bin" in listed
    _run([*base, "get", f"s3://{name}/big.bin", str(tmp_path / "got.bin")])
    assert (tmp_path / "got.bin").read_bytes() == big.read_bytes()
    _run([*base, "info", f"s3://{name}/small.txt"])
    _run([*base, "cp", f"s3://{name}/small.txt", f"s3://{name}/copy.txt"])
    _run([*base, "del", f"s3://{name}/small.txt", f"s3://{name}/big.bin", f"s3://{name}/copy.txt"])
    _run([*base, "rb", f"s3://{name}"])


# Operations of S3's API (botocore's model) that select themselves by a query sub-resource
# this server does not implement, called the way boto3 calls them: each must be refused,
# and none may be taken for the plain write its method and path look like.
_UNIMPLEMENTED_CALLS: dict[str, dict[str, Any]] = {
    "rename_object": {"Key": "renamed", "RenameSource": "{bucket}/obj"},
    "update_object_encryption": {
        "Key": "obj",
        "ObjectEncryption": {"SSEKMS": {"KMSKeyArn": "arn:aws:kms:us-east-1:1:key/k"}},
    },
    "create_bucket_metadata_table_configuration": {
        "MetadataTableConfiguration": {
            "S3TablesDestination": {
                "TableBucketArn": "arn:aws:s3tables:us-east-1:1:bucket/t",
                "TableName": "t",
            }
        }
    },
    "get_bucket_metadata_table_configuration": {},
    "delete_bucket_metadata_table_configuration": {},
    "put_bucket_abac": {"AbacStatus": {"Status": "Enabled"}},
    "get_bucket_abac": {},
}


def _with_bucket(value: Any, bucket: str) -> Any:
    if isinstance(value, str):
        return value.format(bucket=bucket)
    if isinstance(value, dict):
        return {k: _with_bucket(v, bucket) for k, v in value.items()}
    return value


@pytest.mark.parametrize("operation", sorted(_UNIMPLEMENTED_CALLS))
def test_operations_not_implemented_are_refused_by_boto3_and_change_nothing(
    fx: Fixture, s3: Any, operation: str
) -> None:
    if not hasattr(s3, operation):
        pytest.skip(f"this botocore has no {operation}")
    params = {"Bucket": fx.bucket, **_with_bucket(_UNIMPLEMENTED_CALLS[operation], fx.bucket)}
    with pytest.raises(ClientError) as exc:
        getattr(s3, operation)(**params)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501
    assert exc.value.response["Error"]["Code"] == "NotImplemented"
    head = s3.head_object(Bucket=fx.bucket, Key="obj")
    assert s3.get_object(Bucket=fx.bucket, Key="obj")["Body"].read() == b"original"
    assert head.get("ServerSideEncryption") in (None, "AES256")
    with pytest.raises(ClientError):
        s3.head_object(Bucket=fx.bucket, Key="renamed")


@pytest.mark.parametrize(
    ("method", "path", "query"),
    [
        ("PUT", "obj", "someOperationS3AddsLater"),
        ("PUT", "obj", "torrent"),
        ("PUT", "obj", "uploads"),
        ("POST", "obj", "someOperationS3AddsLater"),
        ("DELETE", "obj", "someOperationS3AddsLater="),
        ("PUT", "", "someOperationS3AddsLater"),
        ("DELETE", "", "someOperationS3AddsLater"),
        ("POST", "", "someOperationS3AddsLater"),
    ],
)
def test_a_write_naming_an_unknown_operation_is_refused_not_taken_for_a_plain_write(
    fx: Fixture, s3: Any, method: str, path: str, query: str
) -> None:
    target = f"/{fx.bucket}/{path}" if path else f"/{fx.bucket}"
    resp = fx.send(Call(method, target, query, body=b"would overwrite"), {})
    assert resp.status_code == 501, resp.text
    assert _code(resp) == "NotImplemented"
    assert s3.get_object(Bucket=fx.bucket, Key="obj")["Body"].read() == b"original"
    s3.head_bucket(Bucket=fx.bucket)


def test_parameters_with_values_and_reads_with_unknown_parameters_still_work(
    fx: Fixture, s3: Any
) -> None:
    # boto3's x-id and a cache-buster on a read are not operations (S3 ignores the latter).
    put = Call("PUT", f"/{fx.bucket}/valued", "x-id=PutObject", body=b"v")
    assert fx.send(put, {}).status_code == 200
    got = fx.send(Call("GET", f"/{fx.bucket}/valued", "cachebust"), {})
    assert got.status_code == 200 and got.content == b"v"
    s3.delete_object(Bucket=fx.bucket, Key="valued")


@pytest.mark.parametrize("algorithm", ["sha512", "md5", "xxhash64", "xxhash3", "xxhash128"])
def test_checksums_of_algorithms_not_implemented_are_refused_not_skipped(
    fx: Fixture, s3: Any, algorithm: str
) -> None:
    """S3 knows more checksum algorithms than this server computes: a PUT carrying one is
    refused, right value or wrong, rather than stored with the check it asked for skipped."""
    if algorithm in ("sha512", "md5"):
        right = base64.b64encode(hashlib.new(algorithm, b"data").digest()).decode()
    else:
        right = "AAAAAAAAAAA="  # (no xxhash here to compute one; refused either way)
    for value in (right, "AAAA"):
        key = f"sum-{algorithm}-{next(_names)}"
        resp = fx.send(
            Call("PUT", f"/{fx.bucket}/{key}", body=b"data"), {f"x-amz-checksum-{algorithm}": value}
        )
        assert resp.status_code == 400, resp.text
        assert _code(resp) == "InvalidRequest"
        assert "unsupported" in resp.text
        with pytest.raises(ClientError):
            s3.head_object(Bucket=fx.bucket, Key=key)
    # Through boto3 too, where this botocore knows the parameter.
    if algorithm == "sha512":
        with pytest.raises(ClientError) as exc:
            s3.put_object(Bucket=fx.bucket, Key="sum-boto3", Body=b"data", ChecksumSHA512=right)
        assert exc.value.response["Error"]["Code"] == "InvalidRequest"


def _crc32(data: bytes) -> str:
    import zlib

    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_an_sdk_checksum_algorithm_without_its_checksum_is_refused_not_computed(
    fx: Fixture, s3: Any
) -> None:
    """x-amz-sdk-checksum-algorithm says which checksum the request carries: without one, or
    beside another algorithm's, S3 refuses the request (it used to be stored with a checksum
    computed here, which no client sent and nothing checked)."""
    sha256 = base64.b64encode(hashlib.sha256(b"data").digest()).decode()
    cases = [
        ({"x-amz-sdk-checksum-algorithm": "CRC32"}, "no corresponding x-amz-checksum-*"),
        (
            {"x-amz-sdk-checksum-algorithm": "CRC32", "x-amz-checksum-sha256": sha256},
            "Value for x-amz-sdk-checksum-algorithm header is invalid.",
        ),
    ]
    for headers, message in cases:
        key = f"sdk-{next(_names)}"
        resp = fx.send(Call("PUT", f"/{fx.bucket}/{key}", body=b"data"), headers)
        assert resp.status_code == 400, resp.text
        assert _code(resp) == "InvalidRequest" and message in resp.text, resp.text
        with pytest.raises(ClientError):
            s3.head_object(Bucket=fx.bucket, Key=key)
        part = Call("PUT", f"/{fx.bucket}/mp", f"partNumber=7&uploadId={fx.upload_id}", body=b"p")
        resp = fx.send(part, headers)
        assert resp.status_code == 400 and message in resp.text, resp.text
    parts = s3.list_parts(Bucket=fx.bucket, Key="mp", UploadId=fx.upload_id).get("Parts", [])
    assert all(p["PartNumber"] != 7 for p in parts)
    # Through boto3: a value of one algorithm under the name of another (the AWS CLI's
    # `--checksum-algorithm crc32 --checksum-sha256 ...`).
    with pytest.raises(ClientError) as exc:
        s3.put_object(
            Bucket=fx.bucket, Key="sdk-boto3", Body=b"data", ChecksumAlgorithm="CRC32",
            ChecksumSHA256=sha256,
        )  # fmt: skip
    assert exc.value.response["Error"]["Code"] == "InvalidRequest"
    # The algorithm with its own checksum is what SDKs send, and is checked.
    ok = {"x-amz-sdk-checksum-algorithm": "crc32", "x-amz-checksum-crc32": _crc32(b"data")}
    resp = fx.send(Call("PUT", f"/{fx.bucket}/sdk-ok", body=b"data"), ok)
    assert resp.status_code == 200, resp.text
    s3.put_object(Bucket=fx.bucket, Key="sdk-ok2", Body=b"data", ChecksumAlgorithm="SHA256")
    head = s3.head_object(Bucket=fx.bucket, Key="sdk-ok2", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == sha256


def test_a_storage_class_in_another_case_is_refused_as_s3_refuses_it(fx: Fixture, s3: Any) -> None:
    """S3's storage class names are upper case, and `standard` is InvalidStorageClass there;
    it was accepted here and stored as sent (HEAD and listings then said `standard`)."""
    for endpoint in (Endpoint.PutObject, Endpoint.CopyObject, Endpoint.CreateMultipartUpload):
        call = fx.call(endpoint)
        for value in ("standard", "Reduced_Redundancy"):
            resp = fx.send(call, {"x-amz-storage-class": value})
            assert resp.status_code == 400, resp.text
            assert _code(resp) == "InvalidStorageClass", resp.text
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=fx.bucket, Key="lower-class", Body=b"x", StorageClass="standard")
    assert exc.value.response["Error"]["Code"] == "InvalidStorageClass"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=fx.bucket, Key="lower-class")
    s3.put_object(Bucket=fx.bucket, Key="upper-class", Body=b"x", StorageClass="STANDARD")


def test_a_website_redirect_that_is_no_path_or_url_is_refused(fx: Fixture, s3: Any) -> None:
    """x-amz-website-redirect-location must start with /, http:// or https:// (S3's 400
    InvalidRedirectLocation); any other value was stored and returned as sent."""
    for endpoint in (Endpoint.PutObject, Endpoint.CopyObject, Endpoint.CreateMultipartUpload):
        call = fx.call(endpoint)
        resp = fx.send(call, {"x-amz-website-redirect-location": "page.html"})
        assert resp.status_code == 400, resp.text
        assert _code(resp) == "InvalidRedirectLocation", resp.text
        if endpoint is not Endpoint.CreateMultipartUpload:
            with pytest.raises(ClientError):
                s3.head_object(Bucket=fx.bucket, Key=call.path.rsplit("/", 1)[1])
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=fx.bucket, Key="redir", Body=b"x", WebsiteRedirectLocation="x.html")
    assert exc.value.response["Error"]["Code"] == "InvalidRedirectLocation"
    for ok in ("/other.html", "https://example.com/x"):
        s3.put_object(Bucket=fx.bucket, Key="redir", Body=b"x", WebsiteRedirectLocation=ok)
        assert s3.head_object(Bucket=fx.bucket, Key="redir")["WebsiteRedirectLocation"] == ok


def test_a_write_naming_a_version_is_refused_not_taken_for_a_new_version(
    fx: Fixture, s3: Any
) -> None:
    """PutObject, CopyObject and CompleteMultipartUpload make a new version and name none:
    S3 refuses ?versionId= on them; it was ignored and the write made a new version (the
    key's current one overwritten, where the client had named another)."""
    version = s3.head_object(Bucket=fx.bucket, Key="obj").get("VersionId", "null")
    for endpoint in (Endpoint.PutObject, Endpoint.CopyObject):
        call = fx.call(endpoint)
        resp = fx.send(Call(call.method, f"/{fx.bucket}/obj", headers=call.headers, body=b"x"), {},
                       f"versionId={version}")  # fmt: skip
        assert resp.status_code == 400, resp.text
        assert _code(resp) == "InvalidArgument" and "version-id" in resp.text
    assert s3.get_object(Bucket=fx.bucket, Key="obj")["Body"].read() == b"original"
