"""Metadata store: usage (to be filled)."""

from __future__ import annotations

from typing import Protocol

from s3torrent.store.meta_base import SqlStoreBase


class UsageMetadata(Protocol):
    pass


class SqlUsage(SqlStoreBase):
    pass
