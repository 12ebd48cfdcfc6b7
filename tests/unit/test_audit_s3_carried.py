"""Unit checks of the S3 semantics audited in tests/api/test_audit_s3_carried.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from s3torrent.s3.errors import S3Error
from s3torrent.s3.server import query_pairs_of
from s3torrent.store import metadata, migrations
from s3torrent.store import rows as md
from s3torrent.store.retention import default_retention, with_default_retention


def test_query_fields_decode_as_utf8() -> None:
    assert query_pairs_of("prefix=a%C3%A9+b&delimiter=%2F") == [
        ("prefix", "a\u00e9 b"),
        ("delimiter", "/"),
    ]


@pytest.mark.parametrize(
    "raw", ["prefix=a%FFb", "marker=%C3", "a%80=1", "x=1&key-marker=%ED%A0%80"]
)
def test_query_fields_that_are_not_utf8_are_invalid_uri(raw: str) -> None:
    with pytest.raises(S3Error) as exc:
        query_pairs_of(raw)
    assert exc.value.code == "InvalidURI"


# ---- default retention in years ----


def _locked_bucket(rule: dict[str, Any]) -> md.Bucket:
    lock = {"enabled": True, "default": {"days": None, "years": None, **rule}}
    return md.Bucket("b", "o", 0.0, "us-east-1", settings={"object_lock": lock})


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("written", "years", "until"),
    [
        # A span with a leap day: a calendar year is 366 days, not 365.
        ("2027-06-01T12:00:00", 1, "2028-06-01T12:00:00"),
        ("2028-01-15T00:00:00", 1, "2029-01-15T00:00:00"),
        ("2027-03-01T08:30:00", 4, "2031-03-01T08:30:00"),
        # 29 February: to 1 March of a year without one (never before a full year), and to
        # 29 February again four years on.
        ("2028-02-29T10:00:00", 1, "2029-03-01T10:00:00"),
        ("2028-02-29T10:00:00", 4, "2032-02-29T10:00:00"),
        ("2027-01-01T00:00:00", 100, "2127-01-01T00:00:00"),
    ],
)
def test_default_retention_in_years_is_calendar_years(written: str, years: int, until: str) -> None:
    """A bucket's default retention of N Years keeps a new version until the same moment N
    calendar years on; it was N * 365 days, a day short across every leap day."""
    obj = md.ObjectVersion("b", "k", "a" * 32, 1, "e", _at(written), "o")
    bucket = _locked_bucket({"mode": "COMPLIANCE", "years": years})
    locked = with_default_retention(obj, bucket, _at(written))
    assert locked.lock_mode == "COMPLIANCE"
    assert locked.lock_until == _at(until)


def test_default_retention_in_days_is_whole_days() -> None:
    rule = default_retention(_locked_bucket({"mode": "GOVERNANCE", "days": 366}))
    assert rule is not None
    assert rule.until(_at("2028-02-01T00:00:00")) == _at("2029-02-01T00:00:00")
    assert rule.until(_at("2027-02-01T00:00:00")) == _at("2028-02-02T00:00:00")


# ---- revision 0016: legal_hold_set ----


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.sqlite3'}"
        return
    from tests.scale import engines

    if engines.postgres_bin() is None:
        pytest.skip("no PostgreSQL server binaries")
    engine = engines.start_postgres()
    try:
        yield engines.create_database(engine, "legal_hold_set")
    finally:
        engine.stop()


_ROW = (
    "(bucket, key, version_id, size, etag, last_modified, owner_id, headers, versioned,"
    " legal_hold{extra}) VALUES ('b', :key, :vid, 1, 'e', 1.0, 'o', '{{}}', :versioned,"
    " :hold{values})"
)


def _database_at_0015(url: str) -> None:
    """Two current versions (hold ON, no hold) and two noncurrent ones, likewise."""
    from alembic import command

    engine = metadata.create_engine(url)
    with engine.begin() as conn:
        command.upgrade(migrations.alembic_config(conn), "0015")
        current = sa.text("INSERT INTO objects " + _ROW.format(extra="", values=""))
        history = sa.text(
            "INSERT INTO object_versions "
            + _ROW.format(extra=", seq, delete_marker", values=", :seq, false")
        )
        for n, hold in enumerate((True, False)):
            row = {"key": f"k{n}".encode(), "vid": f"c{n}".ljust(32, "0"), "hold": hold}
            conn.execute(current, {**row, "versioned": True})
            conn.execute(
                history, {**row, "vid": f"h{n}".ljust(32, "0"), "seq": -n, "versioned": True}
            )
    engine.dispose()


def _triggers(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
        return {str(r[0]) for r in rows}


def test_revision_0016_keeps_every_hold_that_is_on_as_set(url: str) -> None:
    """A hold ON was set; one OFF reads as never set (they cannot be told apart). On SQLite
    the column is added in place: the lookup_generation triggers on objects stay."""
    _database_at_0015(url)
    engine = metadata.create_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    before = _triggers(engine) if sqlite else set()
    migrations.upgrade(engine)
    with engine.connect() as conn:
        assert migrations.current_revision(conn) == migrations.HEAD
        for table in (metadata.objects, metadata.object_versions):
            got = conn.execute(
                sa.select(table.c.key, table.c.legal_hold, table.c.legal_hold_set).order_by(
                    table.c.key
                )
            ).all()
            assert [tuple(r) for r in got] == [(b"k0", True, True), (b"k1", False, False)]
        versions = [md.ObjectVersion.from_row(r) for r in conn.execute(sa.select(metadata.objects))]
    assert sorted(v.legal_hold_status or "-" for v in versions) == ["-", "ON"]
    if sqlite:
        assert before and _triggers(engine) == before
    engine.dispose()
