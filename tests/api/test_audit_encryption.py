"""Audit of server-side encryption as S3 users (and attackers) meet it: what a caller
without an SSE-C object's key can learn of it, and how encryption settings are checked."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from botocore.exceptions import ClientError
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.api.test_cli_tools import aws, ok
from tests.api.test_encryption import (
    SSE_C_HTTP,
    _c_headers,
    _code,
    _form_post,
    _ssec,
    _ssec_fields,
)
from tests.api.test_torrent import (
    announce,
    error_code,
    get_torrent,
    http,
    object_url,
    v1_info_hash,
)
from tests.conftest import LiveServer, add_user, make_client, sign_request, start_server
from tests.interop.test_behind_nginx import proxied  # noqa: F401 (the fixture)
from tests.seeding import RawPeer

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def enc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {**SSE_C_HTTP, "S3TORRENT_LOGGING__BUCKET_LOG_INTERVAL": "0.5"}
    srv = start_server(tmp_path_factory.mktemp("audit-enc"), env=env)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def es3(enc_server: LiveServer) -> Any:
    return make_client(enc_server.endpoint)


_n = [0]


@pytest.fixture
def ebucket(es3: Any) -> str:
    _n[0] += 1
    name = f"audit-enc-{os.getpid()}-{_n[0]}"
    es3.create_bucket(Bucket=name)
    return name


def _md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def _listed_etags(s3: Any, bucket: str) -> dict[str, str]:
    v2 = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    v1 = {o["Key"]: o["ETag"] for o in s3.list_objects(Bucket=bucket)["Contents"]}
    versions = {o["Key"]: o["ETag"] for o in s3.list_object_versions(Bucket=bucket)["Versions"]}
    assert v1 == v2 == versions
    return v2


def test_an_sse_c_etag_is_not_the_md5_of_its_plaintext(es3: Any, ebucket: str) -> None:
    """Anyone who may list a bucket reads its ETags without any key. An SSE-C object's ETag
    was the MD5 of its plaintext, so a lister could confirm a guess of its content (a
    salary file, a password) without the customer's key; S3 gives SSE-C objects ETags that
    are not an MD5 of their data. Every way of writing one (PutObject, small and large,
    CopyObject, a form, a multipart upload and its parts, UploadPartCopy) now gives such an
    ETag, the same in the write's answer, HEAD, GET and the listings, and it still works
    as an ETag (If-Match); SSE-S3 and plaintext objects keep the MD5."""
    key = os.urandom(32)
    small, large = b"salary: 100000\n", os.urandom(MiB)
    made: dict[str, tuple[bytes, str]] = {}
    for name, data in (("small", small), ("large", large)):
        put = es3.put_object(Bucket=ebucket, Key=name, Body=data, **_ssec(key))
        made[name] = (data, put["ETag"])
    copied = es3.copy_object(
        Bucket=ebucket, Key="copy", CopySource={"Bucket": ebucket, "Key": "large"},
        **_ssec(key), **_ssec(key, "CopySourceSSECustomer"),
    )  # fmt: skip
    made["copy"] = (large, copied["CopyObjectResult"]["ETag"])
    fields = _ssec_fields(key)
    presigned = es3.generate_presigned_post(
        ebucket, "form", Fields=fields, Conditions=[{k: v} for k, v in fields.items()]
    )
    posted = _form_post(presigned, small)
    assert posted.status_code == 204, posted.text
    made["form"] = (small, posted.headers["ETag"])
    # A multipart upload: one part sent, one copied from an SSE-C source.
    up = es3.create_multipart_upload(Bucket=ebucket, Key="mp", **_ssec(key))["UploadId"]
    first = os.urandom(5 * MiB)
    p1 = es3.upload_part(
        Bucket=ebucket, Key="mp", UploadId=up, PartNumber=1, Body=first, **_ssec(key)
    )["ETag"]
    p2 = es3.upload_part_copy(
        Bucket=ebucket, Key="mp", UploadId=up, PartNumber=2,
        CopySource={"Bucket": ebucket, "Key": "large"},
        **_ssec(key), **_ssec(key, "CopySourceSSECustomer"),
    )["CopyPartResult"]["ETag"]  # fmt: skip
    assert p1 != _md5_etag(first) and p2 != _md5_etag(large)
    listed_parts = es3.list_parts(Bucket=ebucket, Key="mp", UploadId=up)["Parts"]
    assert [p["ETag"] for p in listed_parts] == [p1, p2]
    done = es3.complete_multipart_upload(
        Bucket=ebucket, Key="mp", UploadId=up, **_ssec(key),
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}]},
    )  # fmt: skip
    plain_parts = hashlib.md5(hashlib.md5(first).digest() + hashlib.md5(large).digest())
    assert done["ETag"] != f'"{plain_parts.hexdigest()}-2"'
    made["mp"] = (first + large, done["ETag"])

    listed = _listed_etags(es3, ebucket)
    for name, (data, etag) in made.items():
        assert etag != _md5_etag(data), name
        assert listed[name] == etag, name
        head = es3.head_object(Bucket=ebucket, Key=name, **_ssec(key))
        assert head["ETag"] == etag, name
        got = es3.get_object(Bucket=ebucket, Key=name, IfMatch=etag, **_ssec(key))
        assert got["Body"].read() == data and got["ETag"] == etag, name
    # Two objects of the same bytes under the same key do not share an ETag either.
    assert made["small"][1] != made["form"][1]
    # SSE-S3 and plaintext objects keep S3's MD5 ETags.
    for name, extra in (("s3", {"ServerSideEncryption": "AES256"}), ("plain", {})):
        put = es3.put_object(Bucket=ebucket, Key=name, Body=small, **extra)
        assert put["ETag"] == _md5_etag(small) == _listed_etags(es3, ebucket)[name]


def _put_encryption(srv: LiveServer, bucket: str, body: bytes) -> requests.Response:
    url = f"{srv.endpoint}/{bucket}?encryption"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    headers = sign_request("PUT", url, {"Content-MD5": md5}, body)
    return requests.put(url, data=body, headers=headers, timeout=30)


_AES256 = "<SSEAlgorithm>AES256</SSEAlgorithm>"


def _configuration(rule: str, default: str = _AES256) -> bytes:
    apply = f"<ApplyServerSideEncryptionByDefault>{default}</ApplyServerSideEncryptionByDefault>"
    return (
        "<ServerSideEncryptionConfiguration><Rule>"
        f"{apply}{rule}</Rule></ServerSideEncryptionConfiguration>"
    ).encode()


@pytest.mark.parametrize(
    "body",
    [
        _configuration("", _AES256 + "<SSEAlgorithm>aws:kms</SSEAlgorithm>"),
        _configuration("", _AES256 + "<KMSKeyRotation>1</KMSKeyRotation>"),
        _configuration("<BucketKeyEnabled>yes</BucketKeyEnabled>"),
        _configuration("<BucketKeyEnabled>true</BucketKeyEnabled><BucketKeyEnabled>false</BucketKeyEnabled>"),
        _configuration(
            "<BlockedEncryptionTypes><EncryptionType>SSE-C</EncryptionType></BlockedEncryptionTypes>"
            "<BlockedEncryptionTypes><EncryptionType>NONE</EncryptionType></BlockedEncryptionTypes>"
        ),
        _configuration(
            "<BlockedEncryptionTypes><EncryptionType>SSE-C</EncryptionType><Type>NONE</Type>"
            "</BlockedEncryptionTypes>"
        ),
        _configuration("").replace(b"</Rule>", b"</Rule><Other/>"),
    ],
    ids=[
        "two-algorithms", "unknown-default-element", "bucket-key-not-boolean",
        "two-bucket-keys", "two-blocked-lists", "unknown-blocked-element", "unknown-top-element",
    ],
)  # fmt: skip
def test_an_encryption_configuration_with_parts_it_does_not_read_is_malformed(
    enc_server: LiveServer, es3: Any, ebucket: str, body: bytes
) -> None:
    """PutBucketEncryption read the first of each element it knew and skipped the rest: a
    second SSEAlgorithm (aws:kms after AES256), a second BlockedEncryptionTypes, an element
    of another schema or a BucketKeyEnabled that is not a boolean were stored as if the
    configuration said something else. S3 validates the body against its schema; so do
    we: MalformedXML, and the bucket's configuration stays what it was."""
    assert _put_encryption(enc_server, ebucket, _configuration("")).status_code == 200
    r = _put_encryption(enc_server, ebucket, body)
    assert r.status_code == 400 and "<Code>MalformedXML</Code>" in r.text, r.text
    rules = es3.get_bucket_encryption(Bucket=ebucket)["ServerSideEncryptionConfiguration"]
    assert rules["Rules"] == [
        {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
            "BucketKeyEnabled": False,
        }
    ]


