"""What a peer link owes its peer, and gathering what of it is in memory for one sendmsg.

A link's output is a queue of control bytes (memoryviews) and owed piece payloads. A
payload in memory (a slice of a sealed blob's opened span, or of a plain file's bytes
read with `read_runs`) goes out in one sendmsg with the headers around it and the blocks
after it: one system call for many blocks. A plain file's blocks are read one pread per
run of adjacent blocks (a peer asks for a piece's blocks in order), so a batch of 32
blocks costs two system calls instead of 64 (a header send and a sendfile each).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from s3torrent.peer import wire

__all__ = [
    "BATCH_BYTES",
    "BATCH_PARTS",
    "ZEROS",
    "OwedBlock",
    "consume",
    "gather",
    "pread",
    "prefetch",
    "read_runs",
    "release",
    "unread",
]

BATCH_BYTES = 512 * 1024  # per sendmsg
BATCH_PARTS = 64  # buffers per sendmsg (well under IOV_MAX)
ZEROS = bytes(wire.BLOCK_SIZE * 8)  # implied tail padding is sent in slices of this
PREFETCH_SCAN = 256  # queued requests looked at for spans to open ahead


@dataclass(slots=True)
class OwedBlock:
    """A piece payload owed to the peer; its header was queued just before it."""

    index: int
    begin: int
    length: int
    offset: int  # in the object
    valid: int  # bytes in the object; the rest of `length` is implied zero padding
    done: int = 0
    data: memoryview | None = None  # when read off the loop (no local file), or batched
    reading: bool = False


def read_runs(
    out: deque[memoryview | OwedBlock],
    pread: Callable[[int, int], bytes],
    budget: int,
) -> int:
    """Read the payloads `gather` will take next (the same bounds: `budget` blocks,
    BATCH_BYTES, BATCH_PARTS), one `pread(offset, length)` per run of blocks adjacent in
    the file; each block's data is its slice of its run. A short read (the file ends
    early) leaves the blocks it does not cover unread. Returns the bytes read."""
    runs: list[list[OwedBlock]] = []
    size = blocks = parts = 0
    end = -1
    for item in out:
        if parts >= BATCH_PARTS - 1 or size >= BATCH_BYTES or blocks >= budget:
            break
        parts += 1
        if isinstance(item, memoryview):
            size += len(item)
            continue
        blocks += 1
        size += item.length - item.done
        if item.data is not None or item.done >= item.valid:
            end = -1
            continue
        if item.offset == end and runs:
            runs[-1].append(item)
        else:
            runs.append([item])
        end = item.offset + item.valid
    total = 0
    for run in runs:
        start = run[0].offset
        length = run[-1].offset + run[-1].valid - start
        data = memoryview(pread(start, length))
        total += len(data)
        for block in run:
            lo = block.offset - start
            if lo + block.valid > len(data):
                break
            block.data = data[lo : lo + block.valid]
    return total


def release(out: deque[memoryview | OwedBlock]) -> None:
    """Drop batched file payloads a full socket left queued, so a waiting link holds at
    most one block's bytes: unsent blocks are read again when their turn comes, and a
    block partly sent keeps a copy of its own bytes rather than its whole run."""
    for item in out:
        if isinstance(item, OwedBlock) and item.data is not None:
            if not item.done:
                item.data = None
            elif len(item.data.obj) != len(item.data):  # type: ignore[arg-type]
                item.data = memoryview(bytes(item.data))


def gather(
    out: deque[memoryview | OwedBlock],
    ready: Callable[[int, int], memoryview | None],
    budget: int,
) -> list[memoryview]:
    """The queued bytes in memory now, in order: control bytes and blocks whose data
    `ready` has, up to the first block it has not (or `budget` blocks). Blocks found
    ready keep their data (they are sent from it)."""
    parts: list[memoryview] = []
    size = blocks = 0
    for item in out:
        if len(parts) >= BATCH_PARTS - 1 or size >= BATCH_BYTES or blocks >= budget:
            break
        if isinstance(item, memoryview):
            parts.append(item)
            size += len(item)
            continue
        if item.done < item.valid:
            if item.data is None:
                item.data = ready(item.offset, item.valid)
                if item.data is None:
                    break  # not opened yet: the block path starts the read
            parts.append(item.data[item.done : item.valid])
        pad = item.length - max(item.done, item.valid)
        if pad > len(ZEROS):
            break
        if pad:
            parts.append(memoryview(ZEROS)[:pad])
        size += item.length - item.done
        blocks += 1
    return parts


def consume(out: deque[memoryview | OwedBlock], n: int) -> tuple[list[OwedBlock], int]:
    """Take `n` bytes the socket accepted off the head of `out`: the blocks finished (in
    order; their data dropped) and how many control bytes went. A part sent in part stays
    at the head, with what is left of it."""
    sent: list[OwedBlock] = []
    control = 0
    while n and out:
        item = out[0]
        if isinstance(item, memoryview):
            take = min(n, len(item))
            control += take
            n -= take
            if take < len(item):
                out[0] = item[take:]
                break
            out.popleft()
            continue
        take = min(n, item.length - item.done)
        item.done += take
        n -= take
        if item.done < item.length:
            break
        item.data = None
        out.popleft()
        sent.append(item)
    return sent, control


def pread(fd: int, offset: int, length: int) -> bytes:
    """`os.pread` with `read_runs`'s argument order."""
    return os.pread(fd, length, offset)


def unread(offset: int, length: int) -> memoryview | None:
    """`gather`'s `ready` for a plain file: its blocks are in memory once `read_runs`
    read them, never otherwise."""
    return None


class Prefetcher(Protocol):
    def prefetch(self, offset: int) -> None: ...


def prefetch(
    source: Prefetcher,
    out: Iterable[object],
    queue: Iterable[tuple[int, int, int]],
    piece_length: int,
) -> None:
    """Open the spans under the blocks queued (`out`) and the requests behind them
    (`queue`) ahead of need, so a span is ready when its first block's turn comes."""
    for item in out:
        if isinstance(item, OwedBlock) and item.data is None:
            source.prefetch(item.offset)
    for n, (index, begin, _length) in enumerate(queue):
        if n >= PREFETCH_SCAN:
            break
        source.prefetch(index * piece_length + begin)
