"""A second server on a data directory a running server uses is refused (provision.hold_data_dir).

Until 2026-12-07 it started: it replaced the first server's Unix sockets (owner.sock,
events.sock, tracker.sock, handoff.sock), so the first one's workers lost their owner and
its event hub, and with events of their own the two servers never heard of each other's
revocations."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import LiveServer, make_client, start_server
from tests.ports import free_port

SOCKETS = ("owner.sock", "events.sock", "tracker.sock", "handoff.sock")


def _second(data_dir: Path, workers: int, env: dict[str, str] | None = None) -> LiveServer:
    return LiveServer(
        data_dir=data_dir,
        port=free_port(),
        peer_port=free_port(),
        workers=workers,
        env=env or {},
    )


def _inodes(data_dir: Path) -> dict[str, int]:
    return {name: (data_dir / name).stat().st_ino for name in SOCKETS}


@pytest.mark.parametrize("second_workers", [1, 2])
def test_a_second_server_on_a_used_data_directory_is_refused(
    tmp_path: Path, second_workers: int
) -> None:
    first = start_server(tmp_path, workers=2)
    try:
        assert first.proc is not None
        sockets = _inodes(first.data_dir)
        s3 = make_client(first.endpoint)
        s3.create_bucket(Bucket="mine")
        second = _second(first.data_dir, second_workers)
        with pytest.raises(RuntimeError, match="server exited") as refused:
            second.start(timeout=30)
        text = str(refused.value)
        assert f"is in use by another s3torrent server (pid {first.proc.pid})" in text, text
        assert "give this one another --data-dir" in text
        # The first server's sockets are its own still, and it serves on every worker.
        assert _inodes(first.data_dir) == sockets
        for i in range(8):
            s3.put_object(Bucket="mine", Key=f"k{i}", Body=b"still mine")
            assert s3.get_object(Bucket="mine", Key=f"k{i}")["Body"].read() == b"still mine"
        assert first.stop() == 0
        # Once it stopped, the directory is free.
        second.start(timeout=30)
        assert make_client(second.endpoint).get_object(Bucket="mine", Key="k0")["Body"].read()
        assert second.stop() == 0
    finally:
        first.stop()


def test_the_directory_is_free_again_after_the_server_was_killed(tmp_path: Path) -> None:
    """A server killed by SIGKILL (every process of it) leaves no lock behind: the kernel
    releases a dead process's locks, so no stale file can keep the next start out."""
    first = start_server(tmp_path, workers=2)
    first.kill9()
    assert (first.data_dir / "server.lock").exists()
    second = _second(first.data_dir, 2)
    second.start(timeout=30)
    try:
        make_client(second.endpoint).create_bucket(Bucket="after-kill")
    finally:
        assert second.stop() == 0


def test_an_orphaned_worker_still_holds_the_directory(tmp_path: Path) -> None:
    """A supervisor killed alone leaves workers that still serve the directory: a new server
    is refused until they are gone too."""
    first = start_server(tmp_path, workers=2)
    assert first.proc is not None
    pgid = first.proc.pid
    try:
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
        second = _second(first.data_dir, 1)
        with pytest.raises(RuntimeError, match="in use by another s3torrent server"):
            second.start(timeout=30)
    finally:
        os.killpg(pgid, signal.SIGKILL)
        first.proc = None
