"""Audit: s3torrent on an S3 blob backend (moto) behind a hostile TCP proxy. A backend that
stalls or resets mid-stream must abort the client's GET (never a short body presented as
complete), a failed upload must leave no row and let a retry succeed, and encrypted
objects must be ciphertext in the backend."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from s3torrent.store.blobs.s3 import S3BlobStore, S3Location
from tests.conftest import LiveServer, free_port, make_client
from tests.scale.engines import Engine

MiB = 1024 * 1024


class FaultProxy:
    """A TCP relay to the backend whose behaviour the test switches: `pass` relays, `hang`
    drops every byte (new connections are held), `reset` resets every connection open now
    and every new one."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.mode = "pass"
        # (bytes, action): a request to the backend containing the bytes is reset or hung.
        self.trigger: tuple[bytes, str] | None = None
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._short: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        if mode == "reset":
            with self._lock:
                held, self._open = self._open, []
            for s in held:
                self._reset(s)

    @staticmethod
    def _reset(s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "reset":
                self._reset(client)
                continue
            with self._lock:
                self._open.append(client)
            if self.mode == "hang":
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._open.append(upstream)
            for src, dst, up in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, up), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if self.mode != "pass":
                    continue  # hung: swallowed
                trigger = self.trigger
                if not up and src in self._short:
                    self._send_short(src, dst, data)
                    return
                if up and trigger is not None and trigger[0] in data:
                    if trigger[1] == "short":
                        self._short.add(dst)
                        dst.sendall(data)
                        continue
                    if trigger[1] == "reset":
                        self._reset(src)
                        self._reset(dst)
                        return
                    continue  # hung: this request is never answered
                dst.sendall(data)

    def _send_short(self, src: socket.socket, dst: socket.socket, data: bytes) -> None:
        """Relay the answer with half its body, framed as whole (Content-Length halved)."""
        while b"\r\n\r\n" not in data:
            data += src.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        found = re.search(rb"(?i)content-length: *(\d+)", head)
        assert found is not None
        length = int(found.group(1))
        while len(body) < length:
            body += src.recv(65536)
        half = length // 2
        head = head.replace(found.group(0), b"Content-Length: %d" % half)
        dst.sendall(head + b"\r\n\r\n" + body[:half])
        self._reset(src)
        self._reset(dst)

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            held, self._open = self._open, []
        for s in held:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def proxy(moto: Engine) -> Iterator[FaultProxy]:
    p = FaultProxy(moto.port)
    yield p
    p.close()


def _backend(moto: Engine) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=moto.url,
        aws_access_key_id="moto",
        aws_secret_access_key="moto",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture
def node(tmp_path: Path, proxy: FaultProxy) -> Iterator[tuple[LiveServer, str]]:
    bucket = f"bb-{os.getpid()}-{tmp_path.name[-10:].lower().replace('_', '-')}"
    srv = LiveServer(
        data_dir=tmp_path / "n",
        port=free_port(),
        peer_port=free_port(),
        env={
            "S3TORRENT_BLOBS_URL": f"s3://{bucket}/d",
            "S3TORRENT_BLOBS__ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
            "S3TORRENT_BLOBS__ACCESS_KEY": "moto",
            "S3TORRENT_BLOBS__SECRET_KEY": "moto",
            "S3TORRENT_BLOBS__CONNECT_TIMEOUT": "1",
            "S3TORRENT_BLOBS__READ_TIMEOUT": "2",
            "S3TORRENT_BLOBS__MAX_ATTEMPTS": "2",
            "S3TORRENT_ENCRYPTION__SSE_C_OVER_HTTP": "true",
        },
    )
    (tmp_path / "n").mkdir()
    srv.start(timeout=60)
    try:
        yield srv, bucket
    finally:
        srv.stop(timeout=20)


def _client(srv: LiveServer) -> Any:
    return make_client(srv.endpoint, read_timeout=60)


def _read_all_or_fail(body: Any, proxy: FaultProxy, mode: str) -> tuple[int, BaseException | None]:
    """Read the first bytes, switch the proxy to `mode`, then read the rest."""
    got = len(body.read(64 * 1024))
    proxy.set_mode(mode)
    try:
        while chunk := body.read(256 * 1024):
            got += len(chunk)
    except (BotoCoreError, OSError) as exc:
        return got, exc
    return got, None


