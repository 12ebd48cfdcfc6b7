"""A second server on a data directory a running server uses is refused (provision.hold_data_dir).

Until 2026-12-07 it started: it replaced the first server's Unix sockets (owner.sock,
events.sock, tracker.sock, handoff.sock), so the first one's workers lost their owner and
its event hub, and with events of their own the two servers never heard of each other's
revocations."""

from __future__ import annotations

import contextlib
import os
import signal
import time
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
    second = _second(first.data_dir, second_workers)
    try:
        assert first.proc is not None
        sockets = _inodes(first.data_dir)
        s3 = make_client(first.endpoint)
        s3.create_bucket(Bucket="mine")
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
        second.stop()
        first.stop()


def test_the_directory_is_free_again_after_the_server_was_killed(tmp_path: Path) -> None:
    """A server killed by SIGKILL (every process of it) leaves no lock behind: the kernel
    releases a dead process's locks, so no stale file can keep the next start out."""
    first = start_server(tmp_path, workers=2)
    first.kill9()
    assert (first.data_dir / "server.lock").exists()
    second = _second(first.data_dir, 2)
    try:
        second.start(timeout=30)
        make_client(second.endpoint).create_bucket(Bucket="after-kill")
        assert second.stop() == 0
    finally:
        second.stop()


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_drain_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    """A supervisor killed alone (SIGKILL, the OOM killer) leaves no workers serving on
    unsupervised: each gets SIGTERM from the kernel (PR_SET_PDEATHSIG), drains and exits,
    and the directory is free for the next start."""
    first = start_server(tmp_path, workers=2)
    assert first.proc is not None
    pgid = first.proc.pid
    workers = _children(first.proc.pid)
    second = _second(first.data_dir, 1)
    assert len(workers) == 2, workers
    try:
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait()
        deadline = time.monotonic() + 30
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "workers outlived their supervisor"
        second.start(timeout=30)
        assert second.stop() == 0
    finally:
        second.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        first.proc = None