def _client_error(call: Any) -> tuple[str, int]:
    with pytest.raises(ClientError) as exc:
        call()
    return _code(exc)


def test_a_customer_key_on_a_part_of_an_sse_s3_upload_is_refused(es3: Any, ebucket: str) -> None:
    """UploadPart and UploadPartCopy of an SSE-S3 upload took SSE-C headers and ignored
    them: the client was told its part was stored (answered as SSE-S3) and believed its key
    sealed it. As for a plaintext upload, its completion and a GET of an object stored
    without one, the key is not applicable: 400 InvalidRequest, and no part is stored."""
    key = os.urandom(32)
    es3.put_object(Bucket=ebucket, Key="src", Body=b"source")
    up = es3.create_multipart_upload(Bucket=ebucket, Key="m", ServerSideEncryption="AES256")
    uid = up["UploadId"]
    part = {"Bucket": ebucket, "Key": "m", "UploadId": uid, "PartNumber": 1}
    assert _client_error(lambda: es3.upload_part(**part, Body=b"part", **_ssec(key))) == (
        "InvalidRequest",
        400,
    )
    assert _client_error(
        lambda: es3.upload_part_copy(
            **part, CopySource={"Bucket": ebucket, "Key": "src"}, **_ssec(key)
        )
    ) == ("InvalidRequest", 400)
    assert es3.list_parts(Bucket=ebucket, Key="m", UploadId=uid).get("Parts", []) == []
    # Without the key the upload goes on as it was created: SSE-S3.
    etag = es3.upload_part(**part, Body=b"part")["ETag"]
    done = es3.complete_multipart_upload(
        Bucket=ebucket, Key="m", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )  # fmt: skip
    assert done["ServerSideEncryption"] == "AES256"


