"""Conditional writes on PostgreSQL: two nodes on one database, racing create-only writers.

On one SQLite node every write goes through one writer, so the race is decided in one
place; here two processes commit concurrently, and only the row lock and the insert's
conflict decide. Exactly one of the writers may win.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_conditional_writes import race_create_only
from tests.conftest import LiveServer, free_port, make_client
from tests.scale.engines import Engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(240)
def test_create_only_writers_on_two_nodes_have_exactly_one_winner(
    tmp_path: Path, pg_url: str
) -> None:
    nodes = []
    try:
        for name in ("a", "b"):
            data = tmp_path / name
            data.mkdir()
            node = LiveServer(
                data_dir=data,
                port=free_port(),
                peer_port=free_port(),
                env={
                    "S3TORRENT_METADATA_URL": pg_url,
                    "S3TORRENT_NODE_ID": f"node-{name}",
                    # Nodes of one database share the master key file.
                    "S3TORRENT_ENCRYPTION__MASTER_KEY_FILE": str(tmp_path / "master-keys.json"),
                },
            )
            node.start(timeout=60)
            nodes.append(node)
        make_client(nodes[0].endpoint).create_bucket(Bucket="race")
        # Small bodies live in their row: the nodes need no shared blob store.
        for round_ in range(5):
            race_create_only([n.endpoint for n in nodes], "race", f"lock-{round_}")
    finally:
        for node in nodes:
            node.stop(timeout=20)


@pytest.mark.timeout(300)
def test_conditional_write_api_tests_pass_with_metadata_on_postgresql(postgres: Engine) -> None:
    env = {**os.environ, "S3TORRENT_TEST_METADATA": "postgres"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-x",
            "tests/api/test_conditional_writes.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def _version(key: str, body: bytes) -> Any:
    import hashlib
    import secrets
    import time

    from s3torrent.store import metadata as md

    return md.ObjectVersion(
        bucket="b",
        key=key,
        version_id=secrets.token_hex(16),
        size=len(body),
        etag=f'"{hashlib.md5(body).hexdigest()}"',
        last_modified=time.time(),
        owner_id="0" * 64,
        inline=body,
    )


@pytest.mark.timeout(60)
def test_create_only_insert_that_loses_the_race_is_a_conflict(pg_url: str) -> None:
    """The window the 409 exists for: B looks (no row), A inserts and commits, B's insert
    finds A's row. B must fail with ConditionalConflict, not overwrite A."""
    from s3torrent.store import metadata as md
    from s3torrent.store import migrations
    from s3torrent.store.conditions import WriteCondition
    from s3torrent.store.errors import ConditionalConflict

    engine = md.create_engine(pg_url)
    migrations.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            md.buckets.insert().values(name="b", owner_id="0" * 64, created_at=0.0, region="r")
        )
    create_only = WriteCondition(if_none_match=True)
    a = engine.connect()
    txn_a = a.begin()
    assert md.upsert_object(a, _version("k", b"A"), create_only) is None  # not committed yet
    outcome: list[BaseException | None] = []

    def writer_b() -> None:
        with engine.connect() as b, b.begin():
            try:
                md.upsert_object(b, _version("k", b"B"), create_only)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

    import threading
    import time

    t = threading.Thread(target=writer_b)
    t.start()
    time.sleep(0.5)  # B is now waiting on A's uncommitted key
    txn_a.commit()
    a.close()
    t.join(timeout=20)
    assert len(outcome) == 1 and isinstance(outcome[0], ConditionalConflict), outcome
    with engine.connect() as c:
        assert md.get_object(c, "b", "k").inline == b"A"  # type: ignore[union-attr]
    engine.dispose()
