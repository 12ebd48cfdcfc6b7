"""Operator audit: `s3torrent serve` facing what an operator gets wrong ends in one line
naming the setting, a non-zero exit and no traceback."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.api.test_startup_errors import assert_refused, run_cli, serve_args


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
