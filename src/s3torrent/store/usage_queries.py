"""Queries of the metering tables (usage_hourly, usage_objects, usage_swarms) and the sizes
the storage samples read."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store.schema import (
    buckets,
    object_versions,
    objects,
    parts,
    uploads,
    usage_hourly,
    usage_objects,
    usage_swarms,
)
from s3torrent.store.sql import Prepared
from s3torrent.store.usage_rows import (
    NO_BUCKET,
    OP_STORAGE,
    Created,
    HourlyUsage,
    ObjectTraffic,
    SwarmHour,
    SwarmTraffic,
    Traffic,
    UsageCounts,
)


def bucket_sizes(conn: Connection) -> dict[str, int]:
    """Stored bytes per bucket: every object version (current and noncurrent: each keeps
    its bytes) plus parts of unfinished uploads."""
    sizes: dict[str, int] = {}
    for table in (objects, object_versions):
        q = sa.select(table.c.bucket, sa.func.sum(table.c.size)).group_by(table.c.bucket)
        for bucket, total in conn.execute(q):
            sizes[bucket] = sizes.get(bucket, 0) + int(total or 0)
    q = (
        sa.select(uploads.c.bucket, sa.func.sum(parts.c.size))
        .select_from(parts.join(uploads, parts.c.upload_id == uploads.c.upload_id))
        .group_by(uploads.c.bucket)
    )
    for bucket, total in conn.execute(q):
        sizes[bucket] = sizes.get(bucket, 0) + int(total or 0)
    return sizes


def bucket_sizes_created(conn: Connection) -> dict[tuple[str, float], int]:
    """bucket_sizes, each of (name, created_at) of the bucket that has the name (NO_BUCKET:
    none, such as the name of a bucket being deleted)."""
    sizes = bucket_sizes(conn)
    created = buckets_created(conn, sizes)
    return {(name, created.get(name, NO_BUCKET)): size for name, size in sizes.items()}


def buckets_created(conn: Connection, names: Iterable[str]) -> dict[str, float]:
    """The created_at of the bucket that has each of these names, where one has it."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    q = sa.select(buckets.c.name, buckets.c.created_at).where(buckets.c.name.in_(wanted))
    return {name: float(created) for name, created in conn.execute(q)}


def add_counts(conn: Connection, p: UsageCounts) -> None:
    """Add one flush's counters to the usage tables (upserts: many nodes may add at once).

    Counts recorded without knowing which bucket of the name they are of (created None:
    CreateBucket's own) are of the bucket that has the name now, read in this
    transaction, if it had it when the first of them was recorded
    (`first_unknown`, else when the counts began to be gathered, `started`). A bucket
    created after that may have taken the name from one deleted meanwhile: such counts go
    to no bucket (root's and admins' reports), never to an owner they may not be of. A
    new bucket's own first torrent bytes come after its creation, so they are its own:
    with `started` alone, every new bucket's torrent traffic of its first flush interval
    had gone to no bucket."""
    unknown = {k[1] for k in p.usage if k[2] is None}
    unknown.update(k[0] for k in p.objects if k[1] is None)
    unknown.update(k[1] for k in p.storage if k[2] is None)
    unknown.update(
        bucket for bucket, created, _key, _counts in p.swarms.values() if created is None
    )
    now = buckets_created(conn, unknown)

    def of(bucket: str, created: Created) -> float:
        if created is not None:
            return created
        current = now.get(bucket, NO_BUCKET)
        return current if current <= p.first_unknown.get(bucket, p.started) else NO_BUCKET

    usage_rows: dict[tuple[int, str, float, str], dict[str, Any]] = {}

    def row_of(hour: int, bucket: str, created: Created, op: str) -> dict[str, Any]:
        """The hour's row of (bucket, op), counts summed into it (several of a name's
        unknown generation may fall to one bucket)."""
        generation = of(bucket, created)
        return usage_rows.setdefault(
            (hour, bucket, generation, op),
            {
                "hour": hour, "bucket": bucket, "bucket_created": generation,
                "operation": op, "requests": 0, "bytes_out": 0, "bytes_in": 0,
                "byte_hours": 0.0,
            },
        )  # fmt: skip

    for (hour, bucket, created, op), (reqs, out, in_) in p.usage.items():
        row = row_of(hour, bucket, created, op)
        row["requests"] += reqs
        row["bytes_out"] += out
        row["bytes_in"] += in_
    for (hour, bucket, created), byte_hours in p.storage.items():
        row_of(hour, bucket, created, OP_STORAGE)["byte_hours"] += byte_hours
    _upsert_add(
        conn,
        usage_hourly,
        list(usage_rows.values()),
        ("hour", "bucket", "bucket_created", "operation"),
        ("requests", "bytes_out", "bytes_in", "byte_hours"),
    )
    object_rows: dict[tuple[str, float, str, str], dict[str, Any]] = {}
    for (b, created, k, op), (r, o) in p.objects.items():
        row = object_rows.setdefault(
            (b, of(b, created), k, op),
            {
                "bucket": b, "bucket_created": of(b, created), "key": k.encode("utf-8"),
                "operation": op, "requests": 0, "bytes_out": 0,
            },
        )  # fmt: skip
        row["requests"] += r
        row["bytes_out"] += o
    _upsert_add(
        conn,
        usage_objects,
        list(object_rows.values()),
        ("bucket", "bucket_created", "key", "operation"),
        ("requests", "bytes_out"),
    )
    _upsert_add(
        conn,
        usage_swarms,
        [
            {
                "hour": hour,
                "info_hash": ih,
                "bucket": b,
                "bucket_created": of(b, created),
                "key": k.encode("utf-8"),
                "completed": v[0],
                "uploaded": v[1],
                "downloaded": v[2],
            }
            for (hour, ih), (b, created, k, v) in p.swarms.items()
        ],
        ("hour", "info_hash"),
        ("completed", "uploaded", "downloaded"),
    )


