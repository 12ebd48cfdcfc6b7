"""provision.hold_data_dir in one process: who may share a data directory, and a file
system that cannot lock (tests/api/test_data_dir_lock.py runs real servers)."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s3torrent.config import Settings, StartupError
from s3torrent.provision import SERVER_LOCK, hold_data_dir

REDIS = "redis://127.0.0.1:1/0"  # never connected to: only the setting counts here


def _release(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


def _holder(data_dir: Path, *env: str) -> subprocess.Popen[str]:
    """Another process holding the directory as a server would (its own open file)."""
    code = (
        "import sys; from s3torrent.config import Settings; "
        "from s3torrent.provision import hold_data_dir; "
        f"hold_data_dir(Settings(data_dir={str(data_dir)!r}, **dict(a.split('=', 1) "
        "for a in sys.argv[2:] if '=' in a)), int(sys.argv[1])); print('held', flush=True); "
        "sys.stdin.read()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *env],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(10)


def test_a_lone_server_holds_the_directory_against_any_other(tmp_path: Path) -> None:
    holder = _holder(tmp_path, "1")
    try:
        for workers, redis in ((1, None), (2, None), (1, REDIS), (2, REDIS)):
            with pytest.raises(
                StartupError, match=rf"in use by another s3torrent server \(pid {holder.pid}\)"
            ):
                hold_data_dir(Settings(data_dir=tmp_path, redis_url=redis, node_id="n2"), workers)
    finally:
        _stop(holder)
    _release(hold_data_dir(Settings(data_dir=tmp_path), 2))


def test_redis_nodes_of_one_worker_share_it_under_their_own_ids(tmp_path: Path) -> None:
    holder = _holder(tmp_path, "1", f"redis_url={REDIS}", "node_id=a")
    try:
        _release(hold_data_dir(Settings(data_dir=tmp_path, redis_url=REDIS, node_id="b"), 1))
        with pytest.raises(StartupError, match="the node id 'a' is in use"):
            hold_data_dir(Settings(data_dir=tmp_path, redis_url=REDIS, node_id="a"), 1)
        with pytest.raises(StartupError, match="--workers 1 each"):
            hold_data_dir(Settings(data_dir=tmp_path, redis_url=REDIS, node_id="c"), 2)
        with pytest.raises(StartupError, match="in use by another s3torrent server"):
            hold_data_dir(Settings(data_dir=tmp_path, node_id="d"), 1)
    finally:
        _stop(holder)


def test_a_file_system_that_cannot_lock_warns_and_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with caplog.at_level(logging.WARNING, logger="s3torrent"):
        fds = hold_data_dir(Settings(data_dir=tmp_path), 2)
    assert fds == []
    assert "would not be refused" in caplog.text
    assert (tmp_path / SERVER_LOCK).exists()
