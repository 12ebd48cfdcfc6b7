"""`serve --workers 2`: a blob renamed into place just before its worker died (SIGKILL), with
no metadata row yet, is swept while the server serves; and the sweep, racing uploads in
flight (plain, slow, multipart, copies, overwrites), never removes a blob a row needs."""

from __future__ import annotations

import http.client
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.api.test_workers import connect_to, wait_restarted, worker_of
from tests.conftest import LiveServer, make_client, sign_request, start_server

BUCKET = "sweeps"
SIZE = 1 << 20  # above the inline size: a blob file
GRACE = 3.0  # storage.orphan_grace of these servers
SWEEP_EVERY = 0.3  # storage.upload_cleanup_interval


@pytest.fixture
def two(tmp_path: Path) -> Iterator[LiveServer]:
    if os.environ.get("S3TORRENT_TEST_METADATA") == "postgres":
        pytest.skip("holds the SQLite file's write lock")
    srv = start_server(
        tmp_path,
        workers=2,
        env={
            "S3TORRENT_STORAGE__ORPHAN_GRACE": str(GRACE),
            "S3TORRENT_STORAGE__UPLOAD_CLEANUP_INTERVAL": str(SWEEP_EVERY),
        },
    )
    yield srv
    srv.stop()


def _until(probe: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _blobs(srv: LiveServer) -> set[str]:
    return {p.name for p in (srv.data_dir / "blobs").glob("*/*/*")}


def _needed_blobs(srv: LiveServer) -> set[str]:
    """Every blob id a metadata row names (objects, noncurrent versions, parts), that is
    stored in a blob (not inline in its row)."""
    engine = sa.create_engine(f"sqlite:///{srv.data_dir / 'metadata.sqlite3'}")
    try:
        with engine.connect() as conn:
            ids = set()
            for table in ("objects", "object_versions"):
                rows = conn.execute(
                    sa.text(f"SELECT version_id FROM {table} WHERE inline_data IS NULL")
                )
                ids |= {r[0] for r in rows}
            ids |= {r[0] for r in conn.execute(sa.text("SELECT blob_id FROM parts"))}
            return ids
    finally:
        engine.dispose()


def test_a_blob_its_killed_worker_left_with_no_row_is_swept_while_serving(
    two: LiveServer,
) -> None:
    """Before: a worker killed after renaming a blob into place and before committing its
    row left the blob (no row, no temporary name of a dead writer) until a fresh start of
    the whole server; a crash loop of uploads could fill the disk. Now the owner's periodic
    sweep removes blobs no row references once two sweeps in a row found them older than
    storage.orphan_grace."""
    s3 = make_client(two.endpoint)
    s3.create_bucket(Bucket=BUCKET)
    kept = os.urandom(SIZE)
    s3.put_object(Bucket=BUCKET, Key="kept", Body=kept)
    before = _blobs(two)
    conn = connect_to(two, 1)
    _, pid = worker_of(conn)
    body = os.urandom(SIZE)
    path = f"/{BUCKET}/doomed"
    headers = sign_request("PUT", two.endpoint + path, {"Content-Length": str(SIZE)}, body)
    # The write lock held elsewhere: the worker's commit waits after its blob is in place.
    lock = sqlite3.connect(two.data_dir / "metadata.sqlite3", timeout=30)
    lock.execute("BEGIN IMMEDIATE")
    try:
        conn.putrequest("PUT", path, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        conn.send(body)
        _until(lambda: _blobs(two) - before, "the doomed blob in place")
        [doomed] = _blobs(two) - before
        os.kill(pid, signal.SIGKILL)
    finally:
        lock.rollback()
        lock.close()
    conn.close()
    wait_restarted(two, 1, pid)
    assert doomed not in _needed_blobs(two)  # no row: the worker died before its commit
    _until(lambda: doomed not in _blobs(two), "the sweep of the dead worker's blob")
    assert s3.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == kept
    assert "doomed" not in [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]


def _slow_put(srv: LiveServer, key: str, body: bytes, seconds: float) -> None:
    """A PUT whose body takes `seconds` to arrive (longer than the grace)."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    path = f"/{BUCKET}/{key}"
    headers = sign_request("PUT", srv.endpoint + path, {"Content-Length": str(len(body))}, body)
    conn.putrequest("PUT", path, skip_accept_encoding=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    steps = 10
    step = -(-len(body) // steps)
    for i in range(steps):
        conn.send(body[i * step : (i + 1) * step])
        time.sleep(seconds / steps)
    response = conn.getresponse()
    assert response.status == 200, response.read()
    response.read()
    conn.close()


def test_the_sweep_racing_uploads_in_flight_removes_no_live_blob(two: LiveServer) -> None:
    """For several grace periods, with sweeps every 0.3 s: PUTs and overwrites on both
    workers, a PUT whose body arrives over longer than the grace, a multipart upload whose
    parts wait longer than the grace for their completion, copies, and a PUT whose commit
    waits for the write lock; afterwards every blob a row names is on disk and every object
    reads back byte-exact."""
    s3 = make_client(two.endpoint)
    s3.create_bucket(Bucket=BUCKET)
    expected: dict[str, bytes] = {}
    errors: list[BaseException] = []
    guard = threading.Lock()

    def put(key: str, body: bytes) -> None:
        make_client(two.endpoint).put_object(Bucket=BUCKET, Key=key, Body=body)
        with guard:
            expected[key] = body

    def steady() -> None:
        try:
            client = make_client(two.endpoint)
            end = time.monotonic() + 3 * GRACE
            n = 0
            while time.monotonic() < end:
                key = f"steady-{threading.get_ident()}-{n % 5}"  # overwrites free blobs
                body = os.urandom(64 * 1024 + n)
                client.put_object(Bucket=BUCKET, Key=key, Body=body)
                with guard:
                    expected[key] = body
                n += 1
        except BaseException as exc:
            errors.append(exc)

    def multipart() -> None:
        try:
            client = make_client(two.endpoint)
            up = client.create_multipart_upload(Bucket=BUCKET, Key="multi")["UploadId"]
            parts, body = [], b""
            for number in (1, 2):
                chunk = os.urandom(5 << 20 if number == 1 else 1000)
                etag = client.upload_part(
                    Bucket=BUCKET, Key="multi", UploadId=up, PartNumber=number, Body=chunk
                )["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
                body += chunk
            time.sleep(2 * GRACE)  # the parts' blobs grow old, referenced by their rows
            client.complete_multipart_upload(
                Bucket=BUCKET, Key="multi", UploadId=up, MultipartUpload={"Parts": parts}
            )
            with guard:
                expected["multi"] = body
            client.copy_object(Bucket=BUCKET, Key="copy", CopySource=f"{BUCKET}/multi")
            with guard:
                expected["copy"] = body
        except BaseException as exc:
            errors.append(exc)

    def slow() -> None:
        try:
            body = os.urandom(SIZE)
            _slow_put(two, "slow", body, 1.5 * GRACE)
            with guard:
                expected["slow"] = body
        except BaseException as exc:
            errors.append(exc)

    def delayed_commit() -> None:
        """A PUT whose row is committed a while after its blob is in place (the write lock
        held elsewhere for less than the grace)."""
        try:
            time.sleep(GRACE)
            lock = sqlite3.connect(two.data_dir / "metadata.sqlite3", timeout=30)
            lock.execute("BEGIN IMMEDIATE")
            body = os.urandom(SIZE)
            worker = threading.Thread(target=put, args=("delayed", body))
            worker.start()
            time.sleep(0.75 * GRACE)
            lock.rollback()
            lock.close()
            worker.join(30)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=steady) for _ in range(3)]
    threads += [threading.Thread(target=f) for f in (multipart, slow, delayed_commit)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert {"multi", "copy", "slow", "delayed"} <= set(expected)
    time.sleep(2 * SWEEP_EVERY + GRACE)  # sweeps after the last write
    missing = _needed_blobs(two) - _blobs(two)
    assert not missing, f"the sweep removed {len(missing)} blobs rows name"
    for key, body in expected.items():
        assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == body, key
