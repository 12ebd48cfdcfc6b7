"""Authentication and payload integrity: SigV4 (headers and presigned), SigV2 presigned URLs,
clock skew, payload hashes, aws-chunked uploads, checksums and Content-MD5."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import io
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import awscrt.checksums
import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import ROOT_AK, LiveServer, make_client, shifted_clock, sign_request


def _err(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    resp = exc.value.response
    return resp["Error"]["Code"], resp["ResponseMetadata"]["HTTPStatusCode"]


def _code(body: bytes) -> str:
    start = body.find(b"<Code>")
    end = body.find(b"</Code>")
    assert start >= 0 and end > start, body
    return body[start + 6 : end].decode()


@pytest.fixture
def obj(s3: Any, bucket: str) -> tuple[str, str, bytes]:
    data = b"private bytes " * 100
    s3.put_object(Bucket=bucket, Key="secret.bin", Body=data)
    return bucket, "secret.bin", data


# ---- header auth ----


def test_sigv4_header_auth_is_accepted(s3: Any, obj: tuple[str, str, bytes]) -> None:
    bucket, key, data = obj
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_wrong_secret_is_signature_does_not_match_with_canonical_request(
    server: LiveServer, obj: tuple[str, str, bytes]
) -> None:
    bucket, key, _ = obj
    bad = make_client(server.endpoint, ROOT_AK, "not-the-secret")
    with pytest.raises(ClientError) as exc:
        bad.get_object(Bucket=bucket, Key=key)
    assert _err(exc) == ("SignatureDoesNotMatch", 403)
    path = f"/{bucket}/{key}"
    headers = sign_request("GET", server.endpoint + path, sk="not-the-secret")
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 403
    assert _code(body) == "SignatureDoesNotMatch"
    assert b"<CanonicalRequest>" in body
    assert b"<StringToSign>" in body
    assert b"<RequestId>" in body


def test_unknown_access_key_is_invalid_access_key_id(
    server: LiveServer, obj: tuple[str, str, bytes]
) -> None:
    bucket, key, _ = obj
    ghost = make_client(server.endpoint, "AKIANOSUCHKEY0000000", "whatever")
    with pytest.raises(ClientError) as exc:
        ghost.get_object(Bucket=bucket, Key=key)
    assert _err(exc) == ("InvalidAccessKeyId", 403)


@pytest.mark.parametrize("minutes", [-20, 20])
def test_clock_skew_over_15_minutes_is_request_time_too_skewed(
    s3: Any, obj: tuple[str, str, bytes], minutes: int
) -> None:
    bucket, key, _ = obj
    with shifted_clock(timedelta(minutes=minutes)), pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key=key)
    assert _err(exc) == ("RequestTimeTooSkewed", 403)


def test_clock_skew_under_15_minutes_is_accepted(s3: Any, obj: tuple[str, str, bytes]) -> None:
    bucket, key, data = obj
    with shifted_clock(timedelta(minutes=10)):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data


def test_anonymous_get_of_private_object_is_access_denied(
    server: LiveServer, obj: tuple[str, str, bytes]
) -> None:
    bucket, key, _ = obj
    r = requests.get(f"{server.endpoint}/{bucket}/{key}", timeout=10)
    assert r.status_code == 403
    assert _code(r.content) == "AccessDenied"
    assert r.headers.get("x-amz-request-id")
    listing = requests.get(f"{server.endpoint}/{bucket}", timeout=10)
    assert listing.status_code == 403
    put = requests.put(f"{server.endpoint}/{bucket}/anon", data=b"x", timeout=10)
    assert put.status_code == 403


def test_other_user_cannot_read_private_object(bob_s3: Any, obj: tuple[str, str, bytes]) -> None:
    bucket, key, _ = obj
    with pytest.raises(ClientError) as exc:
        bob_s3.get_object(Bucket=bucket, Key=key)
    assert _err(exc) == ("AccessDenied", 403)


# ---- presigned URLs ----


def test_presigned_sigv4_get_url_works_over_plain_http(
    s3v4: Any, obj: tuple[str, str, bytes]
) -> None:
    bucket, key, data = obj
    url = s3v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
    assert "X-Amz-Signature=" in url
    r = requests.get(url, timeout=10)
    assert r.status_code == 200
    assert r.content == data


def test_presigned_sigv4_put_url_stores_the_body(s3: Any, s3v4: Any, bucket: str) -> None:
    url = s3v4.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "via-url"}, ExpiresIn=300
    )
    r = requests.put(url, data=b"uploaded by url", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == f'"{hashlib.md5(b"uploaded by url").hexdigest()}"'
    assert s3.get_object(Bucket=bucket, Key="via-url")["Body"].read() == b"uploaded by url"


def test_presigned_sigv2_get_url_works(s3: Any, obj: tuple[str, str, bytes]) -> None:
    """boto3's default presigner still produces SigV2 query strings."""
    bucket, key, data = obj
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
    assert "AWSAccessKeyId=" in url and "Signature=" in url
    r = requests.get(url, timeout=10)
    assert r.status_code == 200, r.text
    assert r.content == data


