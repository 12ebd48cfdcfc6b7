"""Writers of several processes take turns at a SQLite file (store/writer_turn.py)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store import loop_writer
from s3torrent.store import metadata as md
from s3torrent.store.database import Database
from s3torrent.store.writer_turn import WriterTurn, turn_path

# Another process that takes the turn and holds it until told (a line on stdin) or killed.
_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path / "m.sqlite3-writer")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait(10)


def _add_bucket(name: str) -> Callable[[Connection], str]:
    def txn(conn: Connection) -> str:
        conn.execute(
            md.buckets.insert(),
            {"name": name, "owner_id": "o", "created_at": 1.0, "region": "us-east-1"},
        )
        return name

    return txn


def _names(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM buckets")}


def _free(path: Path) -> bool:
    """Nobody holds the turn (a claim of our own gets it at once)."""
    probe = WriterTurn(str(path))
    try:
        taken = probe.try_take()
        probe.give_back()
        return taken
    finally:
        probe.close()


def _watch_hand_overs(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    writer = db._loop_writer
    assert writer is not None
    handed_over: list[object] = []
    fallback = writer._fallback

    def counted(fn: Callable[[Connection], Any]) -> Any:
        handed_over.append(fn)
        return fallback(fn)

    monkeypatch.setattr(writer, "_fallback", counted)
    return handed_over


def test_a_write_waits_for_the_turn_on_a_thread_and_starts_when_it_is_given_back(
    db: Database,
    tmp_path: Path,
    holder: subprocess.Popen[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another worker holds the turn: the batch waits for the kernel's grant (not polling
    BEGIN, not moving to the writer thread), the loop turns meanwhile, and the write commits
    once the turn is given back."""
    retries: list[int] = []

    async def main() -> tuple[str, int]:
        # The loop writer exists (this first write waits for the turn too: let it go).
        first = asyncio.ensure_future(db.write(_add_bucket("first")))
        await asyncio.sleep(0.05)
        writer = db._loop_writer
        assert writer is not None and writer._turn_wait is not None
        handed_over = _watch_hand_overs(db, monkeypatch)
        ticks = 0
        write = asyncio.ensure_future(db.write(_add_bucket("waited")))
        for _ in range(30):  # 0.3 s with the turn held elsewhere
            await asyncio.sleep(0.01)
            ticks += 1
            retries.append(writer._busy_retries)
        assert not first.done() and not write.done()
        assert "waited" not in _names(tmp_path / "m.sqlite3")
        assert holder.stdin is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        await asyncio.wait_for(first, 10)
        done = await asyncio.wait_for(write, 10)
        assert handed_over == []
        return done, ticks

    done, ticks = asyncio.run(main())
    assert done == "waited"
    assert ticks == 30
    assert set(retries) == {0}  # BEGIN was never tried while the turn was elsewhere
    assert {"first", "waited"} <= _names(tmp_path / "m.sqlite3")
    assert _free(tmp_path / "m.sqlite3-writer")  # given back after the commit


def test_a_holder_killed_with_sigkill_holds_the_turn_no_longer(
    db: Database, tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    async def main() -> str:
        write = asyncio.ensure_future(db.write(_add_bucket("after")))
        await asyncio.sleep(0.1)
        assert not write.done()
        holder.send_signal(signal.SIGKILL)
        return await asyncio.wait_for(write, 10)

    assert asyncio.run(main()) == "after"
    assert "after" in _names(tmp_path / "m.sqlite3")


def test_a_turn_held_too_long_is_gone_without_and_given_back_when_granted(
    db: Database,
    tmp_path: Path,
    holder: subprocess.Popen[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stopped holder keeps the turn: writes go on without it after the limit (SQLite's
    lock still decides), and the turn granted late is given back, not kept."""
    monkeypatch.setattr(loop_writer, "TURN_WAIT_LIMIT", 0.2)
    holder.send_signal(signal.SIGSTOP)

    async def main() -> list[str]:
        started = time.monotonic()
        done = [await asyncio.wait_for(db.write(_add_bucket(f"w{i}")), 10) for i in range(3)]
        assert time.monotonic() - started < 5  # one wait of the limit, not one per write
        return done

    try:
        assert asyncio.run(main()) == ["w0", "w1", "w2"]
    finally:
        holder.send_signal(signal.SIGCONT)
    assert {"w0", "w1", "w2"} <= _names(tmp_path / "m.sqlite3")
    assert holder.stdin is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()
    holder.wait(10)
    # The abandoned wait is granted now and gives the turn straight back.
    deadline = time.monotonic() + 10
    while not _free(tmp_path / "m.sqlite3-writer"):
        assert time.monotonic() < deadline, "the late turn was kept"
        time.sleep(0.01)


def test_writes_off_the_loop_take_turns_too(
    db: Database, tmp_path: Path, holder: subprocess.Popen[str]
) -> None:
    """The writer thread (writes from other threads, and batches the loop hands over) takes
    its own turn: it waits for the holder, then writes."""
    import threading

    out: list[str] = []
    th = threading.Thread(target=lambda: out.append(db.write_sync(_add_bucket("thread"))))
    th.start()
    th.join(0.3)
    assert th.is_alive() and out == []
    assert holder.stdin is not None
    holder.stdin.write("go\n")
    holder.stdin.flush()
    th.join(10)
    assert out == ["thread"]
    assert _free(tmp_path / "m.sqlite3-writer")


def test_two_claims_of_one_process_exclude_each_other(tmp_path: Path) -> None:
    a, b = WriterTurn(str(tmp_path / "t")), WriterTurn(str(tmp_path / "t"))
    try:
        assert a.try_take()
        assert not b.try_take()
        assert not b.take(limit=0.1)  # not granted in time: b goes on without
        a.give_back()
        deadline = time.monotonic() + 10
        # b's abandoned wait is granted now, and gives the turn back at once.
        while b._waiting is not None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not b.held
        assert a.try_take()
        a.give_back()
        assert b.take(limit=5)
        assert b.held and not a.try_take()
    finally:
        a.close()
        b.close()


def test_only_a_sqlite_file_has_a_turn(tmp_path: Path) -> None:
    assert turn_path(sa.create_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")) == str(
        tmp_path / "m.sqlite3-writer"
    )
    assert turn_path(sa.create_engine("sqlite://")) is None
    assert turn_path(sa.create_engine("sqlite:///:memory:")) is None
    assert turn_path(sa.create_engine("postgresql+psycopg://u@localhost/d")) is None


def test_an_unusable_turn_file_means_writing_without_turns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The turn file cannot be made (here a link into a missing directory; elsewhere a file
    system without locks): writes on the loop and off it go on without turns, never hang."""
    import threading

    (tmp_path / "m.sqlite3-writer").symlink_to(tmp_path / "missing" / "turn")
    d = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    try:

        async def main() -> list[str]:
            return [await asyncio.wait_for(d.write(_add_bucket(f"l{i}")), 10) for i in range(3)]

        assert asyncio.run(main()) == ["l0", "l1", "l2"]
        out: list[str] = []
        th = threading.Thread(target=lambda: out.append(d.write_sync(_add_bucket("t"))))
        th.start()
        th.join(10)
        assert out == ["t"]
    finally:
        d.close()
    assert {"l0", "l1", "l2", "t"} <= _names(tmp_path / "m.sqlite3")
    assert "unusable" in caplog.text
