"""Behind a reverse proxy (TLS is a proxy's job): `trusted_proxies` names the proxies whose
X-Forwarded-For and X-Forwarded-Proto are believed (forwarding.py).

Until 2026-12-07 only the tracker believed X-Forwarded-For. Everywhere else the server saw
the proxy: aws:SecureTransport was false for every HTTPS client, so the common "deny
insecure transport" policy shut everyone out, and aws:SourceIp was the proxy's address, so
an allow-list that named it let everyone in. Here the test client on 127.0.0.1 plays the
proxy; from an address nobody trusts the same headers change nothing."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.conftest import LiveServer, make_client, sign_request, start_server

ALLOWED = "203.0.113.7"  # in the policy's network
OTHER = "198.51.100.9"
BODY = b"behind a proxy " * 1000


@pytest.fixture(scope="module", params=[1, 2], ids=["one-worker", "two-workers"])
def proxied(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("proxied")
    srv = start_server(
        tmp,
        env={
            "S3TORRENT_TRUSTED_PROXIES": '["127.0.0.1/32", "::1"]',
            "S3TORRENT_LOGGING__ACCESS_LOG_FILE": str(tmp / "access.log"),
        },
        workers=request.param,
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def direct(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("direct")
    srv = start_server(tmp, env={"S3TORRENT_LOGGING__ACCESS_LOG_FILE": str(tmp / "access.log")})
    yield srv
    srv.stop()


def _publish(srv: LiveServer, bucket: str, policy: dict[str, Any]) -> None:
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="obj", Body=BODY)
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def _anyone_from(bucket: str, network: str) -> dict[str, Any]:
    arn = f"arn:aws:s3:::{bucket}/*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": arn,
                "Condition": {"IpAddress": {"aws:SourceIp": network}},
            }
        ],
    }


def _anyone_over_tls(bucket: str) -> dict[str, Any]:
    arn = f"arn:aws:s3:::{bucket}/*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": arn},
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"arn:aws:s3:::{bucket}"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


def _get(srv: LiveServer, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _get_lines(srv: LiveServer, path: str, lines: list[tuple[str, str]]) -> tuple[int, bytes]:
    """A GET with these header lines, repeated names kept apart."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.putrequest("GET", path)
        for name, value in lines:
            conn.putheader(name, value)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _logged(srv: LiveServer, text: str, wait: float = 10.0) -> bool:
    """Whether the access log (written in batches) has a line with text, within wait s."""
    log = srv.data_dir.parent / "access.log"
    deadline = time.monotonic() + wait
    while True:
        if log.exists() and text in log.read_text():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def test_source_ip_is_the_client_a_trusted_proxy_names(proxied: LiveServer) -> None:
    bucket = f"srcip-{proxied.workers}"
    _publish(proxied, bucket, _anyone_from(bucket, "203.0.113.0/24"))
    path = f"/{bucket}/obj"
    assert _get(proxied, path, {"X-Forwarded-For": ALLOWED}) == (200, BODY)
    # The nearest hop a trusted proxy does not stand for is the client: a forged first hop
    # from the client itself changes nothing.
    assert _get(proxied, path, {"X-Forwarded-For": f"{ALLOWED}, {OTHER}"})[0] == 403
    assert _get(proxied, path, {"X-Forwarded-For": f"{OTHER}, {ALLOWED}, 127.0.0.1"})[0] == 200
    assert _get(proxied, path, {"X-Forwarded-For": OTHER})[0] == 403
    assert _get(proxied, path)[0] == 403  # the proxy itself is not in the network
    # A proxy that adds a header line of its own: the client's forged line comes first.
    assert (
        _get_lines(proxied, path, [("X-Forwarded-For", ALLOWED), ("X-Forwarded-For", OTHER)])[0]
        == 403
    )
    assert (
        _get_lines(proxied, path, [("X-Forwarded-For", OTHER), ("X-Forwarded-For", ALLOWED)])[0]
        == 200
    )
    # The torrent channel asks the same decision with the same client.
    status, torrent = _get(proxied, path + "?torrent", {"X-Forwarded-For": ALLOWED})
    assert status == 200, torrent
    assert _get(proxied, path + "?torrent", {"X-Forwarded-For": OTHER})[0] == 403
    # The access log names the client, not the proxy.
    assert _logged(proxied, f" {ALLOWED} ")


