"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from s3torrent.store.database import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A metadata database in a SQLite file of its own, tmp_path / "m.sqlite3"."""
    d = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    yield d
    d.close()