def test_presigned_sigv2_put_url_works(s3: Any, bucket: str) -> None:
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "v2put"})
    r = requests.put(url, data=b"v2 body", timeout=10)
    assert r.status_code == 200, r.text
    assert s3.get_object(Bucket=bucket, Key="v2put")["Body"].read() == b"v2 body"


def test_presigned_sigv2_with_wrong_signature_is_refused(
    s3: Any, obj: tuple[str, str, bytes]
) -> None:
    bucket, key, _ = obj
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
    tampered = url.replace("Signature=", "Signature=AAAA")
    r = requests.get(tampered, timeout=10)
    assert r.status_code == 403
    assert _code(r.content) == "SignatureDoesNotMatch"


def test_presigned_url_for_other_key_is_refused(s3v4: Any, obj: tuple[str, str, bytes]) -> None:
    bucket, key, _ = obj
    url = s3v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
    r = requests.get(url.replace(key, "other-key"), timeout=10)
    assert r.status_code == 403
    assert _code(r.content) == "SignatureDoesNotMatch"


def test_presign_expiry_over_7_days_is_refused(s3v4: Any, obj: tuple[str, str, bytes]) -> None:
    bucket, key, _ = obj
    url = s3v4.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=7 * 24 * 3600 + 1
    )
    r = requests.get(url, timeout=10)
    assert r.status_code in (400, 403)
    assert _code(r.content) in ("AuthorizationQueryParametersError", "AccessDenied")
    ok = s3v4.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=7 * 24 * 3600
    )
    assert requests.get(ok, timeout=10).status_code == 200


def test_expired_presigned_url_is_access_denied(s3v4: Any, obj: tuple[str, str, bytes]) -> None:
    bucket, key, _ = obj
    with shifted_clock(timedelta(minutes=-5)):
        url = s3v4.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=60
        )
    r = requests.get(url, timeout=10)
    assert r.status_code == 403
    assert _code(r.content) == "AccessDenied"
    assert b"expired" in r.content.lower()


def test_expired_sigv2_presigned_url_is_access_denied(s3: Any, obj: tuple[str, str, bytes]) -> None:
    bucket, key, _ = obj
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=1
    )
    time.sleep(2.1)
    r = requests.get(url, timeout=10)
    assert r.status_code == 403
    assert _code(r.content) == "AccessDenied"


# ---- payload hashes ----


