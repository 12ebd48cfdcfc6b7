"""The allocator's thresholds (allocator.py): a socket read as asyncio makes it (256 KiB
asked, a few hundred bytes received) must not map fresh memory each time."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import resource, socket, sys
from s3torrent.allocator import tune_malloc
applied = tune_malloc() if sys.argv[1] == "tuned" else False
a, b = socket.socketpair()
for _ in range(200):  # warm up
    a.send(b"x" * 300); b.recv(262144)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2000):
    a.send(b"x" * 300); b.recv(262144)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_reads_come_from_the_heap_once_tuned() -> None:
    applied, tuned = faults("tuned")
    _, default = faults("default")
    assert applied
    # Untuned, each read maps (and faults in) fresh pages; tuned, the heap is reused.
    assert default >= 1000
    assert tuned < 100
