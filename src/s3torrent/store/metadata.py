"""Metadata schema and queries (SQLAlchemy Core; portable SQL for SQLite and PostgreSQL).

Keys are stored as UTF-8 bytes so that ordering is byte order on every engine (S3 lists
keys in UTF-8 binary order) without depending on a collation.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

meta = sa.MetaData()

users = sa.Table(
    "users",
    meta,
    sa.Column("canonical_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("access_key", sa.String(128), nullable=False, unique=True),
    sa.Column("secret_key", sa.String(128), nullable=False),
    sa.Column("is_root", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

buckets = sa.Table(
    "buckets",
    meta,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("owner_id", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("region", sa.String(64), nullable=False),
    sa.Column("acl", sa.Text, nullable=True),
    sa.Column("policy", sa.Text, nullable=True),
    sa.Column("public_access_block", sa.Text, nullable=True),
    sa.Column("settings", sa.Text, nullable=True),
)

objects = sa.Table(
    "objects",
    meta,
    sa.Column("bucket", sa.String(63), primary_key=True),
    sa.Column("key", sa.LargeBinary, primary_key=True),
    sa.Column("version_id", sa.String(40), nullable=False, unique=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("etag", sa.String(80), nullable=False),
    sa.Column("last_modified", sa.Float, nullable=False),
    sa.Column("owner_id", sa.String(64), nullable=False),
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("acl", sa.Text, nullable=True),
    sa.Column("checksum_algorithm", sa.String(16), nullable=True),
    sa.Column("checksum_value", sa.String(128), nullable=True),
    sa.Column("checksum_type", sa.String(16), nullable=True),
    sa.Column("parts", sa.Text, nullable=True),
    # Small objects live in their row: one group-committed transaction makes them durable,
    # instead of two fsyncs of a file of their own.
    sa.Column("inline_data", sa.LargeBinary, nullable=True),
)

# Every object column but the inline bytes: what listings read.
OBJECT_INFO_COLUMNS = tuple(c for c in objects.c if c.name != "inline_data")

torrents = sa.Table(
    "torrents",
    meta,
    sa.Column("version_id", sa.String(40), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("piece_length", sa.Integer, nullable=False),
    sa.Column("pieces_v1", sa.LargeBinary, nullable=True),
    sa.Column("pieces_root", sa.LargeBinary, nullable=True),
    sa.Column("piece_layer", sa.LargeBinary, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    # The 20-byte swarm ids (v1 info-hash; truncated v2 info-hash) of the torrent in the
    # format it was last built in, so the tracker and seeder can find an object by hash.
    sa.Column("format", sa.String(8), nullable=True),
    sa.Column("swarm_v1", sa.LargeBinary, nullable=True, index=True),
    sa.Column("swarm_v2", sa.LargeBinary, nullable=True, index=True),
)

uploads = sa.Table(
    "uploads",
    meta,
    sa.Column("upload_id", sa.String(64), primary_key=True),
    sa.Column("bucket", sa.String(63), nullable=False),
    sa.Column("key", sa.LargeBinary, nullable=False),
    sa.Column("owner_id", sa.String(64), nullable=False),
    sa.Column("initiated", sa.Float, nullable=False),
    sa.Column("headers", sa.Text, nullable=False),
    sa.Column("acl", sa.Text, nullable=True),
    sa.Column("checksum_algorithm", sa.String(16), nullable=True),
    sa.Column("checksum_type", sa.String(16), nullable=True),
    sa.Index("ix_uploads_bucket_key", "bucket", "key", "initiated"),
)

parts = sa.Table(
    "parts",
    meta,
    sa.Column("upload_id", sa.String(64), primary_key=True),
    sa.Column("part_number", sa.Integer, primary_key=True),
    sa.Column("blob_id", sa.String(40), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("etag", sa.String(80), nullable=False),
    sa.Column("last_modified", sa.Float, nullable=False),
    sa.Column("checksum_value", sa.String(128), nullable=True),
)

# Background hashing jobs (s3torrent.torrent.jobs), claimed by one node at a time: a claim
# lasts until claimed_until and is renewed by its node's heartbeat; an expired claim is
# taken over by another node.
hash_jobs = sa.Table(
    "hash_jobs",
    meta,
    sa.Column("version_id", sa.String(40), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("claimed_by", sa.String(64), nullable=True),
    sa.Column("claimed_until", sa.Float, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Index("ix_hash_jobs_claimed_until", "claimed_until"),
)

# Work that exactly one node does at a time (e.g. sampling shared counters): a named lease.
leases = sa.Table(
    "leases",
    meta,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)


def hold_lease(conn: Connection, name: str, holder: str, now: float, ttl: float) -> bool:
    """Take or renew the lease `name` for `holder` until now + ttl; False if another node
    holds it. One conditional UPDATE (or the first INSERT) decides, on any engine."""
    taken = conn.execute(
        leases.update()
        .where(
            leases.c.name == name,
            sa.or_(leases.c.holder == holder, leases.c.expires_at < now),
        )
        .values(holder=holder, expires_at=now + ttl)
    ).rowcount
    if taken:
        return True
    if conn.execute(sa.select(leases.c.name).where(leases.c.name == name)).first() is not None:
        return False
    conn.execute(leases.insert().values(name=name, holder=holder, expires_at=now + ttl))
    return True


# ---- metering (written by s3torrent.metering.meter, read by s3torrent.metering.usage) ----

# Requests and bytes per bucket, hour (epoch seconds of its start) and operation; the channel
# is part of the operation name (GetObject, GetObjectTorrent, GetObject-BitTorrent, ...).
# Storage is the operation "StandardStorage" with byte_hours.
usage_hourly = sa.Table(
    "usage_hourly",
    meta,
    sa.Column("hour", sa.BigInteger, primary_key=True),
    sa.Column("bucket", sa.String(63), primary_key=True),
    sa.Column("operation", sa.String(64), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False, default=0),
    sa.Column("bytes_out", sa.BigInteger, nullable=False, default=0),
    sa.Column("bytes_in", sa.BigInteger, nullable=False, default=0),
    sa.Column("byte_hours", sa.Float, nullable=False, default=0.0),
)

# Object bytes the origin sent, per object and channel, since the object was first served.
usage_objects = sa.Table(
    "usage_objects",
    meta,
    sa.Column("bucket", sa.String(63), primary_key=True),
    sa.Column("key", sa.LargeBinary, primary_key=True),
    sa.Column("operation", sa.String(64), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False, default=0),
    sa.Column("bytes_out", sa.BigInteger, nullable=False, default=0),
)

# What the tracker heard from each swarm, per hour: completed downloads and the sums of the
# peers' reported transfer deltas.
usage_swarms = sa.Table(
    "usage_swarms",
    meta,
    sa.Column("hour", sa.BigInteger, primary_key=True),
    sa.Column("info_hash", sa.String(40), primary_key=True),
    sa.Column("bucket", sa.String(63), nullable=False),
    sa.Column("key", sa.LargeBinary, nullable=False),
    sa.Column("completed", sa.BigInteger, nullable=False, default=0),
    sa.Column("uploaded", sa.BigInteger, nullable=False, default=0),
    sa.Column("downloaded", sa.BigInteger, nullable=False, default=0),
    sa.Index("ix_usage_swarms_object", "bucket", "key"),
)


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """One stored object version (the current one for its key)."""

    bucket: str
    key: str
    version_id: str
    size: int
    etag: str
    last_modified: float
    owner_id: str
    headers: dict[str, str] = field(default_factory=dict)
    acl: str | None = None
    checksum_algorithm: str | None = None
    checksum_value: str | None = None
    checksum_type: str | None = None
    parts: list[dict[str, Any]] | None = None
    inline: bytes | None = field(default=None, repr=False)

    def to_row(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key.encode("utf-8"),
            "version_id": self.version_id,
            "size": self.size,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "owner_id": self.owner_id,
            "headers": json.dumps(self.headers, separators=(",", ":")),
            "acl": self.acl,
            "checksum_algorithm": self.checksum_algorithm,
            "checksum_value": self.checksum_value,
            "checksum_type": self.checksum_type,
            "parts": json.dumps(self.parts) if self.parts is not None else None,
            "inline_data": self.inline,
        }

    @classmethod
    def from_row(cls, row: Any) -> ObjectVersion:
        return cls.from_mapping(row._mapping)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> ObjectVersion:
        return cls(
            bucket=m["bucket"],
            key=bytes(m["key"]).decode("utf-8"),
            version_id=m["version_id"],
            size=m["size"],
            etag=m["etag"],
            last_modified=m["last_modified"],
            owner_id=m["owner_id"],
            headers=json.loads(m["headers"]),
            acl=m["acl"],
            checksum_algorithm=m["checksum_algorithm"],
            checksum_value=m["checksum_value"],
            checksum_type=m["checksum_type"],
            parts=json.loads(m["parts"]) if m["parts"] else None,
            inline=m.get("inline_data"),
        )


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str
    owner_id: str
    created_at: float
    region: str
    acl: str | None = None
    policy: str | None = None
    public_access_block: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Any) -> Bucket:
        return cls.from_mapping(row._mapping)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> Bucket:
        return cls(
            name=m["name"],
            owner_id=m["owner_id"],
            created_at=m["created_at"],
            region=m["region"],
            acl=m["acl"],
            policy=m["policy"],
            public_access_block=m["public_access_block"],
            settings=json.loads(m["settings"]) if m["settings"] else {},
        )


@dataclass(frozen=True, slots=True)
class User:
    canonical_id: str
    name: str
    access_key: str
    secret_key: str
    is_root: bool
    created_at: float

    @classmethod
    def from_row(cls, row: Any) -> User:
        m = row._mapping
        return cls(
            canonical_id=m["canonical_id"],
            name=m["name"],
            access_key=m["access_key"],
            secret_key=m["secret_key"],
            is_root=bool(m["is_root"]),
            created_at=m["created_at"],
        )


def create_engine(url: str) -> sa.Engine:
    """An engine with the durability settings each backend needs."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=8,
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed transaction survives power loss, not only kill -9.
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
            # pysqlite starts transactions lazily and lets the release of an outermost
            # SAVEPOINT commit on its own: every savepoint of a group commit would then be a
            # transaction (and an fsync) of its own. Take control of BEGIN instead.
            dbapi_conn.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            # Writers ask for IMMEDIATE (take the write lock up front, so a busy database
            # is waited for rather than failing mid-transaction); the request path's reads
            # ask for none (each SELECT is its own snapshot, and BEGIN/ROLLBACK would cost
            # more than the lookup); anything else gets a plain deferred transaction.
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            if mode:
                conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    return sa.create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)


