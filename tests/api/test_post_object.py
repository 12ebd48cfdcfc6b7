"""POST Object (browser form uploads) with boto3's generate_presigned_post and requests."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from botocore.exceptions import ClientError
from fastbencode import bdecode

from tests.conftest import LiveServer, UserKeys, make_client, start_server

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def s3v2(server: LiveServer) -> Any:
    return make_client(server.endpoint, signature_version="s3")


def _post(
    presigned: dict[str, Any], data: bytes, filename: str = "upload.bin", **extra: str
) -> requests.Response:
    fields = {**presigned["fields"], **extra}
    return requests.post(
        presigned["url"], data=fields, files={"file": (filename, data)}, timeout=30
    )


def _error(r: requests.Response) -> tuple[str, str]:
    text = r.text
    code = text.split("<Code>")[1].split("</Code>")[0]
    message = text.split("<Message>")[1].split("</Message>")[0] if "<Message>" in text else ""
    return code, message


def _multipart(parts: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart/form-data body in exactly this order (requests puts files last)."""
    boundary = "----s3torrentformboundary"
    out = bytearray()
    for name, value, filename in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"Content-Disposition: {disposition}\r\n\r\n".encode()
        out += value + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def test_presigned_post_sigv4_uploads(s3v4: Any, s3: Any, bucket: str) -> None:
    data = b"form upload " * 5000
    presigned = s3v4.generate_presigned_post(bucket, "forms/a.bin", ExpiresIn=300)
    assert presigned["fields"]["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    r = _post(presigned, data)
    assert r.status_code == 204, r.text
    assert r.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.get_object(Bucket=bucket, Key="forms/a.bin")
    assert got["Body"].read() == data
    assert got["ContentType"] == "binary/octet-stream"


def test_presigned_post_sigv2_uploads(s3v2: Any, s3: Any, bucket: str) -> None:
    presigned = s3v2.generate_presigned_post(bucket, "v2.txt", ExpiresIn=300)
    assert "AWSAccessKeyId" in presigned["fields"]
    r = _post(presigned, b"signed the old way")
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="v2.txt")["Body"].read() == b"signed the old way"


def test_every_field_s3_knows(s3v4: Any, s3: Any, server: LiveServer, bucket: str) -> None:
    tagging = "<Tagging><TagSet><Tag><Key>team</Key><Value>web</Value></Tag></TagSet></Tagging>"
    fields = {
        "acl": "public-read",
        "Content-Type": "text/plain",
        "Cache-Control": "max-age=60",
        "x-amz-meta-colour": "blue",
        "tagging": tagging,
        "success_action_status": "201",
    }
    conditions: list[Any] = [
        {"acl": "public-read"},
        ["starts-with", "$Content-Type", "text/"],
        ["eq", "$Cache-Control", "max-age=60"],
        ["starts-with", "$x-amz-meta-colour", ""],
        {"tagging": tagging},
        {"success_action_status": "201"},
        ["starts-with", "$key", "user/"],
        ["content-length-range", 1, 1024],
    ]
    presigned = s3v4.generate_presigned_post(
        bucket, "user/${filename}", Fields=fields, Conditions=conditions, ExpiresIn=300
    )
    r = _post(presigned, b"hello", filename="notes.txt")
    assert r.status_code == 201, r.text
    assert "<Key>user/notes.txt</Key>" in r.text and f"<Bucket>{bucket}</Bucket>" in r.text
    head = s3.head_object(Bucket=bucket, Key="user/notes.txt")
    assert head["ContentType"] == "text/plain"
    assert head["CacheControl"] == "max-age=60"
    assert head["Metadata"] == {"colour": "blue"}
    tags = s3.get_object_tagging(Bucket=bucket, Key="user/notes.txt")["TagSet"]
    assert tags == [{"Key": "team", "Value": "web"}]
    anon = requests.get(f"{server.endpoint}/{bucket}/user/notes.txt", timeout=10)
    assert anon.status_code == 200 and anon.content == b"hello"  # acl=public-read


