"""Master key rotation racing writes: a data key or a user's secret wrapped by a master key
in the moment before a rotation, and stored after it, must never be left wrapped by a key
that a second rotation drops; and two rotations (two `key rotate` processes) must never
drop each other's keys.

`rotate_elsewhere` is what `key rotate` does in its own process: its own key ring loaded
from the file and its own metadata store, the server's objects untouched."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from s3torrent.events import EventBus
from s3torrent.provision import open_user_secrets
from s3torrent.store.blobs.local import LocalBlobStore
from s3torrent.store.master_key import MasterKeys
from s3torrent.store.meta_sealing import SSE_S3, SealRecord
from s3torrent.store.metastore import SqlMetadataStore, open_metadata_store
from s3torrent.store.rows import User
from s3torrent.store.sealed_format import Segment
from s3torrent.store.sealing import Sealing, SealSpec
from s3torrent.store.user_secrets import sealed_key_id
from tests.conftest import metadata_env


@pytest.fixture
def url(tmp_path: Path) -> str:
    return metadata_env().get("S3TORRENT_METADATA_URL", f"sqlite:///{tmp_path / 'm.sqlite3'}")


@pytest.fixture
def keyfile(tmp_path: Path) -> Path:
    path = tmp_path / "sse-master-keys.json"
    MasterKeys.load_or_create(path)
    return path


@pytest.fixture
def meta(url: str, keyfile: Path) -> Iterator[SqlMetadataStore]:
    store = open_metadata_store(url, EventBus())
    open_user_secrets(store, MasterKeys.load(keyfile))
    yield store
    store.close()


@pytest.fixture
def sealing(meta: SqlMetadataStore, tmp_path: Path) -> Sealing:
    assert meta.user_secrets is not None
    return Sealing(meta, LocalBlobStore(tmp_path / "blobs"), meta.user_secrets.keys)


def rotate_elsewhere(url: str, keyfile: Path, tmp_path: Path, times: int = 1) -> None:
    """`key rotate`, `times` times back to back, as another process would (blocking; run on
    a thread of its own, so it may be called from inside a running loop)."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(times):
                ring = MasterKeys.load(keyfile)
                store = open_metadata_store(url, EventBus())
                try:
                    open_user_secrets(store, ring)
                    blobs = LocalBlobStore(tmp_path / "blobs")
                    asyncio.run(Sealing(store, blobs, ring).rotate())
                finally:
                    store.close()
        except BaseException as exc:  # handed to the caller
            failures.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the rotations did not finish"
    if failures:
        raise failures[0]


def late_puts(monkeypatch: pytest.MonkeyPatch, meta: SqlMetadataStore, rotate: Any) -> None:
    """The next seal record is stored only after `rotate()` ran (a write whose record
    commits a moment after the key was wrapped, as a busy database makes it)."""
    real = meta.put_seal_record
    pending = [True]

    async def put(record: SealRecord) -> None:
        if pending:
            pending.clear()
            rotate()
        await real(record)

    monkeypatch.setattr(meta, "put_seal_record", put)


def opens_with_the_file(keyfile: Path, record: SealRecord | None) -> bytes:
    """The data key a stored record holds, opened with the key file as it is now (a
    restarted server's keys)."""
    assert record is not None and record.key_id is not None and record.wrapped_key is not None
    from s3torrent.store.master_key import WrappedKey

    return MasterKeys.load(keyfile).unwrap(WrappedKey(record.key_id, record.wrapped_key))