@pytest.mark.parametrize("mode", ["reset", "hang"])
def test_a_backend_failing_mid_get_aborts_the_client_within_the_timeout(
    node: tuple[LiveServer, str], proxy: FaultProxy, mode: str
) -> None:
    srv, _ = node
    s3 = _client(srv)
    s3.create_bucket(Bucket="mid")
    data = os.urandom(12 * MiB)
    s3.put_object(Bucket="mid", Key="k", Body=data)
    resp = s3.get_object(Bucket="mid", Key="k")
    started = time.monotonic()
    got, failed = _read_all_or_fail(resp["Body"], proxy, mode)
    took = time.monotonic() - started
    assert failed is not None, f"a {got}-byte body of {len(data)} was presented as complete"
    assert got < len(data)
    assert took < 30, f"the client waited {took:.0f} s for a failing backend"
    # The backend comes back: the same GET is whole again.
    proxy.set_mode("pass")
    assert s3.get_object(Bucket="mid", Key="k")["Body"].read() == data


def _raw_get(url: str, timeout: float) -> tuple[int, bytes]:
    """GET `url` on a raw socket: its Content-Length and the body bytes until the server
    closes (as a client that trusts Content-Length sees them, and no more)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as s:
        s.sendall(
            f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
        )
        buf = b""
        with contextlib.suppress(OSError):
            while data := s.recv(65536):
                buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    return length, body


@pytest.mark.parametrize("action", ["reset", "hang"])
def test_a_backend_failing_on_the_last_chunk_never_completes_the_body_with_other_bytes(
    node: tuple[LiveServer, str], proxy: FaultProxy, action: str
) -> None:
    """The last 1 MiB step of a GET is 100 bytes; the backend fails to give it. Before, the
    server wrote its 503 answer into the 200's body: 100 bytes of "HTTP/1.1 503 ..." made
    the body whole and a client took them for the object's last bytes (and the connection
    then hung until the keep-alive timeout)."""
    srv, _ = node
    s3 = _client(srv)
    s3.create_bucket(Bucket="tail")
    data = os.urandom(MiB + 100)
    s3.put_object(Bucket="tail", Key="k", Body=data)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "tail", "Key": "k"})
    proxy.trigger = (b"bytes=1048576-", action)
    started = time.monotonic()
    length, body = _raw_get(url, timeout=40)
    took = time.monotonic() - started
    assert length == len(data)
    assert body[:length] == data[: len(body)], "bytes that are not the object's in its body"
    assert len(body) < length, "a failed read was presented as a complete body"
    assert took < 20, f"the connection stayed open {took:.0f} s after the failure"
    proxy.trigger = None
    assert s3.get_object(Bucket="tail", Key="k")["Body"].read() == data


@pytest.mark.parametrize("span", ["bytes=600000-600099", "bytes=0-2097151"])
def test_a_short_body_from_the_backend_is_a_server_error_and_never_cached(
    node: tuple[LiveServer, str], proxy: FaultProxy, span: str
) -> None:
    """The backend answers a ranged GET with half the bytes asked for, framed as whole (a
    broken proxy or backend). Before, the blob store took the half block for the end of the
    blob and kept it in its read cache: the GET answered NoSuchKey (the object is there),
    and every later read of that block failed until the cache evicted it."""
    srv, _ = node
    s3 = _client(srv)
    s3.create_bucket(Bucket="short")
    data = os.urandom(3 * MiB)
    s3.put_object(Bucket="short", Key="k", Body=data)
    proxy.trigger = (b"bytes=0-", "short")
    with pytest.raises(ClientError) as failed:
        s3.get_object(Bucket="short", Key="k", Range=span)["Body"].read()
    assert failed.value.response["Error"]["Code"] in ("InternalError", "ServiceUnavailable")
    proxy.trigger = None
    first, last = (int(n) for n in span.removeprefix("bytes=").split("-"))
    got = s3.get_object(Bucket="short", Key="k", Range=span)["Body"].read()
    assert got == data[first : last + 1]


def test_a_range_get_failing_at_the_backend_is_an_error_not_a_short_body(
    node: tuple[LiveServer, str], proxy: FaultProxy
) -> None:
    srv, _ = node
    s3 = _client(srv)
    s3.create_bucket(Bucket="rng")
    data = os.urandom(3 * MiB)
    s3.put_object(Bucket="rng", Key="k", Body=data)
    proxy.set_mode("reset")
    started = time.monotonic()
    with pytest.raises((ClientError, BotoCoreError)):
        s3.get_object(Bucket="rng", Key="k", Range="bytes=100-200")["Body"].read()
    assert time.monotonic() - started < 30
    proxy.set_mode("pass")
    got = s3.get_object(Bucket="rng", Key="k", Range="bytes=100-200")["Body"].read()
    assert got == data[100:201]


@pytest.mark.parametrize("size", [100_000, 12 * MiB])
def test_a_put_failing_at_the_backend_leaves_no_object_and_a_retry_succeeds(
    node: tuple[LiveServer, str], proxy: FaultProxy, moto: Engine, size: int
) -> None:
    srv, bucket = node
    s3 = _client(srv)
    s3.create_bucket(Bucket="put")
    old = b"old" * 1000
    s3.put_object(Bucket="put", Key="k", Body=old)
    proxy.set_mode("reset")
    with pytest.raises((ClientError, BotoCoreError)) as failed:
        s3.put_object(Bucket="put", Key="k", Body=os.urandom(size))
    if isinstance(failed.value, ClientError):
        assert failed.value.response["Error"]["Code"] in ("ServiceUnavailable", "InternalError")
    proxy.set_mode("pass")
    # The old version is intact: no row names a partial blob.
    assert s3.get_object(Bucket="put", Key="k")["Body"].read() == old
    new = os.urandom(size)
    s3.put_object(Bucket="put", Key="k", Body=new)
    assert s3.get_object(Bucket="put", Key="k")["Body"].read() == new
    # What the failed write left in the backend (an unfinished multipart upload whose abort
    # met the same reset) goes at the grace-period clean-up, and nothing live with it.
    store = S3BlobStore(_backend(moto), S3Location.parse(f"s3://{bucket}/d"), orphan_grace=0)
    store.clean_temporary()
    assert not _backend(moto).list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert s3.get_object(Bucket="put", Key="k")["Body"].read() == new


def test_a_multipart_upload_failing_at_the_backend_retries_to_a_whole_object(
    node: tuple[LiveServer, str], proxy: FaultProxy
) -> None:
    srv, _ = node
    s3 = _client(srv)
    s3.create_bucket(Bucket="mpu")
    parts = [os.urandom(5 * MiB), os.urandom(1 * MiB)]
    up = s3.create_multipart_upload(Bucket="mpu", Key="k")["UploadId"]
    e1 = s3.upload_part(Bucket="mpu", Key="k", UploadId=up, PartNumber=1, Body=parts[0])["ETag"]
    proxy.set_mode("reset")
    with pytest.raises((ClientError, BotoCoreError)):
        s3.upload_part(Bucket="mpu", Key="k", UploadId=up, PartNumber=2, Body=parts[1])
    proxy.set_mode("pass")
    e2 = s3.upload_part(Bucket="mpu", Key="k", UploadId=up, PartNumber=2, Body=parts[1])["ETag"]
    done = {"Parts": [{"ETag": e1, "PartNumber": 1}, {"ETag": e2, "PartNumber": 2}]}
    proxy.set_mode("reset")
    with pytest.raises((ClientError, BotoCoreError)):
        s3.complete_multipart_upload(Bucket="mpu", Key="k", UploadId=up, MultipartUpload=done)
    proxy.set_mode("pass")
    with pytest.raises(ClientError):
        s3.head_object(Bucket="mpu", Key="k")
    s3.complete_multipart_upload(Bucket="mpu", Key="k", UploadId=up, MultipartUpload=done)
    assert s3.get_object(Bucket="mpu", Key="k")["Body"].read() == b"".join(parts)


def test_encrypted_objects_are_ciphertext_in_the_backend(
    node: tuple[LiveServer, str], moto: Engine
) -> None:
    srv, bucket = node
    s3 = _client(srv)
    s3.create_bucket(Bucket="sse")
    marker = b"PLAINTEXT-MARKER-" * 4096
    s3.put_object(Bucket="sse", Key="s3", Body=marker, ServerSideEncryption="AES256")
    key = os.urandom(32)
    sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    s3.put_object(Bucket="sse", Key="c", Body=marker, **sse_c)
    assert s3.get_object(Bucket="sse", Key="s3")["Body"].read() == marker
    assert s3.get_object(Bucket="sse", Key="c", **sse_c)["Body"].read() == marker
    backend = _backend(moto)
    raw = [
        backend.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in backend.list_objects_v2(Bucket=bucket).get("Contents", [])
    ]
    assert len(raw) >= 2
    assert not any(b"PLAINTEXT-MARKER-" in blob for blob in raw)
