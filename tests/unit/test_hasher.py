"""Piece hashing: v1 digests, v2 merkle roots and piece layers, streaming and parallel."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import random
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.torrent.hasher import PieceHashes, TorrentHasher, hash_ranges_parallel
from s3torrent.torrent.pieces import BLOCK_SIZE, PieceLayout

PIECE = 32768  # two blocks per piece, so v2 piece subtrees have real height


def boundary_sizes(piece: int) -> list[int]:
    return [
        0,
        1,
        BLOCK_SIZE - 1,
        BLOCK_SIZE,
        BLOCK_SIZE + 1,
        piece - 1,
        piece,
        piece + 1,
        3 * piece,
        5 * piece + 123,
        9 * piece - 1,
    ]


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def v1_reference(data: bytes, piece: int) -> bytes:
    return b"".join(hashlib.sha1(data[i : i + piece]).digest() for i in range(0, len(data), piece))


def v2_reference(data: bytes, piece: int) -> tuple[bytes | None, bytes]:
    """Whole-tree construction straight from BEP 52, independent of the hasher's shortcuts."""
    if not data:
        return None, b""
    leaves = [
        hashlib.sha256(data[i : i + BLOCK_SIZE]).digest() for i in range(0, len(data), BLOCK_SIZE)
    ]
    width = 1
    while width < len(leaves):
        width *= 2
    layers = [leaves + [bytes(32)] * (width - len(leaves))]
    while len(layers[-1]) > 1:
        below = layers[-1]
        layers.append(
            [hashlib.sha256(below[i] + below[i + 1]).digest() for i in range(0, len(below), 2)]
        )
    root = layers[-1][0]
    if len(data) <= piece:
        return root, root
    piece_height = (piece // BLOCK_SIZE).bit_length() - 1
    pieces = -(-len(data) // piece)
    return root, b"".join(layers[piece_height][:pieces])


def hash_in_chunks(data: bytes, piece: int, cuts: list[int], *, v1: bool, v2: bool) -> PieceHashes:
    hasher = TorrentHasher(piece, v1=v1, v2=v2)
    view = memoryview(data)
    start = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        hasher.update(view[start:cut])
        start = cut
    assert hasher.length == len(data)
    return hasher.finish()


@pytest.mark.parametrize("size", boundary_sizes(PIECE))
def test_boundary_sizes_match_reference(size: int) -> None:
    data = payload(size, size)
    result = hash_in_chunks(data, PIECE, [], v1=True, v2=True)
    assert result.pieces_v1 == v1_reference(data, PIECE)
    assert (result.pieces_root, result.piece_layer) == v2_reference(data, PIECE)
    assert result.length == size and result.piece_length == PIECE


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from(boundary_sizes(PIECE)),
    cuts=st.lists(st.integers(min_value=0, max_value=10 * PIECE), max_size=12),
    single_bytes=st.booleans(),
)
def test_any_chunking_gives_same_hashes(size: int, cuts: list[int], single_bytes: bool) -> None:
    data = payload(size, 7)
    if single_bytes:
        # also exercise 1-byte updates around a block boundary
        cuts = cuts + list(range(BLOCK_SIZE - 3, BLOCK_SIZE + 3))
    result = hash_in_chunks(data, PIECE, cuts, v1=True, v2=True)
    assert result.pieces_v1 == v1_reference(data, PIECE)
    assert (result.pieces_root, result.piece_layer) == v2_reference(data, PIECE)


def test_one_byte_updates() -> None:
    data = payload(BLOCK_SIZE + 5, 3)
    hasher = TorrentHasher(16384, v1=True, v2=True)
    for i in range(len(data)):
        hasher.update(data[i : i + 1])
    result = hasher.finish()
    assert result.pieces_v1 == v1_reference(data, 16384)
    assert (result.pieces_root, result.piece_layer) == v2_reference(data, 16384)


def test_family_selection() -> None:
    data = payload(100_000)
    only_v1 = hash_in_chunks(data, PIECE, [], v1=True, v2=False)
    only_v2 = hash_in_chunks(data, PIECE, [], v1=False, v2=True)
    assert only_v1.piece_layer is None and only_v1.pieces_root is None and only_v1.has_v1
    assert only_v2.pieces_v1 is None and only_v2.has_v2
    with pytest.raises(ValueError):
        TorrentHasher(PIECE, v1=False, v2=False)


def test_empty_file_has_no_pieces_and_no_root() -> None:
    result = TorrentHasher(PIECE, v1=True, v2=True).finish()
    assert result == PieceHashes(0, PIECE, b"", None, b"")


def test_accepts_non_byte_memoryviews() -> None:
    import array

    words = array.array("I", range(10_000))
    hasher = TorrentHasher(16384)
    hasher.update(memoryview(words))
    assert hasher.finish().pieces_v1 == v1_reference(words.tobytes(), 16384)


def test_misuse_is_rejected() -> None:
    with pytest.raises(ValueError):
        TorrentHasher(3 * BLOCK_SIZE)
    hasher = TorrentHasher(PIECE)
    hasher.finish()
    with pytest.raises(RuntimeError):
        hasher.update(b"x")
    with pytest.raises(RuntimeError):
        hasher.finish()


# --- libtorrent: the reference implementation of both formats -------------------------


@pytest.fixture
def lt() -> Any:
    return pytest.importorskip("libtorrent")


def libtorrent_hashes(
    lt: Any, path: Path, piece: int, *, v1_only: bool
) -> tuple[bytes, bytes | None, bytes | None]:
    """(pieces, pieces root, piece layer) as libtorrent computes them for one file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        files = lt.file_storage()
        lt.add_files(files, str(path))
        flags = lt.create_torrent.v1_only if v1_only else 0
        creator = lt.create_torrent(files, piece, flags)
    lt.set_piece_hashes(creator, str(path.parent))
    entry = creator.generate()
    info = entry[b"info"]
    if v1_only:
        return info[b"pieces"], None, None
    node = info[b"file tree"][path.name.encode()][b""]
    root = node[b"pieces root"]
    return info[b"pieces"], root, entry.get(b"piece layers", {}).get(root)


@pytest.mark.parametrize("piece", [16384, 65536])
@pytest.mark.parametrize("v1_only", [True, False], ids=["v1", "hybrid"])
def test_matches_libtorrent(lt: Any, tmp_path: Path, piece: int, v1_only: bool) -> None:
    for size in [s for s in boundary_sizes(piece) if s] + [17 * piece + 5]:
        data = payload(size, size + piece)
        path = tmp_path / f"object-{size}.bin"
        path.write_bytes(data)
        ours = hash_in_chunks(data, piece, [size // 3, size // 2], v1=True, v2=not v1_only)
        pieces, root, layer = libtorrent_hashes(lt, path, piece, v1_only=v1_only)
        assert ours.pieces_v1 == pieces, size
        if not v1_only:
            assert ours.pieces_root == root, size
            # BEP 52: only files larger than one piece get a piece layer
            assert (ours.piece_layer if size > piece else None) == layer, size


# --- the parallel path ----------------------------------------------------------------


def parallel(
    data: bytes, piece: int, batch_bytes: int, progress: Callable[[int], None] | None = None
) -> PieceHashes:
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return hash_ranges_parallel(
            lambda offset, length: data[offset : offset + length],
            PieceLayout(len(data), piece),
            v1=True,
            v2=True,
            executor=pool,
            batch_bytes=batch_bytes,
            progress=progress,
        )


@pytest.mark.parametrize("size", boundary_sizes(PIECE))
@pytest.mark.parametrize("batch_bytes", [1, PIECE, 3 * PIECE + 1])
def test_parallel_matches_streaming(size: int, batch_bytes: int) -> None:
    data = payload(size, 11)
    expected = hash_in_chunks(data, PIECE, [], v1=True, v2=True)
    assert parallel(data, PIECE, batch_bytes=batch_bytes) == expected


def test_parallel_reports_progress_in_order() -> None:
    data = payload(10 * PIECE + 3)
    seen: list[int] = []
    parallel(data, PIECE, batch_bytes=2 * PIECE, progress=seen.append)
    assert seen == [2 * PIECE, 4 * PIECE, 6 * PIECE, 8 * PIECE, 10 * PIECE, len(data)]


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """Counts the batches handed to the workers."""

    submitted = 0

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def test_parallel_keeps_at_most_two_batches_per_worker_in_flight() -> None:
    data = payload(40 * 16384)
    snapshots: list[tuple[int, int]] = []
    with CountingExecutor(max_workers=2) as pool:
        result = hash_ranges_parallel(
            lambda offset, length: data[offset : offset + length],
            PieceLayout(len(data), 16384),
            v1=True,
            v2=False,
            executor=pool,
            batch_bytes=16384,
            progress=lambda done: snapshots.append((pool.submitted, done // 16384)),
        )
    assert result.pieces_v1 == v1_reference(data, 16384)
    assert len(snapshots) == 40
    # batches handed out but not yet collected never exceed 2 workers x 2 batches
    assert all(submitted - collected < 4 for submitted, collected in snapshots)


def test_parallel_short_read_fails() -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(ValueError):
        hash_ranges_parallel(
            lambda offset, length: b"x" * (length - 1),
            PieceLayout(5 * PIECE, PIECE),
            v1=True,
            v2=False,
            executor=pool,
            batch_bytes=PIECE,
        )


def test_parallel_multi_mib_object_against_streaming() -> None:
    data = os.urandom(3 * 1024 * 1024 + 12345)
    piece = 65536
    expected = hash_in_chunks(data, piece, [1_000_000, 2_000_001], v1=True, v2=True)
    assert parallel(data, piece, batch_bytes=512 * 1024) == expected


@pytest.mark.parametrize("size", [0, 1, 16384 * 3 + 7])
def test_hash_file_matches_the_streaming_hasher(tmp_path: Path, size: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from s3torrent.torrent.hasher import hash_file

    data = os.urandom(size)
    path = tmp_path / "blob"
    path.write_bytes(data)
    layout = PieceLayout(size, 16384)
    streaming = TorrentHasher(16384, v1=True, v2=True)
    streaming.update(data)
    with ThreadPoolExecutor(2) as pool:
        mapped = hash_file(path, layout, v1=True, v2=True, executor=pool)
    assert mapped == streaming.finish()


def test_hash_file_reads_chunks_that_straddle_blocks_and_pieces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks that end inside a block and a piece, several per batch, on two threads
    reusing their buffers: the same hashes as one streaming pass."""
    from concurrent.futures import ThreadPoolExecutor

    from s3torrent.torrent import hasher

    monkeypatch.setattr(hasher, "READ_CHUNK", 20_000)  # neither a block nor a piece
    size = PIECE * 9 + 12_345
    data = os.urandom(size)
    path = tmp_path / "blob"
    path.write_bytes(data)
    streaming = TorrentHasher(PIECE, v1=True, v2=True)
    streaming.update(data)
    with ThreadPoolExecutor(2) as pool:
        got = hasher.hash_file(path, PieceLayout(size, PIECE), v1=True, v2=True, executor=pool)
    assert got == streaming.finish()


def test_hash_file_of_a_file_shorter_than_its_layout_is_an_error(tmp_path: Path) -> None:
    """A blob cut short under the hasher is a short read (an error), not garbage hashes."""
    from concurrent.futures import ThreadPoolExecutor

    from s3torrent.torrent.hasher import hash_file

    path = tmp_path / "blob"
    path.write_bytes(os.urandom(PIECE * 3))
    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="short read"):
        hash_file(path, PieceLayout(PIECE * 4, PIECE), v1=True, v2=False, executor=pool)


@pytest.mark.parametrize("size", boundary_sizes(PIECE))
def test_hybrid_parts_fed_on_two_threads_give_the_same_hashes(size: int) -> None:
    """A hybrid hasher's v1 and v2 halves, each fed every byte on its own thread (as the
    PUT path does), finish into exactly what one hasher computes."""
    data = payload(size, 11)
    hasher = TorrentHasher(PIECE, v1=True, v2=True)
    parts = hasher.parts()
    assert len(parts) == 2
    steps = [data[i : i + 3 * BLOCK_SIZE + 1] for i in range(0, len(data), 3 * BLOCK_SIZE + 1)]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda part: [part.update(s) for s in steps], parts))
    result = hasher.finish()
    assert result == hash_in_chunks(data, PIECE, [], v1=True, v2=True)
    assert result.pieces_v1 == v1_reference(data, PIECE)
    single = TorrentHasher(PIECE, v1=True, v2=False)
    assert single.parts() == [single]  # nothing to split


def test_parts_after_bytes_are_refused() -> None:
    hasher = TorrentHasher(PIECE, v1=True, v2=True)
    hasher.update(b"x")
    with pytest.raises(RuntimeError):
        hasher.parts()
