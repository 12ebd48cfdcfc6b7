"""Admin API: what the server is (version, uptime, settings that matter, engines)."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from s3torrent.admin.call import AdminCall
from s3torrent.config import Settings


@functools.cache
def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("s3torrent")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _scheme(url: str | None, default: str) -> str:
    # Only the scheme: the URLs themselves may carry passwords.
    if not url:
        return default
    scheme = urlsplit(url).scheme.split("+", 1)[0]
    return {"postgres": "postgresql"}.get(scheme, scheme or default)


def engines(settings: Settings) -> dict[str, str]:
    """Which implementation each pluggable part uses."""
    return {
        "metadata": _scheme(settings.metadata_url, "sqlite"),
        "blobs": "s3" if settings.blobs_url else "local",
        "tracker_registry": "redis" if settings.redis_url else "memory",
        "events": "redis" if settings.redis_url else "in-process",
    }


def settings_summary(settings: Settings) -> dict[str, Any]:
    """The settings an operator asks about first (no secrets, no URLs with passwords)."""
    return {
        "data_dir": str(settings.data_dir.absolute()),
        "listen": settings.listen,
        "public_url": settings.base_url,
        "region": settings.region,
        "domain": settings.domain,
        "torrent": {
            "enabled": settings.torrent.enabled,
            "format": settings.torrent.format,
            "max_object_size": settings.torrent.max_object_size,
            "web_seed": settings.torrent.web_seed,
        },
        "seeder": {"enabled": settings.seeder.enabled, "mode": settings.seeder.mode},
        "tracker": {"udp_listen": settings.tracker.udp_listen},
        "metering": {"enabled": settings.metering.enabled},
        "logging": {
            "level": settings.logging.level,
            "access_log": settings.logging.access_log,
            "access_log_format": settings.logging.access_log_format,
        },
    }


async def server_info(call: AdminCall) -> web.StreamResponse:
    node = call.node
    settings = call.svc.settings
    seeder = node.seeder
    return web.json_response(
        {
            "version": package_version(),
            "started": datetime.fromtimestamp(node.started, UTC).isoformat(timespec="seconds"),
            "uptime_seconds": round(time.time() - node.started, 3),
            "engines": {**engines(settings), **node.engines},
            "settings": settings_summary(settings),
            "seeder": None if seeder is None else {"connections": len(seeder.links)},
            "hash_jobs": {"running": call.svc.hash_jobs.queued},
        }
    )