def test_the_web_seed_decides_for_the_client_a_trusted_proxy_names(proxied: LiveServer) -> None:
    """A public object whose policy denies one network: the web seed (answered by the owner
    when there are workers, the client's address forwarded to it) refuses that network's
    clients and serves the others."""
    bucket = f"webseed-{proxied.workers}"
    s3 = make_client(proxied.endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="obj", Body=BODY, ACL="public-read")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {"IpAddress": {"aws:SourceIp": "198.51.100.0/24"}},
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    status, torrent = _get(proxied, f"/{bucket}/obj?torrent", {"X-Forwarded-For": ALLOWED})
    assert status == 200, torrent
    assert _get(proxied, f"/{bucket}/obj?torrent", {"X-Forwarded-For": OTHER})[0] == 403
    webseed = urlsplit(bdecode(torrent)[b"url-list"][0].decode()).path + "obj"
    assert _get(proxied, webseed, {"X-Forwarded-For": ALLOWED}) == (200, BODY)
    assert _get(proxied, webseed, {"X-Forwarded-For": OTHER})[0] == 403


def test_secure_transport_is_what_a_trusted_proxy_says(proxied: LiveServer) -> None:
    bucket = f"tls-{proxied.workers}"
    _publish(proxied, bucket, _anyone_over_tls(bucket))
    path = f"/{bucket}/obj"
    assert _get(proxied, path, {"X-Forwarded-Proto": "https"}) == (200, BODY)
    assert _get(proxied, path, {"X-Forwarded-Proto": "http"})[0] == 403
    assert _get(proxied, path)[0] == 403
    # The nearest proxy's word counts (the last value), not what a client wrote first.
    assert _get(proxied, path, {"X-Forwarded-Proto": "https, http"})[0] == 403
    lines = [("X-Forwarded-Proto", "https"), ("X-Forwarded-Proto", "http")]
    assert _get_lines(proxied, path, lines)[0] == 403
    assert _get(proxied, path + "?torrent", {"X-Forwarded-Proto": "https"})[0] == 200


def test_sse_c_through_a_tls_proxy(proxied: LiveServer) -> None:
    """S3 takes SSE-C only over HTTPS: a trusted proxy's X-Forwarded-Proto says it was."""
    bucket = f"ssec-{proxied.workers}"
    make_client(proxied.endpoint).create_bucket(Bucket=bucket)
    key = os.urandom(32)
    sse = {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
        "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(
            hashlib.md5(key).digest()
        ).decode(),
    }
    url = f"{proxied.endpoint}/{bucket}/secret"

    def put(extra: dict[str, str]) -> tuple[int, bytes]:
        headers = sign_request("PUT", url, {**sse, **extra}, b"secret bytes")
        conn = http.client.HTTPConnection("127.0.0.1", proxied.port, timeout=10)
        try:
            conn.request("PUT", f"/{bucket}/secret", body=b"secret bytes", headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    status, body = put({})
    assert status == 400 and b"InvalidRequest" in body, body
    status, body = put({"X-Forwarded-Proto": "https"})
    assert status == 200, body


def test_an_untrusted_peer_cannot_claim_a_client_or_tls(direct: LiveServer) -> None:
    src, tls = "direct-srcip", "direct-tls"
    _publish(direct, src, _anyone_from(src, "203.0.113.0/24"))
    _publish(direct, tls, _anyone_over_tls(tls))
    assert _get(direct, f"/{src}/obj", {"X-Forwarded-For": ALLOWED})[0] == 403
    assert _get(direct, f"/{tls}/obj", {"X-Forwarded-Proto": "https"})[0] == 403
    assert _logged(direct, f"/{tls}/obj")
    assert not _logged(direct, f" {ALLOWED} ", wait=0)


def test_a_setting_that_is_not_a_network_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"not an IP address or network: 'proxy\.example'"):
        start_server(tmp_path, env={"S3TORRENT_TRUSTED_PROXIES": '["proxy.example"]'})