def test_success_statuses_and_redirect(s3v4: Any, bucket: str) -> None:
    for status in ("200", "204"):
        p = s3v4.generate_presigned_post(
            bucket, f"s{status}", Fields={"success_action_status": status},
            Conditions=[{"success_action_status": status}],
        )  # fmt: skip
        r = _post(p, b"x")
        assert r.status_code == int(status) and r.content == b""
    target = "https://app.example.com/done?from=form"
    p = s3v4.generate_presigned_post(
        bucket, "redirected", Fields={"success_action_redirect": target},
        Conditions=[{"success_action_redirect": target}],
    )  # fmt: skip
    fields = p["fields"]
    r = requests.post(p["url"], data=fields, files={"file": ("f", b"y")}, allow_redirects=False)
    assert r.status_code == 303, r.text
    location = urlparse(r.headers["Location"])
    assert location.netloc == "app.example.com"
    query = parse_qs(location.query)
    assert query["bucket"] == [bucket] and query["key"] == ["redirected"]
    assert query["etag"] == [f'"{hashlib.md5(b"y").hexdigest()}"']
    assert query["from"] == ["form"]


@pytest.mark.parametrize(
    ("conditions", "fields", "message"),
    [
        ([["starts-with", "$key", "other/"]], {}, 'Policy Condition failed: ["starts-with"'),
        ([["eq", "$Content-Type", "image/png"]], {"Content-Type": "text/html"}, "Condition"),
        ([["eq", "$x-amz-meta-a", "1"]], {}, 'Policy Condition failed: ["eq", "$x-amz-meta-a"'),
        ([], {"x-amz-meta-sneaky": "1"}, "Extra input fields: x-amz-meta-sneaky"),
        ([], {"acl": "public-read"}, "Extra input fields: acl"),
    ],
)
def test_condition_failures_are_access_denied(
    s3v4: Any, s3: Any, bucket: str, conditions: list[Any], fields: dict[str, str], message: str
) -> None:
    p = s3v4.generate_presigned_post(bucket, "c", Conditions=conditions)
    r = _post(p, b"data", **fields)
    assert r.status_code == 403, r.text
    code, text = _error(r)
    assert code == "AccessDenied"
    assert text.startswith("Invalid according to Policy: ")
    assert message.replace('"', "&quot;") in text or message in text
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="c")


def test_content_length_range(s3v4: Any, s3: Any, bucket: str) -> None:
    p = s3v4.generate_presigned_post(
        bucket, "sized", Conditions=[["content-length-range", 10, 100_000]]
    )
    small = _post(p, b"tiny")
    assert small.status_code == 400 and _error(small)[0] == "EntityTooSmall"
    big = _post(p, b"z" * 100_001)
    assert big.status_code == 400 and _error(big)[0] == "EntityTooLarge"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="sized")
    assert _post(p, b"z" * 100_000).status_code == 204


def test_oversize_is_refused_while_streaming(s3v4: Any, server: LiveServer, bucket: str) -> None:
    """The answer comes after the limit, long before the (claimed 1 GiB) body is sent."""
    p = s3v4.generate_presigned_post(bucket, "huge", Conditions=[["content-length-range", 0, MiB]])
    head, content_type = _multipart(
        [(k, v.encode(), None) for k, v in p["fields"].items()] + [("file", b"", "huge.bin")]
    )
    head = head[: head.rindex(b"\r\n--")]  # open file part: its bytes follow
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        request = (
            f"POST /{bucket} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(head) + 1024**3}\r\n\r\n"
        ).encode()
        sock.sendall(request + head)
        started = time.monotonic()
        answer = b""
        chunk = b"\0" * 65536
        try:
            for _ in range(64):  # at most 4 MiB
                sock.sendall(chunk)
        except OSError:
            pass
        while b"</Error>" not in answer:
            got = sock.recv(65536)
            if not got:
                break
            answer += got
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"<Code>EntityTooLarge</Code>" in answer
    assert time.monotonic() - started < 15


