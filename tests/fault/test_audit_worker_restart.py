"""`serve --workers 2`: a worker killed with SIGKILL in the middle of an upload, started
again alone by the supervisor, cleans up what it left (the upload's temporary blob) at its
start, as a fresh start of the server does, and nothing of the other worker's upload,
which goes on and completes byte-exact."""

from __future__ import annotations

import http.client
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.test_workers import connect_to, wait_restarted, worker_of
from tests.conftest import LiveServer, make_client, sign_request, start_server

BUCKET = "restarts"
SIZE = 4 << 20  # well above the inline size: the body goes to a temporary blob file


@pytest.fixture
def two(tmp_path: Path) -> Iterator[LiveServer]:
    srv = start_server(tmp_path, workers=2)
    yield srv
    srv.stop()


def _start_upload(
    srv: LiveServer, index: int, key: str, body: bytes
) -> tuple[http.client.HTTPConnection, int]:
    """A PUT of `body` on a connection to worker `index`, of which only the first MiB is
    sent; (the connection, the worker's pid)."""
    conn = connect_to(srv, index)
    _, pid = worker_of(conn)
    path = f"/{BUCKET}/{key}"
    headers = sign_request("PUT", srv.endpoint + path, {"Content-Length": str(len(body))}, body)
    conn.putrequest("PUT", path, skip_accept_encoding=True)
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    conn.send(body[: 1 << 20])
    return conn, pid


def _temporary_files_of(pid: int, tmp_dir: Path) -> set[str]:
    """The files in tmp_dir that process pid has open."""
    names = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = Path(os.readlink(fd))
        except OSError:
            continue
        if target.parent == tmp_dir:
            names.add(target.name)
    return names


def _until(probe: object, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_restarted_worker_cleans_its_own_leftovers_and_none_of_the_others(
    two: LiveServer,
) -> None:
    """Before: only a fresh start of the server cleaned temporary blobs (the owner's, with
    no other worker running); a worker started again alone cleaned nothing, and each one
    killed mid-upload left its partial body in tmp/ until the next restart of everything."""
    s3 = make_client(two.endpoint)
    s3.create_bucket(Bucket=BUCKET)
    tmp_dir = two.data_dir / "tmp"
    doomed_body, kept_body = os.urandom(SIZE), os.urandom(SIZE)
    doomed, doomed_pid = _start_upload(two, 1, "doomed", doomed_body)
    kept, kept_pid = _start_upload(two, 0, "kept", kept_body)
    _until(lambda: _temporary_files_of(doomed_pid, tmp_dir), "worker 1's temporary blob")
    _until(lambda: _temporary_files_of(kept_pid, tmp_dir), "worker 0's temporary blob")
    [doomed_file] = _temporary_files_of(doomed_pid, tmp_dir)
    [kept_file] = _temporary_files_of(kept_pid, tmp_dir)

    os.kill(doomed_pid, signal.SIGKILL)
    wait_restarted(two, 1, doomed_pid)
    # The new worker 1 serves only once its start-up clean-up is done.
    left = {p.name for p in tmp_dir.iterdir()}
    assert doomed_file not in left, "the killed worker's partial upload was left behind"
    assert kept_file in left, "the restarted worker removed a live worker's upload"

    kept.send(kept_body[1 << 20 :])
    response = kept.getresponse()
    assert response.status == 200, response.read()
    response.read()
    got = s3.get_object(Bucket=BUCKET, Key="kept")["Body"].read()
    assert got == kept_body
    assert list(tmp_dir.iterdir()) == []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert keys == ["kept"]
    doomed.close()
    kept.close()


def test_only_temporary_blobs_of_ended_writers_are_abandoned(tmp_path: Path) -> None:
    """A live process's write (this one's), and a file named before names had a writer,
    stay; the file of a process that has ended goes."""
    import subprocess
    import sys

    from s3torrent.store.blobs.local import LocalBlobStore

    store = LocalBlobStore(tmp_path)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    live = store.new_writer()
    live.write(b"in flight")
    for name in (f"{ended.stdout.strip()}-0123abcd.part", "0123456789abcdef01234567.part"):
        (store.tmp_dir / name).write_bytes(b"x")
    assert store.clean_abandoned() == 1
    assert sorted(p.name for p in store.tmp_dir.iterdir()) == sorted(
        [live.tmp_path.name, "0123456789abcdef01234567.part"]
    )
    live.commit("v1")
    assert store.read("v1", 0, 100) == b"in flight"


def test_bytes_served_while_the_workers_drain_are_in_the_report_after_a_restart(
    tmp_path: Path,
) -> None:
    """SIGTERM: each worker finishes the answers under way, then writes its last counts;
    what both workers sent during the drain is in the usage report of the next start,
    once (no count lost with a worker, none added twice)."""
    from tests.api.test_metering import admin_totals

    srv = start_server(tmp_path, workers=2)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket=BUCKET)
        # Larger than the socket buffers hold: each answer is under way at the SIGTERM.
        size = 32 << 20
        body = os.urandom(size)
        s3.put_object(Bucket=BUCKET, Key="big", Body=body)
        readers = []
        for index in (0, 1):
            conn = connect_to(srv, index)
            url = f"{srv.endpoint}/{BUCKET}/big"
            conn.request("GET", f"/{BUCKET}/big", headers=sign_request("GET", url))
            response = conn.getresponse()
            assert response.status == 200
            readers.append((conn, response, response.read(1 << 20)))
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGTERM)
        for conn, response, first in readers:
            assert first + response.read() == body
            conn.close()
        assert srv.stop() == 0
        srv.start()
        totals = admin_totals(srv, BUCKET)
        assert totals[("GetObject", "Requests-Tier2")] == 2
        assert totals[("GetObject", "DataTransfer-Out-Bytes")] == 2 * size
        assert totals[("PutObject", "DataTransfer-In-Bytes")] == size
    finally:
        srv.stop()


