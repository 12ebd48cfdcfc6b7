"""Hostile and broken input on raw connections: the server answers 4xx (never 500) and stays up."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import socket
import time
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, sign_request
from tests.seeding import rss_kib


def send(
    server: LiveServer,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    signed: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    hdrs = dict(headers or {})
    if signed:
        hdrs = sign_request(method, server.endpoint + path, headers=hdrs, body=body)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request(method, path, body=body, headers=hdrs)
    resp = conn.getresponse()
    out = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, out


def error_fields(body: bytes) -> dict[str, str]:
    root = ET.fromstring(body)
    assert root.tag == "Error", body
    return {child.tag: child.text or "" for child in root}


def assert_alive(server: LiveServer, s3: Any) -> None:
    s3.list_buckets()
    assert server.proc is not None and server.proc.poll() is None


def raw_exchange(server: LiveServer, payload: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes, return whatever the server answers before closing (or timeout)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(payload)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return out


def _status_of(raw: bytes) -> int:
    assert raw.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), raw[:200]
    return int(raw[9:12])


# ---- errors are S3 XML with a request id ----


def test_error_body_has_code_message_resource_and_request_id(
    server: LiveServer, bucket: str
) -> None:
    status, headers, body = send(server, "GET", f"/{bucket}/missing-key")
    assert status == 404
    fields = error_fields(body)
    assert fields["Code"] == "NoSuchKey"
    assert fields["Message"]
    assert fields["Resource"] == f"/{bucket}/missing-key"
    assert fields["RequestId"] == headers["x-amz-request-id"]
    assert headers["content-type"].startswith("application/xml")


def test_every_response_carries_a_request_id(server: LiveServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    ids = set()
    for method, path, signed in [
        ("GET", "/", True),
        ("GET", f"/{bucket}?list-type=2", True),
        ("GET", f"/{bucket}/k", True),
        ("HEAD", f"/{bucket}/k", True),
        ("HEAD", f"/{bucket}/missing", True),
        ("GET", f"/{bucket}/k", False),
        ("DELETE", f"/{bucket}/nothing", True),
    ]:
        _status, headers, _ = send(server, method, path, signed=signed)
        assert headers.get("x-amz-request-id"), (method, path)
        ids.add(headers["x-amz-request-id"])
    assert len(ids) == 7


@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        ("PUT", "?analytics&id=a"),
        ("PUT", "?metrics&id=m"),
        ("PUT", "?inventory&id=i"),
        ("PUT", "?intelligent-tiering&id=t"),
        ("GET", "?session"),
        ("PUT", "?website"),
        ("PUT", "?replication"),
        ("PUT", "?accelerate"),
        ("POST", "/key?restore"),
        ("GET", "/key?select"),
        ("POST", "/key?select&select-type=2"),
    ],
)
def test_unknown_operations_are_501_not_implemented(
    server: LiveServer, bucket: str, method: str, suffix: str
) -> None:
    status, headers, body = send(server, method, f"/{bucket}{suffix}")
    assert status == 501, body
    assert error_fields(body)["Code"] == "NotImplemented"
    assert headers["x-amz-request-id"]


def test_unsupported_method_is_405_not_500(server: LiveServer, bucket: str) -> None:
    status, _, body = send(server, "PATCH", f"/{bucket}/k")
    assert status == 405
    assert error_fields(body)["Code"] == "MethodNotAllowed"


# ---- malformed XML ----


def _md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


@pytest.mark.parametrize(
    "xml_body",
    [
        b"<Delete><Object><Key>a</Key></Object>",  # unclosed
        b"not xml at all",
        b"<Delete></Delete>",  # no objects
        b"<Delete><Object></Object></Delete>",  # no key
        b"<Other><Object><Key>a</Key></Object></Other>",
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e "x">]><Delete><Object><Key>&e;</Key>'
        b"</Object></Delete>",
        b"",
    ],
)
def test_delete_objects_with_malformed_xml_is_malformed_xml(
    server: LiveServer, bucket: str, xml_body: bytes
) -> None:
    status, _, body = send(
        server, "POST", f"/{bucket}?delete", xml_body, {"Content-MD5": _md5(xml_body)}
    )
    assert status == 400, body
    assert error_fields(body)["Code"] == "MalformedXML"


def test_delete_objects_without_content_md5_is_refused(server: LiveServer, bucket: str) -> None:
    xml_body = b"<Delete><Object><Key>a</Key></Object></Delete>"
    status, _, body = send(server, "POST", f"/{bucket}?delete", xml_body)
    assert status == 400
    assert error_fields(body)["Code"] in ("InvalidRequest", "MissingContentMD5")


def test_delete_objects_with_wrong_content_md5_is_bad_digest(
    server: LiveServer, bucket: str
) -> None:
    xml_body = b"<Delete><Object><Key>a</Key></Object></Delete>"
    status, _, body = send(
        server, "POST", f"/{bucket}?delete", xml_body, {"Content-MD5": _md5(b"other")}
    )
    assert status == 400
    assert error_fields(body)["Code"] == "BadDigest"


def test_delete_objects_with_over_1000_keys_is_malformed_xml(
    server: LiveServer, bucket: str
) -> None:
    xml_body = (
        b"<Delete>"
        + b"".join(f"<Object><Key>k{i}</Key></Object>".encode() for i in range(1001))
        + b"</Delete>"
    )
    status, _, body = send(
        server, "POST", f"/{bucket}?delete", xml_body, {"Content-MD5": _md5(xml_body)}
    )
    assert status == 400
    assert error_fields(body)["Code"] == "MalformedXML"


@pytest.mark.parametrize(
    "xml_body",
    [
        b"<CreateBucketConfiguration><LocationConstraint>",
        b"<Wrong/>",
        b"\xff\xfe garbage",
        b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        b"<CreateBucketConfiguration><LocationConstraint>&b;</LocationConstraint>"
        b"</CreateBucketConfiguration>",
    ],
)
def test_create_bucket_with_malformed_xml_is_malformed_xml(
    server: LiveServer, s3: Any, xml_body: bytes
) -> None:
    name = f"malformed-{os.getpid()}-{time.monotonic_ns() % 10**8}"
    status, _, body = send(server, "PUT", f"/{name}", xml_body)
    assert status == 400, body
    assert error_fields(body)["Code"] == "MalformedXML"
    with pytest.raises(ClientError):
        s3.head_bucket(Bucket=name)


def test_oversized_xml_body_is_refused(server: LiveServer, bucket: str) -> None:
    xml_body = b"<Delete>" + b" " * (3 * 1024 * 1024) + b"</Delete>"
    status, _, body = send(
        server, "POST", f"/{bucket}?delete", xml_body, {"Content-MD5": _md5(xml_body)}
    )
    assert 400 <= status < 500
    assert error_fields(body)["Code"] in ("MaxMessageLengthExceeded", "MalformedXML")


# ---- headers ----


def test_64_kib_header_is_4xx_and_server_survives(server: LiveServer, s3: Any, bucket: str) -> None:
    raw = (f"GET /{bucket}/k HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {'a' * 65536}\r\n\r\n").encode()
    out = raw_exchange(server, raw)
    assert 400 <= _status_of(out) < 500
    many = (
        f"GET /{bucket}/k HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + "".join(f"X-H{i}: {'b' * 100}\r\n" for i in range(2000))
        + "\r\n"
    ).encode()
    out2 = raw_exchange(server, many)
    assert out2 == b"" or 400 <= _status_of(out2) < 500
    assert_alive(server, s3)


def test_oversized_user_metadata_header_is_metadata_too_large(
    server: LiveServer, bucket: str
) -> None:
    status, _, body = send(server, "PUT", f"/{bucket}/meta", b"x", {"x-amz-meta-a": "v" * 4000})
    assert status == 400
    assert error_fields(body)["Code"] == "MetadataTooLarge"


def test_unparsable_if_modified_since_is_ignored(server: LiveServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="ims", Body=b"body")
    for bad in ("yesterday", "Mon, 99 Foo 2020 99:99:99 GMT", "", "0"):
        status, _, body = send(server, "GET", f"/{bucket}/ims", headers={"If-Modified-Since": bad})
        assert status == 200, (bad, body)
        assert body == b"body"


@pytest.mark.parametrize("bad_date", ["garbage", "20240101", "99999999T999999Z", ""])
def test_bad_x_amz_date_is_refused_with_s3_error(
    server: LiveServer, bucket: str, bad_date: str
) -> None:
    path = f"/{bucket}"
    headers = sign_request("GET", server.endpoint + path)
    headers["X-Amz-Date"] = bad_date
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status in (400, 403), body
    assert error_fields(body)["Code"] in (
        "AccessDenied",
        "AuthorizationHeaderMalformed",
        "SignatureDoesNotMatch",
        "RequestTimeTooSkewed",
    )


def test_malformed_authorization_header_is_4xx(server: LiveServer, bucket: str) -> None:
    for auth in (
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=",
        "AWS4-HMAC-SHA256 Credential=a/b/c, SignedHeaders=host, Signature=zz",
        "Bearer token",
        "AWS4-HMAC-SHA256 " + "x" * 5000,
    ):
        status, _, body = send(
            server, "GET", f"/{bucket}", headers={"Authorization": auth}, signed=False
        )
        assert 400 <= status < 500, (auth, body)
        assert error_fields(body)["Code"]


@pytest.mark.parametrize("path", ["/%ZZbucket/key", "/bucket/%C3%28", "/bucket/%"])
def test_invalid_percent_encoding_is_400(server: LiveServer, path: str) -> None:
    status, _, body = send(server, "GET", path, signed=False)
    assert 400 <= status < 500, body


# ---- content length and bodies ----


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "99999999999999999999999999"])
def test_bad_content_length_is_4xx(server: LiveServer, s3: Any, bucket: str, length: str) -> None:
    raw = (
        f"PUT /{bucket}/cl HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\nxyz"
    ).encode()
    out = raw_exchange(server, raw)
    assert 400 <= _status_of(out) < 500, out[:300]
    assert_alive(server, s3)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="cl")


def test_content_length_over_5_gib_is_entity_too_large(server: LiveServer, bucket: str) -> None:
    path = f"/{bucket}/huge"
    headers = sign_request("PUT", server.endpoint + path, payload_hash="UNSIGNED-PAYLOAD")
    headers["Content-Length"] = str(6 * 1024**3)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "host")
        sock.sendall((head + "\r\n").encode())
        out = sock.recv(65536)
    assert _status_of(out) == 400, out
    assert b"EntityTooLarge" in out


def test_put_without_content_length_is_411(server: LiveServer, bucket: str) -> None:
    path = f"/{bucket}/nolen"
    headers = sign_request("PUT", server.endpoint + path, payload_hash="UNSIGNED-PAYLOAD")
    headers.pop("Content-Length", None)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "host")
        sock.sendall((head + "\r\n").encode())
        out = sock.recv(65536)
    assert _status_of(out) == 411, out
    assert b"MissingContentLength" in out


def test_truncated_body_creates_nothing_and_server_stays_healthy(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    path = f"/{bucket}/truncated"
    headers = sign_request("PUT", server.endpoint + path, payload_hash="UNSIGNED-PAYLOAD")
    headers["Content-Length"] = "1000"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "host")
        sock.sendall((head + "\r\n").encode() + b"0123456789")
    time.sleep(0.5)
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="truncated")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert_alive(server, s3)
    deadline = time.monotonic() + 5
    while any((server.data_dir / "tmp").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = list((server.data_dir / "tmp").iterdir())
    assert not leftovers, f"temporary blobs left behind: {leftovers}"


def test_body_longer_than_content_length_does_not_leak_into_object(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    path = f"/{bucket}/exact"
    headers = sign_request("PUT", server.endpoint + path, payload_hash="UNSIGNED-PAYLOAD")
    headers["Content-Length"] = "5"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "host")
        sock.sendall((head + "\r\n").encode() + b"12345GARBAGE GARBAGE\r\n\r\n")
        out = sock.recv(65536)
    # The extra bytes are a (malformed) next request: the PUT may be answered or cut off,
    # but the object never holds more than the declared five bytes.
    assert _status_of(out) in (200, 400)
    time.sleep(0.3)
    try:
        stored = s3.get_object(Bucket=bucket, Key="exact")["Body"].read()
    except ClientError as exc:
        assert exc.response["Error"]["Code"] == "NoSuchKey"
    else:
        assert stored == b"12345"
    assert_alive(server, s3)


# ---- slow and garbage clients ----


def test_stalled_clients_do_not_block_other_requests(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    stalled: list[socket.socket] = []
    try:
        for i in range(20):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            if i % 2:
                sock.sendall(f"GET /{bucket} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Part".encode())
            else:
                sock.sendall(
                    f"PUT /{bucket}/stall HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Length: 100000\r\n\r\npartial".encode()
                )
            stalled.append(sock)
        t0 = time.monotonic()
        for _ in range(5):
            s3.put_object(Bucket=bucket, Key="others", Body=b"still served")
            assert s3.get_object(Bucket=bucket, Key="others")["Body"].read() == b"still served"
        assert time.monotonic() - t0 < 10
    finally:
        for sock in stalled:
            sock.close()
    assert_alive(server, s3)


@pytest.mark.parametrize(
    "payload",
    [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"\x00\x01\x02\x03" * 100 + b"\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
        b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    ],
    ids=["garbage", "no-target", "bad-version", "binary", "long-uri", "bad-chunk", "dup-cl"],
)
def test_garbage_on_the_wire_is_refused_and_server_survives(
    server: LiveServer, s3: Any, payload: bytes
) -> None:
    out = raw_exchange(server, payload)
    if out:
        status = _status_of(out)
        assert 400 <= status < 500 or status == 505, out[:300]
    assert_alive(server, s3)


def test_random_bytes_fuzz_never_kills_server(server: LiveServer, s3: Any) -> None:
    import random

    rng = random.Random(1234)
    for _ in range(30):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000)))
        out = raw_exchange(server, b"PUT /x/y HTTP/1.1\r\n" + junk, timeout=5)
        if out:
            assert not out.startswith(b"HTTP/1.1 5"), out[:300]
    assert_alive(server, s3)


def test_announces_with_long_escaped_values_hold_no_memory(server: LiveServer) -> None:
    """The tracker's percent-decoding cache (kept for info-hashes and peer ids) took any
    value: announces each with a different 4 KB escaped parameter made it hold about 46 MB
    until the process ended."""
    assert server.proc is not None
    head = "/announce?info_hash=" + "%AA" * 20 + "&peer_id=" + "%BB" * 20 + "&port=6881&junk="
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    rss_before = rss_kib(server.proc.pid)
    for n in range(9000):
        junk = f"{n:06d}" + "%41" * 1300
        conn.request("GET", head + junk)
        conn.getresponse().read()
    conn.close()
    growth = rss_kib(server.proc.pid) - rss_before
    assert growth < 16 * 1024, f"RSS grew by {growth} KiB"
