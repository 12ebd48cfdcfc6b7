"""kill -9 during concurrent writes: acknowledged writes survive, nothing partial appears.

Eight threads PUT (0-2 MiB, overwriting a shared key set) and DELETE while the server is
killed with SIGKILL at a random moment. Every operation records a start and an end stamp
from one global counter, so "Y started after X was acknowledged" is a real happened-before.
After a restart, each key must hold the outcome of an operation that no later-started
acknowledged operation superseded (a linearizable register), byte for byte.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_client, start_server

KEYS = [f"shared/{i:02d}" for i in range(12)]
ABSENT = "absent"
POOL = os.urandom(4 * 1024 * 1024)


@dataclass
class Op:
    key: str
    kind: str  # "put" | "delete"
    outcome: str  # sha256 hex of the body, or ABSENT
    start: int
    end: int | None = None  # None: never acknowledged (in flight or failed)


class History:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clock = itertools.count()
        self.ops: list[Op] = []

    def begin(self, key: str, kind: str, outcome: str) -> Op:
        with self._lock:
            op = Op(key, kind, outcome, next(self._clock))
            self.ops.append(op)
            return op

    def ack(self, op: Op) -> None:
        with self._lock:
            op.end = next(self._clock)

    def allowed(self, key: str) -> set[str]:
        ops = [o for o in self.ops if o.key == key]
        acked = [o for o in ops if o.end is not None]
        out: set[str] = set()
        if not acked:
            out.add(ABSENT)  # nothing was ever certainly committed
        for x in ops:
            x_end = x.end if x.end is not None else float("inf")
            superseded = any(y.start > x_end for y in acked)
            if not superseded:
                out.add(x.outcome)
        return out


def worker(endpoint: str, bucket: str, history: History, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    client = make_client(endpoint, connect_timeout=5, read_timeout=20)
    n = 0
    while not stop.is_set():
        key = rng.choice(KEYS)
        if rng.random() < 0.25:
            op = history.begin(key, "delete", ABSENT)
            call: Any = lambda k=key: client.delete_object(Bucket=bucket, Key=k)  # noqa: E731
        else:
            size = rng.choice([0, rng.randrange(1, 4096), rng.randrange(0, 2 * 1024 * 1024)])
            off = rng.randrange(0, len(POOL) - size + 1)
            tag = f"{seed}:{n}:".encode()[:size]
            body = tag + POOL[off + len(tag) : off + size]
            n += 1
            op = history.begin(key, "put", hashlib.sha256(body).hexdigest())
            call = lambda k=key, b=body: client.put_object(Bucket=bucket, Key=k, Body=b)  # noqa: E731
        try:
            call()
        except Exception:
            # Connection refused/reset at the kill: the op stays unacknowledged (may have landed).
            if stop.is_set():
                return
            time.sleep(0.05)
            continue
        history.ack(op)


def kill9_amid(
    srv: Any,
    history: History,
    work: Callable[[threading.Event, int], None],
    rng: random.Random,
    seed: int,
    threads: int,
) -> None:
    """Run `threads` writers (`work(stop, thread seed)`, recording in `history`), kill the
    server with SIGKILL once at least one write was acknowledged (or after 15 s), then
    stop and join them; fails if nothing was acknowledged."""
    stop = threading.Event()
    running = [threading.Thread(target=work, args=(stop, seed * 100 + i)) for i in range(threads)]
    for t in running:
        t.start()
    time.sleep(rng.uniform(0.5, 3.0))
    deadline = time.monotonic() + 15
    while not any(o.end is not None for o in history.ops) and time.monotonic() < deadline:
        time.sleep(0.05)
    srv.kill9()
    stop.set()
    for t in running:
        t.join(timeout=60)
    assert any(o.end is not None for o in history.ops), "nothing acknowledged before the kill"


@pytest.mark.parametrize(
    ("seed", "fsync"),
    [(1, "true"), (2, "true"), (3, "false")],
    ids=["fsync-1", "fsync-2", "no-fsync"],
)
def test_kill9_during_concurrent_writes_keeps_acknowledged_state(
    tmp_path: Path, seed: int, fsync: str
) -> None:
    """With storage.fsync off too: nothing is synced, yet the process's death loses nothing
    it acknowledged (the page cache outlives it; only power loss would not)."""
    rng = random.Random(seed * 7919 + int(time.time()))
    srv = start_server(tmp_path, env={"S3TORRENT_STORAGE__FSYNC": fsync})
    try:
        client = make_client(srv.endpoint)
        client.create_bucket(Bucket="crash")
        history = History()
        kill9_amid(
            srv,
            history,
            lambda stop, s: worker(srv.endpoint, "crash", history, stop, s),
            rng,
            seed,
            threads=8,
        )
        acked = [o for o in history.ops if o.end is not None]

        srv.start()
        client = make_client(srv.endpoint)
        for key in KEYS:
            allowed = history.allowed(key)
            try:
                got = client.get_object(Bucket="crash", Key=key)["Body"].read()
                state = hashlib.sha256(got).hexdigest()
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "NoSuchKey"
                state = ABSENT
            last = max((o for o in acked if o.key == key), key=lambda o: o.end or 0, default=None)
            assert state in allowed, (
                f"{key}: found {state[:12]}, allowed {[a[:12] for a in allowed]}, "
                f"last acknowledged {last}"
            )

        listed = client.list_objects_v2(Bucket="crash")
        assert {o["Key"] for o in listed.get("Contents", [])} <= set(KEYS)
        # No stray files: tmp/ is empty and every blob belongs to a row (and vice versa).
        assert not list((srv.data_dir / "tmp").iterdir())
        db = sqlite3.connect(srv.data_dir / "metadata.sqlite3")
        try:
            columns = {r[1] for r in db.execute("PRAGMA table_info(objects)")}
            # Small objects may live inline in their row, with no blob file of their own.
            blob_filter = " WHERE inline_data IS NULL" if "inline_data" in columns else ""
            rows = dict(db.execute("SELECT version_id, size FROM objects" + blob_filter))
            part_blobs = {r[0] for r in db.execute("SELECT blob_id FROM parts").fetchall()}
        finally:
            db.close()
        blobs = {
            p.name: p.stat().st_size for p in (srv.data_dir / "blobs").rglob("*") if p.is_file()
        }
        unreferenced = set(blobs) - set(rows) - part_blobs
        assert not unreferenced, f"{len(unreferenced)} orphan blobs after restart"
        missing = set(rows) - set(blobs)
        assert not missing, f"rows without blobs: {missing}"
        assert all(blobs[v] == size for v, size in rows.items())
    finally:
        srv.stop()