def test_aws_cli_copies_between_customer_keys(
    enc_server: LiveServer, es3: Any, ebucket: str, tmp_path: Path
) -> None:
    """`aws s3 cp s3://... s3://... --sse-c ... --sse-c-copy-source ...`: a small object is
    one CopyObject, one past the CLI's 8 MiB threshold a multipart copy (UploadPartCopy with
    both keys); each copy opens only with its new key, and `aws s3 cp` down gets the bytes."""
    old, new = "o" * 32, "n" * 32
    for name, size in (("small", 1000), ("large", 9 * MiB)):
        data = os.urandom(size)
        es3.put_object(Bucket=ebucket, Key=name, Body=data, **_ssec(old.encode()))
        ok(
            aws(
                enc_server, tmp_path, "s3", "cp",
                f"s3://{ebucket}/{name}", f"s3://{ebucket}/{name}-copy",
                "--sse-c", "AES256", "--sse-c-key", new,
                "--sse-c-copy-source", "AES256", "--sse-c-copy-source-key", old,
            )
        )  # fmt: skip
        with pytest.raises(ClientError) as exc:
            es3.head_object(Bucket=ebucket, Key=f"{name}-copy", **_ssec(old.encode()))
        assert _code(exc)[1] == 403
        out = tmp_path / f"{name}.out"
        ok(
            aws(
                enc_server, tmp_path, "s3", "cp", f"s3://{ebucket}/{name}-copy", str(out),
                "--sse-c", "AES256", "--sse-c-key", new,
            )
        )  # fmt: skip
        assert out.read_bytes() == data, name


