"""Only what was signed is obeyed: a captured boto3 request replayed with an added header.

A SigV4 signature lists the headers it covers (SignedHeaders). Anyone who sees a signed
request (a proxy log, a shared HAR file) can resend it within the 15-minute skew window; if
the server obeyed headers outside that list, the resend could make the object public, grant
the attacker full control or copy another object over it.
"""

from __future__ import annotations

import hashlib
import http.client
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, sign_request


@dataclass(frozen=True)
class CapturedRequest:
    method: str
    path: str  # path and query as sent
    headers: dict[str, str]
    body: bytes


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    position = body.tell()
    data = body.read()
    body.seek(position)
    return bytes(data)


def _capture(s3: Any, event: str, call: Any) -> CapturedRequest:
    """Run one boto3 call and keep the request exactly as botocore signed and sent it."""
    seen: list[CapturedRequest] = []

    def keep(request: Any, **_: Any) -> None:
        url = urlsplit(request.url)
        headers = {
            k: v.decode() if isinstance(v, bytes) else str(v) for k, v in request.headers.items()
        }
        path = url.path + (f"?{url.query}" if url.query else "")
        seen.append(CapturedRequest(request.method, path, headers, _body_bytes(request.body)))

    s3.meta.events.register(event, keep)
    try:
        call()
    finally:
        s3.meta.events.unregister(event, keep)
    assert len(seen) == 1
    return seen[0]


def _send(server: LiveServer, request: CapturedRequest, extra: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(request.method, request.path, request.body, {**request.headers, **extra})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _element(body: bytes, name: str) -> str:
    start = body.find(f"<{name}>".encode())
    end = body.find(f"</{name}>".encode())
    assert start >= 0 and end > start, body
    return body[start + len(name) + 2 : end].decode()


def _signed_headers(request: CapturedRequest) -> list[str]:
    authorization = request.headers["Authorization"]
    return authorization.split("SignedHeaders=")[1].split(",")[0].split(";")


def _assert_refused(status: int, body: bytes, header: str) -> None:
    assert status == 403, body
    assert _element(body, "Code") == "AccessDenied"
    assert (
        _element(body, "Message")
        == "There were headers present in the request which were not signed"
    )
    assert _element(body, "HeadersNotSigned") == header


@pytest.fixture
def captured_put(s3: Any, bucket: str) -> Iterator[tuple[str, CapturedRequest]]:
    """A private object, and the boto3 PUT that wrote it (ready to be replayed)."""
    put = _capture(
        s3,
        "before-send.s3.PutObject",
        lambda: s3.put_object(Bucket=bucket, Key="doc", Body=b"the signed body"),
    )
    assert "x-amz-acl" not in _signed_headers(put)
    yield bucket, put


def _anonymous_get(server: LiveServer, bucket: str, key: str) -> int:
    return requests.get(f"{server.endpoint}/{bucket}/{key}", timeout=10).status_code


def _grantees(s3: Any, bucket: str, key: str) -> list[tuple[str, str]]:
    grants = s3.get_object_acl(Bucket=bucket, Key=key)["Grants"]
    return sorted(
        (g["Grantee"].get("ID") or g["Grantee"].get("URI", ""), g["Permission"]) for g in grants
    )


def test_replayed_put_unchanged_is_still_accepted(
    server: LiveServer, captured_put: tuple[str, CapturedRequest]
) -> None:
    # The control for the tests below: the replay itself is valid, only the added header is not.
    _, put = captured_put
    status, body = _send(server, put, {})
    assert status == 200, body


def test_replayed_put_with_added_public_acl_is_refused_and_object_stays_private(
    server: LiveServer, s3: Any, captured_put: tuple[str, CapturedRequest]
) -> None:
    bucket, put = captured_put
    before = _grantees(s3, bucket, "doc")
    assert _anonymous_get(server, bucket, "doc") == 403

    status, body = _send(server, put, {"x-amz-acl": "public-read"})

    _assert_refused(status, body, "x-amz-acl")
    assert _grantees(s3, bucket, "doc") == before
    assert _anonymous_get(server, bucket, "doc") == 403


def test_replayed_put_with_added_full_control_grant_is_refused(
    server: LiveServer, s3: Any, bob_s3: Any, bob: Any, captured_put: tuple[str, CapturedRequest]
) -> None:
    bucket, put = captured_put
    bob_id = bob_s3.list_buckets()["Owner"]["ID"]
    before = _grantees(s3, bucket, "doc")

    status, body = _send(server, put, {"x-amz-grant-full-control": f'id="{bob_id}"'})

    _assert_refused(status, body, "x-amz-grant-full-control")
    assert _grantees(s3, bucket, "doc") == before
    assert bob_id not in {grantee for grantee, _ in before}
    with pytest.raises(ClientError) as denied:
        bob_s3.get_object(Bucket=bucket, Key="doc")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"


def test_replayed_put_with_added_copy_source_is_refused_and_nothing_is_copied(
    server: LiveServer, s3: Any, captured_put: tuple[str, CapturedRequest]
) -> None:
    bucket, put = captured_put
    s3.put_object(Bucket=bucket, Key="secret", Body=b"the secret bytes")
    etag = s3.head_object(Bucket=bucket, Key="doc")["ETag"]

    status, body = _send(server, put, {"x-amz-copy-source": f"/{bucket}/secret"})

    _assert_refused(status, body, "x-amz-copy-source")
    got = s3.get_object(Bucket=bucket, Key="doc")
    assert got["Body"].read() == b"the signed body"
    assert got["ETag"] == etag


def test_presigned_put_with_added_public_acl_is_refused(
    server: LiveServer, s3: Any, s3v4: Any, bucket: str
) -> None:
    url = s3v4.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "up"}, ExpiresIn=300
    )
    refused = requests.put(url, data=b"x", headers={"x-amz-acl": "public-read"}, timeout=10)
    _assert_refused(refused.status_code, refused.content, "x-amz-acl")
    assert requests.put(url, data=b"x", timeout=10).status_code == 200
    assert _anonymous_get(server, bucket, "up") == 403


