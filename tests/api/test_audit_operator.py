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
