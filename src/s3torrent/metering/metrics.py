"""Prometheus /metrics on a listener of its own (setting `metering.metrics_listen`).

A separate address because Prometheus cannot sign S3 requests: bind it to loopback or a
management network. Counters come from the meter's in-memory totals (nothing is counted
twice: the request path updates only the meter); gauges are read when scraped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from s3torrent.metering.meter import LATENCY_BOUNDS, Meter
from s3torrent.metering.worker_totals import WorkerTotals, totals_of

if TYPE_CHECKING:
    from s3torrent.metering.meter import Meter
    from s3torrent.publication import PublicTorrents
    from s3torrent.torrent.jobs import HashJobs

log = logging.getLogger(__name__)


class MeterCollector(Collector):
    """Exposes a Meter's totals and the gauges gathered by the last refresh."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.gauges: dict[str, tuple[str, float]] = {}
        self.swarm_peers: dict[str, int] = {}
        # The owner of `serve --workers N`: the other workers' totals, added (worker_totals.py).
        self.others: WorkerTotals | None = None

    def collect(self) -> Iterator[Metric]:
        m = totals_of(self.meter)
        if self.others is not None:
            m = self.others.merged(m)
        requests = CounterMetricFamily(
            "s3torrent_requests",
            "Requests by operation (channel included) and HTTP status.",
            labels=["operation", "status"],
        )
        for (op, status), n in sorted(m.requests.items()):
            requests.add_metric([op, str(status)], n)
        yield requests
        transfer = CounterMetricFamily(
            "s3torrent_transfer_bytes",
            "Body bytes sent (out) and received (in) by operation/channel.",
            labels=["channel", "direction"],
        )
        for (op, direction), n in sorted(m.bytes.items()):
            transfer.add_metric([op, direction], n)
        yield transfer
        latency = HistogramMetricFamily(
            "s3torrent_request_duration_seconds",
            "Time from receiving a request to its last body byte handed to the socket.",
            labels=["operation"],
        )
        for op, (counts, total) in sorted(m.latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(LATENCY_BOUNDS, counts, strict=False):
                cumulative += count
                buckets.append((repr(bound), float(cumulative)))
            buckets.append(("+Inf", float(cumulative + counts[-1])))
            latency.add_metric([op], buckets, total)
        yield latency
        flushes = CounterMetricFamily(
            "s3torrent_metering_flushes",
            "Usage counter flushes to the database.",
            labels=["result"],
        )
        flushes.add_metric(["ok"], m.flushes)
        flushes.add_metric(["failed"], m.flush_failures)
        yield flushes
        dropped = CounterMetricFamily(
            "s3torrent_log_lines_dropped",
            "Log lines dropped: the output stayed blocked past its bound, or a write failed.",
            labels=["log"],
        )
        for kind in sorted({"access log", "server log"} | m.logs_dropped.keys()):
            dropped.add_metric([kind.removesuffix(" log")], m.logs_dropped.get(kind, 0))
        yield dropped
        yield GaugeMetricFamily(
            "s3torrent_metering_last_flush_seconds",
            "Duration of the last usage flush.",
            value=self.meter.last_flush_seconds,
        )
        peers = GaugeMetricFamily(
            "s3torrent_swarm_peers",
            "Peers in all published swarms, as the tracker knows them.",
            labels=["role"],
        )
        for role, n in sorted(self.swarm_peers.items()):
            peers.add_metric([role], n)
        yield peers
        for name, (doc, value) in sorted(self.gauges.items()):
            yield GaugeMetricFamily(name, doc, value=value)


class MetricsEndpoint:
    """The /metrics handler and its listener."""

    def __init__(
        self,
        meter: Meter,
        public: PublicTorrents,
        hash_jobs: HashJobs,
        peer_connections: Callable[[], int] | None = None,
    ) -> None:
        self.public = public
        self.hash_jobs = hash_jobs
        self.peer_connections = peer_connections
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = MeterCollector(meter)
        self.registry.register(self.collector)
        self._runner: web.AppRunner | None = None

    async def refresh(self) -> None:
        """Read the gauges that live elsewhere (tracker registry, hashing, seeder)."""
        public = self.public
        seeders = leechers = 0
        for info_hash in list(public.by_swarm):
            try:
                s = await public.registry.stats(info_hash)
            except KeyError:
                continue
            seeders += s.seeders
            leechers += s.leechers
        self.collector.swarm_peers = {"seeder": seeders, "leecher": leechers}
        gauges: dict[str, tuple[str, float]] = {
            "s3torrent_torrents_registered": (
                "Torrents the tracker serves right now.",
                float(len(await public.registry.registered())),
            ),
            "s3torrent_hash_jobs_queued": (
                "Objects waiting for (or in) background piece hashing.",
                float(self.hash_jobs.queued),
            ),
        }
        if self.peer_connections is not None:
            gauges["s3torrent_peer_connections"] = (
                "Open BitTorrent peer connections of the seeder.",
                float(self.peer_connections()),
            )
        self.collector.gauges = gauges

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await self.refresh()
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self.handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port, reuse_address=True).start()
        log.info("prometheus metrics on http://%s:%d/metrics", host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
