"""Usage rows say which bucket of their name they count (bucket_created): the migration of
a database whose rows did not (SQLite and PostgreSQL), and the meter's flushes and storage
samples across a name taken again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from s3torrent.events import EventBus
from s3torrent.metering.meter import OP_STORAGE, Meter
from s3torrent.metering.usage import UsageQuery, load_savings, load_usage
from s3torrent.store import metadata as md
from s3torrent.store import migrations
from s3torrent.store.database import Database
from s3torrent.store.metastore import SqlMetadataStore
from s3torrent.store.usage_rows import UsageCounts

H = 1_800_000_000 - 1_800_000_000 % 3600
REUSED = H + 1234.5  # created_at of the bucket that has the name "reused" now
FRESH = H - 7200 + 10.25  # "fresh": the name's only bucket


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.sqlite3'}"
        return
    from tests.scale import engines

    if engines.postgres_bin() is None:
        pytest.skip("no PostgreSQL server binaries")
    engine = engines.start_postgres()
    try:
        yield engines.create_database(engine, "usage_generation")
    finally:
        engine.stop()


def _old_database(url: str) -> None:
    """A database at revision 0014 (usage by name only), with usage of three names."""
    from alembic import command

    engine = md.create_engine(url)
    with engine.begin() as conn:
        command.upgrade(migrations.alembic_config(conn), "0014")
        conn.execute(
            sa.text(
                "INSERT INTO buckets (name, owner_id, created_at, region) VALUES "
                "('reused', 'ben', :reused, 'us-east-1'), ('fresh', 'cy', :fresh, 'us-east-1')"
            ),
            {"reused": REUSED, "fresh": FRESH},
        )
        hourly = sa.text(
            "INSERT INTO usage_hourly (hour, bucket, operation, requests, bytes_out, bytes_in,"
            " byte_hours) VALUES (:hour, :bucket, 'GetObject', 1, :out, 0, 0)"
        )
        for hour, bucket, out in [
            (H - 7200, "reused", 500),  # the earlier owner's, before the name was taken
            (H, "reused", 7),  # the hour it was taken: shown to its owner, as before
            (H - 7200, "fresh", 3),
            (H, "gone", 9),  # no bucket has the name
        ]:
            conn.execute(hourly, {"hour": hour, "bucket": bucket, "out": out})
        objects = sa.text(
            "INSERT INTO usage_objects (bucket, key, operation, requests, bytes_out)"
            " VALUES (:bucket, :key, 'GetObject', 1, :out)"
        )
        for bucket, out in [("reused", 500), ("fresh", 3), ("gone", 9)]:
            conn.execute(objects, {"bucket": bucket, "key": b"k", "out": out})
        conn.execute(
            sa.text(
                "INSERT INTO usage_swarms (hour, info_hash, bucket, key, completed, uploaded,"
                " downloaded) VALUES (:h1, 'aa', 'reused', :k, 1, 0, 900),"
                " (:h2, 'bb', 'reused', :k, 1, 0, 11)"
            ),
            {"h1": H - 7200, "h2": H, "k": b"k"},
        )
    engine.dispose()


def _created(db: Database, table: sa.Table) -> list[tuple[Any, ...]]:
    def read(c: sa.Connection) -> list[tuple[Any, ...]]:
        stmt = sa.select(table.c.bucket, table.c.bucket_created, table.c.bytes_out)
        return sorted(tuple(r) for r in c.execute(stmt))

    return db.read_sync(read)


def test_an_old_database_s_usage_goes_to_the_bucket_whose_owner_saw_it(url: str) -> None:
    """Rows from before revision 0015 go to the bucket that has the name now where its
    owner's report showed them (hours from the hour it was created; objects of a name that
    had no earlier bucket), else to no bucket (root's and admins' reports only); the new
    keys take a second bucket's counts of the same hour and key apart."""
    _old_database(url)
    db = Database(url)
    try:
        assert _created(db, md.usage_hourly) == [
            ("fresh", FRESH, 3),
            ("gone", 0.0, 9),
            ("reused", 0.0, 500),
            ("reused", REUSED, 7),
        ]
        assert _created(db, md.usage_objects) == [
            ("fresh", FRESH, 3),
            ("gone", 0.0, 9),
            ("reused", 0.0, 500),  # the name had an earlier bucket: not told apart
        ]
        swarms = db.read_sync(
            lambda c: sorted(
                tuple(r)
                for r in c.execute(
                    sa.select(md.usage_swarms.c.hour, md.usage_swarms.c.bucket_created)
                )
            )
        )
        assert swarms == [(H - 7200, 0.0), (H, REUSED)]

        meta = SqlMetadataStore(db, EventBus())
        counts = UsageCounts()
        counts.usage[(H, "reused", 0.0, "GetObject")] = [1, 100, 0]  # the earlier bucket's
        counts.usage[(H, "reused", None, "GetObject")] = [1, 1, 0]  # the one there now
        counts.objects[("reused", REUSED, "k", "GetObject")] = [1, 1]
        asyncio.run(meta.add_usage(counts))
        assert _created(db, md.usage_hourly)[2:] == [
            ("reused", 0.0, 100),
            ("reused", 0.0, 500),
            ("reused", REUSED, 8),
        ]
        assert _created(db, md.usage_objects)[2:] == [("reused", 0.0, 500), ("reused", REUSED, 1)]

        async def reports() -> tuple[Any, ...]:
            mine = UsageQuery(buckets=frozenset({"reused"}), created={"reused": REUSED})
            everything = UsageQuery(buckets=frozenset({"reused"}))
            theirs = await load_savings(meta, buckets=mine.buckets, created=mine.created)
            whole = await load_savings(meta, buckets=everything.buckets)
            return (
                await load_usage(meta, mine),
                await load_usage(meta, everything),
                theirs,
                whole,
            )

        mine, everything, own_savings, all_savings = asyncio.run(reports())
        assert sum(r.value for r in mine if r.usage_type.endswith("Bytes")) == 8
        assert sum(r.value for r in everything if r.usage_type.endswith("Bytes")) == 608
        assert [(s.rest_bytes, s.swarm_downloaded) for s in own_savings] == [(1, 11)]
        assert [(s.rest_bytes, s.swarm_downloaded) for s in all_savings] == [(501, 911)]
    finally:
        db.close()


