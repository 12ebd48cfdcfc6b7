"""Encryption at rest (SSE-S3, SSE-C, default bucket encryption) through boto3 and the AWS CLI."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from s3torrent.store.sealed_format import CHUNK, TAG
from tests.api.test_cli_tools import aws, ok
from tests.conftest import LiveServer, add_user, make_client, start_server

SSE_C_HTTP = {"S3TORRENT_ENCRYPTION__SSE_C_OVER_HTTP": "true"}


@pytest.fixture(scope="module")
def enc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("enc"), env=SSE_C_HTTP)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def es3(enc_server: LiveServer) -> Any:
    return make_client(enc_server.endpoint)


_n = [0]


@pytest.fixture
def ebucket(es3: Any) -> str:
    _n[0] += 1
    name = f"enc-{os.getpid()}-{_n[0]}"
    es3.create_bucket(Bucket=name)
    return name


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _ssec(key: bytes, prefix: str = "SSECustomer") -> dict[str, Any]:
    return {f"{prefix}Algorithm": "AES256", f"{prefix}Key": key}


def _blobs(srv: LiveServer) -> list[Path]:
    return [p for p in (srv.data_dir / "blobs").glob("*/*/*") if p.is_file()]


def _blob_holding(srv: LiveServer, size_at_rest: int, before: set[Path]) -> Path:
    new = [p for p in _blobs(srv) if p not in before and p.stat().st_size == size_at_rest]
    assert len(new) == 1, new
    return new[0]


# ---- SSE-S3 ----


def test_sse_s3_object_is_ciphertext_at_rest_and_says_so_everywhere(
    enc_server: LiveServer, es3: Any, ebucket: str
) -> None:
    data = os.urandom(3 * CHUNK + 100)
    before = set(_blobs(enc_server))
    put = es3.put_object(Bucket=ebucket, Key="k", Body=data, ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    blob = _blob_holding(enc_server, len(data) + 4 * TAG, before)
    at_rest = blob.read_bytes()
    assert data[:64] not in at_rest and data[-64:] not in at_rest
    got = es3.get_object(Bucket=ebucket, Key="k")
    assert got["ServerSideEncryption"] == "AES256"
    assert got["Body"].read() == data
    assert got["ContentLength"] == len(data)
    assert got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert es3.head_object(Bucket=ebucket, Key="k")["ServerSideEncryption"] == "AES256"
    # A plaintext object says nothing about encryption (the server default is off here).
    es3.put_object(Bucket=ebucket, Key="plain", Body=b"x" * 100_000)
    assert "ServerSideEncryption" not in es3.get_object(Bucket=ebucket, Key="plain")


def test_small_sse_s3_objects_kept_in_their_row_are_sealed_too(
    enc_server: LiveServer, es3: Any, ebucket: str
) -> None:
    data = b"secret text " * 100
    es3.put_object(Bucket=ebucket, Key="small", Body=data, ServerSideEncryption="AES256")
    db = b"".join(p.read_bytes() for p in enc_server.data_dir.glob("metadata.sqlite3*"))
    assert db  # the row is in the database file or its WAL
    assert b"secret text secret text" not in db
    assert es3.get_object(Bucket=ebucket, Key="small")["Body"].read() == data
    ranged = es3.get_object(Bucket=ebucket, Key="small", Range="bytes=12-23")["Body"].read()
    assert ranged == data[12:24]


def test_ranged_gets_at_every_chunk_boundary(es3: Any, ebucket: str) -> None:
    data = os.urandom(3 * CHUNK + 7)
    es3.put_object(Bucket=ebucket, Key="r", Body=data, ServerSideEncryption="AES256")
    edges = sorted(
        {0, 1, len(data) - 1} | {b + d for b in (CHUNK, 2 * CHUNK, 3 * CHUNK) for d in (-1, 0, 1)}
    )
    for start in edges:
        for end in (start, start + 1, start + CHUNK, len(data) - 1):
            end = min(end, len(data) - 1)
            got = es3.get_object(Bucket=ebucket, Key="r", Range=f"bytes={start}-{end}")
            assert got["Body"].read() == data[start : end + 1], (start, end)
    tail = es3.get_object(Bucket=ebucket, Key="r", Range="bytes=-10")["Body"].read()
    assert tail == data[-10:]


def test_default_bucket_encryption_encrypts_new_objects(
    enc_server: LiveServer, es3: Any, ebucket: str
) -> None:
    with pytest.raises(ClientError) as exc:
        es3.get_bucket_encryption(Bucket=ebucket)
    assert _code(exc) == ("ServerSideEncryptionConfigurationNotFoundError", 404)
    rule = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    es3.put_bucket_encryption(Bucket=ebucket, ServerSideEncryptionConfiguration=rule)
    got = es3.get_bucket_encryption(Bucket=ebucket)["ServerSideEncryptionConfiguration"]
    assert got["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    data = os.urandom(100_000)
    before = set(_blobs(enc_server))
    put = es3.put_object(Bucket=ebucket, Key="d", Body=data)
    assert put["ServerSideEncryption"] == "AES256"
    assert data[:64] not in _blob_holding(enc_server, len(data) + 2 * TAG, before).read_bytes()
    assert es3.get_object(Bucket=ebucket, Key="d")["Body"].read() == data
    kms = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]}
    with pytest.raises(ClientError) as exc:
        es3.put_bucket_encryption(Bucket=ebucket, ServerSideEncryptionConfiguration=kms)
    assert _code(exc) == ("NotImplemented", 501)
    es3.delete_bucket_encryption(Bucket=ebucket)
    assert "ServerSideEncryption" not in es3.put_object(Bucket=ebucket, Key="e", Body=b"1")


def test_server_default_encrypts_every_new_object(tmp_path: Path) -> None:
    srv = start_server(tmp_path, env={"S3TORRENT_ENCRYPTION__DEFAULT": "AES256"})
    try:
        c = make_client(srv.endpoint)
        c.create_bucket(Bucket="defaults")
        assert (
            c.put_object(Bucket="defaults", Key="k", Body=b"a" * 10)["ServerSideEncryption"]
            == "AES256"
        )
        assert c.head_object(Bucket="defaults", Key="k")["ServerSideEncryption"] == "AES256"
        rules = c.get_bucket_encryption(Bucket="defaults")["ServerSideEncryptionConfiguration"]
        assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        assert c.get_object(Bucket="defaults", Key="k")["Body"].read() == b"a" * 10
    finally:
        srv.stop()


# ---- SSE-C ----


def test_sse_c_needs_its_key_for_every_read(es3: Any, ebucket: str) -> None:
    key = os.urandom(32)
    data = os.urandom(2 * CHUNK + 3)
    put = es3.put_object(Bucket=ebucket, Key="c", Body=data, **_ssec(key))
    md5 = base64.b64encode(hashlib.md5(key).digest()).decode()
    assert put["SSECustomerAlgorithm"] == "AES256" and put["SSECustomerKeyMD5"] == md5
    assert "ServerSideEncryption" not in put
    got = es3.get_object(Bucket=ebucket, Key="c", **_ssec(key))
    assert got["Body"].read() == data and got["SSECustomerKeyMD5"] == md5
    part = es3.get_object(
        Bucket=ebucket, Key="c", Range=f"bytes={CHUNK - 2}-{CHUNK + 2}", **_ssec(key)
    )
    assert part["Body"].read() == data[CHUNK - 2 : CHUNK + 3]
    assert es3.head_object(Bucket=ebucket, Key="c", **_ssec(key))["ContentLength"] == len(data)
    with pytest.raises(ClientError) as exc:
        es3.get_object(Bucket=ebucket, Key="c")
    assert _code(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        es3.head_object(Bucket=ebucket, Key="c")
    assert _code(exc)[1] == 400
    with pytest.raises(ClientError) as exc:
        es3.get_object(Bucket=ebucket, Key="c", **_ssec(os.urandom(32)))
    assert _code(exc) == ("AccessDenied", 403)
    # A key for an object that was not stored with one.
    es3.put_object(Bucket=ebucket, Key="p", Body=b"plain")
    with pytest.raises(ClientError) as exc:
        es3.get_object(Bucket=ebucket, Key="p", **_ssec(key))
    assert _code(exc) == ("InvalidRequest", 400)


def _raw_put(srv: LiveServer, bucket: str, key: str, headers: dict[str, str]) -> tuple[int, str]:
    """A signed PUT with hand-made (possibly wrong) encryption headers."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    from tests.conftest import ROOT_AK, ROOT_SK

    url = f"{srv.endpoint}/{bucket}/{key}"
    req = botocore.awsrequest.AWSRequest("PUT", url, data=b"body", headers=headers)
    req.headers["x-amz-content-sha256"] = hashlib.sha256(b"body").hexdigest()
    creds = botocore.credentials.Credentials(ROOT_AK, ROOT_SK)
    botocore.auth.SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    prepared = req.prepare()
    r = urllib.request.Request(url, data=b"body", method="PUT", headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(r) as resp:
            return resp.status, ""
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _c_headers(key: bytes, alg: str = "AES256", md5: str | None = None) -> dict[str, str]:
    return {
        "x-amz-server-side-encryption-customer-algorithm": alg,
        "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
        "x-amz-server-side-encryption-customer-key-md5": md5
        or base64.b64encode(hashlib.md5(key).digest()).decode(),
    }


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        (_c_headers(b"k" * 32, md5=base64.b64encode(b"0" * 16).decode()), 400, "InvalidArgument"),
        (_c_headers(b"k" * 16), 400, "InvalidArgument"),
        (_c_headers(b"k" * 32, alg="AES128"), 400, "InvalidEncryptionAlgorithmError"),
        (
            {**_c_headers(b"k" * 32), "x-amz-server-side-encryption": "AES256"},
            400,
            "InvalidArgument",
        ),
        ({"x-amz-server-side-encryption": "aws:kms"}, 501, "NotImplemented"),
        ({"x-amz-server-side-encryption": "ROT13"}, 400, "InvalidArgument"),
        ({"x-amz-server-side-encryption-aws-kms-key-id": "k1"}, 501, "NotImplemented"),
    ],
    ids=["wrong-md5", "short-key", "algorithm", "mixed", "kms", "unknown", "kms-key-id"],
)
def test_bad_encryption_headers_get_s3_errors(
    enc_server: LiveServer, es3: Any, ebucket: str, headers: dict[str, str], status: int, code: str
) -> None:
    got_status, body = _raw_put(enc_server, ebucket, "bad", headers)
    assert got_status == status and f"<Code>{code}</Code>" in body, body
    with pytest.raises(ClientError):
        es3.head_object(Bucket=ebucket, Key="bad")