def test_expired_policy(s3v4: Any, bucket: str) -> None:
    p = s3v4.generate_presigned_post(bucket, "late", ExpiresIn=-5)
    r = _post(p, b"x")
    assert r.status_code == 403
    assert _error(r) == ("AccessDenied", "Invalid according to Policy: Policy expired.")


def test_tampered_signature_and_policy(s3v4: Any, s3v2: Any, bucket: str) -> None:
    p = s3v4.generate_presigned_post(bucket, "t", ExpiresIn=300)
    sig = p["fields"]["x-amz-signature"]
    forged = ("0" if sig[0] != "0" else "1") + sig[1:]
    r = _post(p, b"x", **{"x-amz-signature": forged})
    assert r.status_code == 403 and _error(r)[0] == "SignatureDoesNotMatch"
    # A policy that says something else (a longer expiry) under the old signature.
    policy = json.loads(base64.b64decode(p["fields"]["policy"]))
    policy["expiration"] = "2099-01-01T00:00:00Z"
    other = base64.b64encode(json.dumps(policy).encode()).decode()
    r = _post(p, b"x", policy=other)
    assert r.status_code == 403 and _error(r)[0] == "SignatureDoesNotMatch"
    p2 = s3v2.generate_presigned_post(bucket, "t2", ExpiresIn=300)
    r = _post(p2, b"x", signature="AAAA" + p2["fields"]["signature"][4:])
    assert r.status_code == 403 and _error(r)[0] == "SignatureDoesNotMatch"
    r = _post(p2, b"x", AWSAccessKeyId="NOSUCHKEY0000000000")
    assert r.status_code == 403 and _error(r)[0] == "InvalidAccessKeyId"


def test_bad_policy_documents(s3v2: Any, bucket: str) -> None:
    from s3torrent.s3.sigv2 import sign
    from tests.conftest import ROOT_AK, ROOT_SK

    url = s3v2.generate_presigned_post(bucket, "p")["url"]
    for document, message in (
        (b"not json", "Invalid Policy: Invalid JSON."),
        (b'{"conditions": []}', "Invalid Policy: Policy missing expiration."),
        (b'{"expiration": "2099-01-01T00:00:00Z"}', "Invalid Policy: Policy missing conditions."),
        (b'{"expiration": "soon", "conditions": []}', "Invalid 'expiration' value"),
        (b'{"expiration": "2099-01-01T00:00:00Z", "conditions": [["gt", "$key", 1]]}', "Invalid"),
    ):
        policy = base64.b64encode(document).decode()
        fields = {
            "key": "p",
            "AWSAccessKeyId": ROOT_AK,
            "policy": policy,
            "signature": sign(ROOT_SK, policy),
        }
        r = requests.post(url, data=fields, files={"file": ("f", b"x")}, timeout=10)
        assert r.status_code == 400, r.text
        code, text = _error(r)
        assert code == "InvalidPolicyDocument" and message in text


def test_policy_conditions_see_the_key_with_the_file_name_in_it(
    s3: Any, s3v2: Any, bucket: str
) -> None:
    """A form keyed ${filename} is checked as the key it becomes (what boto3's
    generate_presigned_post counts on when it turns a key ending in ${filename} into a
    starts-with condition); an expiration not in ISO 8601 UTC is refused."""
    from s3torrent.s3.sigv2 import sign
    from tests.conftest import ROOT_AK, ROOT_SK

    url = s3v2.generate_presigned_post(bucket, "p")["url"]

    def post(expiration: str, filename: str) -> requests.Response:
        document = {"expiration": expiration, "conditions": [["starts-with", "$key", "in/foo"]]}
        policy = base64.b64encode(json.dumps(document).encode()).decode()
        fields = {
            "key": "in/${filename}",
            "AWSAccessKeyId": ROOT_AK,
            "policy": policy,
            "signature": sign(ROOT_SK, policy),
        }
        return requests.post(url, data=fields, files={"file": (filename, b"bar")}, timeout=10)

    r = post("2099-01-01T00:00:00.000Z", "foo.txt")
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="in/foo.txt")["Body"].read() == b"bar"
    r = post("2099-01-01T00:00:00.000Z", "other.txt")
    assert r.status_code == 403 and _error(r)[0] == "AccessDenied", r.text
    r = post("2099-01-01 00:00:00.000+00:00", "foo2.txt")
    assert r.status_code == 400 and _error(r)[0] == "InvalidPolicyDocument", r.text
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["in/foo.txt"]


