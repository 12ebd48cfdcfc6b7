"""Session-wide real engines for the scale-out tests: PostgreSQL, Redis and moto (S3)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.scale import engines


def _start(name: str, start: object) -> engines.Engine:
    try:
        return start()  # type: ignore[operator,no-any-return]
    except RuntimeError as exc:
        if os.environ.get("S3TORRENT_REQUIRE_ENGINES"):
            raise
        pytest.skip(f"{name} unavailable: {exc}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[engines.Engine]:
    engine = _start("PostgreSQL", engines.start_postgres)
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[engines.Engine]:
    engine = _start("Redis", engines.start_redis)
    yield engine
    engine.stop()


@pytest.fixture(scope="session")
def moto() -> Iterator[engines.Engine]:
    engine = _start("moto_server", engines.start_moto)
    yield engine
    engine.stop()


_db_counter = [0]


@pytest.fixture
def pg_url(postgres: engines.Engine) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    _db_counter[0] += 1
    return engines.create_database(postgres, f"t{os.getpid()}_{_db_counter[0]}")
