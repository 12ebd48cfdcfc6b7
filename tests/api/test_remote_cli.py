"""`s3torrent --endpoint URL ...`: the CLI's commands against a running server's admin API,
as a subprocess, from a directory with no data directory in sight."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, make_client, start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    s = start_server(tmp_path_factory.mktemp("remote"))
    yield s
    s.stop()


def remote(
    srv: LiveServer,
    *args: str,
    cwd: Path,
    keys: tuple[str, str] | None = (ROOT_AK, ROOT_SK),
    env: dict[str, str] | None = None,
    endpoint: str | None = None,
) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "S3TORRENT_")) or k.startswith("S3TORRENT_TEST_")
    }
    # No credentials files of the machine: only what the test gives.
    base["AWS_SHARED_CREDENTIALS_FILE"] = str(cwd / "no-credentials")
    base["AWS_CONFIG_FILE"] = str(cwd / "no-config")
    if keys is not None:
        base.update(AWS_ACCESS_KEY_ID=keys[0], AWS_SECRET_ACCESS_KEY=keys[1])
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "s3torrent.cli", "--endpoint", endpoint or srv.endpoint, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=base,
    )


def keys_of(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    return res.stdout


def test_user_lifecycle_remotely(srv: LiveServer, tmp_path: Path) -> None:
    name = f"rem{os.getpid()}"
    made = keys_of(ok(remote(srv, "user", "add", name, cwd=tmp_path)))
    assert made["name"] == name and made["secret_key"]
    assert not (tmp_path / "s3torrent-data").exists()
    s3 = make_client(srv.endpoint, made["access_key"], made["secret_key"])
    s3.list_buckets()
    listed = ok(remote(srv, "user", "list", cwd=tmp_path))
    line = next(x for x in listed.splitlines() if x.startswith(name + "\t"))
    assert line.split("\t")[1:] == [made["access_key"], made["canonical_id"], "user", "enabled"]

    assert ok(remote(srv, "user", "disable", name, cwd=tmp_path)).strip() == f"disabled {name}"
    with pytest.raises(Exception, match="InvalidAccessKeyId"):
        s3.list_buckets()
    assert "\tdisabled" in next(
        x for x in ok(remote(srv, "user", "list", cwd=tmp_path)).splitlines() if name in x
    )
    ok(remote(srv, "user", "enable", name, cwd=tmp_path))
    s3.list_buckets()

    rotated = keys_of(ok(remote(srv, "user", "rotate", name, cwd=tmp_path)))
    assert rotated["access_key"] != made["access_key"]
    make_client(srv.endpoint, rotated["access_key"], rotated["secret_key"]).list_buckets()

    ok(remote(srv, "user", "remove", name, cwd=tmp_path))
    res = remote(srv, "user", "remove", name, cwd=tmp_path)
    assert res.returncode == 1 and "NoSuchEntity" in res.stderr and "Traceback" not in res.stderr


def test_reports_torrents_and_info_remotely(srv: LiveServer, tmp_path: Path) -> None:
    s3 = make_client(srv.endpoint)
    bucket = f"remote-{os.getpid()}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a b/c.bin", Body=b"r" * 70_000, ACL="public-read")
    shown = ok(remote(srv, "torrent", "show", bucket, "a b/c.bin", cwd=tmp_path))
    fields = dict(line.split(": ", 1) for line in shown.splitlines())
    assert fields["state"] == "ready" and fields["size"] == "70000"
    assert len(fields["info-hash v1"]) == 40 and fields["magnet"].startswith("magnet:?")
    assert "queued 0 objects" in ok(
        remote(srv, "torrent", "rehash", "--bucket", bucket, cwd=tmp_path)
    )
    deadline = time.monotonic() + 15
    while True:
        csv_text = ok(remote(srv, "usage", "--bucket", bucket, "--by", "hour", cwd=tmp_path))
        if "PutObject" in csv_text or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert csv_text.startswith("Service,Operation,UsageType") and "PutObject" in csv_text
    saved = json.loads(ok(remote(srv, "savings", "--format", "json", cwd=tmp_path)))
    assert saved["price_per_gb"] == 0.09
    info = json.loads(ok(remote(srv, "info", cwd=tmp_path)))
    assert info["uptime_seconds"] > 0 and info["settings"]["listen"] == f"127.0.0.1:{srv.port}"


def test_profile_supplies_the_keys(srv: LiveServer, tmp_path: Path) -> None:
    creds = tmp_path / "credentials"
    creds.write_text(f"[ops]\naws_access_key_id = {ROOT_AK}\naws_secret_access_key = {ROOT_SK}\n")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(creds)}
    res = remote(srv, "user", "list", "--profile", "ops", cwd=tmp_path, keys=None, env=env)
    assert "root\t" in ok(res)
    res = remote(srv, "user", "list", "--profile", "nope", cwd=tmp_path, keys=None, env=env)
    assert res.returncode == 1 and "profile 'nope' has no keys" in res.stderr


def test_refusals_are_one_line(srv: LiveServer, tmp_path: Path) -> None:
    name = f"plain{os.getpid()}"
    plain = keys_of(ok(remote(srv, "user", "add", name, cwd=tmp_path)))
    res = remote(srv, "user", "list", cwd=tmp_path, keys=(plain["access_key"], plain["secret_key"]))
    assert res.returncode == 1 and "AccessDenied" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    res = remote(srv, "user", "list", cwd=tmp_path, keys=(plain["access_key"], "wrong"))
    assert res.returncode == 1 and "SignatureDoesNotMatch" in res.stderr
    res = remote(srv, "info", cwd=tmp_path, keys=None)
    assert res.returncode == 1 and "no credentials" in res.stderr
    res = remote(srv, "info", cwd=tmp_path, endpoint="http://127.0.0.1:9")
    assert res.returncode == 1 and "cannot reach" in res.stderr
    res = remote(srv, "serve", cwd=tmp_path)
    assert res.returncode == 2 and "--endpoint" in res.stderr


def test_local_disable_rotate_and_info_work_on_the_data_directory(srv: LiveServer) -> None:
    name = f"loc{os.getpid()}"
    made = keys_of(ok(srv.cli("user", "add", name, "--admin")))
    s3 = make_client(srv.endpoint, made["access_key"], made["secret_key"])
    s3.list_buckets()
    line = next(x for x in ok(srv.cli("user", "list")).splitlines() if x.startswith(name + "\t"))
    assert line.endswith("\tadmin\tenabled")
    ok(srv.cli("user", "disable", name))
    deadline = time.monotonic() + 10  # the server reloads users every 3 s
    while True:
        try:
            s3.list_buckets()
        except Exception as exc:
            assert "InvalidAccessKeyId" in str(exc)
            break
        assert time.monotonic() < deadline, "a disabled user's key still works"
        time.sleep(0.3)
    ok(srv.cli("user", "enable", name))
    rotated = keys_of(ok(srv.cli("user", "rotate", name)))
    assert rotated["access_key"] != made["access_key"]
    res = srv.cli("user", "rotate", "root")
    assert res.returncode == 1 and "root" in res.stderr and "Traceback" not in res.stderr
    info = json.loads(ok(srv.cli("info")))
    assert info["engines"]["blobs"] == "local" and info["version"]
