"""The server process: health, root credentials, graceful shutdown, `s3torrent user`."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, add_user, make_client, start_server

NO_ROOT_ENV = {"S3TORRENT_ROOT_ACCESS_KEY": "", "S3TORRENT_ROOT_SECRET_KEY": ""}


def test_health_endpoint_answers_200(server: LiveServer) -> None:
    r = requests.get(server.endpoint + "/_health", timeout=5)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_first_start_generates_root_keys_once_and_reuses_them(tmp_path: Path) -> None:
    srv = start_server(tmp_path, env=NO_ROOT_ENV)
    try:
        assert srv.log_path is not None
        log = srv.log_path.read_text()
        ak = re.search(r"AWS_ACCESS_KEY_ID=(\S+)", log)
        sk = re.search(r"AWS_SECRET_ACCESS_KEY=(\S+)", log)
        assert ak and sk, log
        cred_file = srv.data_dir / "root-credentials.json"
        assert stat.S_IMODE(cred_file.stat().st_mode) == 0o600
        stored = json.loads(cred_file.read_text())
        assert (stored["access_key"], stored["secret_key"]) == (ak.group(1), sk.group(1))
        client = make_client(srv.endpoint, ak.group(1), sk.group(1))
        client.create_bucket(Bucket="root-made")
        assert srv.stop() == 0

        srv.start()
        log2 = srv.log_path.read_text()
        assert log2.count("AWS_SECRET_ACCESS_KEY=") == 1, "keys printed again on restart"
        client = make_client(srv.endpoint, ak.group(1), sk.group(1))
        assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["root-made"]
    finally:
        srv.stop()


def test_sigterm_during_slow_upload_exits_cleanly_within_bound(tmp_path: Path) -> None:
    srv = start_server(tmp_path, env={"S3TORRENT_LIMITS__SHUTDOWN_TIMEOUT": "2"})
    assert srv.proc is not None
    proc = srv.proc
    client = make_client(srv.endpoint, signature_version="s3v4")
    client.create_bucket(Bucket="slow")
    url = client.generate_presigned_url("put_object", Params={"Bucket": "slow", "Key": "big"})
    path = url.split(str(srv.port), 1)[1]
    sock = socket.create_connection(("127.0.0.1", srv.port))
    try:
        sock.sendall(
            f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
            f"Content-Length: {10 * 1024 * 1024}\r\n\r\n".encode()
            + b"x" * 65536
        )
        time.sleep(0.5)  # the upload is in flight, stalled
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=15)
        elapsed = time.monotonic() - t0
    finally:
        sock.close()
        srv.proc = None
    assert rc == 0
    assert elapsed < 10, f"took {elapsed:.1f}s to stop"
    # Nothing half-written became visible, and the server starts again on the same data.
    srv.start()
    try:
        client = make_client(srv.endpoint)
        assert client.list_objects_v2(Bucket="slow")["KeyCount"] == 0
        assert not list((srv.data_dir / "tmp").iterdir())
    finally:
        srv.stop()


def test_sigterm_when_idle_exits_zero_quickly(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    t0 = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - t0 < 10


def test_user_add_list_remove(server: LiveServer) -> None:
    name = f"carol{os.getpid()}"
    keys = add_user(server, name)
    assert re.fullmatch(r"[A-Z0-9]{16,128}", keys.access_key)
    assert len(keys.secret_key) >= 30
    listed = server.cli("user", "list")
    assert listed.returncode == 0
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert any(r[0] == name and r[1] == keys.access_key for r in rows)
    assert keys.secret_key not in listed.stdout
    dup = server.cli("user", "add", name)
    assert dup.returncode != 0
    removed = server.cli("user", "remove", name)
    assert removed.returncode == 0, removed.stderr
    assert name not in server.cli("user", "list").stdout
    again = server.cli("user", "remove", name)
    assert again.returncode != 0


def test_root_user_cannot_be_removed(server: LiveServer) -> None:
    res = server.cli("user", "remove", "root")
    assert res.returncode != 0
    make_client(server.endpoint).list_buckets()


def test_new_user_works_at_once_and_removed_user_stops_within_seconds(
    server: LiveServer,
) -> None:
    name = f"dave{os.getpid()}"
    keys = add_user(server, name)
    client: Any = make_client(server.endpoint, keys.access_key, keys.secret_key)
    bucket = f"dave-{os.getpid()}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert server.cli("user", "remove", name).returncode == 0
    deadline = time.monotonic() + 8
    code = None
    while time.monotonic() < deadline:
        try:
            client.list_buckets()
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            break
        time.sleep(0.25)
    assert code == "InvalidAccessKeyId"


@pytest.mark.parametrize("bad", ["root", "has space", "x" * 65, ""])
def test_user_add_rejects_bad_names(server: LiveServer, bad: str) -> None:
    assert server.cli("user", "add", bad).returncode != 0