def test_missing_fields_and_wrong_enclosure(s3v4: Any, server: LiveServer, bucket: str) -> None:
    p = s3v4.generate_presigned_post(bucket, "m")
    no_key = {k: v for k, v in p["fields"].items() if k != "key"}
    r = requests.post(p["url"], data=no_key, files={"file": ("f", b"x")}, timeout=10)
    assert r.status_code == 400 and _error(r)[0] == "InvalidArgument" and "'key'" in r.text
    r = requests.post(p["url"], data={**p["fields"], "x-ignore-note": "1"}, timeout=10)
    assert r.status_code in (400, 412)  # no file: not even multipart without one
    body, ctype = _multipart([(k, v.encode(), None) for k, v in p["fields"].items()])
    r = requests.post(p["url"], data=body, headers={"Content-Type": ctype}, timeout=10)
    assert r.status_code == 400 and "exactly one file" in r.text
    no_sig = {k: v for k, v in p["fields"].items() if k != "x-amz-signature"}
    r = requests.post(p["url"], data=no_sig, files={"file": ("f", b"x")}, timeout=10)
    assert r.status_code == 400 and "x-amz-signature" in r.text
    r = requests.post(f"{server.endpoint}/{bucket}", data=b"k=v", timeout=10)
    assert r.status_code == 412 and _error(r)[0] == "PreconditionFailed"


def test_fields_after_the_file_are_ignored(s3v4: Any, s3: Any, bucket: str) -> None:
    p = s3v4.generate_presigned_post(bucket, "order")
    parts: list[tuple[str, bytes, str | None]] = [
        (k, v.encode(), None) for k, v in p["fields"].items()
    ]
    parts += [("file", b"payload", "f.txt"), ("x-amz-meta-late", b"1", None)]
    body, ctype = _multipart(parts)
    r = requests.post(p["url"], data=body, headers={"Content-Type": ctype}, timeout=10)
    assert r.status_code == 204, r.text
    assert s3.head_object(Bucket=bucket, Key="order")["Metadata"] == {}


def test_huge_fields_before_the_file(s3v4: Any, bucket: str) -> None:
    p = s3v4.generate_presigned_post(bucket, "pre")
    r = _post(p, b"x", **{"x-ignore-padding": "a" * 40_000})
    assert r.status_code == 400 and _error(r)[0] == "MaxPostPreDataLengthExceeded"


def test_checksum_field(s3v4: Any, s3: Any, bucket: str) -> None:
    data = b"checked"
    good = base64.b64encode(hashlib.sha256(data).digest()).decode()
    p = s3v4.generate_presigned_post(
        bucket, "sum", Fields={"x-amz-checksum-sha256": good},
        Conditions=[{"x-amz-checksum-sha256": good}],
    )  # fmt: skip
    assert _post(p, data).status_code == 204
    head = s3.head_object(Bucket=bucket, Key="sum", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == good
    r = _post(p, b"other bytes")
    assert r.status_code == 400 and _error(r)[0] == "BadDigest"
    # An algorithm this server does not compute is refused, never stored unchecked.
    sha512 = base64.b64encode(hashlib.sha512(data).digest()).decode()
    p = s3v4.generate_presigned_post(
        bucket, "sum512", Fields={"x-amz-checksum-sha512": sha512},
        Conditions=[{"x-amz-checksum-sha512": sha512}],
    )  # fmt: skip
    r = _post(p, data)
    assert r.status_code == 400 and _error(r)[0] == "InvalidRequest", r.text
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="sum512")


