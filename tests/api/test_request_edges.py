"""Request edges an attacker reaches first: Expect, numeric parameters, header overrides,
clients that hang up mid-response."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import pytest

from tests.conftest import LiveServer, sign_request


def raw_exchange(srv: LiveServer, head: bytes, body: bytes = b"", wait: float = 2.0) -> bytes:
    """Send a request head, read what comes back within `wait` seconds, then the body."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(head)
        s.settimeout(wait)
        try:
            first = s.recv(65536)
        except TimeoutError:
            first = b""
        if body:
            s.sendall(body)
        s.settimeout(10)
        rest = b""
        if b"100 Continue" in first or not first:
            while b"\r\n\r\n" not in rest:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
        return first + rest


def _head(method: str, url: str, headers: dict[str, str]) -> bytes:
    path = "/" + url.split("/", 3)[3]
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_expect_continue_is_answered_only_after_authorization(
    server: LiveServer, bucket: str
) -> None:
    url = f"{server.endpoint}/{bucket}/expect.bin"
    body = os.urandom(1000)
    # A forged signature: refused with 403 at once, never invited to send its body.
    headers = sign_request("PUT", url, {"Content-Length": str(len(body))}, body)
    headers["Authorization"] = headers["Authorization"][:-4] + "0000"
    headers["Expect"] = "100-continue"
    headers["Host"] = f"127.0.0.1:{server.port}"
    answer = raw_exchange(server, _head("PUT", url, headers))
    assert answer.startswith(b"HTTP/1.1 403"), answer[:80]
    assert b"100 Continue" not in answer
    # A valid one gets 100 Continue first, then its 200.
    headers = sign_request("PUT", url, {"Content-Length": str(len(body))}, body)
    headers["Expect"] = "100-continue"
    headers["Host"] = f"127.0.0.1:{server.port}"
    answer = raw_exchange(server, _head("PUT", url, headers), body)
    assert answer.startswith(b"HTTP/1.1 100 Continue"), answer[:80]
    assert b"HTTP/1.1 200" in answer


def signed_get_status(url: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers=sign_request("GET", url))
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()


@pytest.mark.parametrize("value", ["%C2%B2", "1" * 5000, "-1", "1.5", "0x10", "%201"])
def test_unicode_and_huge_numbers_are_invalid_arguments(
    server: LiveServer, s3: Any, bucket: str, value: str
) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="nums.bin")["UploadId"]
    try:
        for query in (
            f"nums.bin?uploadId={up}&part-number-marker={value}",
            f"nums.bin?uploadId={up}&max-parts={value}",
            f"?uploads&max-uploads={value}",
            f"nums.bin?uploadId={up}&partNumber={value}",
        ):
            method_url = f"{server.endpoint}/{bucket}/{query}"
            if "partNumber" in query:
                import urllib.error
                import urllib.request

                headers = sign_request("PUT", method_url, body=b"x")
                req = urllib.request.Request(method_url, data=b"x", headers=headers, method="PUT")
                try:
                    urllib.request.urlopen(req, timeout=10)
                    status, body = 200, b""
                except urllib.error.HTTPError as e:
                    status, body = int(e.code), e.read()
            else:
                status, body = signed_get_status(method_url)
            assert status == 400, (query[:80], body[:200])
            assert b"InvalidArgument" in body
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key="nums.bin", UploadId=up)


def test_hostile_part_numbers_on_get_and_in_complete(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    import urllib.error
    import urllib.request

    s3.put_object(Bucket=bucket, Key="p.bin", Body=b"abc")
    for value in ("%C2%B2", "1" * 5000):
        url = f"{server.endpoint}/{bucket}/p.bin?partNumber={value}"
        headers = sign_request("GET", url)
        req = urllib.request.Request(url, headers=headers)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        assert err.value.code == 400
        assert b"InvalidArgument" in err.value.read()
    up = s3.create_multipart_upload(Bucket=bucket, Key="c.bin")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="c.bin", UploadId=up, PartNumber=1, Body=b"x")["ETag"]
    body = (
        "<CompleteMultipartUpload><Part><PartNumber>\u00b2</PartNumber>"
        f"<ETag>{etag}</ETag></Part></CompleteMultipartUpload>"
    ).encode()
    url = f"{server.endpoint}/{bucket}/c.bin?uploadId={up}"
    headers = sign_request("POST", url, {"Content-Type": "application/xml"}, body)
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400
    assert b"MalformedXML" in err.value.read()


def test_response_override_with_a_line_break_is_refused(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="crlf.txt", Body=b"hello")
    url = s3.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": bucket,
            "Key": "crlf.txt",
            "ResponseContentType": "text/plain\r\nSet-Cookie: a=b",
        },
    )
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=10)
    assert err.value.code == 400
    assert b"InvalidArgument" in err.value.read()


def test_a_client_hanging_up_mid_get_is_not_an_internal_error(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="big.bin", Body=os.urandom(64 * 1024 * 1024))
    url = f"{server.endpoint}/{bucket}/big.bin"
    headers = sign_request("GET", url)
    headers["Host"] = f"127.0.0.1:{server.port}"
    assert server.log_path is not None
    before = server.log_path.read_bytes().count(b"internal error")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.sendall(_head("GET", url, headers))
            s.recv(4096)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    time.sleep(1.0)
    assert server.log_path.read_bytes().count(b"internal error") == before
