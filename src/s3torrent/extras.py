"""Optional engines and the pip extra that brings each one.

The default install runs on local disk and SQLite; PostgreSQL, Redis and an S3 blob backend
are extras (`pip install 's3torrent[postgres,redis,s3]'`, or `[scale]` for all three). A
setting that needs a missing one stops the start with a line saying what to install.
"""

from __future__ import annotations

import importlib.util

from s3torrent.config import Settings


class MissingExtra(RuntimeError):
    """A setting needs an optional dependency that is not installed."""


def _require(module: str, extra: str, setting: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(
            f"{setting} needs the optional package {module!r}, which is not installed: "
            f"pip install 's3torrent[{extra}]'"
        )


def check_extras(settings: Settings) -> None:
    """Refuse settings whose engines are not installed, before anything starts."""
    if settings.database_url.startswith("postgresql"):
        _require("psycopg", "postgres", "metadata_url (PostgreSQL)")
    if settings.redis_url:
        _require("redis", "redis", "redis_url")
    if settings.blobs_url and settings.blobs_url.startswith("s3://"):
        _require("boto3", "s3", "blobs_url (an S3 backend)")
