"""Audit of metering in the field (unit level): swarm samples of a bucket name taken again
within one flush interval."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import sqlalchemy as sa

from s3torrent.events import EventBus
from s3torrent.metering.meter import CLIENT_CLOSED, Meter, billed_to_owner
from s3torrent.store import metadata as md
from s3torrent.store.database import Database
from s3torrent.store.metastore import SqlMetadataStore
from s3torrent.tracker.registry import SwarmStats
from tests.unit.test_meter import FakeInfo, FakePublic, FakeRegistry


def test_swarm_samples_go_to_the_bucket_of_the_publication(tmp_path: Path) -> None:
    """Before: a swarm sample was stored under the bucket that had the name at the flush,
    if it had it since the counts began to be gathered: a sample of a deleted bucket's
    torrent, flushed after another bucket took the name, went to no bucket (and one of the
    new bucket's own torrents too). Now it carries its publication's bucket."""
    db = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    try:
        meta = SqlMetadataStore(db, EventBus())
        old_ih, new_ih = b"\x01" * 20, b"\x02" * 20
        registry = FakeRegistry({old_ih: SwarmStats(0, 0, 0, 0, 0)})
        public = FakePublic(registry, {})
        m = Meter(meta, public=public)  # type: ignore[arg-type]

        async def go() -> tuple[float, float]:
            first = (await meta.create_bucket("x", "amy", "us-east-1", None)).created_at
            public.by_swarm[old_ih] = FakeInfo("x", "k", first)
            await m.sample_swarms()  # the baseline
            registry.stats_by_hash[old_ih] = SwarmStats(1, 0, 0, 0, 700)
            await m.sample_swarms()
            await meta.delete_bucket("x")
            second = (await meta.create_bucket("x", "ben", "us-east-1", None)).created_at
            public.by_swarm[new_ih] = FakeInfo("x", "k", second)
            registry.stats_by_hash[new_ih] = SwarmStats(0, 0, 0, 0, 0)
            await m.sample_swarms()
            registry.stats_by_hash[new_ih] = SwarmStats(1, 0, 0, 0, 300)
            await m.sample_swarms()
            await m.flush()
            return first, second

        first, second = asyncio.run(go())
        t = md.usage_swarms
        stored = db.read_sync(
            lambda c: sorted(
                (float(r[0]), int(r[1]))
                for r in c.execute(sa.select(t.c.bucket_created, t.c.downloaded))
            )
        )
        assert stored == [(first, 700), (second, 300)]
    finally:
        db.close()


def test_refusals_s3_does_not_bill_are_not_the_owner_s() -> None:
    """5XX answers and AccessDenied to anyone but the owner are not billed to the bucket's
    owner (S3's "Billing for Amazon S3 error responses"); the rest is, a client that went
    away mid-answer (499) included."""
    assert not billed_to_owner(403, by_owner=False)
    assert billed_to_owner(403, by_owner=True)
    for status in (500, 503):
        assert not billed_to_owner(status, by_owner=True)
    for status in (200, 206, 304, 404, 412, 416, CLIENT_CLOSED):
        assert billed_to_owner(status, by_owner=False)


def test_the_orphan_sweep_removes_only_blobs_unreferenced_and_old_twice(tmp_path: Path) -> None:
    """A blob no row names goes at the second sweep that finds it older than the grace; one
    younger than the grace (a write in flight) is not even listed, and one a row names, or
    whose row was committed between the two sweeps, stays."""
    import concurrent.futures
    import os

    from s3torrent.store.blobs.local import LocalBlobStore
    from s3torrent.store.objects import ObjectStore

    db = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    pool = concurrent.futures.ThreadPoolExecutor(2)
    try:
        meta = SqlMetadataStore(db, EventBus())
        blobs = LocalBlobStore(tmp_path / "data", fsync=False)
        store = ObjectStore(meta, blobs, executor=pool)

        def blob(vid: str) -> None:
            w = blobs.new_writer()
            w.write(b"x" * 10)
            w.commit(vid)

        def row(vid: str) -> None:
            db.write_sync(
                lambda c: c.execute(
                    md.objects.insert(),
                    [md.ObjectVersion("b", vid, vid, 10, '"e"', 0.0, "o").to_row()],
                )
            )

        for vid in ("orphan", "named", "late"):
            blob(vid)
        row("named")
        # Just after the last of them was put in place (file times are coarse: a tick).
        old = os.stat(blobs.path_for("late")).st_ctime + 1e-6
        assert store.sweep_orphans(3600.0) == 0  # all younger than the grace
        assert store.sweep_orphans(0.0) == 0  # first found: suspects only
        row("late")  # its row comes between the two sweeps
        time.sleep(0.05)
        blob("young")  # put in place after the first sweep
        assert sorted(blobs.list_ids(older_than=old)) == ["late", "named", "orphan"]
        assert store.sweep_orphans(0.0) == 1
        assert sorted(blobs.list_ids()) == ["late", "named", "young"]
        assert store.sweep_orphans(0.0) == 1  # "young", found by the last sweep too
        assert sorted(blobs.list_ids()) == ["late", "named"]
    finally:
        pool.shutdown()
        db.close()