def create_schema(engine: sa.Engine) -> None:
    """Bring the schema to the newest migration (Alembic), on any engine."""
    from s3torrent.store import migrations

    migrations.upgrade(engine)


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
        if isinstance(rows, PointReads):
            return rows.first(self, values)
        row = self.run(rows, values).fetchone()
        return dict(zip(self.columns, row, strict=True)) if row is not None else None


# The object write path's statements, built once (see _replace_row for the protocol).
_LOCK_OBJECT = Prepared(
    sa.select(objects.c.version_id, objects.c.inline_data.is_(None).label("has_blob"))
    .where(objects.c.bucket == sa.bindparam("w_bucket"), objects.c.key == sa.bindparam("w_key"))
    .with_for_update()
)
_UPDATE_OBJECT = Prepared(
    objects.update().where(
        objects.c.bucket == sa.bindparam("w_bucket"), objects.c.key == sa.bindparam("w_key")
    )
)
_DELETE_TORRENT = Prepared(torrents.delete().where(torrents.c.version_id == sa.bindparam("w_vid")))


# ---- queries (each takes a Connection; callers own transactions) ----


# The hot lookups of every request, built once: constructing a statement costs several times
# what SQLite takes to answer it.
_BUCKET_BY_NAME = Prepared(sa.select(buckets).where(buckets.c.name == sa.bindparam("name")))
_OBJECT_BY_KEY = Prepared(
    sa.select(objects).where(
        objects.c.bucket == sa.bindparam("bucket"), objects.c.key == sa.bindparam("key")
    )
)
_OBJECT_BY_VERSION = Prepared(sa.select(objects).where(objects.c.version_id == sa.bindparam("vid")))


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

    def __init__(self, path: str) -> None:
        self._path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

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

    def first(self, stmt: Prepared, values: Mapping[str, Any]) -> dict[str, Any] | None:
        row = self._connection().execute(stmt.sql, stmt.params(values)).fetchone()
        return dict(zip(stmt.columns, row, strict=True)) if row is not None else None

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()


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


