"""Queries of the metering tables (usage_hourly, usage_objects, usage_swarms) and the sizes
the storage samples read."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store.schema import (
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
    OP_STORAGE,
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


def add_counts(conn: Connection, p: UsageCounts) -> None:
    """Add one flush's counters to the usage tables (upserts: many nodes may add at once)."""
    usage_rows: dict[tuple[int, str, str], dict[str, Any]] = {}
    for (hour, bucket, op), (reqs, out, in_) in p.usage.items():
        usage_rows[(hour, bucket, op)] = {
            "hour": hour, "bucket": bucket, "operation": op,
            "requests": reqs, "bytes_out": out, "bytes_in": in_, "byte_hours": 0.0,
        }  # fmt: skip
    for (hour, bucket), byte_hours in p.storage.items():
        usage_rows[(hour, bucket, OP_STORAGE)] = {
            "hour": hour, "bucket": bucket, "operation": OP_STORAGE,
            "requests": 0, "bytes_out": 0, "bytes_in": 0, "byte_hours": byte_hours,
        }  # fmt: skip
    _upsert_add(
        conn,
        usage_hourly,
        list(usage_rows.values()),
        ("hour", "bucket", "operation"),
        ("requests", "bytes_out", "bytes_in", "byte_hours"),
    )
    _upsert_add(
        conn,
        usage_objects,
        [
            {"bucket": b, "key": k.encode("utf-8"), "operation": op, "requests": r, "bytes_out": o}
            for (b, k, op), (r, o) in p.objects.items()
        ],
        ("bucket", "key", "operation"),
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
                "key": k.encode("utf-8"),
                "completed": v[0],
                "uploaded": v[1],
                "downloaded": v[2],
            }
            for (hour, ih), (b, k, v) in p.swarms.items()
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
        t.c.byte_hours,
    )  # fmt: skip
    if start is not None:
        stmt = stmt.where(t.c.hour >= start - start % 3600)
    if end is not None:
        stmt = stmt.where(t.c.hour < end)
    if buckets is not None:
        stmt = stmt.where(t.c.bucket.in_(sorted(buckets)))
    return [
        HourlyUsage(int(hour), bucket, op, int(reqs), int(out), int(in_), float(bh))
        for hour, bucket, op, reqs, out, in_, bh in conn.execute(stmt)
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
    ).group_by(s.c.hour, s.c.bucket)
    if start is not None:
        stmt = stmt.where(s.c.hour >= start - start % 3600)
    if end is not None:
        stmt = stmt.where(s.c.hour < end)
    if buckets is not None:
        stmt = stmt.where(s.c.bucket.in_(sorted(buckets)))
    return [
        SwarmHour(int(hour), bucket, int(done or 0), int(down or 0), int(up or 0))
        for hour, bucket, done, down, up in conn.execute(stmt)
    ]


def traffic(
    conn: Connection, buckets: frozenset[str] | None, key: str | None, current_only: bool = False
) -> Traffic:
    """Per-object origin traffic and swarm totals, of `buckets` (None: all) and `key`; with
    `current_only`, of the keys that have a current object only."""
    if buckets is not None and not buckets:
        return Traffic([], [])
    o, s = usage_objects, usage_swarms
    q_obj = sa.select(o.c.bucket, o.c.key, o.c.operation, o.c.requests, o.c.bytes_out)
    q_swarm = sa.select(
        s.c.bucket,
        s.c.key,
        sa.func.sum(s.c.completed),
        sa.func.sum(s.c.downloaded),
        sa.func.sum(s.c.uploaded),
    ).group_by(s.c.bucket, s.c.key)
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
            ObjectTraffic(bucket, bytes(k).decode("utf-8"), op, int(reqs), int(out))
            for bucket, k, op, reqs, out in conn.execute(q_obj)
        ],
        swarms=[
            SwarmTraffic(
                bucket,
                bytes(k).decode("utf-8"),
                int(completed or 0),
                int(downloaded or 0),
                int(uploaded or 0),
            )
            for bucket, k, completed, downloaded, uploaded in conn.execute(q_swarm)
        ],
    )