def test_counts_that_did_not_know_their_bucket_go_to_the_one_that_has_the_name(
    tmp_path: Path,
) -> None:
    """The seeder, the web seed and the swarm samples record by name: their counts go to
    the bucket that had the name when they began to be gathered (none: 0), while the S3
    edge's say which one. Counts gathered while the name's bucket was created (perhaps
    after one of another owner was deleted) go to no bucket, not to the new one."""
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    try:
        meta = SqlMetadataStore(db, EventBus())
        clock = [time.time()]
        m = Meter(meta, clock=lambda: clock[0])

        async def go() -> float:
            created = (await meta.create_bucket("x", "ben", "us-east-1", None)).created_at
            m.on_piece_sent("x", "k", 1)  # gathered since before the bucket was created
            await m.flush()
            clock[0] = created + 1
            await m.flush()  # an empty flush: the next counts are gathered from now on
            m.on_piece_sent("x", "k", 100)
            m.record("x", "GetObject", 200, 5, 0, 0.0, "k", 1, 12.5)  # an earlier bucket's
            m.on_piece_sent("nobody", "k", 3)
            await m.flush()
            return created

        created = asyncio.run(go())
        assert _created(db, md.usage_objects) == [
            ("nobody", 0.0, 3),
            ("x", 0.0, 1),
            ("x", 12.5, 5),
            ("x", created, 100),
        ]
    finally:
        db.close()


def test_a_new_buckets_first_torrent_bytes_are_its_own(tmp_path: Path) -> None:
    """Torrent bytes of a bucket created in the middle of a flush interval come after its
    creation: they are its own (they had gone to no bucket, so a user who published at once
    never saw the first second of its swarm's origin bytes). Bytes of a name recorded
    before its bucket was created (an earlier bucket's, deleted meanwhile) still go to no
    bucket, and so does the rest of that name's interval."""
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    try:
        meta = SqlMetadataStore(db, EventBus())
        clock = [time.time() - 10]
        m = Meter(meta, clock=lambda: clock[0])  # gathering since 10 s ago

        async def go() -> tuple[float, float]:
            fresh = (await meta.create_bucket("fresh", "ben", "us-east-1", None)).created_at
            clock[0] = fresh + 0.1
            m.on_piece_sent("fresh", "k", 7)  # its first swarm, at once
            m.record("fresh", "GetObject-WebSeed", 200, 11, 0, 0.0, "k")
            clock[0] = fresh - 5
            m.on_piece_sent("reused", "k", 13)  # an earlier bucket of the name's last bytes
            reused = (await meta.create_bucket("reused", "amy", "us-east-1", None)).created_at
            clock[0] = reused + 0.1
            m.on_piece_sent("reused", "k", 17)  # the new one's, in the same interval
            await m.flush()
            return fresh, reused

        fresh, _ = asyncio.run(go())
        assert _created(db, md.usage_objects) == [
            ("fresh", fresh, 7),
            ("fresh", fresh, 11),
            ("reused", 0.0, 30),
        ]
    finally:
        db.close()


def test_stored_bytes_are_billed_to_the_bucket_they_were_of(tmp_path: Path) -> None:
    """A storage sample bills the previous sample's sizes up to now: to the bucket of the
    name at that sample, not to one that took the name since."""
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    try:
        meta = SqlMetadataStore(db, EventBus())
        clock = [float(H)]
        m = Meter(meta, clock=lambda: clock[0])

        async def go() -> tuple[float, float]:
            first = await meta.create_bucket("x", "alice", "us-east-1", None)
            db.write_sync(
                lambda c: c.execute(
                    md.objects.insert(),
                    [md.ObjectVersion("x", "k", "v1", 3600, '"e"', 0.0, "alice").to_row()],
                )
            )
            await m.sample_storage()
            db.write_sync(lambda c: c.execute(md.objects.delete()))
            await meta.delete_bucket("x")
            second = await meta.create_bucket("x", "ben", "us-east-1", None)
            clock[0] = H + 1800.0
            await m.sample_storage()
            await m.flush()
            return first.created_at, second.created_at

        first, second = asyncio.run(go())
        assert first != second
        stored = db.read_sync(
            lambda c: [
                tuple(r)
                for r in c.execute(
                    sa.select(md.usage_hourly.c.bucket_created, md.usage_hourly.c.byte_hours).where(
                        md.usage_hourly.c.operation == OP_STORAGE
                    )
                )
            ]
        )
        assert stored == [(first, 1800.0)]
    finally:
        db.close()