def get_bucket(rows: Rows, name: str) -> Bucket | None:
    m = _BUCKET_BY_NAME.first(rows, {"name": name})
    return Bucket.from_mapping(m) if m is not None else None


def list_buckets(conn: Connection, owner_id: str | None) -> list[Bucket]:
    q = sa.select(buckets).order_by(buckets.c.name)
    if owner_id is not None:
        q = q.where(buckets.c.owner_id == owner_id)
    return [Bucket.from_row(r) for r in conn.execute(q)]


def get_object(rows: Rows, bucket: str, key: str) -> ObjectVersion | None:
    m = _OBJECT_BY_KEY.first(rows, {"bucket": bucket, "key": key.encode("utf-8")})
    return ObjectVersion.from_mapping(m) if m is not None else None


def get_object_by_version(rows: Rows, version_id: str) -> ObjectVersion | None:
    m = _OBJECT_BY_VERSION.first(rows, {"vid": version_id})
    return ObjectVersion.from_mapping(m) if m is not None else None


def bucket_has_objects(conn: Connection, bucket: str) -> bool:
    return (
        conn.execute(
            sa.select(objects.c.version_id).where(objects.c.bucket == bucket).limit(1)
        ).first()
        is not None
    )


@dataclass(frozen=True, slots=True)
class Replaced:
    """The version a write replaced or a delete removed."""

    version_id: str
    has_blob: bool  # False when its bytes lived in its row (nothing to delete after)


