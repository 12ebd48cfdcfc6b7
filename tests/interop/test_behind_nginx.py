"""s3torrent behind nginx terminating TLS, as the README deploys it (`trusted_proxies`,
`public_url` the proxy's https URL): boto3 over HTTPS (SigV4 through the proxy, SSE-C,
which boto3 sends only over HTTPS), a bucket policy that denies insecure transport, and
aria2 downloading the torrent as served (tracker and web seed through the proxy, the origin
seeder direct), byte for byte."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, start_server
from tests.interop.clients import DRIVERS, Job
from tests.ports import free_port

pytestmark = [pytest.mark.interop, pytest.mark.slow]

NGINX_CONF = """\
{user}worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/client_body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {dir}/cert.pem;
    ssl_certificate_key {dir}/key.pem;
    client_max_body_size 0;
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_request_buffering off;
      proxy_buffering off;
    }}
  }}
}}
"""


@dataclass
class Proxied:
    server: LiveServer
    url: str  # the proxy's https URL, the server's public URL


def _nginx() -> str:
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.path.exists(found), "nginx not installed (apt-get install nginx-light)"
    return found


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    work = tmp_path_factory.mktemp("nginx")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(work / "key.pem"), "-out", str(work / "cert.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    url = f"https://localhost:{port}"
    srv = start_server(
        tmp_path_factory.mktemp("behind"),
        env={"S3TORRENT_TRUSTED_PROXIES": '["127.0.0.1"]', "S3TORRENT_PUBLIC_URL": url},
        workers=2,
    )
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(user=user, dir=work, port=port, upstream=srv.port))
    proc = subprocess.Popen(
        [_nginx(), "-c", str(conf), "-p", str(work), "-e", str(work / "error.log"),
         "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if _status(f"{url}/_health") == 200:
                break
            assert proc.poll() is None, (work / "error.log").read_text()
            time.sleep(0.1)
        else:
            raise AssertionError("nginx did not come up")
        yield Proxied(srv, url)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        srv.stop()


def _https_client(url: str) -> Any:
    """boto3 on the proxy's self-signed certificate (what the server sees is the point)."""
    import boto3
    import urllib3
    from botocore.config import Config

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=ROOT_AK,
        aws_secret_access_key=ROOT_SK,
        region_name="us-east-1",
        verify=False,
        config=Config(retries={"max_attempts": 1}),
    )


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10, context=_insecure()) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except OSError:
        return 0


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10, context=_insecure()) as r:
        body: bytes = r.read()
    return body


def test_https_clients_meet_a_deny_insecure_transport_policy(proxied: Proxied) -> None:
    s3 = _https_client(proxied.url)
    s3.create_bucket(Bucket="tls-only")
    data = os.urandom(3_000_000)
    s3.put_object(Bucket="tls-only", Key="data.bin", Body=data)
    arn = "arn:aws:s3:::tls-only"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"{arn}/*"},
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }
    s3.put_bucket_policy(Bucket="tls-only", Policy=json.dumps(policy))
    # Signed and anonymous, through the proxy (HTTPS): allowed.
    assert s3.get_object(Bucket="tls-only", Key="data.bin")["Body"].read() == data
    assert _fetch(f"{proxied.url}/tls-only/data.bin") == data
    # Straight to the server, plain HTTP: refused.
    assert _status(f"{proxied.server.endpoint}/tls-only/data.bin") == 403
    # The torrent as served: https tracker and web seed (the proxy), the seeder direct.
    torrent = _fetch(f"{proxied.url}/tls-only/data.bin?torrent")
    meta = bdecode(torrent)
    assert meta[b"announce"] == f"{proxied.url}/announce".encode()
    assert meta[b"url-list"][0].startswith(f"{proxied.url}/_webseed/".encode())


def test_sse_c_over_https_through_the_proxy(proxied: Proxied) -> None:
    s3 = _https_client(proxied.url)
    s3.create_bucket(Bucket="ssec")
    key = os.urandom(32)
    s3.put_object(
        Bucket="ssec", Key="secret", Body=b"for my eyes", SSECustomerAlgorithm="AES256",
        SSECustomerKey=key,
    )  # fmt: skip
    got = s3.get_object(Bucket="ssec", Key="secret", SSECustomerAlgorithm="AES256",
                        SSECustomerKey=key)  # fmt: skip
    assert got["Body"].read() == b"for my eyes"


def test_aria2_downloads_the_torrent_as_served_through_the_proxy(
    proxied: Proxied, tmp_path: Path
) -> None:
    s3 = _https_client(proxied.url)
    s3.create_bucket(Bucket="published")
    data = os.urandom(4_000_000)
    s3.put_object(Bucket="published", Key="data.bin", Body=data, ACL="public-read")
    torrent = _fetch(f"{proxied.url}/published/data.bin?torrent")
    job = Job(torrent=torrent, magnet=None, name="data.bin", data=data, workdir=tmp_path,
              timeout=90, insecure_tls=True)  # fmt: skip
    assert DRIVERS["aria2"](job) == data
