"""A full disk, for real: the data directory on a 48 MiB tmpfs, filled by PUTs.

Writes that do not fit are refused with 507 InsufficientStorage (never a 500), no acknowledged
object is lost, deletes and small metadata changes still commit (from the reserve file), the
space they free lets PUTs in again, and a server restarted on a full disk starts and serves.
Needs root (mount); skipped elsewhere.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, free_port, make_client, metadata_env

FS_SIZE = 48 * 1024 * 1024
RESERVE = 4 * 1024 * 1024
OBJECT = 1024 * 1024
ENV = {
    # Deleted blobs go at once, so the space a DELETE frees is there for the next PUT.
    "S3TORRENT_STORAGE__BLOB_DELETE_DELAY": "0.05",
}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of FS_SIZE bytes mounted on tmp_path/data (the server log stays outside)."""
    if os.environ.get("S3TORRENT_TEST_METADATA") == "postgres":
        pytest.skip("the metadata database must live on the small disk")
    data = tmp_path / "data"
    data.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE}", "tmpfs", str(data)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield data
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)


def _server(data: Path, *, reserve: int = RESERVE) -> LiveServer:
    srv = LiveServer(
        data_dir=data,
        port=free_port(),
        peer_port=free_port(),
        env={**metadata_env(), **ENV, "S3TORRENT_STORAGE__RESERVE_BYTES": str(reserve)},
    )
    srv.start()
    return srv


def _code(exc: ClientError) -> tuple[int, str]:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"], exc.response["Error"]["Code"]


def _fill(client: Any, prefix: str, stored: dict[str, str]) -> tuple[int, str]:
    """PUT 1 MiB objects until one is refused; return the refusal's (status, code)."""
    for i in range(FS_SIZE // OBJECT + 8):
        body = os.urandom(OBJECT)
        key = f"{prefix}{i:03d}"
        try:
            client.put_object(Bucket="full", Key=key, Body=body)
        except ClientError as exc:
            return _code(exc)
        stored[key] = hashlib.sha256(body).hexdigest()
    raise AssertionError("the disk never filled up")


def _assert_all_readable(client: Any, stored: dict[str, str]) -> None:
    for key, digest in stored.items():
        body = client.get_object(Bucket="full", Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == digest, key


def _fill_to_the_last_block(path: Path) -> None:
    # Unbuffered: a buffered file would try to flush what the full disk refused again at
    # close, and raise there.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        block = b"\0" * 65536
        while True:
            try:
                if os.write(fd, block) == 0:
                    return
            except OSError:
                if len(block) == 1:
                    return
                block = block[: len(block) // 2]  # fill the last partial blocks too
    finally:
        os.close(fd)


def test_full_disk_refuses_writes_keeps_deletes_and_restarts(small_disk: Path) -> None:
    srv = _server(small_disk)
    try:
        client = make_client(srv.endpoint)
        client.create_bucket(Bucket="full")
        assert (small_disk / "space-reserve").stat().st_size == RESERVE
        stored: dict[str, str] = {}
        assert _fill(client, "a", stored) == (507, "InsufficientStorage")
        assert len(stored) >= 20
        # Refused again at once (no 500 once the server knows it is full), small objects too.
        with pytest.raises(ClientError) as refused:
            client.put_object(Bucket="full", Key="small", Body=b"x" * 100)
        assert _code(refused.value) == (507, "InsufficientStorage")
        assert "delete objects" in refused.value.response["Error"]["Message"]
        _assert_all_readable(client, stored)

        # Metadata-only changes and deletes commit on the full disk.
        _fill_to_the_last_block(small_disk / "filler-1")
        client.create_bucket(Bucket="another")
        client.put_bucket_acl(Bucket="full", ACL="public-read")
        os.unlink(small_disk / "filler-1")
        freed = sorted(stored)[: len(stored) // 2]
        for key in freed:
            client.delete_object(Bucket="full", Key=key)
            del stored[key]
        with pytest.raises(ClientError) as gone:
            client.head_object(Bucket="full", Key=freed[0])
        assert _code(gone.value)[0] == 404
        # The freed space lets PUTs in again (after the reserve is whole once more).
        body = os.urandom(OBJECT)
        deadline = 50
        while True:
            try:
                client.put_object(Bucket="full", Key="again", Body=body)
                break
            except ClientError as exc:
                assert _code(exc) == (507, "InsufficientStorage")
                deadline -= 1
                assert deadline > 0, "PUTs never resumed after deletes"
                time.sleep(0.1)
        stored["again"] = hashlib.sha256(body).hexdigest()
        _assert_all_readable(client, stored)

        # Full once more, with the reserve given back while serving (as a commit that met the
        # full disk gives it back; whether one does here depends on the room left in the WAL,
        # so the test takes it away itself), then a clean stop: the stop puts back as much of
        # the reserve as there is room for.
        assert _fill(client, "b", stored)[0] == 507
        (small_disk / "space-reserve").unlink(missing_ok=True)
        srv.stop()
        assert (small_disk / "space-reserve").stat().st_size > 1024 * 1024
        # Then the disk fills to the last block while the server is down, and it restarts.
        _fill_to_the_last_block(small_disk / "filler-2")
        srv.start()
        log = srv.log_path.read_text() if srv.log_path else ""
        assert "storage full at start" in log
        assert "Traceback" not in log
        _assert_all_readable(client, stored)
        with pytest.raises(ClientError) as after_restart:
            client.put_object(Bucket="full", Key="late", Body=os.urandom(OBJECT))
        assert _code(after_restart.value) == (507, "InsufficientStorage")
        victim = next(iter(stored))
        client.delete_object(Bucket="full", Key=victim)
        del stored[victim]
        _assert_all_readable(client, stored)
    finally:
        srv.stop()


def test_full_disk_without_a_reserve_refuses_to_start_with_one_clear_line(
    small_disk: Path,
) -> None:
    srv = _server(small_disk, reserve=0)
    try:
        make_client(srv.endpoint).create_bucket(Bucket="full")
    finally:
        srv.stop()
    assert not (small_disk / "space-reserve").exists()
    _fill_to_the_last_block(small_disk / "filler")
    with pytest.raises(RuntimeError) as exited:
        srv.start()
    assert srv.proc is not None and srv.proc.wait(10) == 1
    srv.proc = None
    assert "too full to open the metadata database" in str(exited.value)
    assert "Traceback" not in str(exited.value)
