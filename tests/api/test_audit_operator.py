"""Operator audit: `s3torrent serve` facing what an operator gets wrong ends in one line
naming the setting, a non-zero exit and no traceback."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

from tests.api.test_startup_errors import assert_refused, run_cli, serve_args
from tests.conftest import make_client, start_server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_redis_is_named_not_a_bare_timeout(tmp_path: Path) -> None:
    port = _closed_port()
    result = run_cli(
        *serve_args(tmp_path / "data"),
        cwd=tmp_path,
        env={"S3TORRENT_REDIS_URL": f"redis://:pa55word@127.0.0.1:{port}/0"},
        timeout=90,
    )
    assert_refused(result, "redis_url", f"127.0.0.1:{port}")
    assert "pa55word" not in result.stdout + result.stderr
    assert "TimeoutError" not in result.stderr


def test_an_unopenable_sqlite_database_names_metadata_url(tmp_path: Path) -> None:
    result = run_cli(
        *serve_args(tmp_path / "data"),
        cwd=tmp_path,
        env={"S3TORRENT_METADATA_URL": f"sqlite:///{tmp_path}/missing/dir/m.sqlite3"},
    )
    assert_refused(result, "metadata_url", f"{tmp_path}/missing/dir/m.sqlite3")
    assert "OperationalError" not in result.stderr and "sqlalche.me" not in result.stderr


def test_an_unreachable_postgresql_names_metadata_url_not_its_password(tmp_path: Path) -> None:
    port = _closed_port()
    result = run_cli(
        *serve_args(tmp_path / "data"),
        cwd=tmp_path,
        env={"S3TORRENT_METADATA_URL": f"postgresql+psycopg://u:pa55word@127.0.0.1:{port}/s3"},
    )
    assert_refused(result, "metadata_url", f"127.0.0.1:{port}")
    assert "pa55word" not in result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and f"127.0.0.1:{port}" in last, result.stderr


def test_a_tracker_address_that_cannot_be_bound_stops_before_keys_are_made(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    result = run_cli(
        *serve_args(data),
        cwd=tmp_path,
        env={"S3TORRENT_TRACKER__HTTP_LISTEN": "no-such-host.invalid:7000"},
    )
    assert_refused(result, "tracker.http_listen", "no-such-host.invalid:7000")
    assert not (data / "root-credentials.json").exists()


def test_the_first_start_prints_what_the_aws_cli_needs(tmp_path: Path) -> None:
    """The block printed at the first start, pasted as environment variables, is enough for
    `aws s3 ls`: keys, endpoint and region (no flag to guess)."""
    srv = start_server(
        tmp_path, env={"S3TORRENT_ROOT_ACCESS_KEY": "", "S3TORRENT_ROOT_SECRET_KEY": ""}
    )
    try:
        assert srv.log_path is not None
        printed = dict(re.findall(r"^  (AWS_[A-Z_]+)=(\S+)$", srv.log_path.read_text(), re.M))
        assert printed.get("AWS_ENDPOINT_URL") == srv.endpoint, printed.keys()
        keys = printed["AWS_ACCESS_KEY_ID"], printed["AWS_SECRET_ACCESS_KEY"]
        make_client(srv.endpoint, *keys).create_bucket(Bucket="pasted")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(printed, AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        listed = subprocess.run(
            ["aws", "s3", "ls", "--cli-connect-timeout", "5", "--cli-read-timeout", "10"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert "pasted" in listed.stdout
    finally:
        assert srv.stop() == 0