def _send(
    server: LiveServer, method: str, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    out = resp.read()
    conn.close()
    return resp.status, out


def test_unsigned_payload_put_is_accepted(server: LiveServer, s3: Any, bucket: str) -> None:
    path = f"/{bucket}/unsigned"
    body = b"unsigned payload body"
    headers = sign_request(
        "PUT", server.endpoint + path, body=body, payload_hash="UNSIGNED-PAYLOAD"
    )
    assert headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    status, out = _send(server, "PUT", path, body, headers)
    assert status == 200, out
    assert s3.get_object(Bucket=bucket, Key="unsigned")["Body"].read() == body


def test_wrong_content_sha256_is_mismatch_and_stores_nothing(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    path = f"/{bucket}/tampered"
    wrong = hashlib.sha256(b"something else").hexdigest()
    headers = sign_request("PUT", server.endpoint + path, body=b"real body", payload_hash=wrong)
    status, out = _send(server, "PUT", path, b"real body", headers)
    assert status == 400
    assert _code(out) == "XAmzContentSHA256Mismatch"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="tampered")


@contextlib.contextmanager
def trailers_over_http() -> Iterator[None]:
    """botocore sends checksum trailers (aws-chunked) only over https; let it do so here."""
    from urllib.parse import urlparse

    def as_https(url: str) -> Any:
        return urlparse(url)._replace(scheme="https")

    with mock.patch("botocore.httpchecksum.urlparse", as_https):
        yield


def _put_capturing_headers(s3: Any, **params: Any) -> tuple[dict[str, Any], dict[str, str]]:
    sent: dict[str, str] = {}

    def capture(request: Any, **_: Any) -> None:
        for k, v in request.headers.items():
            sent[k.lower()] = v.decode() if isinstance(v, bytes) else v

    s3.meta.events.register("before-send.s3.PutObject", capture)
    try:
        with trailers_over_http():
            return s3.put_object(**params), sent
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject", capture)


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA256"])
def test_boto3_aws_chunked_upload_with_checksum_trailer_is_decoded_and_verified(
    s3: Any, bucket: str, algorithm: str
) -> None:
    data = b"streamed through aws-chunked " * 5000
    put, sent = _put_capturing_headers(
        s3, Bucket=bucket, Key="chunked", Body=io.BytesIO(data), ChecksumAlgorithm=algorithm
    )
    assert sent["x-amz-content-sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert sent["x-amz-trailer"] == f"x-amz-checksum-{algorithm.lower()}"
    assert "aws-chunked" in sent.get("content-encoding", "")
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert put[f"Checksum{algorithm}"] == CHECKSUMS[algorithm](data)
    got = s3.get_object(Bucket=bucket, Key="chunked", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got[f"Checksum{algorithm}"] == CHECKSUMS[algorithm](data)
    assert "aws-chunked" not in got.get("ContentEncoding", "")


def test_plain_boto3_put_over_http_signs_the_payload(s3: Any, bucket: str) -> None:
    """Without TLS botocore signs the body's SHA-256 and sends the checksum as a header."""
    sent: dict[str, str] = {}

    def capture(request: Any, **_: Any) -> None:
        for k, v in request.headers.items():
            sent[k.lower()] = v.decode() if isinstance(v, bytes) else v

    s3.meta.events.register("before-send.s3.PutObject", capture)
    try:
        s3.put_object(Bucket=bucket, Key="signed", Body=b"signed body")
    finally:
        s3.meta.events.unregister("before-send.s3.PutObject", capture)
    assert sent["x-amz-content-sha256"] == hashlib.sha256(b"signed body").hexdigest()
    assert s3.get_object(Bucket=bucket, Key="signed")["Body"].read() == b"signed body"


def test_aws_chunked_trailer_with_wrong_checksum_is_bad_digest(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    body = b"trailer body"
    wrong = CHECKSUMS["CRC32"](b"something else")
    chunked = (
        f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n"
        + f"x-amz-checksum-crc32:{wrong}\r\n\r\n".encode()
    )
    path = f"/{bucket}/bad-trailer"
    headers = sign_request(
        "PUT",
        server.endpoint + path,
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(body)),
            "x-amz-trailer": "x-amz-checksum-crc32",
        },
        body=chunked,
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    )
    status, out = _send(server, "PUT", path, chunked, headers)
    assert status == 400, out
    assert _code(out) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="bad-trailer")


# ---- checksums ----


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


CHECKSUMS: dict[str, Callable[[bytes], str]] = {
    "CRC32": lambda d: _b64(zlib.crc32(d).to_bytes(4, "big")),
    "CRC32C": lambda d: _b64(awscrt.checksums.crc32c(d).to_bytes(4, "big")),
    "CRC64NVME": lambda d: _b64(awscrt.checksums.crc64nvme(d).to_bytes(8, "big")),
    "SHA1": lambda d: _b64(hashlib.sha1(d).digest()),
    "SHA256": lambda d: _b64(hashlib.sha256(d).digest()),
}


@pytest.mark.parametrize("algorithm", list(CHECKSUMS))
@pytest.mark.parametrize("body_kind", ["bytes", "stream"])
def test_checksum_is_verified_stored_and_returned(
    s3: Any, bucket: str, algorithm: str, body_kind: str
) -> None:
    data = b"checksummed " * 3000
    expected = CHECKSUMS[algorithm](data)
    body: Any = data if body_kind == "bytes" else io.BytesIO(data)
    put = s3.put_object(Bucket=bucket, Key="ck", Body=body, ChecksumAlgorithm=algorithm)
    assert put[f"Checksum{algorithm}"] == expected
    got = s3.get_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == expected
    assert got["Body"].read() == data
    head = s3.head_object(Bucket=bucket, Key="ck", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == expected
    plain = s3.head_object(Bucket=bucket, Key="ck")
    assert f"Checksum{algorithm}" not in plain


@pytest.mark.parametrize("algorithm", list(CHECKSUMS))
def test_wrong_checksum_is_bad_digest_and_stores_nothing(
    s3: Any, bucket: str, algorithm: str
) -> None:
    data = b"the real body"
    wrong = CHECKSUMS[algorithm](b"a different body")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="bad-ck", Body=data, **{f"Checksum{algorithm}": wrong})
    assert _err(exc) == ("BadDigest", 400)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="bad-ck")


def test_content_md5_is_verified(s3: Any, bucket: str) -> None:
    data = b"md5 checked"
    good = _b64(hashlib.md5(data).digest())
    s3.put_object(Bucket=bucket, Key="md5", Body=data, ContentMD5=good)
    with pytest.raises(ClientError) as exc:
        s3.put_object(
            Bucket=bucket, Key="md5-bad", Body=data, ContentMD5=_b64(hashlib.md5(b"x").digest())
        )
    assert _err(exc) == ("BadDigest", 400)
    with pytest.raises(ClientError) as exc2:
        s3.put_object(Bucket=bucket, Key="md5-bad", Body=data, ContentMD5="not base64!")
    assert _err(exc2) == ("InvalidDigest", 400)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="md5-bad")
