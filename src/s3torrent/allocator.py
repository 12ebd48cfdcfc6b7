"""The C allocator's thresholds, set once per server process.

asyncio reads a socket with `sock.recv(256 KiB)`: CPython allocates a bytes object of that
size and shrinks it to what arrived. glibc's malloc serves a request of 128 KiB or more with
its own mmap (its default threshold; the adaptive raise never happens, since the shrunken
block is what gets freed), so every read of every connection (an S3 request, an announce,
a peer message) cost an mmap, an mremap and a munmap: about 10 us against 0.9 us for the
same read served from the heap (measured on this machine, a 300-byte request over a socket
pair). With the mmap threshold at 1 MiB such reads come from the heap; the trim threshold
keeps the freed top of the heap for the next read instead of giving it back each time.

Only glibc has `mallopt` with these parameters; elsewhere nothing is changed.
"""

from __future__ import annotations

import ctypes
import logging
import platform
from typing import Final

log = logging.getLogger(__name__)

# glibc's <malloc.h>
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3

MMAP_THRESHOLD: Final = 1 << 20  # above asyncio's 256 KiB reads and aiohttp's buffers
TRIM_THRESHOLD: Final = 8 << 20  # at most this much free heap kept per arena


def tune_malloc() -> bool:
    """Apply the thresholds; whether they were applied (False: not glibc, or refused)."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not applied:
        log.debug("mallopt refused the thresholds")
    return applied
