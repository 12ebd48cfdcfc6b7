"""The lifecycle worker's progress on /metrics."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from s3torrent.lifecycle.worker import LifecycleProgress

_COUNTERS = {
    "passes": "Lifecycle passes this node completed.",
    "objects_scanned": "Objects the lifecycle worker evaluated.",
    "objects_expired": "Current versions expired by lifecycle rules.",
    "noncurrent_versions_expired": "Noncurrent versions deleted by lifecycle rules.",
    "delete_markers_removed": "Expired object delete markers removed by lifecycle rules.",
    "uploads_aborted": "Incomplete multipart uploads aborted by lifecycle rules.",
    "skipped_changed": "Due expiries left alone: the object changed since it was evaluated.",
    "refused": "Due expiries the store refused (object lock, ...).",
    "buckets_failed": "Buckets a lifecycle pass could not go through (an error, logged).",
}


class LifecycleCollector(Collector):
    """s3torrent_lifecycle_* counters and the last pass's duration and end."""

    def __init__(self, progress: LifecycleProgress) -> None:
        self.progress = progress

    def collect(self) -> Iterator[Metric]:
        values = self.progress.snapshot()
        for name, doc in _COUNTERS.items():
            yield CounterMetricFamily(f"s3torrent_lifecycle_{name}", doc, value=values[name])
        yield GaugeMetricFamily(
            "s3torrent_lifecycle_last_pass_seconds",
            "Duration of this node's last lifecycle pass.",
            value=values["last_pass_seconds"],
        )
        yield GaugeMetricFamily(
            "s3torrent_lifecycle_last_pass_finished_timestamp_seconds",
            "When this node's last lifecycle pass finished (Unix time).",
            value=values["last_pass_finished"],
        )
