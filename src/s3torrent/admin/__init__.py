"""The admin API under /_admin (users, reports, torrents, server info) and the seeder's
state at /_seeder/stats: signed JSON endpoints outside the S3 API."""

from __future__ import annotations

from s3torrent.admin.api import AdminApi
from s3torrent.admin.call import NodeFacts
from s3torrent.admin.seeder import seeder_stats_handler

__all__ = ["AdminApi", "NodeFacts", "seeder_stats_handler"]