def test_header_signed_request_with_unsigned_content_md5_is_refused(
    server: LiveServer, bucket: str
) -> None:
    path = f"/{bucket}/md5"
    headers = sign_request("PUT", server.endpoint + path, body=b"abc")
    assert "content-md5" not in headers["Authorization"].lower()
    md5 = "kAFQmDzST7DWlj99KOF/cg=="  # base64 MD5 of b"abc"
    put = CapturedRequest("PUT", path, headers, b"abc")
    status, body = _send(server, put, {"Content-MD5": md5})
    _assert_refused(status, body, "content-md5")


def test_upper_case_content_sha256_is_checked_against_the_body(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    path = f"/{bucket}/upper"
    wrong = hashlib.sha256(b"something else").hexdigest().upper()
    headers = sign_request("PUT", server.endpoint + path, body=b"real body", payload_hash=wrong)
    status, body = _send(server, CapturedRequest("PUT", path, headers, b"real body"), {})
    assert status == 400, body
    assert _element(body, "Code") == "XAmzContentSHA256Mismatch"
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="upper")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404

    right = hashlib.sha256(b"real body").hexdigest().upper()
    headers = sign_request("PUT", server.endpoint + path, body=b"real body", payload_hash=right)
    status, body = _send(server, CapturedRequest("PUT", path, headers, b"real body"), {})
    assert status == 200, body
    assert s3.get_object(Bucket=bucket, Key="upper")["Body"].read() == b"real body"


# ---- a declared trailer is part of what was signed: it must arrive ----


@pytest.mark.parametrize(
    "trailers", [b"", b"x-amz-checksum-sha256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=\r\n"]
)
def test_declared_checksum_trailer_that_never_arrives_is_refused_and_nothing_stored(
    server: LiveServer, s3: Any, bucket: str, trailers: bytes
) -> None:
    path = f"/{bucket}/trailed"
    headers = sign_request(
        "PUT",
        server.endpoint + path,
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": "3",
            "x-amz-trailer": "x-amz-checksum-crc32",
        },
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )
    body = b"3\r\nabc\r\n0\r\n" + trailers + b"\r\n"
    status, out = _send(server, CapturedRequest("PUT", path, headers, body), {})
    assert status == 400, out
    assert _element(out, "Code") == "MalformedTrailerError"
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="trailed")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_upper_case_content_sha256_of_complete_multipart_upload_is_checked(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=b"p")["ETag"]
    xml = (
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
        f"<ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    ).encode()
    path = f"/{bucket}/mp?uploadId={uid}"
    for digest, status_wanted in (
        (hashlib.sha256(b"other xml").hexdigest().upper(), 400),
        (hashlib.sha256(xml).hexdigest().upper(), 200),
    ):
        headers = sign_request("POST", server.endpoint + path, body=xml, payload_hash=digest)
        status, out = _send(server, CapturedRequest("POST", path, headers, xml), {})
        assert status == status_wanted, out
        if status == 400:
            assert _element(out, "Code") == "XAmzContentSHA256Mismatch"
            with pytest.raises(ClientError):
                s3.head_object(Bucket=bucket, Key="mp")
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"p"
