"""Which part of the machine's work one server process does (`serve --workers N`).

Worker 0 is the owner: it runs what must exist once per machine (the seeder, the tracker's
registry and its other ports, the WebSocket tracker, the lifecycle worker, hashing jobs,
the metrics listener) and serves its HTTP application on a Unix socket for the other
workers' forwarded requests. Every worker serves the S3 listener (SO_REUSEPORT).
"""

from __future__ import annotations

import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# What stops a server process (the supervisor and each worker alike): it drains its requests
# and exits. SIGHUP too: the terminal that started it closed, or its SSH session dropped
# (a shell sends its jobs SIGHUP); its default action would cut every request in flight.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

# In the data directory: the owner's HTTP application, and its event hub.
OWNER_SOCKET = "owner.sock"
EVENTS_SOCKET = "events.sock"
TRACKER_SOCKET = "tracker.sock"
HANDOFF_SOCKET = "handoff.sock"
# The client address of a forwarded request: trusted only on the owner's Unix socket.
FORWARDED_CLIENT = "X-S3torrent-Forwarded-Client"
# Whether that client's own connection was TLS ("https" or "http"): a trusted proxy's word
# at the forwarding worker (forwarding.py), trusted as above.
FORWARDED_SCHEME = "X-S3torrent-Forwarded-Scheme"
# The client's own connection (address and port) at the worker that forwarded a request: one
# client's several connections are told apart by it (the web seed), trusted as above.
FORWARDED_CONNECTION = "X-S3torrent-Forwarded-Connection"


def on_unix_socket(transport: Any) -> bool:
    """Whether a request came on the owner's Unix socket (from another worker)."""
    if transport is None:
        return False
    # Asked on every request: the socket's name, kept by the transport, says it at once (a
    # path for a Unix socket, an (address, port...) tuple for TCP); the family, where the
    # name is unknown, costs an enum conversion.
    name = transport.get_extra_info("sockname")
    if isinstance(name, tuple):
        return False
    sock = transport.get_extra_info("socket")
    return sock is not None and sock.family == socket.AF_UNIX


def client_connection(transport: Any, headers: Any) -> str | None:
    """The client connection a request came on, "address:port": the forwarding worker's
    client's for a request forwarded over the owner's Unix socket, else the transport's."""
    if on_unix_socket(transport):
        value = headers.get(FORWARDED_CONNECTION)
        return str(value) if value else None
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return None


@dataclass(frozen=True, slots=True)
class Role:
    index: int = 0
    count: int = 1
    restarted: bool = False
    """A worker started again by the supervisor while the others run: start-up clean-ups
    that assume no other process is writing (orphan blobs, every temporary blob) are
    skipped; the temporary blobs of writers that ended are removed (ObjectStore.
    cleanup_abandoned)."""

    @property
    def owner(self) -> bool:
        return self.index == 0

    @property
    def alone(self) -> bool:
        """The single-process server: no supervisor, no sockets between workers."""
        return self.count == 1

    def node_id(self, base: str) -> str:
        """The worker's name in job claims, leases and events (the owner keeps the node's)."""
        return base if self.index == 0 else f"{base}.w{self.index}"


def owner_socket(data_dir: Path) -> Path:
    return data_dir / OWNER_SOCKET


def events_socket(data_dir: Path) -> Path:
    return data_dir / EVENTS_SOCKET


def tracker_socket(data_dir: Path) -> Path:
    """The owner's end of the tracker relay (tracker/relay.py)."""
    return data_dir / TRACKER_SOCKET


def handoff_socket(data_dir: Path) -> Path:
    """Where the owner gives the other workers connections that keep announcing
    (handoff.py)."""
    return data_dir / HANDOFF_SOCKET