def test_a_peer_s_transfer_is_not_counted_again_by_an_owner_started_again(
    tmp_path: Path,
) -> None:
    """The tracker's registry lives in the owner worker: one started again has an empty
    one. A peer's counters are "since it started the torrent"; its next announce (no
    `started` event) used to be counted in full as new, so every byte the swarm had
    reported before counted twice in the usage tables and the savings report."""
    import hashlib

    from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

    from tests.api.test_metering import admin_get, announce, fetch

    srv = start_server(tmp_path, workers=2)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="obj", Body=os.urandom(50_000), ACL="public-read")
        info = dict(bdecode(fetch(f"{srv.endpoint}/{BUCKET}/obj?torrent")))
        ih = hashlib.sha1(bencode(info[b"info"])).digest()
        peer = b"-XX0001-restartpeer1"
        r = announce(srv, ih, peer, uploaded=0, downloaded=0, left=50_000, event="started")
        assert b"failure reason" not in r, r
        announce(srv, ih, peer, uploaded=0, downloaded=40_000, left=10_000)

        def swarm() -> tuple[int, int]:
            objects = admin_get(srv, f"/_admin/savings?bucket={BUCKET}&key=obj")["objects"]
            return sum(o["swarm_downloaded"] for o in objects), sum(
                o["swarm_completed"] for o in objects
            )

        _until(lambda: swarm() == (40_000, 0), "the first announces to be counted")
        owner = connect_to(srv, 0)
        _, pid = worker_of(owner)
        owner.close()
        os.kill(pid, signal.SIGKILL)
        wait_restarted(srv, 0, pid)
        r = announce(srv, ih, peer, uploaded=0, downloaded=50_000, left=0, event="completed")
        assert b"failure reason" not in r, r
        _until(lambda: swarm()[1] == 1, "the completion to be counted")
        # What the peer reported before the restart is not counted again; what it
        # downloaded between its last announce and the restart is not known (a lower bound).
        assert swarm() == (40_000, 1)
    finally:
        srv.stop()


def test_a_browser_that_reconnects_is_not_counted_again(tmp_path: Path) -> None:
    """WebTorrent announces again when its WebSocket comes back (a dropped connection, an
    owner started again) with its totals since it started and no event; the WebSocket
    tracker had forgotten the peer with its socket and counted them all again."""
    import asyncio

    import aiohttp

    from tests.api.test_metering import admin_get
    from tests.api.test_tracker_ws import announce, info_hash, receive, ws_url

    srv = start_server(tmp_path)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="f.bin", Body=os.urandom(50_000), ACL="public-read")
        ih = info_hash(s3, BUCKET, "f.bin")
        peer = b"-WW0001-browserpeer1"

        def swarm() -> tuple[int, int]:
            objects = admin_get(srv, f"/_admin/savings?bucket={BUCKET}")["objects"]
            return sum(o["swarm_downloaded"] for o in objects), sum(
                o["swarm_completed"] for o in objects
            )

        def update(**values: object) -> dict[str, object]:
            message = announce(ih, peer, **values)
            del message["event"]  # a regular announce: WebTorrent sends no event
            return message

        async def browse(*messages: dict[str, object]) -> None:
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(ws_url(srv))
                for message in messages:
                    await ws.send_json(message)
                    assert "failure reason" not in (answer := await receive(ws)), answer
                await ws.close()

        asyncio.run(browse(announce(ih, peer), update(downloaded=40_000, left=10_000)))
        _until(lambda: swarm() == (40_000, 0), "the first announces to be counted")
        # The socket is gone; the browser comes back with its totals.
        done = announce(ih, peer, downloaded=50_000, left=0, event="completed")
        asyncio.run(browse(update(downloaded=45_000, left=5_000), done))
        _until(lambda: swarm()[1] == 1, "the completion to be counted")
        # What it reported on its first socket is not counted again; what it got between
        # the two sockets' first announces is not known (a lower bound).
        assert swarm() == (45_000, 1)
    finally:
        srv.stop()
