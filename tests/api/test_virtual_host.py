"""Virtual-hosted-style requests (Host: bucket.<domain>) next to path-style, on one server.

There is no DNS for the test domain, so the client signs for http://<bucket>.s3.localtest:PORT
and a botocore `before-send` hook connects to 127.0.0.1 instead, keeping the Host header the
signature covers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, make_client, sign_request, start_server

DOMAIN = "s3.localtest"


@pytest.fixture(scope="module")
def vhost_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("vhost"), "--domain", DOMAIN)
    yield srv
    srv.stop()


def _virtual_client(srv: LiveServer) -> Any:
    client = make_client(f"http://{DOMAIN}:{srv.port}", s3={"addressing_style": "virtual"})

    def to_loopback(request: Any, **_: Any) -> None:
        parts = urlsplit(request.url)
        request.headers["Host"] = parts.netloc  # what was signed: bucket.s3.localtest:PORT
        request.url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{srv.port}"))

    client.meta.events.register("before-send.s3", to_loopback)
    return client


def test_virtual_and_path_style_see_the_same_objects(vhost_server: LiveServer) -> None:
    vhost = _virtual_client(vhost_server)
    path = make_client(vhost_server.endpoint, s3={"addressing_style": "path"})
    vhost.create_bucket(Bucket="vbucket")
    vhost.put_object(Bucket="vbucket", Key="dir/a b.txt", Body=b"virtual")
    assert path.get_object(Bucket="vbucket", Key="dir/a b.txt")["Body"].read() == b"virtual"
    path.put_object(Bucket="vbucket", Key="p.txt", Body=b"path")
    assert vhost.get_object(Bucket="vbucket", Key="p.txt")["Body"].read() == b"path"
    keys = [o["Key"] for o in vhost.list_objects_v2(Bucket="vbucket")["Contents"]]
    assert keys == ["dir/a b.txt", "p.txt"]
    assert vhost.head_bucket(Bucket="vbucket")["ResponseMetadata"]["HTTPStatusCode"] == 200
    # Multipart and ACL calls route by Host too.
    uid = vhost.create_multipart_upload(Bucket="vbucket", Key="mp")["UploadId"]
    etag = vhost.upload_part(Bucket="vbucket", Key="mp", UploadId=uid, PartNumber=1, Body=b"part")[
        "ETag"
    ]
    vhost.complete_multipart_upload(
        Bucket="vbucket",
        Key="mp",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    assert path.get_object(Bucket="vbucket", Key="mp")["Body"].read() == b"part"
    vhost.put_object_acl(Bucket="vbucket", Key="mp", ACL="public-read")
    anon = requests.get(
        f"http://127.0.0.1:{vhost_server.port}/mp",
        timeout=10,
        headers={"Host": f"vbucket.{DOMAIN}:{vhost_server.port}"},
    )
    assert anon.status_code == 200
    assert anon.content == b"part"
    with pytest.raises(ClientError) as exc:
        vhost.get_object(Bucket="vbucket", Key="missing")
    assert exc.value.response["Error"]["Code"] == "NoSuchKey"


def test_raw_signed_virtual_host_request(vhost_server: LiveServer) -> None:
    path = make_client(vhost_server.endpoint)
    path.create_bucket(Bucket="rawbucket")
    path.put_object(Bucket="rawbucket", Key="k", Body=b"raw")
    host = f"rawbucket.{DOMAIN}:{vhost_server.port}"
    headers = {**sign_request("GET", f"http://{host}/k"), "Host": host}
    r = requests.get(f"http://127.0.0.1:{vhost_server.port}/k", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.content == b"raw"
    # The bucket comes from the Host: the same path on the bare domain is a bucket named "k".
    bare_host = f"{DOMAIN}:{vhost_server.port}"
    bare = {**sign_request("GET", f"http://{bare_host}/k"), "Host": bare_host}
    r = requests.get(f"http://127.0.0.1:{vhost_server.port}/k", headers=bare, timeout=10)
    assert r.status_code == 404
    assert b"<Code>NoSuchBucket</Code>" in r.content


def test_the_same_request_line_under_another_host_is_another_bucket(
    vhost_server: LiveServer,
) -> None:
    """Routing keeps what it made of a request line by its Host too (S3Application._routed):
    `GET /k` is vb1's object under vb1's name, vb2's under vb2's, and the path-style
    bucket `k` under the bare endpoint, however often and in whatever order they come."""
    path = make_client(vhost_server.endpoint, s3={"addressing_style": "path"})
    for bucket in ("vb1", "vb2"):
        path.create_bucket(Bucket=bucket)
        path.put_object(Bucket=bucket, Key="k", Body=bucket.encode(), ACL="public-read")
    port = vhost_server.port
    url = f"http://127.0.0.1:{port}/k"
    for _ in range(3):
        for bucket in ("vb1", "vb2"):
            r = requests.get(url, headers={"Host": f"{bucket}.{DOMAIN}:{port}"}, timeout=10)
            assert (r.status_code, r.content) == (200, bucket.encode())
        bare = requests.get(url, headers={"Host": f"127.0.0.1:{port}"}, timeout=10)
        assert bare.status_code == 404  # the bucket "k", which does not exist
