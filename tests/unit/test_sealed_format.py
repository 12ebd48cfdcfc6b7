"""The at-rest format of encrypted objects: chunk arithmetic, round trips, tampering."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.store.master_key import MasterKeyError, MasterKeys
from s3torrent.store.sealed_format import (
    CHUNK,
    TAG,
    Segment,
    TamperedBlob,
    chunk_refs,
    open_range,
    seal,
    sealed_size,
)

KEY = bytes(range(32))


def _sealed_segments(sizes: list[int]) -> tuple[bytes, bytes, tuple[Segment, ...]]:
    plain = os.urandom(sum(sizes))
    sealed = b""
    segments = []
    pos = 0
    for number, size in enumerate(sizes, start=1):
        sealed += seal(KEY, plain[pos : pos + size], prefix=number)
        segments.append(Segment(number, size))
        pos += size
    return plain, sealed, tuple(segments)


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
def test_sealed_size_is_plaintext_plus_one_tag_per_chunk(size: int) -> None:
    assert len(seal(KEY, os.urandom(size))) == sealed_size(size)
    assert sealed_size(size) == size + TAG * -(-size // CHUNK)


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3 * CHUNK + 5), min_size=1, max_size=3),
    data=st.data(),
)
def test_any_range_of_joined_segments_opens_to_the_plaintext(
    sizes: list[int], data: st.DataObject
) -> None:
    plain, sealed, segments = _sealed_segments(sizes)
    offset = data.draw(st.integers(0, len(plain) - 1))
    length = data.draw(st.integers(1, len(plain) - offset))
    assert open_range(KEY, segments, sealed, offset, length) == plain[offset : offset + length]


def test_ranges_touch_only_the_chunks_under_them() -> None:
    segments = (Segment(0, 10 * CHUNK),)
    refs = list(chunk_refs(segments, CHUNK - 1, 2))
    assert [r.index for r in refs] == [0, 1]
    assert [r.index for r in chunk_refs(segments, 5 * CHUNK, CHUNK)] == [5]


def test_a_changed_byte_is_detected_not_decrypted() -> None:
    plain, sealed, segments = _sealed_segments([2 * CHUNK + 10])
    bad = bytearray(sealed)
    bad[CHUNK + TAG + 5] ^= 1  # inside the second chunk
    assert open_range(KEY, segments, bytes(bad), 0, 100) == plain[:100]
    with pytest.raises(TamperedBlob):
        open_range(KEY, segments, bytes(bad), CHUNK, 10)


def test_swapped_chunks_and_truncation_are_detected() -> None:
    _plain, sealed, segments = _sealed_segments([2 * CHUNK])
    a, b = sealed[: CHUNK + TAG], sealed[CHUNK + TAG :]
    with pytest.raises(TamperedBlob):
        open_range(KEY, segments, b + a, 0, 10)
    with pytest.raises(TamperedBlob):
        open_range(KEY, segments, sealed[:-1], CHUNK, 10)


def test_parts_sealed_under_one_key_never_share_a_nonce() -> None:
    same = b"x" * CHUNK
    assert seal(KEY, same, prefix=1) != seal(KEY, same, prefix=2)


def test_master_key_file_is_private_and_rotation_keeps_old_keys_readable(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    ring = MasterKeys.load_or_create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    wrapped = ring.wrap(KEY)
    old = ring.current
    ring.add_new()
    assert ring.unwrap(wrapped) == KEY
    moved = ring.rewrap(wrapped)
    assert moved.key_id == ring.current != old
    ring.drop({old})
    again = MasterKeys.load(path)
    assert again.unwrap(moved) == KEY
    with pytest.raises(MasterKeyError):
        again.unwrap(wrapped)


def test_a_server_sees_a_rotation_made_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    server = MasterKeys.load_or_create(path)
    cli = MasterKeys.load(path)
    cli.add_new()
    wrapped = cli.wrap(KEY)
    assert server.unwrap(wrapped) == KEY
    assert server.wrap(KEY).key_id == cli.current


def test_block_reads_of_a_sealed_blob_open_each_chunk_once(tmp_path: Path) -> None:
    from s3torrent.store import rows as md
    from s3torrent.store.blobs.local import LocalBlobStore
    from s3torrent.store.sealing import PlainReader

    data = os.urandom(5 * CHUNK + 100)
    blobs = LocalBlobStore(tmp_path, fsync=False)
    writer = blobs.new_writer()
    writer.write(seal(KEY, data))
    writer.commit("v1")
    obj = md.ObjectVersion("b", "k", "v1", len(data), '"e"', 0.0, "o")
    reader = PlainReader(blobs, obj, KEY, (Segment(0, len(data)),))
    opened: list[int] = []
    real_open = reader._open

    def counting(ref: Any, sealed: Any) -> bytes:
        opened.append(ref.index)
        return real_open(ref, sealed)

    reader._open = counting  # type: ignore[method-assign]
    got = b"".join(reader.read(off, 16384) for off in range(0, len(data), 16384))
    assert got == data
    # Each chunk opened once (the last, read whole, goes straight into its answer).
    assert sorted(opened) == sorted(set(opened)) and set(opened) >= set(range(5))
