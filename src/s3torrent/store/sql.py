"""Statement plumbing shared by the metadata queries: prepared statements, SQLite point
reads, and race-free insert/replace on every engine."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection

T = TypeVar("T")


def insert_if_absent(conn: Connection, table: sa.Table, row: dict[str, Any]) -> bool:
    """INSERT row unless its primary key exists (waits for a concurrent inserter to finish)."""
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        from sqlalchemy.dialects import postgresql, sqlite

        stmt = _INSERT_IF_ABSENT.get((dialect, table.name))
        if stmt is None:
            base: Any = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
            # RETURNING, not rowcount: drivers report -1 for some INSERT forms.
            stmt = Prepared(base.on_conflict_do_nothing().returning(*table.primary_key.columns))
            _INSERT_IF_ABSENT[(dialect, table.name)] = stmt
        # Values as parameters, not .values(): one statement object, compiled once.
        return stmt.run(conn, row).fetchone() is not None
    conn.execute(table.insert(), row)
    return True


_INSERT_IF_ABSENT: dict[tuple[str, str], Prepared] = {}


def _replace_row(
    conn: Connection,
    table: sa.Table,
    where: tuple[sa.ColumnElement[bool], ...],
    row: dict[str, Any],
    column: sa.Column[Any],
) -> Any:
    """Make row the one at `where` (a primary key); return `column` of the row it replaced.

    Race-free across nodes: an existing row is locked (SELECT ... FOR UPDATE; a no-op on
    SQLite, whose writer holds the database lock) and updated in place; an absent one is
    inserted with ON CONFLICT DO NOTHING, and if another transaction inserted it meanwhile
    we go round again and replace that one. The last committer wins; no reader ever sees
    the key missing or two rows for it.
    """
    while True:
        old = conn.execute(sa.select(column).where(*where).with_for_update()).first()
        if old is not None:
            conn.execute(table.update().where(*where).values(**row))
            return old[0]
        if insert_if_absent(conn, table, row):
            return None


class Prepared:
    """A statement built once for the hot paths, run on SQLite's DBAPI connection directly.

    On SQLite, SQLAlchemy's per-execution work (cache lookup, parameter and result
    processing) costs several times what a primary-key statement itself costs, and the
    write path's statements all run in the single writer thread. The columns involved are
    plain (text, integers, floats, bytes), so nothing is lost by skipping SQLAlchemy's type
    processing. Other engines run the statement through SQLAlchemy as usual.
    """

    __slots__ = ("columns", "defaults", "order", "sql", "stmt")

    def __init__(self, stmt: sa.Executable) -> None:
        from sqlalchemy.dialects import sqlite

        self.stmt = stmt
        compiled = stmt.compile(dialect=sqlite.dialect())  # type: ignore[attr-defined]
        self.sql = str(compiled)
        self.order = tuple(compiled.positiontup or ())
        selected = getattr(stmt, "selected_columns", None)
        returning = getattr(stmt, "_returning", ())
        self.columns = tuple(c.name for c in (selected if selected is not None else returning))
        # An INSERT compiled without values names every column: what a row leaves out gets
        # the column's default (or NULL), as SQLAlchemy would give it.
        # Literal values in the statement are bound parameters too: they travel with it.
        self.defaults: dict[str, Any] = {
            name: bind.effective_value
            for name, bind in compiled.binds.items()
            if not bind.required and name in self.order
        }
        if isinstance(stmt, sa.Insert):
            for col in stmt.table.columns:  # type: ignore[attr-defined]
                default = col.default
                if default is not None and getattr(default, "is_scalar", False):
                    self.defaults.setdefault(col.name, getattr(default, "arg", None))
                elif default is None and col.nullable:
                    self.defaults.setdefault(col.name, None)

    def params(self, values: Mapping[str, Any]) -> list[Any]:
        if not self.defaults:
            return [values[name] for name in self.order]
        d = self.defaults
        return [values[n] if n in values else d[n] for n in self.order]

    def run(self, conn: Connection, values: Mapping[str, Any]) -> Any:
        """A cursor (fetchone, fetchall, rowcount; rows index like tuples)."""
        if conn.dialect.name == "sqlite":
            dbapi: Any = conn.connection.driver_connection
            return dbapi.execute(self.sql, self.params(values))
        return conn.execute(self.stmt, values)

    def run_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """The statement once per row (executemany)."""
        if conn.dialect.name == "sqlite":
            dbapi: Any = conn.connection.driver_connection
            dbapi.executemany(self.sql, [self.params(r) for r in rows])
        else:
            conn.execute(self.stmt, list(rows))

    def first(self, rows: Rows, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row as a dict: through a Connection, or as a point read (PointReads)."""
        row = self.row(rows, values)
        return dict(zip(self.columns, row, strict=True)) if row is not None else None

    def row(self, rows: Rows, values: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row, its values in select order: through a Connection, or as a point
        read (PointReads)."""
        if isinstance(rows, PointReads):
            return rows.row(self, values)
        row: Sequence[Any] | None = self.run(rows, values).fetchone()
        return row


# Python 3.12 and later: aiohttp starts each request's handler as an eager task, so a
# handler's first step is not queued by its bytes' arrival (see PointReads._generation).
_EAGER_HANDLERS = sys.version_info >= (3, 12)

# What PointReads.unchanged reads first (see schema.lookup_generation): the generation of
# every watched row, and that of the bucket rows alone.
GENERATION_SQL = "SELECT n, buckets_n FROM lookup_generation WHERE id = 1"

# What a cached lookup reads (PointReads.unchanged): bucket and object rows, whose
# generation every write of an object moves; or bucket rows alone, whose generation only a
# change to a bucket moves, so a PUT's lookups of its bucket stay cached while objects are
# written.
Scope = Literal["rows", "buckets"]
_SCOPES: dict[Scope, int] = {"rows": 0, "buckets": 1}


class _ScopeCache:
    """One thread's cached lookups of one scope, valid for one generation of it."""

    __slots__ = ("entries", "size", "version")

    def __init__(self) -> None:
        self.entries: dict[Hashable, tuple[Any, int]] = {}
        self.size = 0  # the entries' weight
        self.version: int | None = None


class PointReads:
    """The request path's hottest lookups as plain DBAPI statements on SQLite.

    Every GET and HEAD needs its bucket row and its object row. A primary-key lookup in
    SQLite's page cache takes microseconds; handing it to a worker thread costs far more (a
    hop each way, and the GIL contended by the loop and the pool). So these run on the
    calling thread (the event loop's), each on its own read-only connection per thread. WAL
    readers never wait for the writer; on the rare SQLITE_BUSY (recovery, a truncating
    checkpoint) the call raises ``sqlite3.OperationalError`` at once, and the caller falls
    back to the thread pool, which waits.
    """

    def __init__(self, path: str, cache_bytes: int = 8 << 20) -> None:
        self._path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._cache_bytes = cache_bytes
        # (loop, generations): the generations read in this turn of that event loop
        # (`_generation`); None once the turn is over or this process committed.
        self._turn: tuple[asyncio.AbstractEventLoop, tuple[int, int]] | None = None
        # (batch serial, generations): the generations read in the batch that serial names
        # (`one_generation_read`); None once this process committed.
        self._batch_read: tuple[int, tuple[int, int]] | None = None
        # The WAL's "-shm" file, read-only (`_read_generation`): None until a connection of
        # this object has it open; -1 where there is none (not in WAL mode) or it is closed.
        self._shm: int | None = None
        # (wal-index header, generations read right after it): see _read_generation.
        self._seen: tuple[bytes, tuple[int, int]] | None = None

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._path, timeout=0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def unchanged(
        self,
        key: Hashable,
        fn: Callable[[PointReads], T],
        weight: Callable[[T], int],
        scope: Scope = "rows",
    ) -> T:
        """fn(self), or what it returned for `key` before, if the rows it reads are unchanged.

        fn may read only the tables its `scope` watches: "rows", bucket and object rows;
        "buckets", bucket rows alone. Exact, not a snapshot with a lifetime: the scope's
        generation, read first in a transaction of its own, is bumped by triggers in the
        very transaction that changes one of those rows, by any connection in any process
        (schema.lookup_generation). A commit between that read and fn's can only make a
        later call miss, never hit stale rows. A change to a watched row empties this
        thread's cache of that scope; commits to other tables (metering, torrents, uploads)
        do not, and writes of objects keep the "buckets" scope. So it serves read-heavy
        stretches (the GETs of a published object, the PUTs into one bucket) and costs one
        small statement otherwise. Bounded by `weight` (bytes, roughly) per thread and
        scope; the oldest entries go first. What it returns is shared between callers and
        must not be mutated (store rows are frozen; their dicts are copied before any
        change, as everywhere else).
        """
        at = _SCOPES[scope]
        version = self._generation()[at]
        caches: list[_ScopeCache] | None = getattr(self._local, "caches", None)
        if caches is None:
            caches = self._local.caches = [_ScopeCache(), _ScopeCache()]
        cache = caches[at]
        if cache.version != version:
            cache.entries = {}
            cache.version = version
            cache.size = 0
        entries = cache.entries
        found = entries.get(key)
        if found is not None:
            value: T = found[0]
            return value
        value = fn(self)
        size = weight(value)
        if size <= self._cache_bytes // 8:
            while entries and cache.size + size > self._cache_bytes:
                cache.size -= entries.pop(next(iter(entries)))[1]
            entries[key] = (value, size)
            cache.size += size
        return value

    def _generation(self) -> tuple[int, int]:
        """The lookup generations (all watched rows; bucket rows), read once per turn of the
        calling thread's event loop.

        Exact for every request: a generation read after a request's bytes arrived has seen
        every commit acknowledged before the client sent it. A request's handler runs in a
        task aiohttp creates once the request's head has arrived, so every step of it is
        queued after that. Every step that runs while a turn's read is kept (`_turn`) was
        queued before the read: it ran in the read's turn (queued before the turn began) or
        in the next one ahead of the callback, queued at the read, that drops it. So the
        bytes of the request it serves arrived before the read.

        Only asyncio's own task steps keep and use the read. These read every time: a loop
        with a task factory (eager tasks run a step at once, inside `data_received`); a
        plain callback, or a coroutine it runs inline (tracker/eager.py); a thread without a
        loop; and every loop on Python 3.12 or later, where aiohttp starts a handler as an
        eager task inside the step of the connection's task that took the message, which
        may have arrived after the read (a pipelined request). A read is kept for one loop,
        never for the next loop of the thread. A commit by this process drops it too
        (`forget_generation`), so a step that commits and then reads sees its own write.
        """
        loop = asyncio._get_running_loop()
        if loop is not None and _BATCH.loop is loop:
            # One batch of requests that all arrived before it began (one_generation_read).
            kept = self._batch_read
            if kept is not None and kept[0] == _BATCH.serial:
                return kept[1]
            version = self._read_generation()
            self._batch_read = (_BATCH.serial, version)
            return version
        if _EAGER_HANDLERS or loop is None or asyncio.current_task(loop) is None:
            # Not a task step: a plain callback (a coroutine started inline in the callback
            # that received its bytes, tracker/eager.py) may serve bytes that arrived after
            # the kept read. It reads for itself.
            return self._read_generation()
        turn = self._turn
        # Kept per loop, not per thread: a loop closed before its dropping callback ran
        # (asyncio.run returns) must not leave its read to the next loop on this thread.
        if turn is not None and turn[0] is loop:
            return turn[1]
        version = self._read_generation()
        if loop.get_task_factory() is None:
            self._turn = (loop, version)
            loop.call_soon(self.forget_generation)
        return version

    def _read_generation(self) -> tuple[int, int]:
        """The generations as committed now: what was read last, while the WAL's index
        header is byte for byte what it was then, else read again.

        Every commit of any connection in any process rewrites that header (in the "-shm"
        file every connection to a WAL database shares) before its COMMIT returns: its
        change counter, last frame, checksums and, when the log restarts, its salts. So an
        unchanged header means that no transaction committed since it was read, and the
        generations read after it still hold. The header is read before the statement: a
        commit between the two is seen by the statement, and read again at the next call,
        since the header it leaves differs. Its two copies differing (a commit writing it
        now) read the statement too. A 96-byte pread instead of a statement: 0.6 against
        3 us, once per batch of requests (docs/ARCHITECTURE.md, "An unchanged WAL header")."""
        shm = self._shm
        head = b""
        if shm is not None and shm >= 0:
            head = _read_header(shm)
            seen = self._seen
            if seen is not None and seen[0] == head:
                return seen[1]
        conn = self._connection()
        n, buckets_n = conn.execute(GENERATION_SQL).fetchone()
        generations = int(n), int(buckets_n)
        if shm is None:
            # Opened once a connection of ours has the database (and so its -shm) open:
            # while one stays open, SQLite neither removes nor truncates that file.
            self._shm = _open_shm(self._path)
        elif len(head) == WAL_HEADER * 2 and head[:WAL_HEADER] == head[WAL_HEADER:]:
            self._seen = (head, generations)
        return generations

    def forget_generation(self) -> None:
        """Read the lookup generation again next time (the loop turn ended, or this process
        committed)."""
        self._turn = None
        self._batch_read = None

    def row(self, stmt: Prepared, values: Mapping[str, Any]) -> Sequence[Any] | None:
        row: Sequence[Any] | None = (
            self._connection().execute(stmt.sql, stmt.params(values)).fetchone()
        )
        return row

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
            shm, self._shm, self._seen = self._shm, -1, None
        if shm is not None and shm >= 0:
            os.close(shm)
        for conn in conns:
            conn.close()


# The wal-index header, as SQLite's unix and windows VFSes keep it at the start of the
# "-shm" file (sqlite.org/walformat.html): two 48-byte copies of one header, written one
# after the other, so that a reader seeing both alike has seen a whole one.
WAL_HEADER = 48


def _open_shm(path: str) -> int:
    """The database's -shm file, opened read-only; -1 if it has none (not in WAL mode)."""
    try:
        return os.open(path + "-shm", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


def _read_header(fd: int) -> bytes:
    """Both copies of the wal-index header (b"" when they cannot be read)."""
    try:
        return os.pread(fd, WAL_HEADER * 2, 0)
    except OSError:
        return b""


class _Batch:
    """The loop whose thread is answering a batch of requests (one_generation_read), and
    which batch: a read is kept for that batch only."""

    __slots__ = ("loop", "serial")

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.serial = 0


_BATCH = _Batch()


class _OneGenerationRead:
    """The block of `one_generation_read` (a class: a generator-based context manager costs
    a microsecond and a half per batch, half again what the read it saves costs now)."""

    __slots__ = ()

    def __enter__(self) -> None:
        loop = asyncio.get_running_loop()
        _BATCH.serial += 1
        _BATCH.loop = loop

    def __exit__(self, *exc: object) -> None:
        _BATCH.loop = None


_ONE_GENERATION_READ: Final = _OneGenerationRead()


def one_generation_read() -> AbstractContextManager[None]:
    """Within: the point reads on this loop's thread share one read of the lookup
    generations, made at the first lookup inside (PointReads._generation).

    For a plain callback answering, one after another, requests whose bytes had all
    arrived before it began (s3/quick.py, QuickReads): the read comes after every one of
    them, so it has seen every commit acknowledged before any of them was sent, as a read
    per request would. A commit by this process inside drops it (forget_generation). Not
    for code that may suspend and resume later inside it: only what runs before the block
    ends shares the read."""
    return _ONE_GENERATION_READ


# Where the lookups below can run: a Connection (any engine, any thread), or SQLite point
# reads on the calling thread (see Database.lookup).
Rows = Connection | PointReads


def point_reads_for(engine: sa.Engine) -> PointReads | None:
    """PointReads on a file-backed SQLite database; None elsewhere (a network hop is better
    spent on a thread)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return PointReads(url.database)
