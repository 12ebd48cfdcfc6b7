"""Ports for the servers a test starts, chosen below the kernel's ephemeral range.

A port the kernel hands out for `bind(0)` comes from the ephemeral range, the same range it
draws the source port of every outgoing connection from. A port picked that way and bound
later (a node started after another one has opened its connections to PostgreSQL, Redis or
the blob store) can meanwhile be taken as such a source port, and the bind then fails with
"address already in use". Ports below that range are never handed out implicitly, so a port
found free here stays free until a test binds it, unless another test run picks it too; the
random start and the per-process record of what was handed out make that unlikely.
"""

from __future__ import annotations

import contextlib
import random
import socket

_LOWEST = 10_000
_given: set[int] = set()


def _ephemeral_low() -> int:
    path = "/proc/sys/net/ipv4/ip_local_port_range"
    with contextlib.suppress(OSError, ValueError), open(path) as f:
        low = int(f.read().split()[0])
        if low > _LOWEST + 1_000:
            return low
    return 32_768


def _bindable(port: int) -> bool:
    """Free for TCP and UDP on 127.0.0.1 (a seeder's peer port is both: TCP and uTP)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port() -> int:
    high = _ephemeral_low()
    rng = random.Random()
    for _ in range(2_000):
        port = rng.randrange(_LOWEST, high)
        if port not in _given and _bindable(port):
            _given.add(port)
            return port
    # Every try below the ephemeral range was taken: let the kernel choose.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
