"""The metadata schema (SQLAlchemy Core tables) and the engines that hold it.

Keys are stored as UTF-8 bytes so that ordering is byte order on every engine (S3 lists
keys in UTF-8 binary order) without depending on a collation.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

meta = sa.MetaData()

users = sa.Table(
    "users",
    meta,
    sa.Column("canonical_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("access_key", sa.String(128), nullable=False, unique=True),
    # Sealed (store/user_secrets.py): a 40-character secret takes 115 (revision 0017).
    sa.Column("secret_key", sa.String(512), nullable=False),
    sa.Column("is_root", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    # A disabled user's keys are refused as unknown ones; an admin may use the admin API.
    sa.Column("disabled", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False, server_default=sa.false()),
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


def _version_columns() -> list[sa.Column[Any]]:
    """What an object version holds besides its place (bucket, key): the same columns in
    `objects` (current versions) and `object_versions` (the others)."""
    return [
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
        # Small objects live in their row: one group-committed transaction makes them
        # durable, instead of two fsyncs of a file of their own.
        sa.Column("inline_data", sa.LargeBinary, nullable=True),
        # Object tags as a JSON list of [key, value] pairs, in the order they were given.
        sa.Column("tags", sa.Text, nullable=True),
        # False: the key's "null" version (written while the bucket was unversioned or
        # suspended, or before versioning existed). version_id stays the blob's own id.
        sa.Column("versioned", sa.Boolean, nullable=False, server_default=sa.false()),
        # Object lock: retention mode (GOVERNANCE, COMPLIANCE) and date (epoch seconds),
        # legal hold.
        sa.Column("lock_mode", sa.String(16), nullable=True),
        sa.Column("lock_until", sa.Float, nullable=True),
        sa.Column("legal_hold", sa.Boolean, nullable=False, server_default=sa.false()),
        # Whether a legal hold was ever set, ON or OFF (revision 0016): S3 reports OFF only
        # for a version whose hold was set, nothing for one that never had one.
        sa.Column("legal_hold_set", sa.Boolean, nullable=False, server_default=sa.false()),
    ]


# The current version of each key: what GET, HEAD, listings, torrents, the tracker and the
# seeder read (one row per key, as before versioning existed).
objects = sa.Table(
    "objects",
    meta,
    sa.Column("bucket", sa.String(63), primary_key=True),
    sa.Column("key", sa.LargeBinary, primary_key=True),
    sa.Column("version_id", sa.String(40), nullable=False, unique=True),
    *_version_columns(),
)

# How many times the rows GET and HEAD look up (buckets, objects) have changed: one row,
# bumped on SQLite by triggers on every insert, update and delete of either table (revision
# 0012), in the writing transaction itself; `buckets_n` counts the changes to buckets alone
# (revision 0013). The request path's exact cache (sql.PointReads.unchanged) reads both
# first and keeps its rows while the count it depends on stays the same, so a commit
# elsewhere (metering, torrents, uploads) does not empty the cache, and a write of an object
# keeps the cached bucket rows. PostgreSQL has the row but no triggers: nothing there caches.
lookup_generation = sa.Table(
    "lookup_generation",
    meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Column("buckets_n", sa.BigInteger, nullable=False, server_default="0"),
)

# Every other version of a versioned key: noncurrent versions and delete markers, newest
# first by `seq` (smaller: newer; a new row takes a seq below every other of its key). A
# key's latest version is its `objects` row when it has one; else its newest row here, which
# is then a delete marker.
object_versions = sa.Table(
    "object_versions",
    meta,
    sa.Column("bucket", sa.String(63), primary_key=True),
    sa.Column("key", sa.LargeBinary, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("version_id", sa.String(40), nullable=False, unique=True),
    sa.Column("delete_marker", sa.Boolean, nullable=False),
    *_version_columns(),
)

# Keys of which some process published a torrent (revision 0014): written, durably, before
# a publication reads the version it publishes, and never removed while the bucket exists.
# A write that replaces or deletes a version of a key not listed here, having committed,
# knows that no process holds a publication it must take back (PublicTorrents.may_hold).
torrent_marks = sa.Table(
    "torrent_marks",
    meta,
    sa.Column("bucket", sa.String(63), primary_key=True),
    sa.Column("key", sa.LargeBinary, primary_key=True),
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
    sa.Column("tags", sa.Text, nullable=True),
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

# What a completed multipart upload answered, so a client retrying its completion (same
# upload id, same part list) gets the same answer instead of NoSuchUpload; kept as long as
# abandoned uploads are (storage.abandoned_upload_days).
upload_receipts = sa.Table(
    "upload_receipts",
    meta,
    sa.Column("upload_id", sa.String(64), primary_key=True),
    sa.Column("bucket", sa.String(63), nullable=False),
    sa.Column("key", sa.LargeBinary, nullable=False),
    sa.Column("parts_digest", sa.String(64), nullable=False),
    sa.Column("result", sa.LargeBinary, nullable=False),
    sa.Column("completed_at", sa.Float, nullable=False),
    # The S3 version id the completion answered in x-amz-version-id (None: no header).
    sa.Column("version_id", sa.String(40), nullable=True),
    sa.Index("ix_upload_receipts_completed_at", "completed_at"),
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

# Where each bucket's lifecycle pass got to (s3torrent.lifecycle.worker): the last key it
# evaluated, so a pass taken over by another node or resumed after a restart goes on from
# there instead of starting over.
lifecycle_cursors = sa.Table(
    "lifecycle_cursors",
    meta,
    sa.Column("bucket", sa.String(63), primary_key=True),
    sa.Column("after_key", sa.LargeBinary, nullable=True),
    sa.Column("updated_at", sa.Float, nullable=False),
)


# ---- metering (written by s3torrent.metering.meter, read by s3torrent.metering.usage) ----


def _bucket_created(*, primary_key: bool) -> sa.Column[float]:
    """Which bucket of the row's name the counts are of: its `created_at` (revision 0015).
    A deleted bucket's name may be taken again, by another owner; a user's report shows the
    rows of the bucket that has the name now only. 0: no bucket had the name when the
    counts were stored, or counts stored before the revision that could not be told apart."""
    return sa.Column(
        "bucket_created", sa.Float, primary_key=primary_key, nullable=False, server_default="0"
    )


# Requests and bytes per bucket, hour (epoch seconds of its start) and operation; the channel
# is part of the operation name (GetObject, GetObjectTorrent, GetObject-BitTorrent, ...).
# Storage is the operation "StandardStorage" with byte_hours.
usage_hourly = sa.Table(
    "usage_hourly",
    meta,
    sa.Column("hour", sa.BigInteger, primary_key=True),
    sa.Column("bucket", sa.String(63), primary_key=True),
    _bucket_created(primary_key=True),
    sa.Column("operation", sa.String(64), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False, default=0),
    sa.Column("bytes_out", sa.BigInteger, nullable=False, default=0),
    sa.Column("bytes_in", sa.BigInteger, nullable=False, default=0),
    sa.Column("byte_hours", sa.Float, nullable=False, default=0.0),
)

# Object bytes the origin sent, per object (of one bucket of the name) and channel, since the
# object was first served.
usage_objects = sa.Table(
    "usage_objects",
    meta,
    sa.Column("bucket", sa.String(63), primary_key=True),
    _bucket_created(primary_key=True),
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
    _bucket_created(primary_key=False),
    sa.Column("key", sa.LargeBinary, nullable=False),
    sa.Column("completed", sa.BigInteger, nullable=False, default=0),
    sa.Column("uploaded", sa.BigInteger, nullable=False, default=0),
    sa.Column("downloaded", sa.BigInteger, nullable=False, default=0),
    sa.Index("ix_usage_swarms_object", "bucket", "key"),
)


# Encryption at rest (s3torrent.store.sealing): the key material of one sealed object version
# (keyed by its blob id) or multipart upload (by its upload id). SSE-S3 rows hold the data
# key wrapped by master key key_id; SSE-C rows hold only a salt and a salted HMAC of the
# customer's key, never the key. segments: JSON [[nonce prefix, plaintext size], ...] of a
# blob joined from parts (NULL: one segment, prefix 0).
sse_keys = sa.Table(
    "sse_keys",
    meta,
    sa.Column("owner", sa.String(64), primary_key=True),
    sa.Column("mode", sa.String(8), nullable=False),
    sa.Column("key_id", sa.String(32), nullable=True),
    sa.Column("wrapped_key", sa.LargeBinary, nullable=True),
    sa.Column("salt", sa.LargeBinary, nullable=True),
    sa.Column("key_hmac", sa.LargeBinary, nullable=True),
    sa.Column("segments", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_sse_keys_key_id", "key_id"),
)


def writer_temp_store(driver_conn: Any, memory: bool) -> None:
    """A SQLite writer's statement journals in memory (`memory`), or back to the default.

    Every write of a group commit runs in a savepoint of the batch's transaction, and SQLite
    keeps the original of each page a savepoint changes in a statement journal: a temporary
    file once it passes 64 KiB, so a batch of 4 KiB PUTs wrote about 60 KB of journal per PUT
    to temp files (17 writes), more than its WAL. In memory, the journal costs a copy. It is
    bounded by the batch (`max_batch` writes, each a few pages) and is gone at the commit.
    A crash loses nothing by it: it only serves a rollback to a savepoint, and an unfinished
    transaction never counted. Readers keep the default (their sorts may spill to disk)."""
    driver_conn.execute(f"PRAGMA temp_store={'MEMORY' if memory else 'DEFAULT'}")


def create_engine(url: str, *, durable: bool = True) -> sa.Engine:
    """An engine with the durability settings each backend needs. `durable` (the
    storage.fsync setting): a commit is on stable storage before it returns; without it a
    commit survives the process's death (kill -9) but not the machine's (power loss)."""
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
            # FULL: a committed transaction survives power loss, not only kill -9. NORMAL
            # (in WAL mode): the WAL is synced at checkpoints only; a commit survives kill -9.
            cur.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
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
    engine = sa.create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
    if not durable and engine.dialect.name == "postgresql":

        @sa.event.listens_for(engine, "connect")
        def _no_flush_wait(dbapi_conn: Any, _record: Any) -> None:
            # The commit returns before PostgreSQL flushes its WAL (the server's crash may
            # lose the last commits; ours loses nothing it acknowledged).
            cur = dbapi_conn.cursor()
            cur.execute("SET synchronous_commit TO off")
            cur.close()

    return engine
