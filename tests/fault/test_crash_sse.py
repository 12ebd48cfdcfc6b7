"""kill -9 during concurrent encrypted writes: what was acknowledged reads back, every
version that is visible opens (its key material was durable before its commit), and the
restart leaves no blob, key record or row without the others."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from s3torrent.store.sealed_format import sealed_size
from tests.conftest import make_client, start_server
from tests.fault.test_crash import ABSENT, KEYS, History, kill9_amid, worker


@pytest.mark.parametrize("seed", [3])
def test_kill9_during_encrypted_writes_keeps_acknowledged_state(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed * 7919 + int(time.time()))
    srv = start_server(tmp_path, env={"S3TORRENT_ENCRYPTION__DEFAULT": "AES256"})
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
            threads=6,
        )

        srv.start()
        client = make_client(srv.endpoint)
        for key in KEYS:
            try:
                got = client.get_object(Bucket="crash", Key=key)
                assert got["ServerSideEncryption"] == "AES256"
                state = hashlib.sha256(got["Body"].read()).hexdigest()
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "NoSuchKey"
                state = ABSENT
            assert state in history.allowed(key), key

        db = sqlite3.connect(srv.data_dir / "metadata.sqlite3")
        try:
            rows = dict(db.execute("SELECT version_id, size FROM objects"))
            inline = {
                r[0]
                for r in db.execute("SELECT version_id FROM objects WHERE inline_data IS NOT NULL")
            }
            records = {r[0] for r in db.execute("SELECT owner FROM sse_keys")}
        finally:
            db.close()
        # Every version has its key material, and the restart dropped that of lost writes.
        assert records == set(rows)
        blobs = {
            p.name: p.stat().st_size for p in (srv.data_dir / "blobs").rglob("*") if p.is_file()
        }
        assert set(blobs) == set(rows) - inline
        assert all(blobs[v] == sealed_size(rows[v]) for v in blobs)
    finally:
        srv.stop()