def test_no_torrent_channel_gives_out_an_sse_c_version(
    enc_server: LiveServer, es3: Any, ebucket: str
) -> None:
    """A public key whose SSE-S3 version is seeded (tracker, seeder, web seed) gets a new
    SSE-C version, public-read too: no anonymous channel gives its bytes or its hashes
    (?torrent and the download page refuse it, the old swarm is gone from the tracker, the
    seeder and the web seed), and an anonymous GET is S3's 400 without a byte."""
    es3.put_bucket_versioning(Bucket=ebucket, VersioningConfiguration={"Status": "Enabled"})
    public = os.urandom(300_000)
    es3.put_object(
        Bucket=ebucket, Key="k", Body=public, ACL="public-read", ServerSideEncryption="AES256"
    )
    old = get_torrent(enc_server.endpoint, ebucket, "k")
    info_hash = v1_info_hash(old)
    web_seed = bdecode(old)[b"url-list"]
    web_seed = (web_seed[0] if isinstance(web_seed, list) else web_seed).decode()
    # While the SSE-S3 version is current every channel serves it (the checks below can fail).
    assert b"failure reason" not in announce(enc_server.endpoint, info_hash)
    status, _, body = http("GET", web_seed + "k")
    assert status in (200, 206) and public.startswith(body[:1000])
    peer = RawPeer(enc_server.peer_port)
    try:
        assert peer.handshake(info_hash)
    finally:
        peer.close()

    secret = os.urandom(300_000)
    key = os.urandom(32)
    es3.put_object(Bucket=ebucket, Key="k", Body=secret, ACL="public-read", **_ssec(key))
    url = object_url(enc_server.endpoint, ebucket, "k")
    for query in ("?torrent", "?torrent&format=html"):
        status, _, body = http("GET", url + query)
        assert status == 403 and secret[:64] not in body, (query, status)
    status, _, body = http("GET", url)
    assert status == 400 and error_code(body) == "InvalidRequest"
    assert b"failure reason" in announce(enc_server.endpoint, info_hash)
    status, _, body = http("GET", web_seed + "k")
    assert status not in (200, 206) and secret[:64] not in body
    peer = RawPeer(enc_server.peer_port)
    try:
        assert not peer.handshake(info_hash)
    finally:
        peer.close()


def _v2_presigner(srv: LiveServer) -> Any:
    """boto3 as configured by default: its presigned URLs are SigV2 (query-string auth)."""
    return make_client(srv.endpoint)