def upsert_object(conn: Connection, obj: ObjectVersion) -> Replaced | None:
    """Make obj the current version of its key; return the version it replaced, if any."""
    row = obj.to_row()
    at = {"w_bucket": obj.bucket, "w_key": row["key"]}
    while True:
        old = _LOCK_OBJECT.run(conn, at).fetchone()
        if old is not None:
            _UPDATE_OBJECT.run(conn, {**at, **row})
            _DELETE_TORRENT.run(conn, {"w_vid": old[0]})
            return Replaced(str(old[0]), bool(old[1]))
        if insert_if_absent(conn, objects, row):
            return None


def delete_object(conn: Connection, bucket: str, key: str) -> Replaced | None:
    """Delete the current version of a key; return it, if there was one."""
    k = key.encode("utf-8")
    # One statement: of two nodes deleting the same key, exactly one learns the version id.
    old = conn.execute(
        objects.delete()
        .where(objects.c.bucket == bucket, objects.c.key == k)
        .returning(objects.c.version_id, objects.c.inline_data.is_(None))
    ).first()
    if old is None:
        return None
    conn.execute(torrents.delete().where(torrents.c.version_id == old[0]))
    return Replaced(str(old[0]), bool(old[1]))


def iter_keys_from(
    conn: Connection, bucket: str, after: bytes | None, start: bytes, end: bytes | None, limit: int
) -> Iterator[ObjectVersion]:
    """Up to `limit` objects with start <= key < end and key > after, in key order."""
    # One lower bound only: given both `key >= start` and `key > after`, SQLite may seek on
    # the first and filter on the second, scanning every earlier key on every later page.
    if after is not None and after >= start:
        q = sa.select(*OBJECT_INFO_COLUMNS).where(objects.c.bucket == bucket, objects.c.key > after)
    else:
        q = sa.select(*OBJECT_INFO_COLUMNS).where(
            objects.c.bucket == bucket, objects.c.key >= start
        )
    if end is not None:
        q = q.where(objects.c.key < end)
    q = q.order_by(objects.c.key).limit(limit)
    for row in conn.execute(q):
        yield ObjectVersion.from_row(row)


def bucket_has_uploads(conn: Connection, bucket: str) -> bool:
    return (
        conn.execute(
            sa.select(uploads.c.upload_id).where(uploads.c.bucket == bucket).limit(1)
        ).first()
        is not None
    )


def referenced_blob_ids(conn: Connection) -> set[str]:
    """Every blob id some metadata row still points at."""
    ids = {str(r[0]) for r in conn.execute(sa.select(objects.c.version_id))}
    ids |= {str(r[0]) for r in conn.execute(sa.select(parts.c.blob_id))}
    return ids


# ---- multipart uploads ----


@dataclass(frozen=True, slots=True)
class Upload:
    """A multipart upload in progress."""

    upload_id: str
    bucket: str
    key: str
    owner_id: str
    initiated: float
    headers: dict[str, str] = field(default_factory=dict)
    acl: str | None = None
    checksum_algorithm: str | None = None
    checksum_type: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Upload:
        m = row._mapping
        return cls(
            upload_id=m["upload_id"],
            bucket=m["bucket"],
            key=bytes(m["key"]).decode("utf-8"),
            owner_id=m["owner_id"],
            initiated=m["initiated"],
            headers=json.loads(m["headers"]),
            acl=m["acl"],
            checksum_algorithm=m["checksum_algorithm"],
            checksum_type=m["checksum_type"],
        )