def test_other_users_credentials_are_judged_as_putobject(
    bob_s3: Any, s3: Any, bucket: str, bob: UserKeys
) -> None:
    p = bob_s3.generate_presigned_post(bucket, "bobs", ExpiresIn=300)
    r = _post(p, b"from bob")
    assert r.status_code == 403 and _error(r) == ("AccessDenied", "Access Denied")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/bob/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert _post(bob_s3.generate_presigned_post(bucket, "bob/ok"), b"1").status_code == 204
    denied = _post(bob_s3.generate_presigned_post(bucket, "elsewhere"), b"1")
    assert denied.status_code == 403


def test_anonymous_post_without_policy(s3: Any, server: LiveServer, bucket: str) -> None:
    url = f"{server.endpoint}/{bucket}"
    r = requests.post(url, data={"key": "anon"}, files={"file": ("f", b"a")}, timeout=10)
    assert r.status_code == 403 and _error(r)[0] == "AccessDenied"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/drop/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    r = requests.post(
        url, data={"key": "drop/${filename}"}, files={"file": ("a.txt", b"a")}, timeout=10
    )
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="drop/a.txt")["Body"].read() == b"a"
    r = requests.post(url, data={"key": "other"}, files={"file": ("f", b"a")}, timeout=10)
    assert r.status_code == 403


def test_large_upload_is_hashed_while_it_streams(tmp_path: Path) -> None:
    """No waiting for a hashing job (hash_wait_timeout 0): the pieces were hashed on the way."""
    srv = start_server(tmp_path, env={"S3TORRENT_TORRENT__HASH_WAIT_TIMEOUT": "0"})
    try:
        s3 = make_client(srv.endpoint, signature_version="s3v4")
        s3.create_bucket(Bucket="forms")
        data = bytes(range(256)) * (3 * MiB // 256)
        p = s3.generate_presigned_post(
            "forms", "big.bin", Fields={"acl": "public-read"}, Conditions=[{"acl": "public-read"}]
        )
        assert _post(p, data).status_code == 204
        got = requests.get(f"{srv.endpoint}/forms/big.bin?torrent", timeout=30)
        assert got.status_code == 200, got.text
        info = bdecode(got.content)[b"info"]
        pieces = info[b"pieces"]
        size = info[b"piece length"]
        assert pieces[:20] == hashlib.sha1(data[:size]).digest()
        assert s3.get_object(Bucket="forms", Key="big.bin")["Body"].read() == data
    finally:
        srv.stop()


def test_fields_that_change_semantics_are_refused_as_headers_are(s3v4: Any, bucket: str) -> None:
    for name, value, code in (
        ("x-amz-storage-class", "GLACIER", "InvalidStorageClass"),
        ("X-Amz-Server-Side-Encryption", "aws:kms", "NotImplemented"),
    ):
        p = s3v4.generate_presigned_post(
            bucket, "refused", Fields={name: value}, Conditions=[{name: value}]
        )
        r = _post(p, b"x")
        assert _error(r)[0] == code, r.text


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--x\r\n\r\n"),  # no boundary
        ("multipart/form-data; boundary=abc", b"garbage without any boundary"),
        ("multipart/form-data; boundary=abc", b"--abc\r\nContent-Disposition: form-data\r\n"),
        ("multipart/form-data; boundary=abc", b"--abc\r\n" + b"X-H: v\r\n" * 500 + b"\r\n"),
    ],
)
def test_malformed_forms_are_400_not_500(
    server: LiveServer, bucket: str, content_type: str, body: bytes
) -> None:
    r = requests.post(
        f"{server.endpoint}/{bucket}", data=body, headers={"Content-Type": content_type}, timeout=10
    )
    assert 400 <= r.status_code < 500, r.text
    assert "<Code>" in r.text