_UPSERT_ADD: dict[tuple[str, str], Prepared] = {}


def _upsert_add(
    conn: Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    keys: tuple[str, ...],
    counters: tuple[str, ...],
) -> None:
    """INSERT rows, adding their counters to existing rows with the same key."""
    if not rows:
        return
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        stmt = _UPSERT_ADD.get((dialect, table.name))
        if stmt is None:
            from sqlalchemy.dialects import postgresql, sqlite

            base: Any = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
            stmt = Prepared(
                base.on_conflict_do_update(
                    index_elements=list(keys),
                    set_={c: table.c[c] + base.excluded[c] for c in counters},
                )
            )
            _UPSERT_ADD[(dialect, table.name)] = stmt
        # On SQLite, one executemany on the DBAPI connection: the flush runs in the
        # loop's group commit, and a busy second of GETs can leave thousands of rows.
        stmt.run_many(conn, rows)
        return
    # Other engines: update, insert what was not there (single writer per node).
    for row in rows:
        where = [table.c[k] == row[k] for k in keys]
        res = conn.execute(
            table.update().where(*where).values({c: table.c[c] + row[c] for c in counters})
        )
        if res.rowcount == 0:
            conn.execute(table.insert().values(**row))


def hourly_usage(
    conn: Connection, start: int | None, end: int | None, buckets: frozenset[str] | None
) -> list[HourlyUsage]:
    """The usage_hourly rows of the hours overlapping [start, end) (None: unbounded), of
    `buckets` (None: all)."""
    if buckets is not None and not buckets:
        return []
    t = usage_hourly
    stmt = sa.select(
        t.c.hour, t.c.bucket, t.c.operation, t.c.requests, t.c.bytes_out, t.c.bytes_in,
        t.c.byte_hours, t.c.bucket_created,
    )  # fmt: skip
    if start is not None:
        stmt = stmt.where(t.c.hour >= start - start % 3600)
    if end is not None:
        stmt = stmt.where(t.c.hour < end)
    if buckets is not None:
        stmt = stmt.where(t.c.bucket.in_(sorted(buckets)))
    return [
        HourlyUsage(int(hour), bucket, op, int(reqs), int(out), int(in_), float(bh), float(cr))
        for hour, bucket, op, reqs, out, in_, bh, cr in conn.execute(stmt)
    ]


def swarm_hours(
    conn: Connection, start: int | None, end: int | None, buckets: frozenset[str] | None
) -> list[SwarmHour]:
    """The tracker's swarm counters by hour and bucket, of the hours overlapping [start, end)."""
    s = usage_swarms
    stmt = sa.select(
        s.c.hour,
        s.c.bucket,
        sa.func.sum(s.c.completed),
        sa.func.sum(s.c.downloaded),
        sa.func.sum(s.c.uploaded),
        s.c.bucket_created,
    ).group_by(s.c.hour, s.c.bucket, s.c.bucket_created)
    if start is not None:
        stmt = stmt.where(s.c.hour >= start - start % 3600)
    if end is not None:
        stmt = stmt.where(s.c.hour < end)
    if buckets is not None:
        stmt = stmt.where(s.c.bucket.in_(sorted(buckets)))
    return [
        SwarmHour(int(hour), bucket, int(done or 0), int(down or 0), int(up or 0), float(cr))
        for hour, bucket, done, down, up, cr in conn.execute(stmt)
    ]


def traffic(
    conn: Connection, buckets: frozenset[str] | None, key: str | None, current_only: bool = False
) -> Traffic:
    """Per-object origin traffic and swarm totals, of `buckets` (None: all) and `key`; with
    `current_only`, of the keys that have a current object only."""
    if buckets is not None and not buckets:
        return Traffic([], [])
    o, s = usage_objects, usage_swarms
    q_obj = sa.select(
        o.c.bucket, o.c.key, o.c.operation, o.c.requests, o.c.bytes_out, o.c.bucket_created
    )
    q_swarm = sa.select(
        s.c.bucket,
        s.c.key,
        sa.func.sum(s.c.completed),
        sa.func.sum(s.c.downloaded),
        sa.func.sum(s.c.uploaded),
        s.c.bucket_created,
    ).group_by(s.c.bucket, s.c.key, s.c.bucket_created)
    if buckets is not None:
        q_obj = q_obj.where(o.c.bucket.in_(sorted(buckets)))
        q_swarm = q_swarm.where(s.c.bucket.in_(sorted(buckets)))
    if key is not None:
        q_obj = q_obj.where(o.c.key == key.encode("utf-8"))
        q_swarm = q_swarm.where(s.c.key == key.encode("utf-8"))
    if current_only:
        c = objects
        q_obj = q_obj.where(sa.exists().where(c.c.bucket == o.c.bucket, c.c.key == o.c.key))
        q_swarm = q_swarm.where(sa.exists().where(c.c.bucket == s.c.bucket, c.c.key == s.c.key))
    return Traffic(
        objects=[
            ObjectTraffic(bucket, bytes(k).decode("utf-8"), op, int(reqs), int(out), float(cr))
            for bucket, k, op, reqs, out, cr in conn.execute(q_obj)
        ],
        swarms=[
            SwarmTraffic(
                bucket,
                bytes(k).decode("utf-8"),
                int(completed or 0),
                int(downloaded or 0),
                int(uploaded or 0),
                float(cr),
            )
            for bucket, k, completed, downloaded, uploaded, cr in conn.execute(q_swarm)
        ],
    )