def test_sse_c_over_plain_http_is_refused_by_default(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="c", Body=b"x", **_ssec(os.urandom(32)))
    assert _code(exc) == ("InvalidRequest", 400)
    assert "secure connection" in exc.value.response["Error"]["Message"]


def test_sse_c_object_has_no_public_torrent(enc_server: LiveServer, es3: Any, ebucket: str) -> None:
    key = os.urandom(32)
    es3.put_object(
        Bucket=ebucket, Key="c", Body=os.urandom(50_000), ACL="public-read", **_ssec(key)
    )
    es3.put_object(
        Bucket=ebucket,
        Key="s",
        Body=os.urandom(50_000),
        ACL="public-read",
        ServerSideEncryption="AES256",
    )
    url = f"{enc_server.endpoint}/{ebucket}/c?torrent"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url)
    assert err.value.code == 403
    with pytest.raises(ClientError) as exc:
        es3.get_object_torrent(Bucket=ebucket, Key="c")
    assert _code(exc) == ("NoSuchKey", 404)
    # An SSE-S3 public object has one, as a plaintext one does.
    with urllib.request.urlopen(f"{enc_server.endpoint}/{ebucket}/s?torrent") as r:
        assert r.status == 200 and r.read().startswith(b"d")


# ---- browser form uploads (POST Object) ----


