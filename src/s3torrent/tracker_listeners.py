"""The tracker's own listeners of one node: the lean HTTP port, the UDP ports, and the front
that answers announces on the S3 listener before aiohttp (app composes them)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from s3torrent.config import Settings, split_host_port
from s3torrent.front import TrackerFront
from s3torrent.listeners import ConnectionGate
from s3torrent.startup import listening
from s3torrent.torrent.catalog import TorrentCatalog
from s3torrent.tracker.http_lean import LeanHttpLimits, LeanHttpTracker
from s3torrent.tracker.registry import MemoryRegistry
from s3torrent.tracker.relay import RelayServer, TrackerRelay
from s3torrent.tracker.service import TrackerService
from s3torrent.tracker.udp import UdpTracker, start_udp_tracker

log = logging.getLogger(__name__)


class TrackerListeners:
    def __init__(
        self,
        settings: Settings,
        service: TrackerService,
        registry: object,
        gate: ConnectionGate,
        torrents: TorrentCatalog,
    ) -> None:
        self.settings = settings
        self.service = service
        # A registry that never suspends lets an announce be answered inline, without a task.
        self.eager = isinstance(registry, MemoryRegistry)
        self.gate = gate
        self.torrents = torrents
        self.udp: list[UdpTracker] = []
        self.http: LeanHttpTracker | None = None
        self.front: TrackerFront | None = None
        self.relay: TrackerRelay | None = None
        self.relay_server: RelayServer | None = None

    def lean(self, relay: TrackerRelay | None = None) -> LeanHttpTracker:
        return LeanHttpTracker(
            self.service if relay is None else relay,
            time.monotonic,
            LeanHttpLimits(
                idle_timeout=self.settings.limits.header_read_timeout,
                max_connections=self.gate.admission.limits.max_connections,
            ),
            # A relayed answer always waits for the owner (and its timeout needs a task).
            eager=self.eager and relay is None,
            gate=self.gate,
        )

    def make_front(self, relay: TrackerRelay | None = None) -> TrackerFront:
        """Announces and scrapes on the S3 listener, answered before aiohttp: here, or
        by the owner worker through `relay` (tracker/relay.py)."""
        self.relay = relay
        self.front = TrackerFront(self.lean(relay))
        return self.front

    async def start_relay(self, path: Path) -> None:
        """The owner's end of the other workers' relays."""
        self.relay_server = RelayServer(self.service, time.monotonic, eager=self.eager)
        await self.relay_server.start(path)

    async def start_http(
        self, relay: TrackerRelay | None = None, *, reuse_port: bool = False
    ) -> None:
        """The tracker port: announces only, on a minimal HTTP/1.1 transport instead of
        aiohttp (each announce costs little more than the tracker itself). With reuse_port
        the workers share it; one without the registry answers through `relay`."""
        listen = self.settings.tracker.http_listen
        if not listen:
            return
        host, port = split_host_port(listen, 6969)
        self.http = self.lean(relay)
        with listening("the HTTP tracker", host, port, "see tracker.http_listen"):
            await self.http.start(host, port, reuse_port=reuse_port)
        log.info("http tracker listening on %s:%d", host, port)

    async def start_udp(self) -> None:
        ports: list[int] = []
        for host, port in self.settings.tracker.udp_host_ports:
            with listening("the UDP tracker", host, port, "see tracker.udp_listen"):
                transport = await start_udp_tracker(self.service, host, port, time.monotonic)
            self.udp.append(transport)
            bound = int(transport.get_extra_info("sockname")[1])
            if bound not in ports:
                ports.append(bound)
            log.info("udp tracker listening on %s:%d", host, bound)
        self.torrents.udp_tracker_ports = ports

    async def close_ports(self) -> None:
        for transport in self.udp:
            transport.close()
        self.udp.clear()
        if self.http is not None:
            await self.http.close()

    async def close_front(self) -> None:
        if self.front is not None:
            await self.front.close()
        if self.relay is not None:
            await self.relay.close()

    async def close_relay_server(self) -> None:
        if self.relay_server is not None:
            await self.relay_server.close()
