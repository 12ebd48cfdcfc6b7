"""Metadata store: users (to be filled)."""

from __future__ import annotations

from typing import Protocol

from s3torrent.store.meta_base import SqlStoreBase


class UserMetadata(Protocol):
    pass


class SqlUsers(SqlStoreBase):
    pass