@dataclass(frozen=True, slots=True)
class Part:
    upload_id: str
    part_number: int
    blob_id: str
    size: int
    etag: str
    last_modified: float
    checksum_value: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Part:
        m = row._mapping
        return cls(
            upload_id=m["upload_id"],
            part_number=m["part_number"],
            blob_id=m["blob_id"],
            size=m["size"],
            etag=m["etag"],
            last_modified=m["last_modified"],
            checksum_value=m["checksum_value"],
        )


def insert_upload(conn: Connection, up: Upload) -> None:
    conn.execute(
        uploads.insert().values(
            upload_id=up.upload_id,
            bucket=up.bucket,
            key=up.key.encode("utf-8"),
            owner_id=up.owner_id,
            initiated=up.initiated,
            headers=json.dumps(up.headers, separators=(",", ":")),
            acl=up.acl,
            checksum_algorithm=up.checksum_algorithm,
            checksum_type=up.checksum_type,
        )
    )


def get_upload(conn: Connection, upload_id: str) -> Upload | None:
    row = conn.execute(sa.select(uploads).where(uploads.c.upload_id == upload_id)).first()
    return Upload.from_row(row) if row else None


def put_part(conn: Connection, part: Part) -> str | None:
    """Record a part (replacing one with the same number); return the replaced blob id."""
    where = (parts.c.upload_id == part.upload_id, parts.c.part_number == part.part_number)
    row = {
        "upload_id": part.upload_id,
        "part_number": part.part_number,
        "blob_id": part.blob_id,
        "size": part.size,
        "etag": part.etag,
        "last_modified": part.last_modified,
        "checksum_value": part.checksum_value,
    }
    old = _replace_row(conn, parts, where, row, parts.c.blob_id)
    return str(old) if old is not None else None


def list_parts(
    conn: Connection, upload_id: str, after: int = 0, limit: int | None = None
) -> list[Part]:
    q = (
        sa.select(parts)
        .where(parts.c.upload_id == upload_id, parts.c.part_number > after)
        .order_by(parts.c.part_number)
    )
    if limit is not None:
        q = q.limit(limit)
    return [Part.from_row(r) for r in conn.execute(q)]


def delete_upload(conn: Connection, upload_id: str) -> list[str] | None:
    """Drop an upload and its parts; return the part blob ids (None: no such upload)."""
    if (
        conn.execute(sa.select(uploads.c.upload_id).where(uploads.c.upload_id == upload_id)).first()
        is None
    ):
        return None
    blob_ids = [
        str(r[0])
        for r in conn.execute(sa.select(parts.c.blob_id).where(parts.c.upload_id == upload_id))
    ]
    conn.execute(parts.delete().where(parts.c.upload_id == upload_id))
    conn.execute(uploads.delete().where(uploads.c.upload_id == upload_id))
    return blob_ids


def list_uploads(
    conn: Connection,
    bucket: str,
    prefix: bytes,
    key_marker: bytes | None,
    upload_id_marker: str | None,
    limit: int,
) -> list[Upload]:
    """Uploads in (key, initiated, upload id) order, after the markers as S3 defines them."""
    q = sa.select(uploads).where(uploads.c.bucket == bucket)
    if prefix:
        q = q.where(uploads.c.key >= prefix)
    if key_marker is not None:
        if upload_id_marker:
            marker = conn.execute(
                sa.select(uploads.c.initiated).where(uploads.c.upload_id == upload_id_marker)
            ).first()
            after_same_key = (
                sa.or_(
                    uploads.c.initiated > marker[0],
                    sa.and_(
                        uploads.c.initiated == marker[0], uploads.c.upload_id > upload_id_marker
                    ),
                )
                if marker is not None
                else sa.false()
            )
            q = q.where(
                sa.or_(
                    uploads.c.key > key_marker, sa.and_(uploads.c.key == key_marker, after_same_key)
                )
            )
        else:
            q = q.where(uploads.c.key > key_marker)
    q = q.order_by(uploads.c.key, uploads.c.initiated, uploads.c.upload_id).limit(limit)
    return [Upload.from_row(r) for r in conn.execute(q)]


def stale_uploads(conn: Connection, initiated_before: float, limit: int) -> list[str]:
    q = sa.select(uploads.c.upload_id).where(uploads.c.initiated < initiated_before).limit(limit)
    return [str(r[0]) for r in conn.execute(q)]
