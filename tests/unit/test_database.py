"""The metadata database's fast paths on SQLite: point reads and group commit on the loop."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store import loop_writer
from s3torrent.store import metadata as md
from s3torrent.store.database import Database
from s3torrent.store.writer_turn import WriterTurn

T = TypeVar("T")


def _bucket(name: str) -> dict[str, object]:
    return {"name": name, "owner_id": "o", "created_at": 1.0, "region": "us-east-1"}


def _add_bucket(name: str) -> Callable[[Connection], str]:
    def txn(conn: Connection) -> str:
        conn.execute(md.buckets.insert(), _bucket(name))
        return name

    return txn


def _names(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM buckets")}


def test_concurrent_writes_commit_together_and_fail_alone(db: Database, tmp_path: Path) -> None:
    def bad(conn: Connection) -> None:
        conn.execute(md.buckets.insert(), _bucket("bad"))  # rolled back with its savepoint
        raise ValueError("this write fails")

    async def main() -> list[object]:
        writes = [db.write(_add_bucket(f"b{i}")) for i in range(40)]
        writes.insert(17, db.write(bad))
        return await asyncio.gather(*writes, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[17], ValueError)
    assert [r for i, r in enumerate(results) if i != 17] == [f"b{i}" for i in range(40)]
    # Durable and visible to another connection once acknowledged; the failed write left nothing.
    assert _names(tmp_path / "m.sqlite3") == {f"b{i}" for i in range(40)}


def test_a_duplicate_key_fails_only_its_own_write(db: Database) -> None:
    async def main() -> list[object]:
        await db.write(_add_bucket("dup"))
        return await asyncio.gather(
            db.write(_add_bucket("dup")),
            db.write(_add_bucket("other")),
            return_exceptions=True,
        )

    dup, other = asyncio.run(main())
    assert isinstance(dup, sa.exc.IntegrityError)
    assert other == "other"


async def _counting_ticks(busy: Awaitable[T], interval: float) -> tuple[T, int]:
    """`busy`'s result, and how often a task woken every `interval` seconds ran meanwhile:
    how freely the loop turned."""
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(interval)

    t = asyncio.create_task(ticker())
    try:
        return await busy, ticks
    finally:
        done = True
        await t


def test_a_write_lock_held_elsewhere_never_blocks_the_loop(db: Database, tmp_path: Path) -> None:
    """Another process (the CLI, say) writing: our writes wait on a thread, the loop runs on."""
    other = sqlite3.connect(tmp_path / "m.sqlite3", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release_later() -> None:
        time.sleep(0.5)
        other.execute("COMMIT")
        released.set()

    async def main() -> tuple[str, int]:
        threading.Thread(target=release_later, daemon=True).start()
        return await _counting_ticks(asyncio.wait_for(db.write(_add_bucket("late")), 10), 0.01)

    result, ticks = asyncio.run(main())
    assert result == "late"
    assert released.is_set()
    # The loop kept turning while the lock was held (0.5 s at 10 ms a tick).
    assert ticks >= 20
    assert "late" in _names(tmp_path / "m.sqlite3")
    other.close()


def test_writes_after_the_lock_is_free_again_use_the_loop(db: Database) -> None:
    async def main() -> list[str]:
        return [await db.write(_add_bucket(f"s{i}")) for i in range(5)]

    assert asyncio.run(main()) == [f"s{i}" for i in range(5)]


async def _contend(db: Database) -> None:
    """Another writer (as another worker's batch) holds the turn while a write waits for it:
    from then on the turn counts as contended."""
    await db.write(_add_bucket("before-contention"))
    writer = db._loop_writer
    assert writer is not None and writer._turn is not None
    other = WriterTurn(writer._turn.path)
    try:
        assert other.try_take()
        write = asyncio.ensure_future(db.write(_add_bucket("contended")))
        while writer._turn_wait is None:
            await asyncio.sleep(0.001)
    finally:
        other.give_back()
        other.close()
    assert await asyncio.wait_for(write, 10) == "contended"


def _where_commits_run(monkeypatch: pytest.MonkeyPatch, delay: list[float]) -> list[bool]:
    """Whether each COMMIT ran on the loop (the main thread), from now on; each reports
    `delay[0]` as its duration and sleeps that long first (a disk told to be that slow; a
    fresh database's first commits grow the WAL and take milliseconds here too)."""
    real = loop_writer._commit
    on_loop: list[bool] = []

    def commit(driver: Any, turn: Any) -> float:
        on_loop.append(threading.current_thread() is threading.main_thread())
        time.sleep(delay[0])
        real(driver, turn)
        return delay[0]

    monkeypatch.setattr(loop_writer, "_commit", commit)
    return on_loop


def test_commits_stay_on_the_commit_thread_while_no_other_writer_waits_for_the_turn(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One writer alone (one worker): its loop serves other requests while COMMIT waits for
    the disk, however quick the commits are."""
    on_loop = _where_commits_run(monkeypatch, [0.0])

    async def main() -> list[str]:
        return [await db.write(_add_bucket(f"a{i}")) for i in range(10)]

    assert asyncio.run(main()) == [f"a{i}" for i in range(10)]
    assert on_loop == [False] * 10


def test_quick_commits_run_on_the_loop_and_slow_ones_on_the_commit_thread(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another writer takes turns: a COMMIT as quick as a hand-off runs on the loop;
    once commits are slow (a disk whose fsync takes milliseconds) they go to the commit
    thread, so the loop turns meanwhile, one in PROBE_EVERY is timed on the loop again, and
    quick commits come back to the loop."""
    delay = [0.0]
    on_loop = _where_commits_run(monkeypatch, delay)
    monkeypatch.setattr(loop_writer, "PROBE_EVERY", 8)
    n = 0

    async def writes(count: int) -> None:
        nonlocal n
        for _ in range(count):
            n += 1
            assert await db.write(_add_bucket(f"c{n}")) == f"c{n}"

    async def ticks_during(count: int) -> int:
        _, ticks = await _counting_ticks(writes(count), 0)
        return ticks

    async def main() -> None:
        await _contend(db)
        del on_loop[:]
        await writes(5)
        assert on_loop == [True] * 5
        delay[0] = 0.01  # slow: the first is on the loop still (timed), the next ones are not
        del on_loop[:]
        ticks = await ticks_during(loop_writer.PROBE_EVERY + 3)
        assert on_loop[0] is True
        assert on_loop[1 : loop_writer.PROBE_EVERY + 1] == [False] * loop_writer.PROBE_EVERY
        assert on_loop[loop_writer.PROBE_EVERY + 1] is True  # the probe
        assert on_loop[loop_writer.PROBE_EVERY + 2] is False
        # The loop turned while those commits slept on the thread (10 ms each).
        assert ticks > loop_writer.PROBE_EVERY
        delay[0] = 0.0
        del on_loop[:]
        await writes(30)
        assert on_loop[0] is False
        assert on_loop[-5:] == [True] * 5  # quick again: back on the loop

    asyncio.run(main())
    assert {f"c{i}" for i in range(1, n + 1)} <= _names(Path(db.engine.url.database or ""))


def test_a_commit_that_fails_on_the_loop_fails_its_batch_and_the_next_one_commits(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = loop_writer._commit
    failures = [sqlite3.OperationalError("disk I/O error")]

    def commit(driver: Any, turn: Any) -> float:
        assert threading.current_thread() is threading.main_thread()
        if failures:
            driver.execute("SELECT 1")  # the transaction is still open: the writer rolls it back
            if turn is not None:
                turn.give_back()
            raise failures.pop()
        return real(driver, turn)

    async def main() -> tuple[list[object], str]:
        await _contend(db)
        await db.write(_add_bucket("before"))
        # The commits so far may have been slow (a fresh file's WAL grows; a busy machine):
        # a running average above LOOP_COMMIT_LIMIT would send the next commit to the
        # thread, and this test is about one that fails on the loop.
        writer = db._loop_writer
        assert writer is not None
        writer.commit_average = 0.0
        monkeypatch.setattr(loop_writer, "_commit", commit)
        failed = await asyncio.gather(
            *(db.write(_add_bucket(f"lost{i}")) for i in range(3)), return_exceptions=True
        )
        return failed, await db.write(_add_bucket("after"))

    failed, after = asyncio.run(main())
    assert all(isinstance(f, sqlite3.OperationalError) for f in failed), failed
    assert after == "after"
    assert _names(tmp_path / "m.sqlite3") == {"before-contention", "contended", "before", "after"}


def test_point_reads_see_what_was_committed(db: Database) -> None:
    async def main() -> tuple[md.Bucket | None, md.Bucket | None]:
        before = await db.lookup(lambda rows: md.get_bucket(rows, "pr"))
        await db.write(_add_bucket("pr"))
        after = await db.lookup(lambda rows: md.get_bucket(rows, "pr"))
        return before, after

    before, after = asyncio.run(main())
    assert before is None
    assert after is not None and after.name == "pr" and after.region == "us-east-1"


def test_a_busy_point_read_falls_back_to_the_pool(db: Database) -> None:
    asyncio.run(db.write(_add_bucket("fb")))
    calls: list[str] = []

    def busy_on_the_loop(rows: md.Rows) -> md.Bucket | None:
        if isinstance(rows, md.PointReads):
            calls.append("fast")
            raise sqlite3.OperationalError("database is locked")
        calls.append("slow")
        return md.get_bucket(rows, "fb")

    found = asyncio.run(db.lookup(busy_on_the_loop))
    assert found is not None and found.name == "fb"
    assert calls == ["fast", "slow"]


def test_prepared_insert_fills_column_defaults(db: Database) -> None:
    """A row that leaves out defaulted columns gets the defaults, as through SQLAlchemy."""

    def txn(conn: Connection) -> bool:
        return md.insert_if_absent(conn, md.hash_jobs, {"version_id": "v1", "created_at": 2.0})

    assert asyncio.run(db.write(txn)) is True
    assert asyncio.run(db.write(txn)) is False  # already there
    row = db.read_sync(lambda c: c.execute(sa.select(md.hash_jobs)).one())
    assert row.attempts == 0 and row.claimed_by is None and row.claimed_until is None


def test_writes_from_another_thread_use_the_writer_thread(db: Database) -> None:
    assert db.write_sync(_add_bucket("sync")) == "sync"

    async def main() -> str:
        return await db.write(_add_bucket("async"))

    assert asyncio.run(main()) == "async"
    # A second event loop (in another thread) still gets its writes done.
    out: list[str] = []
    th = threading.Thread(target=lambda: out.append(asyncio.run(db.write(_add_bucket("x")))))
    th.start()
    th.join(10)
    assert out == ["x"]


def test_a_short_lock_held_elsewhere_is_waited_for_on_the_loop(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker's commit (the lock for an fsync): the batch tries BEGIN again on the
    loop instead of moving to the writer thread and reconnecting."""
    other = sqlite3.connect(tmp_path / "m.sqlite3", isolation_level=None, check_same_thread=False)
    handed_over: list[object] = []

    async def main() -> str:
        await db.write(_add_bucket("first"))  # the loop writer exists
        writer = db._loop_writer
        assert writer is not None
        fallback = writer._fallback

        def counted(fn: Callable[[Connection], Any]) -> Any:
            handed_over.append(fn)
            return fallback(fn)

        monkeypatch.setattr(writer, "_fallback", counted)
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(db.write(_add_bucket("waited")))
        while writer._busy_retries < 3:
            await asyncio.sleep(0.001)
        other.execute("COMMIT")
        return await asyncio.wait_for(write, 10)

    assert asyncio.run(main()) == "waited"
    assert handed_over == []
    assert "waited" in _names(tmp_path / "m.sqlite3")
    other.close()


@pytest.mark.parametrize(("durable", "level"), [(True, 2), (False, 1)])
def test_storage_fsync_decides_how_sqlite_commits(
    tmp_path: Path, durable: bool, level: int
) -> None:
    """storage.fsync reaches the metadata commit: FULL (synced at every commit, power-loss
    safe) or NORMAL (WAL synced at checkpoints; a commit survives kill -9). It used to stay
    FULL whatever the setting said."""
    d = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}", durable=durable)
    try:
        asyncio.run(d.write(_add_bucket("b")))
        with d.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == level
        assert _names(tmp_path / "m.sqlite3") == {"b"}
    finally:
        d.close()


def test_writers_keep_savepoint_journals_in_memory(db: Database) -> None:
    """Both writers (the loop's group commit and the writer thread) run with temp_store
    MEMORY: every write of a batch is a savepoint, and its journal used to go to temp files
    (about 60 KB of file writes per 4 KiB PUT). A pooled connection the writer thread gave
    back has the default again, so a reader's big sort may still spill to disk."""

    def temp_store(conn: Connection) -> int:
        return int(conn.exec_driver_sql("PRAGMA temp_store").scalar() or 0)

    async def on_loop() -> int:
        return await db.write(temp_store)

    assert asyncio.run(on_loop()) == 2  # the loop writer (a connection of its own)
    assert db.write_sync(temp_store) == 2  # the writer thread
    assert [db.read_sync(temp_store) for _ in range(8)] == [0] * 8


def test_point_reads_cache_is_exact_across_connections_and_processes(tmp_path: Path) -> None:
    """PointReads.unchanged answers from its cache only while the watched rows are unchanged:
    a change committed by another connection of this process, or by another process, is
    seen at the very next lookup; a commit to a table nobody watches keeps the cache; an
    unchanged database is not read again."""
    import subprocess
    import sys

    from s3torrent.store.sql import PointReads

    path = tmp_path / "c.sqlite3"
    _watched_db(path)
    reads = PointReads(str(path))
    calls: list[str] = []

    def read(rows: PointReads) -> str | None:
        calls.append("read")
        row = rows._connection().execute("SELECT v FROM t WHERE k = 'a'").fetchone()
        return row[0] if row else None

    def lookup() -> str | None:
        return reads.unchanged("a", read, lambda _: 100)

    assert lookup() == "one" and lookup() == "one" and lookup() == "one"
    assert len(calls) == 1  # unchanged: served from the cache
    with sqlite3.connect(path) as other:  # another connection of this process commits
        other.execute("UPDATE t SET v = 'two'")
    assert lookup() == "two" and len(calls) == 2
    with sqlite3.connect(path) as other:  # a commit to an unwatched table keeps the cache
        other.execute("CREATE TABLE u (x)")
        other.execute("INSERT INTO u VALUES (1)")
    assert lookup() == "two" and len(calls) == 2
    code = (
        f"import sqlite3; c = sqlite3.connect({str(path)!r}); "
        "c.execute(\"UPDATE t SET v = 'three'\"); c.commit()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert lookup() == "three" and len(calls) == 3
    assert lookup() == "three" and len(calls) == 3
    reads.close()


def test_every_change_to_a_looked_up_row_bumps_the_generation(tmp_path: Path) -> None:
    """The triggers of revisions 0012 and 0013 on the real schema: each insert, update and
    delete of a bucket or an object row moves the generation the exact cache reads first,
    and only those of a bucket move the buckets' own; a write to any other table
    (metering, torrents) leaves both, so it does not empty the cache."""
    from s3torrent.store.sql import GENERATION_SQL

    db = Database(f"sqlite:///{tmp_path / 'g.sqlite3'}")

    def generation() -> tuple[int, int]:
        row = db.read_sync(lambda c: c.exec_driver_sql(GENERATION_SQL).one())
        return int(row[0]), int(row[1])

    def run(sql: str) -> tuple[int, int]:
        db.write_sync(lambda c: c.exec_driver_sql(sql))
        return generation()

    g0 = generation()
    b = "INSERT INTO buckets (name, owner_id, created_at, region) VALUES ('b', 'o', 0, 'r')"
    g1 = run(b)
    g2 = run("UPDATE buckets SET policy = '{}' WHERE name = 'b'")
    o = (
        "INSERT INTO objects (bucket, key, version_id, size, etag, last_modified, owner_id,"
        " headers, versioned, legal_hold) VALUES ('b', x'6b', 'v1', 1, 'e', 0, 'o', '{}', 0, 0)"
    )
    g3 = run(o)
    g4 = run("UPDATE objects SET acl = 'x' WHERE version_id = 'v1'")
    g5 = run("DELETE FROM objects WHERE version_id = 'v1'")
    g6 = run("DELETE FROM buckets WHERE name = 'b'")
    assert g0[0] < g1[0] < g2[0] < g3[0] < g4[0] < g5[0] < g6[0]
    assert g0[1] < g1[1] < g2[1] == g3[1] == g4[1] == g5[1] < g6[1]  # buckets alone
    hour = (
        "INSERT INTO usage_hourly (hour, bucket, operation, requests, bytes_out, bytes_in,"
        " byte_hours) VALUES (1, 'b', 'GetObject', 1, 4096, 0, 0)"
    )
    assert run(hour) == g6  # a metering flush
    assert run("DELETE FROM torrents") == g6
    db.close()


def test_cached_bucket_rows_outlive_writes_of_objects(tmp_path: Path) -> None:
    """The "buckets" scope of the exact cache, on the real schema: a lookup of a bucket
    alone stays cached while objects are written (any process, any connection), and is
    read again at the next lookup once a bucket row changes; the "rows" scope is emptied
    by either."""
    from s3torrent.store import queries as q

    path = tmp_path / "s.sqlite3"
    db = Database(f"sqlite:///{path}")
    db.write_sync(
        lambda c: c.exec_driver_sql(
            "INSERT INTO buckets (name, owner_id, created_at, region) VALUES ('b', 'o', 0, 'r')"
        )
    )
    assert db.point_reads is not None
    reads = db.point_reads
    calls = {"buckets": 0, "rows": 0}

    def lookup(scope: Any) -> Any:
        def fn(rows: Any) -> Any:
            calls[scope] += 1
            return q.get_bucket(rows, "b")

        return reads.unchanged(("b", scope), fn, lambda _: 100, scope)

    def other_connection(sql: str) -> None:
        with sqlite3.connect(path) as other:  # as another process commits
            other.execute(sql)

    assert lookup("buckets").policy is None and lookup("rows").policy is None
    other_connection(
        "INSERT INTO objects (bucket, key, version_id, size, etag, last_modified, owner_id,"
        " headers, versioned, legal_hold) VALUES ('b', x'6b', 'v1', 1, 'e', 0, 'o', '{}', 0, 0)"
    )
    other_connection("UPDATE objects SET acl = 'x' WHERE version_id = 'v1'")
    assert lookup("buckets").policy is None and lookup("rows").policy is None
    assert calls == {"buckets": 1, "rows": 2}  # an object write empties "rows" only
    other_connection("UPDATE buckets SET policy = '{\"p\": 1}' WHERE name = 'b'")
    assert lookup("buckets").policy == '{"p": 1}' and lookup("rows").policy == '{"p": 1}'
    assert calls == {"buckets": 2, "rows": 3}
    db.close()


def test_point_reads_cache_is_bounded_by_weight(tmp_path: Path) -> None:
    from s3torrent.store.sql import PointReads

    path = tmp_path / "b.sqlite3"
    _generation_only_db(path)
    reads = PointReads(str(path), cache_bytes=8000)
    calls: list[int] = []

    def value(n: int) -> Callable[[PointReads], int]:
        def read(_: PointReads) -> int:
            calls.append(n)
            return n

        return read

    for n in range(20):
        reads.unchanged(n, value(n), lambda _: 1000)  # 8 fit
    assert reads._local.caches[0].size <= 8000
    reads.unchanged(19, value(19), lambda _: 1000)
    assert calls.count(19) == 1  # the newest is kept
    reads.unchanged(0, value(0), lambda _: 1000)
    assert calls.count(0) == 2  # the oldest went first
    reads.unchanged("big", value(-1), lambda _: 5000)  # over an eighth: never cached
    reads.unchanged("big", value(-1), lambda _: 5000)
    assert calls.count(-1) == 2
    reads.close()


_GENERATION_TABLE = "CREATE TABLE lookup_generation (id INTEGER PRIMARY KEY, n, buckets_n)"


def _generation_only_db(path: Path, n: int = 0, buckets_n: int = 0) -> None:
    """A database holding only the generation row, in SQLite's default (rollback) journal
    mode: no WAL, so no -shm file."""
    with sqlite3.connect(path) as setup:
        setup.execute(_GENERATION_TABLE)
        setup.execute("INSERT INTO lookup_generation VALUES (1, ?, ?)", (n, buckets_n))


def _watched_db(path: Path) -> None:
    """A table `t` whose updates bump the lookup generation, as buckets and objects do."""
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
        setup.execute("INSERT INTO t VALUES ('a', 'one')")
        setup.execute(_GENERATION_TABLE)
        setup.execute("INSERT INTO lookup_generation VALUES (1, 0, 0)")
        setup.execute(
            "CREATE TRIGGER bump AFTER UPDATE ON t BEGIN "
            "UPDATE lookup_generation SET n = n + 1 WHERE id = 1; END"
        )


def _set_v(path: Path, value: str) -> None:
    with sqlite3.connect(path) as other:  # another connection: as another process commits
        other.execute("UPDATE t SET v = ?", (value,))


def _lookup_of(reads: Any) -> Callable[[], str]:
    def read(rows: Any) -> str:
        return str(rows._connection().execute("SELECT v FROM t WHERE k = 'a'").fetchone()[0])

    return lambda: reads.unchanged("a", read, lambda _: 100)


def _watched_reads(path: Path) -> tuple[Any, Callable[[], str]]:
    """Point reads on a fresh watched database at path, and a lookup of its one row."""
    from s3torrent.store.sql import PointReads

    _watched_db(path)
    reads = PointReads(str(path))
    return reads, _lookup_of(reads)


def test_the_generation_is_read_once_per_loop_turn(tmp_path: Path) -> None:
    """On the event loop the generation is read once per turn: a commit within the turn
    (after the read) shows from the next turn on, and the bytes of a request that arrive
    after that read are served on a later turn, which reads it again: a request always
    sees what was committed before it was sent."""
    path = tmp_path / "turn.sqlite3"
    reads, lookup = _watched_reads(path)

    async def main() -> list[str]:
        seen = [lookup()]
        _set_v(path, "two")
        seen.append(lookup())  # the same turn: its read is kept
        # A request sent now (after the commit): its bytes arrive on a socket the loop
        # watches, and its handler runs as a task, as aiohttp's do.
        loop = asyncio.get_running_loop()
        server, client = socket.socketpair()
        server.setblocking(False)
        answered: asyncio.Future[str] = loop.create_future()
        tasks: list[asyncio.Task[None]] = []

        async def handler() -> None:
            answered.set_result(lookup())

        def data_received() -> None:
            server.recv(100)
            loop.remove_reader(server)
            tasks.append(loop.create_task(handler()))

        loop.add_reader(server, data_received)
        client.send(b"GET")
        seen.append(await answered)
        server.close()
        client.close()
        seen.append(lookup())
        return seen

    assert asyncio.run(main()) == ["one", "one", "two", "two"]
    reads.close()


def test_the_turns_generation_is_dropped_by_a_commit_of_this_process(tmp_path: Path) -> None:
    """A step that commits and then looks up, with no turn between (a synchronous write),
    sees its own write."""
    db = Database(f"sqlite:///{tmp_path / 'own.sqlite3'}")
    assert db.point_reads is not None
    db.write_sync(_add_bucket("b"))
    policy = "SELECT policy FROM buckets WHERE name = 'b'"

    def read(rows: Any) -> Any:
        return rows._connection().execute(policy).fetchone()[0]

    async def main() -> tuple[Any, Any]:
        assert db.point_reads is not None
        before = db.point_reads.unchanged("p", read, lambda _: 100)
        db.write_sync(lambda c: c.exec_driver_sql("UPDATE buckets SET policy = '{}'"))
        return before, db.point_reads.unchanged("p", read, lambda _: 100)

    assert asyncio.run(main()) == (None, "{}")

    async def on_the_loop() -> tuple[Any, Any]:
        assert db.point_reads is not None
        before = db.point_reads.unchanged("p", read, lambda _: 100)
        await db.write(lambda c: c.exec_driver_sql("UPDATE buckets SET policy = '[]'"))
        return before, db.point_reads.unchanged("p", read, lambda _: 100)

    assert asyncio.run(on_the_loop()) == ("{}", "[]")
    db.close()


def test_the_generation_is_read_every_time_off_the_loop_or_with_a_task_factory(
    tmp_path: Path,
) -> None:
    """Without asyncio's own task steps (a thread with no loop; a loop whose task factory
    may run a step at once, inside the callback that received a request's bytes), the
    reasoning that keeps a turn's read does not hold: the generation is read every time."""
    path = tmp_path / "off.sqlite3"
    reads, lookup = _watched_reads(path)
    assert lookup() == "one"
    _set_v(path, "two")
    assert lookup() == "two"

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        loop.set_task_factory(lambda lp, coro, **kw: asyncio.Task(coro, loop=lp, **kw))
        seen = [lookup()]
        _set_v(path, "three")
        seen.append(lookup())
        return seen

    assert asyncio.run(main()) == ["two", "three"]
    reads.close()


def test_a_turns_generation_is_never_used_by_the_next_loop_of_the_thread(tmp_path: Path) -> None:
    """A loop that stops before the callback dropping its turn's read ran (asyncio.run or
    run_until_complete returning) leaves nothing a later loop on the same thread can use."""
    path = tmp_path / "loops.sqlite3"
    reads, lookup = _watched_reads(path)
    first = asyncio.new_event_loop()
    seen: list[str] = []

    async def in_last_turn() -> None:
        seen.append(lookup())
        first.stop()  # this turn is the loop's last: the dropping callback never runs

    task = first.create_task(in_last_turn())
    first.run_forever()
    assert task.done()
    first.close()
    _set_v(path, "two")

    async def later() -> str:
        return lookup()

    assert seen == ["one"]
    assert asyncio.run(later()) == "two"
    reads.close()


def test_outside_a_task_step_the_generation_is_read_every_time(tmp_path: Path) -> None:
    """A plain callback, or a coroutine it runs inline (the tracker answers announces so,
    tracker/eager.py), may act on bytes that arrived after a turn's kept read: it neither
    uses that read nor keeps its own."""
    from s3torrent.tracker.eager import start_eagerly

    path = tmp_path / "inline.sqlite3"
    reads, lookup = _watched_reads(path)

    async def inline() -> str:
        return lookup()

    async def main() -> list[str]:
        done: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()

        def callback() -> None:
            got = start_eagerly(inline())
            assert isinstance(got, str)
            done.set_result([lookup(), got])

        # Queued before the read below is kept, so it runs while that read still is (as
        # an I/O callback of this turn would).
        asyncio.get_running_loop().call_soon(callback)
        seen = [lookup()]  # a task step: kept
        _set_v(path, "two")  # committed after the kept read, before the callback's bytes
        return seen + await done

    assert asyncio.run(main()) == ["one", "two", "two"]
    reads.close()


def test_where_aiohttp_starts_handlers_eagerly_the_generation_is_read_every_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python 3.12 and later: aiohttp runs a handler's first step inside the connection
    task's step that took a (maybe pipelined) message, so no read is kept there."""
    from s3torrent.store import sql

    monkeypatch.setattr(sql, "_EAGER_HANDLERS", True)
    path = tmp_path / "eager.sqlite3"
    reads, lookup = _watched_reads(path)

    async def main() -> list[str]:
        seen = [lookup()]
        _set_v(path, "two")
        seen.append(lookup())
        return seen

    assert asyncio.run(main()) == ["one", "two"]
    reads.close()


def test_a_batch_of_requests_shares_one_read_and_only_while_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """one_generation_read (the quick path's batch of heads that all arrived before it
    began): the first lookup inside reads the generation, the others inside share it, even
    from a plain callback and where aiohttp starts handlers eagerly; nothing after the
    block, nor the next batch, uses it; a commit of this process inside drops it."""
    from s3torrent.store import sql

    monkeypatch.setattr(sql, "_EAGER_HANDLERS", True)  # no task step's kept read to lean on
    path = tmp_path / "batch.sqlite3"
    reads, lookup = _watched_reads(path)

    async def main() -> list[str]:
        seen: list[str] = []
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def batch() -> None:
            with sql.one_generation_read():
                seen.append(lookup())
                _set_v(path, "two")  # sent after every request of the batch had arrived
                seen.append(lookup())  # shared
            with sql.one_generation_read():
                seen.append(lookup())  # the next batch reads for itself
                _set_v(path, "three")
                reads.forget_generation()  # as a commit by this process does
                seen.append(lookup())
                _set_v(path, "four")
            seen.append(lookup())  # after the block: read again
            done.set_result(None)

        asyncio.get_running_loop().call_soon(batch)
        await done
        return seen

    assert asyncio.run(main()) == ["one", "one", "two", "three", "four"]
    reads.close()


def _generation_statements(reads: Any) -> list[str]:
    """The generation statements run on this thread's connection of `reads` from now on."""
    from s3torrent.store.sql import GENERATION_SQL

    statements: list[str] = []
    reads._connection().set_trace_callback(
        lambda sql: statements.append(sql) if sql == GENERATION_SQL else None
    )
    return statements


def test_an_unchanged_wal_header_answers_for_the_generation_and_every_commit_changes_it(
    tmp_path: Path,
) -> None:
    """The generation is read again only when the WAL's index header changed since the last
    read: repeated reads of an unchanged database run no statement, and every commit, by a
    connection of this process, by another process, to an unwatched table, or after a
    checkpoint restarted the log, is seen at the next read."""
    import subprocess
    import sys

    path = tmp_path / "h.sqlite3"
    reads, lookup = _watched_reads(path)
    assert lookup() == "one"
    statements = _generation_statements(reads)
    first = reads._read_generation()  # opened the -shm file at the first read: now cached
    assert reads._shm >= 0 and reads._seen is not None
    del statements[:]
    assert [reads._read_generation() for _ in range(5)] == [first] * 5
    assert statements == []  # unchanged: no statement

    _set_v(path, "two")  # another connection of this process
    assert reads._read_generation() == (first[0] + 1, first[1]) and len(statements) == 1
    assert reads._read_generation() == (first[0] + 1, first[1]) and len(statements) == 1

    with sqlite3.connect(path) as other:  # an unwatched table: read again, same generation
        other.execute("CREATE TABLE u (x)")
    assert reads._read_generation() == (first[0] + 1, first[1]) and len(statements) == 2

    code = (
        f"import sqlite3; c = sqlite3.connect({str(path)!r}); "
        "c.execute(\"UPDATE t SET v = 'three'\"); c.commit()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert reads._read_generation() == (first[0] + 2, first[1])
    assert lookup() == "three"

    with sqlite3.connect(path) as other:  # the log checkpointed, emptied, written anew
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _set_v(path, "four")
    assert reads._read_generation() == (first[0] + 3, first[1])
    assert lookup() == "four"
    reads.close()
    assert reads._shm == -1 and reads._seen is None


def test_a_header_caught_mid_write_or_unreadable_reads_the_statement(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two copies of the header that differ (a commit writing it now) or a short read are
    never taken for an unchanged database, nor kept to compare with."""
    from s3torrent.store import sql

    path = tmp_path / "torn.sqlite3"
    reads, lookup = _watched_reads(path)
    assert lookup() == "one"
    reads._read_generation()
    statements = _generation_statements(reads)
    whole = sql._read_header(reads._shm)
    torn = whole[: sql.WAL_HEADER] + bytes(sql.WAL_HEADER)
    for header in (torn, whole[:10], b""):
        reads._seen = None
        monkeypatch.setattr(sql, "_read_header", lambda fd, h=header: h)
        del statements[:]
        reads._read_generation()
        reads._read_generation()
        assert len(statements) == 2 and reads._seen is None
    monkeypatch.undo()
    reads.close()


def test_a_database_without_a_wal_reads_the_statement_every_time(tmp_path: Path) -> None:
    from s3torrent.store.sql import PointReads

    path = tmp_path / "rollback.sqlite3"
    _generation_only_db(path, 4, 2)
    reads = PointReads(str(path))
    statements = _generation_statements(reads)
    assert [reads._read_generation() for _ in range(3)] == [(4, 2)] * 3
    assert reads._shm == -1 and len(statements) == 3
    reads.close()
