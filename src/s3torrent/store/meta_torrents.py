"""Metadata store: torrents (to be filled)."""

from __future__ import annotations

from typing import Protocol

from s3torrent.store.meta_base import SqlStoreBase


class TorrentMetadata(Protocol):
    pass


class SqlTorrents(SqlStoreBase):
    pass