def _v4_presigned_with_query(srv: LiveServer, path: str, query: str) -> str:
    """A SigV4 presigned PUT URL whose query (signed) carries `query`, as SDKs that hoist
    x-amz-* headers into the query string make them."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    from tests.conftest import ROOT_AK, ROOT_SK

    req = botocore.awsrequest.AWSRequest("PUT", f"{srv.endpoint}{path}?{query}")
    creds = botocore.credentials.Credentials(ROOT_AK, ROOT_SK)
    botocore.auth.S3SigV4QueryAuth(creds, "s3", "us-east-1", expires=300).add_auth(req)
    return str(req.url)


def test_a_presigned_url_whose_query_carries_encryption_headers_is_obeyed(
    enc_server: LiveServer, es3: Any, ebucket: str
) -> None:
    """boto3's default presigner (SigV2) moves every x-amz-* header into the URL's query
    string, signed; SDKs hoist them into SigV4 URLs too, and S3 obeys them as headers. This
    server read headers only: a presigned PUT that asked for SSE-C (or SSE-S3, or
    public-read) stored the body in plaintext (private), answered 200, and the uploader
    believed it encrypted under its key; it was then refused (501). The signed parameters
    are now headers for the request (auth.query_headers): the uploads are sealed as asked
    (tests/api/test_audit_presigned_headers.py has the rest)."""
    key = os.urandom(32)
    presigner = _v2_presigner(enc_server)
    for name, params in (
        ("ssec", _ssec(key)),
        ("sse", {"ServerSideEncryption": "AES256"}),
    ):
        url = presigner.generate_presigned_url(
            "put_object", Params={"Bucket": ebucket, "Key": name, **params}, ExpiresIn=300
        )
        assert "AWSAccessKeyId=" in url and "x-amz-" in url
        r = requests.put(url, data=b"secret body", timeout=30)
        assert r.status_code == 200, (name, r.text)
    with pytest.raises(ClientError) as exc:
        es3.head_object(Bucket=ebucket, Key="ssec")
    assert _code(exc)[1] == 400
    assert es3.get_object(Bucket=ebucket, Key="ssec", **_ssec(key))["Body"].read() == (
        b"secret body"
    )
    assert es3.head_object(Bucket=ebucket, Key="sse")["ServerSideEncryption"] == "AES256"
    url = _v4_presigned_with_query(
        enc_server, f"/{ebucket}/v4", "x-amz-server-side-encryption=AES256"
    )
    r = requests.put(url, data=b"secret body", timeout=30)
    assert r.status_code == 200, r.text
    assert es3.head_object(Bucket=ebucket, Key="v4")["ServerSideEncryption"] == "AES256"
    # What the SigV4 presigner makes of the same parameters: signed headers, sent as such.
    v4 = make_client(enc_server.endpoint, signature_version="s3v4")
    url = v4.generate_presigned_url(
        "put_object", Params={"Bucket": ebucket, "Key": "v4c", **_ssec(key)}, ExpiresIn=300
    )
    r = requests.put(url, data=b"secret body", headers=_c_headers(key), timeout=30)
    assert r.status_code == 200, r.text
    got = es3.get_object(Bucket=ebucket, Key="v4c", **_ssec(key))
    assert got["Body"].read() == b"secret body"
    # A presigned GET without such parameters still works (SigV2 and SigV4).
    es3.put_object(Bucket=ebucket, Key="plain", Body=b"plain")
    for signer in (presigner, v4):
        url = signer.generate_presigned_url(
            "get_object", Params={"Bucket": ebucket, "Key": "plain"}
        )
        assert requests.get(url, timeout=30).content == b"plain"


def test_a_previous_version_is_restored_by_copying_it_onto_its_key(es3: Any, ebucket: str) -> None:
    """S3's documented way to restore a previous version ("Restoring previous versions"):
    copy it onto its own key, and it becomes the current version. The copy-onto-itself rule
    refused that unless the copy changed something, so an older version, an SSE-C one
    among them, could not be brought back as it was; it now applies to the current version
    only, named or not."""
    es3.put_bucket_versioning(Bucket=ebucket, VersioningConfiguration={"Status": "Enabled"})
    key = os.urandom(32)
    v1 = es3.put_object(Bucket=ebucket, Key="k", Body=b"one", Metadata={"m": "1"})["VersionId"]
    sealed = es3.put_object(Bucket=ebucket, Key="k", Body=b"two", **_ssec(key))["VersionId"]
    v3 = es3.put_object(Bucket=ebucket, Key="k", Body=b"three")["VersionId"]
    copied = es3.copy_object(
        Bucket=ebucket, Key="k", CopySource={"Bucket": ebucket, "Key": "k", "VersionId": v1}
    )
    assert copied["CopySourceVersionId"] == v1 and copied["VersionId"] not in (v1, v3)
    got = es3.get_object(Bucket=ebucket, Key="k")
    assert got["Body"].read() == b"one" and got["Metadata"] == {"m": "1"}
    # The SSE-C version, restored with its key (the copy is stored as the request asks).
    es3.copy_object(
        Bucket=ebucket, Key="k", CopySource={"Bucket": ebucket, "Key": "k", "VersionId": sealed},
        **_ssec(key, "CopySourceSSECustomer"),
    )  # fmt: skip
    assert es3.get_object(Bucket=ebucket, Key="k")["Body"].read() == b"two"
    # The current version onto itself, by name or by its version id, still changes nothing.
    current = es3.head_object(Bucket=ebucket, Key="k")["VersionId"]
    for source in ({}, {"VersionId": current}):
        with pytest.raises(ClientError) as exc:
            es3.copy_object(
                Bucket=ebucket, Key="k", CopySource={"Bucket": ebucket, "Key": "k", **source}
            )
        assert _code(exc) == ("InvalidRequest", 400), source


@pytest.mark.interop
@pytest.mark.slow
def test_rclone_round_trips_sse_c_objects_over_tls(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """rclone (which sends customer keys over HTTPS only) uploads with --s3-sse-customer-key,
    single-part and multipart, through the TLS proxy the README deploys, and downloads the
    same bytes: the ETags of SSE-C objects, no longer MD5s of their data, are what S3's
    are, and rclone takes them as such (it does not check them against its MD5)."""
    import subprocess

    from tests.conftest import ROOT_AK, ROOT_SK

    behind = request.getfixturevalue("proxied")
    es3 = make_client(behind.server.endpoint)
    es3.create_bucket(Bucket="rclone-ssec")
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    base = [
        "rclone", "--s3-provider", "Other", "--s3-endpoint", behind.url,
        "--s3-access-key-id", ROOT_AK, "--s3-secret-access-key", ROOT_SK,
        "--no-check-certificate", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M",
        "--s3-sse-customer-algorithm", "AES256", "--s3-sse-customer-key", "r" * 32,
    ]  # fmt: skip
    for name, size in (("small.bin", 100_000), ("large.bin", 12 * MiB)):
        src = tmp_path / name
        src.write_bytes(os.urandom(size))
        for args in (
            ["copyto", str(src), f":s3:rclone-ssec/{name}"],
            ["copyto", f":s3:rclone-ssec/{name}", str(tmp_path / f"{name}.out")],
        ):
            done = subprocess.run(
                [*base, *args], capture_output=True, text=True, env=env, timeout=180
            )
            assert done.returncode == 0, done.stderr[-2000:]
        assert (tmp_path / f"{name}.out").read_bytes() == src.read_bytes(), name
        listed = {
            o["Key"]: o["ETag"] for o in es3.list_objects_v2(Bucket="rclone-ssec")["Contents"]
        }
        assert listed[name] != _md5_etag(src.read_bytes())


def test_a_customer_key_in_a_url_is_never_written_to_the_access_log(
    enc_server: LiveServer, es3: Any, ebucket: str
) -> None:
    """A customer key can arrive in a URL's query (boto3's SigV2 presigner moves it there;
    any client may put it there): whatever the answer, the Request-URI went to the access
    log and to the bucket's delivered logs with the key in it, a key the server promises to
    keep nowhere and that opens the object for good. It is logged as REDACTED, as
    signatures are; the key's MD5 (no secret) stays."""
    es3.create_bucket(Bucket=f"{ebucket}-logs")
    es3.put_bucket_logging(
        Bucket=ebucket,
        BucketLoggingStatus={
            "LoggingEnabled": {"TargetBucket": f"{ebucket}-logs", "TargetPrefix": "l/"}
        },
    )
    key = os.urandom(32)
    encoded = base64.b64encode(key).decode()
    es3.put_object(Bucket=ebucket, Key="c", Body=b"sealed", **_ssec(key))
    presigned = _v2_presigner(enc_server).generate_presigned_url(
        "get_object", Params={"Bucket": ebucket, "Key": "c", **_ssec(key)}, ExpiresIn=300
    )
    assert "customer-key=" in presigned
    obeyed = requests.get(presigned, timeout=30)  # the key in its signed query: read
    assert obeyed.status_code == 200, obeyed.text
    # Signed in its header, the key in the query: the bucket's own logs have this one.
    url = f"{enc_server.endpoint}/{ebucket}/c?x-amz-server-side-encryption-customer-key=" + quote(
        encoded, safe=""
    )
    signed = requests.get(url, headers=sign_request("GET", url), timeout=30)
    assert signed.status_code == 400, signed.text
    ids = [r.headers["x-amz-request-id"] for r in (obeyed, signed)]
    assert enc_server.log_path is not None
    server_log = enc_server.log_path

    def logged() -> str:
        listed = es3.list_objects_v2(Bucket=f"{ebucket}-logs").get("Contents", [])
        delivered = "".join(
            es3.get_object(Bucket=f"{ebucket}-logs", Key=o["Key"])["Body"].read().decode()
            for o in listed
        )
        text = server_log.read_text()
        return delivered + text if ids[1] in delivered and all(i in text for i in ids) else ""

    deadline = time.monotonic() + 30
    text = logged()
    while not text and time.monotonic() < deadline:
        time.sleep(0.25)
        text = logged()
    assert text, "the requests were not logged"
    for secret in (encoded, quote(encoded, safe=""), quote(encoded, safe="/")):
        assert secret not in text
    assert text.count("server-side-encryption-customer-key=REDACTED") >= 3
    assert "server-side-encryption-customer-key-md5=" in text


