"""kill -9 during versioned overwrites and delete-marker creation: after a restart every
acknowledged version is there byte for byte (by its version id), every acknowledged delete
marker is listed, and the listing is consistent (one latest entry per key, GET of the key
answers what the latest entry says, every listed version reads back)."""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from tests.conftest import make_client, start_server

KEYS = [f"v/{i}" for i in range(4)]
POOL = os.urandom(512 * 1024)


def worker(
    endpoint: str,
    acked: dict[str, tuple[str, str | None]],
    lock: threading.Lock,
    stop: threading.Event,
    seed: int,
) -> None:
    """PUTs (small inline and larger blob bodies) and deletes; acked maps each acknowledged
    version id to (key, sha256 of its body; None for a delete marker)."""
    rng = random.Random(seed)
    client = make_client(endpoint, connect_timeout=5, read_timeout=20)
    while not stop.is_set():
        key = rng.choice(KEYS)
        try:
            if rng.random() < 0.3:
                vid = client.delete_object(Bucket="crash", Key=key)["VersionId"]
                entry: tuple[str, str | None] = (key, None)
            else:
                size = rng.choice([rng.randrange(1, 2048), rng.randrange(0, len(POOL))])
                body = f"{seed}:{time.monotonic_ns()}:".encode() + POOL[:size]
                vid = client.put_object(Bucket="crash", Key=key, Body=body)["VersionId"]
                entry = (key, hashlib.sha256(body).hexdigest())
        except Exception:
            if stop.is_set():
                return
            time.sleep(0.05)
            continue
        with lock:
            acked[vid] = entry


def _all_versions(client: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    versions: list[dict[str, Any]] = []
    markers: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"Bucket": "crash", "MaxKeys": 7}
    while True:
        page = client.list_object_versions(**kwargs)
        versions += page.get("Versions", [])
        markers += page.get("DeleteMarkers", [])
        if not page["IsTruncated"]:
            return versions, markers
        kwargs.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"])


def test_kill9_during_versioned_writes_keeps_every_acknowledged_version(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    try:
        client = make_client(srv.endpoint)
        client.create_bucket(Bucket="crash")
        client.put_bucket_versioning(Bucket="crash", VersioningConfiguration={"Status": "Enabled"})
        acked: dict[str, tuple[str, str | None]] = {}
        lock = threading.Lock()
        stop = threading.Event()
        threads = [
            threading.Thread(target=worker, args=(srv.endpoint, acked, lock, stop, i))
            for i in range(6)
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(acked) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(random.uniform(0.0, 0.5))
        srv.kill9()
        stop.set()
        for t in threads:
            t.join(30)
        with lock:
            survived = dict(acked)
        assert any(sha for _, sha in survived.values()) and any(
            sha is None for _, sha in survived.values()
        ), "the run acknowledged no PUT or no delete marker"
        srv.start()
        client = make_client(srv.endpoint)
        versions, markers = _all_versions(client)
        listed = {v["VersionId"]: v for v in versions}
        listed_markers = {m["VersionId"]: m for m in markers}
        for vid, (key, sha) in survived.items():
            if sha is None:
                assert vid in listed_markers and listed_markers[vid]["Key"] == key, vid
                continue
            assert vid in listed, vid
            body = client.get_object(Bucket="crash", Key=key, VersionId=vid)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == sha, vid
        # Every listed version (acknowledged or not) reads back whole.
        for vid, v in listed.items():
            got = client.get_object(Bucket="crash", Key=v["Key"], VersionId=vid)
            assert got["ContentLength"] == v["Size"]
        # One latest entry per key, and GET of the key agrees with it.
        for key in KEYS:
            latest = [e for e in versions + markers if e["Key"] == key and e["IsLatest"]]
            if not [e for e in versions + markers if e["Key"] == key]:
                continue
            assert len(latest) == 1, (key, latest)
            if latest[0]["VersionId"] in listed_markers:
                try:
                    client.head_object(Bucket="crash", Key=key)
                    raise AssertionError(f"{key}: the latest is a delete marker")
                except ClientError as exc:
                    assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404
            else:
                head = client.head_object(Bucket="crash", Key=key)
                assert head["VersionId"] == latest[0]["VersionId"]
    finally:
        srv.stop()
