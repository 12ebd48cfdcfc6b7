"""A server asked to stop drains: an upload whose body is still arriving receives the rest
and is answered, what it acknowledged is there at the next start, and every process exits
0. SIGTERM and SIGINT as before, and SIGHUP (the terminal that started the server closed,
an SSH session dropped: a shell sends its jobs SIGHUP) alike.

Until 2026-12-07 neither held. aiohttp's own shutdown closes every connection first, and a
closed connection drops every byte that arrives after (http_site.finish_bodies): an upload
in flight at SIGTERM waited out the whole shutdown timeout and was cancelled, its client
answered by a closed connection. And SIGHUP's default action killed every process at once.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, make_client, start_server

BODY = os.urandom(256 * 1024)


def _response_head(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _stop(srv: LiveServer, sig: signal.Signals) -> None:
    assert srv.proc is not None
    if sig is signal.SIGHUP:
        # What a shell does to its jobs when its terminal goes away: the whole group (the
        # server runs in a session of its own: the supervisor and every worker).
        os.killpg(srv.proc.pid, sig)
    else:
        srv.proc.send_signal(sig)  # the supervisor passes it on


def _gone_then_readable(srv: LiveServer, pid: int, key: str, body: bytes) -> None:
    """No process of the stopped server is left, and the next start reads `body`."""
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    srv.start()
    try:
        got = make_client(srv.endpoint).get_object(Bucket="drain", Key=key)["Body"].read()
        assert got == body
    finally:
        srv.stop()


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_an_upload_in_flight_is_answered(tmp_path: Path, workers: int, sig: signal.Signals) -> None:
    srv = start_server(tmp_path, workers=workers)
    assert srv.proc is not None
    proc = srv.proc
    client = make_client(srv.endpoint, signature_version="s3v4")
    client.create_bucket(Bucket="drain")
    url = client.generate_presigned_url("put_object", Params={"Bucket": "drain", "Key": "k"})
    path = url.split(str(srv.port), 1)[1]
    half = len(BODY) // 2
    sock = socket.create_connection(("127.0.0.1", srv.port))
    try:
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n".encode()
            + BODY[:half]
        )
        time.sleep(0.5)  # the upload is in flight
        _stop(srv, sig)
        time.sleep(0.5)  # the server is stopping
        try:
            sock.sendall(BODY[half:])
            head = _response_head(sock, 15)
        except OSError as exc:
            pytest.fail(f"the upload in flight was cut off: {exc!r}")
        assert head.startswith(b"HTTP/1.1 200"), head[:300]
        assert b"Connection: close" in head  # and nothing more is read on it
        assert proc.wait(timeout=30) == 0
    finally:
        sock.close()
        srv.proc = None
    _gone_then_readable(srv, proc.pid, "k", BODY)


class _Trickle(io.RawIOBase):
    """A file boto3 uploads from. botocore reads it whole before it sends it (the payload's
    SHA-256 over plain HTTP, its checksum), each time from the start: a *pass*. From pass
    `slow_pass` on, each read waits `pause` seconds per `piece` bytes, and `halfway` is set
    once that pass has read half of it."""

    def __init__(self, data: bytes, piece: int, pause: float, slow_pass: int) -> None:
        self._data, self._piece, self._pause, self._slow = data, piece, pause, slow_pass
        self._at = 0
        self.passes = 0
        self.halfway = threading.Event()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: len(self._data)}[whence]
        self._at = base + offset
        return self._at

    def tell(self) -> int:
        return self._at

    def readinto(self, buffer: Any) -> int:
        if self._at == 0:
            self.passes += 1
        chunk = self._data[self._at : self._at + len(buffer)]
        if self.passes >= self._slow:
            time.sleep(self._pause * len(chunk) / self._piece)
        buffer[: len(chunk)] = chunk
        self._at += len(chunk)
        if self.passes >= self._slow and self._at >= len(self._data) // 2:
            self.halfway.set()
        return len(chunk)


def test_boto3_upload_in_flight_at_sigterm_succeeds(tmp_path: Path) -> None:
    """A real client: boto3's PutObject, its body still being sent when SIGTERM arrives,
    gets its 200 and ETag from the stopping server, and the object is whole afterwards."""
    srv = start_server(tmp_path, workers=2)
    assert srv.proc is not None
    proc = srv.proc
    client = make_client(srv.endpoint, signature_version="s3v4")
    client.create_bucket(Bucket="drain")
    data = os.urandom(4 * 1024 * 1024)
    # Which of botocore's passes over the body sends it: the last one.
    probe = _Trickle(data, 1, 0.0, slow_pass=1)
    client.put_object(Bucket="drain", Key="probe", Body=probe, ContentLength=len(data))
    assert probe.passes >= 1
    body = _Trickle(data, 256 * 1024, 0.2, slow_pass=probe.passes)  # about 3 s to send
    result: dict[str, Any] = {}

    def upload() -> None:
        try:
            result["put"] = client.put_object(
                Bucket="drain", Key="big", Body=body, ContentLength=len(data)
            )
        except Exception as exc:  # reported below
            result["error"] = exc

    thread = threading.Thread(target=upload)
    thread.start()
    try:
        assert body.halfway.wait(30)
        proc.send_signal(signal.SIGTERM)
        thread.join(60)
        assert "error" not in result, result.get("error")
        assert result["put"]["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert proc.wait(timeout=30) == 0
    finally:
        thread.join(60)
        srv.proc = None
    _gone_then_readable(srv, proc.pid, "big", data)
