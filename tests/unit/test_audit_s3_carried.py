"""Unit checks of the S3 semantics audited in tests/api/test_audit_s3_carried.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from s3torrent.s3.errors import S3Error
from s3torrent.s3.server import query_pairs_of
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
