"""Piece hashing for torrents: streaming (inside a PUT) and parallel (background jobs).

v1 (BEP 3): one SHA-1 digest per piece.

v2 (BEP 52): SHA-256 of every 16 KiB block is a leaf of one merkle tree per file; the
last block of the file is hashed at its real (shorter) length. The tree has
``next_power_of_two(blocks)`` leaves, the leaves past the end of the file being 32 zero
bytes. From it we keep:

* ``pieces_root``: the tree's root (``None`` for an empty file, which has no tree);
* ``piece_layer``: the layer in which one node covers one piece, i.e. per piece the root
  of the subtree over its ``piece_length / 16 KiB`` leaves (zero leaves past the end of
  the file). For a file of at most one piece that layer lies above the (smaller) tree;
  we then keep the one hash a peer checks the piece against: the root itself.
  BEP 52 only puts the layer in ``piece layers`` for files larger than one piece.

The streaming hasher never buffers data: it feeds hashlib slices of the caller's buffer
and keeps only running hash objects (current piece for SHA-1, current block for SHA-256)
and the digests produced so far.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from s3torrent.torrent.merkle import HASH_SIZE, merkle_root, next_power_of_two, pieces_root
from s3torrent.torrent.pieces import BLOCK_SIZE, PieceLayout, is_valid_piece_length

SHA1_SIZE = 20
SHA256_SIZE = HASH_SIZE
DEFAULT_BATCH_BYTES = 16 * 1024 * 1024
# hash_file's read size: one chunk is hashed while it is still in the CPU's cache.
READ_CHUNK = 512 * 1024


@dataclass(frozen=True, slots=True)
class PieceHashes:
    """Everything a torrent needs to know about one file's content.

    ``pieces_v1`` / ``piece_layer`` are ``None`` when that hash family was not computed;
    for an empty file they are ``b""`` and ``pieces_root`` is ``None``.
    """

    length: int
    piece_length: int
    pieces_v1: bytes | None
    pieces_root: bytes | None
    piece_layer: bytes | None

    def __post_init__(self) -> None:
        count = self.layout.count
        if self.pieces_v1 is not None and len(self.pieces_v1) != count * SHA1_SIZE:
            raise ValueError(f"pieces_v1 must hold {count} SHA-1 digests")
        if self.piece_layer is not None:
            if len(self.piece_layer) != count * SHA256_SIZE:
                raise ValueError(f"piece_layer must hold {count} SHA-256 digests")
            expected_root = SHA256_SIZE if count else 0
            if len(self.pieces_root or b"") != expected_root:
                raise ValueError("pieces_root must be 32 bytes, or None for an empty file")
        elif self.pieces_root is not None:
            raise ValueError("pieces_root without piece_layer")

    @property
    def layout(self) -> PieceLayout:
        return PieceLayout(self.length, self.piece_length)

    @property
    def has_v1(self) -> bool:
        return self.pieces_v1 is not None

    @property
    def has_v2(self) -> bool:
        return self.piece_layer is not None


class TorrentHasher:
    """Streaming piece hasher: ``update`` with chunks of any size, then ``finish`` once.

    Not thread-safe; one instance per object. ``update`` may run in a worker thread:
    hashlib releases the GIL for the large slices it is given.
    """

    def __init__(self, piece_length: int, *, v1: bool = True, v2: bool = False) -> None:
        if not is_valid_piece_length(piece_length):
            raise ValueError(f"piece_length must be a power of two >= {BLOCK_SIZE}")
        if not (v1 or v2):
            raise ValueError("at least one of v1 and v2 is required")
        self._piece_length = piece_length
        self._v1 = v1
        self._v2 = v2
        self._length = 0
        self._piece_fill = 0
        self._closed_pieces = 0
        self._piece_sha1 = hashlib.sha1() if v1 else None
        self._pieces_v1 = bytearray()
        self._block_sha256 = hashlib.sha256()
        self._block_fill = 0
        self._leaves: list[bytes] = []
        self._piece_layer = bytearray()
        self._finished = False
        # A hybrid hasher split into its v1 and v2 halves (see parts()).
        self._split: tuple[TorrentHasher, TorrentHasher] | None = None

    @property
    def piece_length(self) -> int:
        return self._piece_length

    @property
    def v1(self) -> bool:
        return self._v1

    @property
    def v2(self) -> bool:
        return self._v2

    @property
    def length(self) -> int:
        """Bytes hashed so far."""
        return self._split[0].length if self._split is not None else self._length

    def parts(self) -> list[TorrentHasher]:
        """Independent hashers that may run on separate threads at once: a hybrid hasher
        splits (before its first byte) into its SHA-1 (v1) and SHA-256 (v2) halves, any
        other is its own only part. Feed every byte to each part (or, still, to this
        hasher); finish() on this hasher merges them."""
        if not (self._v1 and self._v2):
            return [self]
        if self._split is None:
            if self._length:
                raise RuntimeError("parts() after update()")
            self._split = (
                TorrentHasher(self._piece_length, v1=True, v2=False),
                TorrentHasher(self._piece_length, v1=False, v2=True),
            )
        return list(self._split)

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._finished:
            raise RuntimeError("update() after finish()")
        if self._split is not None:
            for part in self._split:
                part.update(data)
            return
        view = memoryview(data).cast("B")
        size = len(view)
        pos = 0
        while pos < size:
            take = min(size - pos, self._piece_length - self._piece_fill)
            chunk = view[pos : pos + take]
            if self._piece_sha1 is not None:
                self._piece_sha1.update(chunk)
            if self._v2:
                self._update_blocks(chunk)
            self._piece_fill += take
            pos += take
            if self._piece_fill == self._piece_length:
                self._close_piece(short_tree=False)
        self._length += size

    def _update_blocks(self, chunk: memoryview) -> None:
        # Pieces are whole blocks, so a chunk within one piece never straddles a piece
        # boundary, and a block never spans two pieces.
        size = len(chunk)
        pos = 0
        if self._block_fill:
            pos = min(size, BLOCK_SIZE - self._block_fill)
            self._block_sha256.update(chunk[:pos])
            self._block_fill += pos
            if self._block_fill < BLOCK_SIZE:
                return
            self._leaves.append(self._block_sha256.digest())
            self._block_fill = 0
        while size - pos >= BLOCK_SIZE:
            self._leaves.append(hashlib.sha256(chunk[pos : pos + BLOCK_SIZE]).digest())
            pos += BLOCK_SIZE
        if pos < size:
            self._block_sha256 = hashlib.sha256(chunk[pos:])
            self._block_fill = size - pos

    def _close_piece(self, *, short_tree: bool) -> None:
        if self._piece_sha1 is not None:
            self._pieces_v1 += self._piece_sha1.digest()
            self._piece_sha1 = hashlib.sha1()
        if self._v2:
            if self._block_fill:
                self._leaves.append(self._block_sha256.digest())
                self._block_fill = 0
            # A file of at most one piece has a tree only as wide as its own blocks;
            # any other piece is a full-width subtree of the file's tree.
            width = (
                next_power_of_two(len(self._leaves))
                if short_tree
                else self._piece_length // BLOCK_SIZE
            )
            self._piece_layer += merkle_root(self._leaves, width)
            self._leaves = []
        self._piece_fill = 0
        self._closed_pieces += 1

    def _finish_pieces(self, *, whole_file: bool) -> tuple[bytes | None, bytes | None]:
        """Close the last (short) piece; return the raw v1 digests and piece layer.

        ``whole_file`` says the bytes seen are the entire file, not a run of pieces
        from its middle, which decides the tree width of a lone short piece.
        """
        if self._finished:
            raise RuntimeError("finish() called twice")
        self._finished = True
        if self._split is not None:
            v1_part, v2_part = self._split
            if v1_part.length != v2_part.length:
                raise RuntimeError("the parts of a hybrid hasher saw different bytes")
            self._length = v1_part.length
            return (
                v1_part._finish_pieces(whole_file=whole_file)[0],
                v2_part._finish_pieces(whole_file=whole_file)[1],
            )
        if self._piece_fill:
            self._close_piece(short_tree=whole_file and self._closed_pieces == 0)
        pieces_v1 = bytes(self._pieces_v1) if self._v1 else None
        piece_layer = bytes(self._piece_layer) if self._v2 else None
        return pieces_v1, piece_layer

    def finish(self) -> PieceHashes:
        pieces_v1, piece_layer = self._finish_pieces(whole_file=True)
        root = pieces_root(piece_layer, self._piece_length) if piece_layer else None
        return PieceHashes(
            length=self.length,
            piece_length=self._piece_length,
            pieces_v1=pieces_v1,
            pieces_root=root,
            piece_layer=piece_layer,
        )


def _hash_batch(
    read: Callable[[int, int], bytes | memoryview],
    offset: int,
    length: int,
    piece_length: int,
    v1: bool,
    v2: bool,
    whole_file: bool,
    chunk_bytes: int | None,
) -> tuple[bytes | None, bytes | None]:
    hasher = TorrentHasher(piece_length, v1=v1, v2=v2)
    step = chunk_bytes or length
    for at in range(offset, offset + length, step):
        want = min(step, offset + length - at)
        data = read(at, want)
        if len(data) != want:
            raise ValueError(f"short read at {at}: wanted {want} bytes, got {len(data)}")
        hasher.update(data)
    return hasher._finish_pieces(whole_file=whole_file)


def hash_ranges_parallel(
    read: Callable[[int, int], bytes | memoryview],
    layout: PieceLayout,
    *,
    v1: bool,
    v2: bool,
    executor: concurrent.futures.Executor,
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    chunk_bytes: int | None = None,
) -> PieceHashes:
    """Hash a stored blob in batches of whole pieces on ``executor``; blocks until done.

    ``read(offset, length)`` is called from the executor's threads and must return
    exactly ``length`` bytes: once per batch, or with ``chunk_bytes`` once per chunk of
    at most that many bytes (what it returns need only stay valid until the thread's next
    call). At most two batches per worker are in flight (``workers`` defaults to a
    ThreadPoolExecutor's size, else the CPU count), so memory stays near
    ``2 * workers * batch_bytes``. ``progress`` gets the cumulative bytes hashed, in order.
    """
    if not (v1 or v2):
        raise ValueError("at least one of v1 and v2 is required")
    if workers is None:
        if isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            workers = executor._max_workers
        else:
            workers = os.cpu_count() or 1
    max_in_flight = 2 * max(1, workers)
    batch_length = max(1, batch_bytes // layout.piece_length) * layout.piece_length
    whole_file = layout.count == 1

    pieces_v1 = bytearray()
    piece_layer = bytearray()
    done = 0
    pending: deque[tuple[int, concurrent.futures.Future[tuple[bytes | None, bytes | None]]]]
    pending = deque()

    def collect_oldest() -> None:
        nonlocal done
        length, future = pending.popleft()
        part_v1, part_layer = future.result()
        pieces_v1.extend(part_v1 or b"")
        piece_layer.extend(part_layer or b"")
        done += length
        if progress is not None:
            progress(done)

    try:
        for offset in range(0, layout.total_length, batch_length):
            length = min(batch_length, layout.total_length - offset)
            future = executor.submit(
                _hash_batch,
                read,
                offset,
                length,
                layout.piece_length,
                v1,
                v2,
                whole_file,
                chunk_bytes,
            )
            pending.append((length, future))
            while len(pending) >= max_in_flight:
                collect_oldest()
        while pending:
            collect_oldest()
    finally:
        for _, future in pending:
            future.cancel()

    layer = bytes(piece_layer) if v2 else None
    return PieceHashes(
        length=layout.total_length,
        piece_length=layout.piece_length,
        pieces_v1=bytes(pieces_v1) if v1 else None,
        pieces_root=pieces_root(layer, layout.piece_length) if layer else None,
        piece_layer=layer,
    )


def hash_file(
    path: str | os.PathLike[str],
    layout: PieceLayout,
    *,
    v1: bool,
    v2: bool,
    executor: concurrent.futures.Executor,
    progress: Callable[[int], None] | None = None,
) -> PieceHashes:
    """Hash a local file by positional reads into one reused buffer per thread.

    A chunk (`READ_CHUNK`) is read and hashed while it is still in the CPU's cache. This
    costs less CPU than hashing the page cache through a memory map, which was measured
    on 1 GiB at 1.2 GB per CPU-second against 1.5: page faults and TLB misses cost more
    than the copy. The figures are in bench/README.md (hashing).
    """
    if layout.total_length == 0:
        return hash_ranges_parallel(
            lambda _off, _n: b"", layout, v1=v1, v2=v2, executor=executor, progress=progress
        )
    fd = os.open(path, os.O_RDONLY)
    try:
        return hash_fd(fd, layout, v1=v1, v2=v2, executor=executor, progress=progress)
    finally:
        os.close(fd)


def hash_fd(
    fd: int,
    layout: PieceLayout,
    *,
    v1: bool,
    v2: bool,
    executor: concurrent.futures.Executor,
    progress: Callable[[int], None] | None = None,
) -> PieceHashes:
    """`hash_file` of an open file (the caller keeps and closes `fd`): a blob still being
    committed, read back by its descriptor while its path changes."""
    buffers = threading.local()

    def read(offset: int, length: int) -> memoryview:
        view: memoryview | None = getattr(buffers, "view", None)
        if view is None:
            view = buffers.view = memoryview(bytearray(READ_CHUNK))
        got = 0
        while got < length:  # a short read mid-file (a signal): read on
            n = os.preadv(fd, [view[got:length]], offset + got)
            if n == 0:
                break  # the file ended early: the batch reports the short read
            got += n
        return view[:got]

    return hash_ranges_parallel(
        read,
        layout,
        v1=v1,
        v2=v2,
        executor=executor,
        progress=progress,
        chunk_bytes=READ_CHUNK,
    )