def test_the_documented_policies_that_deny_unencrypted_uploads(enc_server: LiveServer) -> None:
    """AWS's two statements (StringNotEquals s3:x-amz-server-side-encryption AES256, and
    Null ... true) as a bucket policy: every way of writing a new object (PutObject,
    CopyObject, CreateMultipartUpload, a form) is refused without the header (or field) and
    taken with it; an SSE-C write, which names no x-amz-server-side-encryption, is refused
    as on S3; the bucket's own default encryption does not count (the policy tests the
    request)."""
    user = add_user(enc_server, "ssepolicy")
    us3 = make_client(enc_server.endpoint, user.access_key, user.secret_key)
    name = f"audit-enc-policy-{os.getpid()}"
    us3.create_bucket(Bucket=name)
    us3.put_object(Bucket=name, Key="src", Body=b"source")
    rule = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    us3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration=rule)
    resource = f"arn:aws:s3:::{name}/*"
    statements = [
        {"Sid": "DenyIncorrectEncryptionHeader", "Effect": "Deny", "Principal": "*",
         "Action": "s3:PutObject", "Resource": resource,
         "Condition": {"StringNotEquals": {"s3:x-amz-server-side-encryption": "AES256"}}},
        {"Sid": "DenyUnEncryptedObjectUploads", "Effect": "Deny", "Principal": "*",
         "Action": "s3:PutObject", "Resource": resource,
         "Condition": {"Null": {"s3:x-amz-server-side-encryption": "true"}}},
    ]  # fmt: skip
    policy = {"Version": "2012-10-17", "Statement": statements}
    us3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))
    sse = {"ServerSideEncryption": "AES256"}
    src = {"Bucket": name, "Key": "src"}
    writes: list[tuple[str, Any, Any]] = [
        ("put", lambda: us3.put_object(Bucket=name, Key="a", Body=b"x"),
         lambda: us3.put_object(Bucket=name, Key="a", Body=b"x", **sse)),
        ("copy", lambda: us3.copy_object(Bucket=name, Key="b", CopySource=src),
         lambda: us3.copy_object(Bucket=name, Key="b", CopySource=src, **sse)),
        ("multipart", lambda: us3.create_multipart_upload(Bucket=name, Key="m"),
         lambda: us3.create_multipart_upload(Bucket=name, Key="m", **sse)),
    ]  # fmt: skip
    for what, without, with_header in writes:
        assert _client_error(without) == ("AccessDenied", 403), what
        with_header()
    assert _client_error(
        lambda: us3.put_object(Bucket=name, Key="c", Body=b"x", **_ssec(os.urandom(32)))
    ) == ("AccessDenied", 403)
    for fields, status in (({}, 403), ({"x-amz-server-side-encryption": "AES256"}, 204)):
        presigned = us3.generate_presigned_post(
            name, "f", Fields=fields, Conditions=[{k: v} for k, v in fields.items()]
        )
        assert _form_post(presigned, b"form").status_code == status, fields
    assert us3.head_object(Bucket=name, Key="f")["ServerSideEncryption"] == "AES256"