def test_a_data_key_wrapped_before_two_rotations_and_stored_after_them_still_opens(
    meta: SqlMetadataStore,
    sealing: Sealing,
    url: str,
    keyfile: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    late_puts(monkeypatch, meta, lambda: rotate_elsewhere(url, keyfile, tmp_path, times=2))

    async def run() -> bytes:
        data_key, _record = await sealing.seal_writer_for("blob-1", SealSpec(SSE_S3))
        return data_key

    data_key = asyncio.run(run())
    stored = asyncio.run(meta.seal_record("blob-1"))
    assert opens_with_the_file(keyfile, stored) == data_key


def test_a_multipart_completion_across_two_rotations_keeps_an_openable_key(
    meta: SqlMetadataStore,
    sealing: Sealing,
    url: str,
    keyfile: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def start() -> bytes:
        data_key, _record = await sealing.seal_writer_for("upload-1", SealSpec(SSE_S3))
        return data_key

    data_key = asyncio.run(start())
    # The completion read the upload's record; two rotations ran before its joined record
    # (the new version's) was stored.
    late_puts(monkeypatch, meta, lambda: rotate_elsewhere(url, keyfile, tmp_path, times=2))
    segments = [Segment(1, 10), Segment(2, 5)]
    asyncio.run(sealing.record_joined("upload-1", "version-1", segments))
    joined = asyncio.run(meta.seal_record("version-1"))
    assert joined is not None and joined.segments == tuple(segments)
    assert opens_with_the_file(keyfile, joined) == data_key


def test_a_user_made_across_two_rotations_keeps_a_secret_that_opens(
    meta: SqlMetadataStore,
    url: str,
    keyfile: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    box = meta.user_secrets
    assert box is not None
    real_seal = box.seal
    pending = [True]

    def seal(owner: Any, secret: str) -> str:
        sealed = real_seal(owner, secret)
        if pending:  # sealed, then two rotations before the row is stored
            pending.clear()
            rotate_elsewhere(url, keyfile, tmp_path, times=2)
        return sealed

    monkeypatch.setattr(box, "seal", seal)
    asyncio.run(meta.add_user(User("uma-id", "uma", "AKUMA", "u" * 40, False, 1.0)))
    # A restarted server (a fresh key ring from the file) still opens uma's secret.
    fresh = open_metadata_store(url, EventBus())
    try:
        open_user_secrets(fresh, MasterKeys.load(keyfile))
        assert {u.name: u.secret_key for u in fresh.all_users()}["uma"] == "u" * 40
        stored = dict((cid, v) for cid, _ak, v in fresh.stored_user_secrets_now())
        assert sealed_key_id(stored["uma-id"]) in MasterKeys.load(keyfile).key_ids
    finally:
        fresh.close()


def test_a_rotation_by_a_process_holding_an_old_key_file_keeps_the_newer_keys(
    meta: SqlMetadataStore, sealing: Sealing, keyfile: Path, tmp_path: Path, url: str
) -> None:
    """Two `key rotate` runs at once: the second loaded the file before the first saved its
    new key. Before, the second wrote back its own (old) ring: the first's new key, which
    by then wrapped every data key, left the file."""

    async def put() -> bytes:
        data_key, _record = await sealing.seal_writer_for("blob-2", SealSpec(SSE_S3))
        return data_key

    data_key = asyncio.run(put())
    stale = MasterKeys.load(keyfile)  # the second process, started a moment before
    rotate_elsewhere(url, keyfile, tmp_path)  # the first one
    asyncio.run(Sealing(meta, LocalBlobStore(tmp_path / "blobs"), stale).rotate())
    stored = asyncio.run(meta.seal_record("blob-2"))
    assert opens_with_the_file(keyfile, stored) == data_key
    assert len(MasterKeys.load(keyfile).key_ids) >= 2


def test_back_to_back_rotations_still_drop_what_nothing_is_wrapped_by(
    meta: SqlMetadataStore, sealing: Sealing, keyfile: Path
) -> None:
    first = sealing.keys.current
    asyncio.run(sealing.rotate())
    second = sealing.keys.current
    _, _, dropped = asyncio.run(sealing.rotate())
    assert dropped == 1
    assert set(MasterKeys.load(keyfile).key_ids) == {second, sealing.keys.current}
    assert first not in MasterKeys.load(keyfile).key_ids


def test_a_rotation_saved_while_a_worker_reads_the_key_file_is_seen_at_the_next_refresh(
    keyfile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file replaced between a worker's read of it and its note of which file it read:
    before, the note was the new file's, the keys the old one's, and the worker kept the old
    ring for good (a data key or a secret sealed under the new key then failed on it)."""
    real_read = Path.read_text
    rotated: list[str] = []
    pending = [True]

    def read_then_rotate(self: Path, *args: Any, **kwargs: Any) -> str:
        text = real_read(self, *args, **kwargs)
        if self == keyfile and pending:
            pending.clear()
            rotated.append(MasterKeys.load(keyfile).add_new())
        return text

    monkeypatch.setattr(Path, "read_text", read_then_rotate)
    ring = MasterKeys.load(keyfile)
    assert rotated and ring.current != rotated[0]  # it read the file as it was
    ring.refresh()
    assert ring.current == rotated[0] and ring.is_current(rotated[0])


def test_a_record_read_just_before_two_rotations_is_read_again_not_failed(
    meta: SqlMetadataStore,
    sealing: Sealing,
    url: str,
    keyfile: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An UploadPart (or a GET) read its upload's record, then two rotations re-wrapped it
    and dropped the key the copy it read names: the record is read again, never a 500."""

    async def start() -> bytes:
        data_key, _record = await sealing.seal_writer_for("upload-2", SealSpec(SSE_S3))
        return data_key

    data_key = asyncio.run(start())
    stale = asyncio.run(meta.seal_record("upload-2"))
    rotate_elsewhere(url, keyfile, tmp_path, times=2)
    assert stale is not None and stale.key_id not in MasterKeys.load(keyfile).key_ids
    real = meta.seal_record
    reads: list[str] = []

    async def read(owner: str) -> SealRecord | None:
        reads.append(owner)
        return stale if len(reads) == 1 else await real(owner)

    monkeypatch.setattr(meta, "seal_record", read)
    # A worker started after the rotations: its ring never held the dropped key.
    fresh = Sealing(meta, LocalBlobStore(tmp_path / "blobs"), MasterKeys.load(keyfile))
    got, record = asyncio.run(fresh.upload_key("upload-2", None))
    assert got == data_key and record.key_id != stale.key_id and len(reads) == 2
