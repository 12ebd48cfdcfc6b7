"""What a peer link owes its peer, and gathering what of it is in memory for one sendmsg.

A link's output is a queue of control bytes (memoryviews) and owed piece payloads. A
payload in memory (a slice of a sealed blob's opened span) goes out in one sendmsg with
the headers around it and the blocks after it: one system call for many blocks, no copy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from s3torrent.peer import wire

__all__ = ["BATCH_BYTES", "BATCH_PARTS", "ZEROS", "OwedBlock", "gather"]

BATCH_BYTES = 512 * 1024  # per sendmsg
BATCH_PARTS = 64  # buffers per sendmsg (well under IOV_MAX)
ZEROS = bytes(wire.BLOCK_SIZE * 8)  # implied tail padding is sent in slices of this


@dataclass(slots=True)
class OwedBlock:
    """A piece payload owed to the peer; its header was queued just before it."""

    index: int
    begin: int
    length: int
    offset: int  # in the object
    valid: int  # bytes in the object; the rest of `length` is implied zero padding
    done: int = 0
    data: memoryview | None = None  # when read off the loop (no local file)
    reading: bool = False


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