def test_an_upload_cut_short_leaves_nothing(
    s3v4: Any, s3: Any, server: LiveServer, bucket: str
) -> None:
    p = s3v4.generate_presigned_post(bucket, "cut")
    head, content_type = _multipart(
        [(k, v.encode(), None) for k, v in p["fields"].items()] + [("file", b"", "cut.bin")]
    )
    head = head[: head.rindex(b"\r\n--")]
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(
            (
                f"POST /{bucket} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(head) + 8 * MiB}\r\n\r\n"
            ).encode()
            + head
            + b"\1" * MiB
        )
        time.sleep(0.5)
    tmp = server.data_dir / "tmp"  # where blobs are written before their rename
    assert tmp.is_dir()
    deadline = time.monotonic() + 10
    while any(tmp.glob("*.part")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(tmp.glob("*.part"))
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="cut")


def _blobs(srv: LiveServer) -> set[Path]:
    return {p for p in (srv.data_dir / "blobs").glob("*/*/*") if p.is_file()}


def test_form_uploads_are_encrypted_as_asked_or_by_the_bucket_default(
    s3v4: Any, s3: Any, server: LiveServer, bucket: str
) -> None:
    data = b"secret form bytes " * 20_000
    before = _blobs(server)
    p = s3v4.generate_presigned_post(
        bucket,
        "sealed-by-field",
        Fields={"x-amz-server-side-encryption": "AES256"},
        Conditions=[{"x-amz-server-side-encryption": "AES256"}],
    )
    r = _post(p, data)
    assert r.status_code == 204, r.text
    assert r.headers["x-amz-server-side-encryption"] == "AES256"
    new = _blobs(server) - before
    assert len(new) == 1 and data[:64] not in next(iter(new)).read_bytes()
    got = s3.get_object(Bucket=bucket, Key="sealed-by-field")
    assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == data

    rule = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=rule)
    try:
        r = _post(s3v4.generate_presigned_post(bucket, "sealed-by-default"), data)
        assert r.status_code == 204 and r.headers["x-amz-server-side-encryption"] == "AES256"
        head = s3.head_object(Bucket=bucket, Key="sealed-by-default")
        assert head["ServerSideEncryption"] == "AES256"
    finally:
        s3.delete_bucket_encryption(Bucket=bucket)


def test_customer_keys_in_a_form_over_plain_http_are_refused(
    s3v4: Any, s3: Any, bucket: str
) -> None:
    """As a PutObject's SSE-C headers are: S3 takes a customer key over TLS only
    (tests/api/test_encryption.py has the form uploads that store one)."""
    key = base64.b64encode(b"k" * 32).decode()
    fields = {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": key,
        "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(
            hashlib.md5(b"k" * 32).digest()
        ).decode(),
    }
    p = s3v4.generate_presigned_post(
        bucket, "ssec-form", Fields=fields, Conditions=[{k: v} for k, v in fields.items()]
    )
    r = _post(p, b"data")
    assert r.status_code == 400 and _error(r)[0] == "InvalidRequest", r.text
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="ssec-form")


def test_form_uploads_make_versions_in_a_versioned_bucket(s3v4: Any, s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    ids = []
    for body in (b"first", b"second"):
        r = _post(s3v4.generate_presigned_post(bucket, "versioned-form"), body)
        assert r.status_code == 204, r.text
        ids.append(r.headers["x-amz-version-id"])
    assert ids[0] != ids[1] and "null" not in ids
    listed = s3.list_object_versions(Bucket=bucket, Prefix="versioned-form")["Versions"]
    assert sorted(v["VersionId"] for v in listed) == sorted(ids)
    old = s3.get_object(Bucket=bucket, Key="versioned-form", VersionId=ids[0])
    assert old["Body"].read() == b"first"