def _ssec_fields(key: bytes) -> dict[str, str]:
    return {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
        "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(
            hashlib.md5(key).digest()
        ).decode(),
    }


def _form_post(presigned: dict[str, Any], data: bytes) -> requests.Response:
    return requests.post(
        presigned["url"], data=presigned["fields"], files={"file": ("f.bin", data)}, timeout=30
    )


def test_a_form_upload_with_a_customer_key_is_sse_c(
    enc_server: LiveServer, es3: Any, ebucket: str
) -> None:
    """POST Object with the SSE-C fields (named by the form's policy, as every field must
    be) stores what PutObject with the SSE-C headers stores: the answer says so, every read
    needs the key, the bytes at rest are not the plaintext, and no torrent is offered."""
    key = os.urandom(32)
    fields = _ssec_fields(key)
    presigned = es3.generate_presigned_post(
        ebucket, "form-c", Fields=fields, Conditions=[{k: v} for k, v in fields.items()]
    )
    data = os.urandom(CHUNK + 1000)
    r = _form_post(presigned, data)
    assert r.status_code == 204, r.text
    assert r.headers["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
    md5 = fields["x-amz-server-side-encryption-customer-key-MD5"]
    assert r.headers["x-amz-server-side-encryption-customer-key-MD5"] == md5
    got = es3.get_object(Bucket=ebucket, Key="form-c", **_ssec(key))
    assert got["Body"].read() == data and got["SSECustomerKeyMD5"] == md5
    with pytest.raises(ClientError) as exc:
        es3.get_object(Bucket=ebucket, Key="form-c")
    assert _code(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        es3.get_object(Bucket=ebucket, Key="form-c", **_ssec(os.urandom(32)))
    assert _code(exc) == ("AccessDenied", 403)
    assert not any(data[:4096] in blob.read_bytes() for blob in _blobs(enc_server))
    es3.put_object_acl(Bucket=ebucket, Key="form-c", ACL="public-read")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{enc_server.endpoint}/{ebucket}/form-c?torrent")
    assert err.value.code == 403


def test_a_form_customer_key_is_checked_and_must_be_in_the_policy(es3: Any, ebucket: str) -> None:
    """A key the form's policy does not name is refused as any unnamed field is (403), a
    key whose MD5 is wrong as PutObject's is (400 InvalidArgument); neither stores
    anything."""
    key = os.urandom(32)
    fields = _ssec_fields(key)
    named = {k: v for k, v in fields.items() if not k.endswith("-key")}
    unnamed = es3.generate_presigned_post(
        ebucket, "form-unnamed", Fields=fields, Conditions=[{k: v} for k, v in named.items()]
    )
    r = _form_post(unnamed, b"data")
    assert r.status_code == 403, r.text
    bad = {
        **fields,
        "x-amz-server-side-encryption-customer-key-MD5": fields[
            "x-amz-server-side-encryption-customer-key-MD5"
        ][::-1],
    }
    wrong_md5 = es3.generate_presigned_post(
        ebucket, "form-bad-md5", Fields=bad, Conditions=[{k: v} for k, v in bad.items()]
    )
    r = _form_post(wrong_md5, b"data")
    assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text, r.text
    for name in ("form-unnamed", "form-bad-md5"):
        with pytest.raises(ClientError) as exc:
            es3.head_object(Bucket=ebucket, Key=name)
        assert _code(exc)[1] == 404


def test_a_bucket_policy_requiring_sse_c_sees_a_forms_key(enc_server: LiveServer) -> None:
    """The decision on a form upload is asked with its fields as a PutObject's headers, so
    a bucket policy that denies writes without SSE-C (`Null`
    s3:x-amz-server-side-encryption-customer-algorithm) refuses a form without a key and
    lets one with a key through."""
    user = add_user(enc_server, "formssec")
    us3 = make_client(enc_server.endpoint, user.access_key, user.secret_key)
    name = f"enc-policy-{os.getpid()}"
    us3.create_bucket(Bucket=name)
    before = _form_post(us3.generate_presigned_post(name, "before"), b"plain")
    assert before.status_code == 204, before.text  # the policy below is what refuses
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{name}/*",
                "Condition": {
                    "Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "true"}
                },
            }
        ],
    }
    us3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
    r = _form_post(us3.generate_presigned_post(name, "plain"), b"plain")
    assert r.status_code == 403 and "<Code>AccessDenied</Code>" in r.text, r.text
    key = os.urandom(32)
    fields = _ssec_fields(key)
    presigned = us3.generate_presigned_post(
        name, "sealed", Fields=fields, Conditions=[{k: v} for k, v in fields.items()]
    )
    r = _form_post(presigned, b"sealed")
    assert r.status_code == 204, r.text
    assert us3.get_object(Bucket=name, Key="sealed", **_ssec(key))["Body"].read() == b"sealed"


# ---- multipart and copy ----


def test_multipart_with_sse_c_needs_the_key_on_every_part(es3: Any, ebucket: str) -> None:
    key = os.urandom(32)
    up = es3.create_multipart_upload(Bucket=ebucket, Key="mp", **_ssec(key))
    assert up["SSECustomerAlgorithm"] == "AES256"
    uid = up["UploadId"]
    parts_data = [os.urandom(5 * 1024 * 1024 + 11), os.urandom(5 * 1024 * 1024), os.urandom(1234)]
    with pytest.raises(ClientError) as exc:
        es3.upload_part(Bucket=ebucket, Key="mp", UploadId=uid, PartNumber=1, Body=parts_data[0])
    assert _code(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        es3.upload_part(
            Bucket=ebucket, Key="mp", UploadId=uid, PartNumber=1, Body=b"x", **_ssec(os.urandom(32))
        )
    assert _code(exc)[1] == 400
    parts = []
    for n, body in enumerate(parts_data, start=1):
        r = es3.upload_part(
            Bucket=ebucket, Key="mp", UploadId=uid, PartNumber=n, Body=body, **_ssec(key)
        )
        assert r["SSECustomerAlgorithm"] == "AES256"
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    done = es3.complete_multipart_upload(
        Bucket=ebucket, Key="mp", UploadId=uid, MultipartUpload={"Parts": parts}
    )
    headers = done["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
    data = b"".join(parts_data)
    assert es3.get_object(Bucket=ebucket, Key="mp", **_ssec(key))["Body"].read() == data
    edge = len(parts_data[0])
    rng = f"bytes={edge - 5}-{edge + 5}"
    got = es3.get_object(Bucket=ebucket, Key="mp", Range=rng, **_ssec(key))["Body"].read()
    assert got == data[edge - 5 : edge + 6]
    second = es3.get_object(Bucket=ebucket, Key="mp", PartNumber=2, **_ssec(key))["Body"].read()
    assert second == parts_data[1]
    with pytest.raises(ClientError) as exc:
        es3.get_object(Bucket=ebucket, Key="mp")
    assert _code(exc) == ("InvalidRequest", 400)


def test_object_attributes_of_an_sse_c_object_need_its_key(es3: Any, ebucket: str) -> None:
    key = os.urandom(32)
    es3.put_object(Bucket=ebucket, Key="attrs", Body=b"a" * 1000, **_ssec(key))
    wanted = ["ETag", "ObjectSize"]

    def encoded(k: bytes) -> dict[str, str]:
        # botocore leaves this operation's key as given: base64 and its MD5, by hand.
        return {
            "SSECustomerAlgorithm": "AES256",
            "SSECustomerKey": base64.b64encode(k).decode(),
            "SSECustomerKeyMD5": base64.b64encode(hashlib.md5(k).digest()).decode(),
        }

    with pytest.raises(ClientError) as exc:
        es3.get_object_attributes(Bucket=ebucket, Key="attrs", ObjectAttributes=wanted)
    assert _code(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        es3.get_object_attributes(
            Bucket=ebucket, Key="attrs", ObjectAttributes=wanted, **encoded(os.urandom(32))
        )
    assert _code(exc) == ("AccessDenied", 403)
    got = es3.get_object_attributes(
        Bucket=ebucket, Key="attrs", ObjectAttributes=wanted, **encoded(key)
    )
    assert got["ObjectSize"] == 1000


def test_completion_checks_the_sse_c_key_it_is_sent(es3: Any, ebucket: str) -> None:
    """CompleteMultipartUpload: SSE-C headers are the upload's key or refused; an upload with
    a checksum algorithm needs them (S3 seals its checksums with the key)."""
    key = os.urandom(32)
    up = es3.create_multipart_upload(
        Bucket=ebucket, Key="ck", ChecksumAlgorithm="CRC32", **_ssec(key)
    )
    uid = up["UploadId"]
    r = es3.upload_part(
        Bucket=ebucket,
        Key="ck",
        UploadId=uid,
        PartNumber=1,
        Body=b"sealed part",
        ChecksumAlgorithm="CRC32",
        **_ssec(key),
    )
    parts = {"Parts": [{"PartNumber": 1, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]}]}
    for extra, code in (
        ({}, ("InvalidRequest", 400)),
        (_ssec(os.urandom(32)), ("InvalidArgument", 400)),
    ):
        with pytest.raises(ClientError) as exc:
            es3.complete_multipart_upload(
                Bucket=ebucket, Key="ck", UploadId=uid, MultipartUpload=parts, **extra
            )
        assert _code(exc) == code, extra
    done = es3.complete_multipart_upload(
        Bucket=ebucket, Key="ck", UploadId=uid, MultipartUpload=parts, **_ssec(key)
    )
    assert done["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert es3.get_object(Bucket=ebucket, Key="ck", **_ssec(key))["Body"].read() == b"sealed part"
    # SSE-C headers on the completion of an upload that is not SSE-C are refused.
    plain = es3.create_multipart_upload(Bucket=ebucket, Key="pl")["UploadId"]
    r = es3.upload_part(Bucket=ebucket, Key="pl", UploadId=plain, PartNumber=1, Body=b"p")
    with pytest.raises(ClientError) as exc:
        es3.complete_multipart_upload(
            Bucket=ebucket,
            Key="pl",
            UploadId=plain,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["ETag"]}]},
            **_ssec(key),
        )
    assert _code(exc) == ("InvalidRequest", 400)
    # boto3's managed transfer (s3transfer) sends the key with the completion.
    data = os.urandom(9 * 1024 * 1024)
    es3.upload_fileobj(
        io.BytesIO(data),
        ebucket,
        "managed",
        ExtraArgs=_ssec(key),
        Config=TransferConfig(multipart_threshold=5 * 1024 * 1024),
    )
    assert es3.get_object(Bucket=ebucket, Key="managed", **_ssec(key))["Body"].read() == data


def test_multipart_sse_s3_and_upload_part_copy_between_modes(es3: Any, ebucket: str) -> None:
    key = os.urandom(32)
    src = os.urandom(5 * 1024 * 1024 + 100)
    es3.put_object(Bucket=ebucket, Key="src", Body=src, **_ssec(key))
    up = es3.create_multipart_upload(Bucket=ebucket, Key="mps", ServerSideEncryption="AES256")
    assert up["ServerSideEncryption"] == "AES256"
    uid = up["UploadId"]
    copied = es3.upload_part_copy(
        Bucket=ebucket,
        Key="mps",
        UploadId=uid,
        PartNumber=1,
        CopySource={"Bucket": ebucket, "Key": "src"},
        **_ssec(key, "CopySourceSSECustomer"),
    )
    tail = os.urandom(999)
    r2 = es3.upload_part(Bucket=ebucket, Key="mps", UploadId=uid, PartNumber=2, Body=tail)
    parts = [
        {"PartNumber": 1, "ETag": copied["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": r2["ETag"]},
    ]
    done = es3.complete_multipart_upload(
        Bucket=ebucket, Key="mps", UploadId=uid, MultipartUpload={"Parts": parts}
    )
    assert done["ServerSideEncryption"] == "AES256"
    got = es3.get_object(Bucket=ebucket, Key="mps")
    assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == src + tail


def test_copy_changes_encryption_between_modes(es3: Any, ebucket: str) -> None:
    data = os.urandom(200_000)
    key = os.urandom(32)
    es3.put_object(Bucket=ebucket, Key="plain", Body=data)
    # plaintext -> SSE-S3
    r = es3.copy_object(
        Bucket=ebucket, Key="s3", CopySource=f"{ebucket}/plain", ServerSideEncryption="AES256"
    )
    assert r["ServerSideEncryption"] == "AES256"
    assert es3.get_object(Bucket=ebucket, Key="s3")["Body"].read() == data
    # SSE-S3 -> SSE-C
    r = es3.copy_object(Bucket=ebucket, Key="c", CopySource=f"{ebucket}/s3", **_ssec(key))
    assert r["SSECustomerAlgorithm"] == "AES256" and "ServerSideEncryption" not in r
    assert es3.get_object(Bucket=ebucket, Key="c", **_ssec(key))["Body"].read() == data
    # SSE-C without the source key: refused as a GET without it is.
    with pytest.raises(ClientError) as exc:
        es3.copy_object(Bucket=ebucket, Key="x", CopySource=f"{ebucket}/c")
    assert _code(exc) == ("InvalidRequest", 400)
    # SSE-C -> plaintext (with the source's key), and in place to SSE-S3.
    es3.copy_object(
        Bucket=ebucket, Key="back", CopySource=f"{ebucket}/c", **_ssec(key, "CopySourceSSECustomer")
    )
    back = es3.get_object(Bucket=ebucket, Key="back")
    assert back["Body"].read() == data and "ServerSideEncryption" not in back
    es3.copy_object(
        Bucket=ebucket, Key="back", CopySource=f"{ebucket}/back", ServerSideEncryption="AES256"
    )
    assert es3.head_object(Bucket=ebucket, Key="back")["ServerSideEncryption"] == "AES256"


# ---- tampering ----


def test_tampered_blob_fails_the_get_and_is_logged(
    enc_server: LiveServer, es3: Any, ebucket: str
) -> None:
    data = os.urandom(40 * CHUNK)
    before = set(_blobs(enc_server))
    es3.put_object(Bucket=ebucket, Key="t", Body=data, ServerSideEncryption="AES256")
    blob = _blob_holding(enc_server, len(data) + 40 * TAG, before)
    raw = bytearray(blob.read_bytes())
    raw[30 * (CHUNK + TAG) + 100] ^= 0x55  # inside chunk 30, past the first MiB
    blob.write_bytes(bytes(raw))
    # A range that starts in the bad chunk: refused before any byte goes out.
    with pytest.raises(ClientError) as exc:
        es3.get_object(Bucket=ebucket, Key="t", Range=f"bytes={30 * CHUNK}-{31 * CHUNK}")
    assert _code(exc) == ("InternalError", 500)
    # A range before it is still served (its chunks are intact).
    ok_part = es3.get_object(Bucket=ebucket, Key="t", Range="bytes=0-999")["Body"].read()
    assert ok_part == data[:1000]
    # The whole object: the headers went out, so the connection is cut short, never wrong bytes.
    body = b""
    with pytest.raises(Exception):  # noqa: B017 (urllib3/botocore's own error types)
        got = es3.get_object(Bucket=ebucket, Key="t")
        body = got["Body"].read()
        assert len(body) == len(data)
    assert body == b"" or data.startswith(body)
    assert enc_server.log_path is not None
    assert "fails authentication" in enc_server.log_path.read_text()


# ---- key rotation ----


def test_key_rotation_rewraps_data_keys_and_objects_stay_readable(
    enc_server: LiveServer, es3: Any, ebucket: str
) -> None:
    data = os.urandom(100_000)
    es3.put_object(Bucket=ebucket, Key="r1", Body=data, ServerSideEncryption="AES256")
    before = enc_server.cli("key", "show")
    assert before.returncode == 0, before.stderr
    old = [line.split("\t")[0] for line in before.stdout.splitlines() if "\tcurrent" in line]
    rotated = enc_server.cli("key", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert "re-wrapped" in rotated.stdout
    shown = enc_server.cli("key", "show").stdout
    assert f"{old[0]}\tretired\twraps nothing" in shown
    # The running server sees the new key: old and new objects both read back.
    assert es3.get_object(Bucket=ebucket, Key="r1")["Body"].read() == data
    es3.put_object(Bucket=ebucket, Key="r2", Body=data, ServerSideEncryption="AES256")
    assert es3.get_object(Bucket=ebucket, Key="r2")["Body"].read() == data
    # The next rotation drops the retired key that wraps nothing.
    again = enc_server.cli("key", "rotate")
    assert "1 unused retired keys removed" in again.stdout
    assert old[0] not in enc_server.cli("key", "show").stdout
    assert es3.get_object(Bucket=ebucket, Key="r1")["Body"].read() == data
    keyfile = enc_server.data_dir / "sse-master-keys.json"
    assert keyfile.stat().st_mode & 0o777 == 0o600


# ---- the AWS CLI ----


def test_aws_cli_sse_and_sse_c(
    enc_server: LiveServer, es3: Any, ebucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "f.bin"
    data = os.urandom(9 * 1024 * 1024)  # multipart at the CLI's 8 MiB threshold
    src.write_bytes(data)
    ok(aws(enc_server, tmp_path, "s3", "cp", str(src), f"s3://{ebucket}/a", "--sse", "AES256"))
    assert es3.head_object(Bucket=ebucket, Key="a")["ServerSideEncryption"] == "AES256"
    out = tmp_path / "a.out"
    ok(aws(enc_server, tmp_path, "s3", "cp", f"s3://{ebucket}/a", str(out)))
    assert out.read_bytes() == data
    key = "k" * 32
    ok(
        aws(
            enc_server,
            tmp_path,
            "s3",
            "cp",
            str(src),
            f"s3://{ebucket}/c",
            "--sse-c",
            "AES256",
            "--sse-c-key",
            key,
        )
    )
    with pytest.raises(ClientError):
        es3.head_object(Bucket=ebucket, Key="c")
    outc = tmp_path / "c.out"
    ok(
        aws(
            enc_server,
            tmp_path,
            "s3",
            "cp",
            f"s3://{ebucket}/c",
            str(outc),
            "--sse-c",
            "AES256",
            "--sse-c-key",
            key,
        )
    )
    assert outc.read_bytes() == data
    res = aws(enc_server, tmp_path, "s3", "cp", f"s3://{ebucket}/c", str(tmp_path / "no.out"))
    assert res.returncode != 0


def test_a_missing_master_key_file_stops_the_start_instead_of_making_a_new_key(
    tmp_path: Path,
) -> None:
    srv = start_server(tmp_path)
    keyfile = srv.data_dir / "sse-master-keys.json"
    try:
        c = make_client(srv.endpoint)
        c.create_bucket(Bucket="keys")
        c.put_object(Bucket="keys", Key="k", Body=b"z" * 50_000, ServerSideEncryption="AES256")
    finally:
        srv.stop()
    saved = keyfile.read_bytes()
    keyfile.unlink()
    with pytest.raises(RuntimeError) as exc:
        srv.start()
    assert "master key file" in str(exc.value) and "restore it from a backup" in str(exc.value)
    assert not keyfile.exists()
    keyfile.write_bytes(saved)
    keyfile.chmod(0o600)
    srv.start()
    try:
        got = make_client(srv.endpoint).get_object(Bucket="keys", Key="k")["Body"].read()
        assert got == b"z" * 50_000
    finally:
        srv.stop()


def test_rehash_hashes_the_plaintext_of_sse_s3_objects_and_skips_sse_c(tmp_path: Path) -> None:
    from tests.api.test_torrent_cli import check_v1, run_cli

    env = {"S3TORRENT_TORRENT__ENABLED": "false", **SSE_C_HTTP}
    srv = start_server(tmp_path, env=env)
    data = os.urandom(1_000_000)
    try:
        c = make_client(srv.endpoint)
        c.create_bucket(Bucket="rehash")
        c.put_object(
            Bucket="rehash", Key="s", Body=data, ACL="public-read", ServerSideEncryption="AES256"
        )
        c.put_object(Bucket="rehash", Key="c", Body=data, ACL="public-read", **_ssec(b"q" * 32))
        code, stdout, stderr = run_cli(srv, "torrent", "rehash")
        assert code == 0, stderr
        assert "rehashed 1 objects" in stdout
    finally:
        srv.stop()
    srv.env.pop("S3TORRENT_TORRENT__ENABLED")
    srv.start()
    try:
        with urllib.request.urlopen(f"{srv.endpoint}/rehash/s?torrent") as r:
            check_v1(r.read(), data)
    finally:
        srv.stop()


def test_a_bucket_encryption_that_blocks_sse_c_refuses_sse_c_writes(es3: Any, ebucket: str) -> None:
    """BlockedEncryptionTypes in PutBucketEncryption (S3, 2026) blocks SSE-C for new objects:
    PutObject, CopyObject, multipart uploads and forms asking for it are 403 AccessDenied,
    while existing SSE-C objects stay readable with their key. It was accepted and ignored,
    so a bucket its owner believed closed to SSE-C went on taking it."""
    key = os.urandom(32)
    es3.put_object(Bucket=ebucket, Key="before", Body=b"old", **_ssec(key))
    rule: dict[str, Any] = {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
        "BlockedEncryptionTypes": {"EncryptionType": ["SSE-C"]},
    }
    es3.put_bucket_encryption(Bucket=ebucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    got = es3.get_bucket_encryption(Bucket=ebucket)["ServerSideEncryptionConfiguration"]
    assert got["Rules"][0]["BlockedEncryptionTypes"] == {"EncryptionType": ["SSE-C"]}
    writes = [
        lambda: es3.put_object(Bucket=ebucket, Key="new", Body=b"x", **_ssec(key)),
        lambda: es3.copy_object(
            Bucket=ebucket, Key="new", CopySource={"Bucket": ebucket, "Key": "before"},
            **_ssec(key), **_ssec(key, "CopySourceSSECustomer"),
        ),
        lambda: es3.create_multipart_upload(Bucket=ebucket, Key="new", **_ssec(key)),
    ]  # fmt: skip
    for write in writes:
        with pytest.raises(ClientError) as exc:
            write()
        assert _code(exc) == ("AccessDenied", 403)
    presigned = es3.generate_presigned_post(
        ebucket,
        "new",
        Fields=_ssec_fields(key),
        Conditions=[{k: v} for k, v in _ssec_fields(key).items()],
    )
    refused = _form_post(presigned, b"x")
    assert refused.status_code == 403 and "<Code>AccessDenied</Code>" in refused.text
    with pytest.raises(ClientError):
        es3.head_object(Bucket=ebucket, Key="new")
    assert es3.get_object(Bucket=ebucket, Key="before", **_ssec(key))["Body"].read() == b"old"
    es3.put_object(Bucket=ebucket, Key="plain", Body=b"p")  # other writes go on
    # NONE unblocks it; an encryption type S3 does not know is malformed.
    rule["BlockedEncryptionTypes"] = {"EncryptionType": ["NONE"]}
    es3.put_bucket_encryption(Bucket=ebucket, ServerSideEncryptionConfiguration={"Rules": [rule]})
    es3.put_object(Bucket=ebucket, Key="new", Body=b"x", **_ssec(key))
    assert _form_post(presigned, b"x").status_code in (200, 204)
    rule["BlockedEncryptionTypes"] = {"EncryptionType": ["SSE-KMS"]}
    with pytest.raises(ClientError) as exc:
        es3.put_bucket_encryption(
            Bucket=ebucket, ServerSideEncryptionConfiguration={"Rules": [rule]}
        )
    assert _code(exc) == ("MalformedXML", 400)


def test_list_parts_checks_the_sse_c_key_it_is_sent(
    enc_server: LiveServer, es3: Any, ebucket: str
) -> None:
    """ListParts takes an upload's SSE-C key as its completion does (S3 needs it when the
    upload has a checksum algorithm): the upload's key, or refused; it was ignored, so a
    wrong key, or a key for an upload that has none, listed the parts all the same."""
    from tests.conftest import sign_request

    def list_parts(key: str, uid: str, headers: dict[str, str]) -> requests.Response:
        url = f"{enc_server.endpoint}/{ebucket}/{key}?uploadId={uid}"
        return requests.get(url, headers=sign_request("GET", url, headers), timeout=30)

    key = os.urandom(32)
    uid = es3.create_multipart_upload(
        Bucket=ebucket, Key="lp", ChecksumAlgorithm="CRC32", **_ssec(key)
    )["UploadId"]
    es3.upload_part(
        Bucket=ebucket, Key="lp", UploadId=uid, PartNumber=1, Body=b"part",
        ChecksumAlgorithm="CRC32", **_ssec(key),
    )  # fmt: skip
    for headers, code in (
        ({}, "InvalidRequest"),
        (_c_headers(os.urandom(32)), "InvalidArgument"),
    ):
        resp = list_parts("lp", uid, headers)
        assert resp.status_code == 400 and f"<Code>{code}</Code>" in resp.text, resp.text
    listed = list_parts("lp", uid, _c_headers(key))
    assert listed.status_code == 200 and "<PartNumber>1</PartNumber>" in listed.text
    plain = es3.create_multipart_upload(Bucket=ebucket, Key="lp2")["UploadId"]
    resp = list_parts("lp2", plain, _c_headers(key))
    assert resp.status_code == 400 and "<Code>InvalidRequest</Code>" in resp.text, resp.text
    assert es3.list_parts(Bucket=ebucket, Key="lp2", UploadId=plain).get("Parts", []) == []
