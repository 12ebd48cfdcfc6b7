"""The validators conditional reads compare (s3/validators.py)."""

from __future__ import annotations

import time

import pytest

from s3torrent.s3.ranges import parse_range
from s3torrent.s3.validators import etag_matches, if_range_holds, parse_http_date

ETAG = '"0123456789abcdef0123456789abcdef"'
MODIFIED = 1_700_000_000.25  # Tue, 14 Nov 2023 22:13:20 GMT


@pytest.mark.parametrize(
    ("value", "holds"),
    [
        (ETAG, True),
        (f" {ETAG} ", True),
        (f"W/{ETAG}", False),  # a weak tag never holds: If-Range compares strongly
        ('"ffffffffffffffffffffffffffffffff"', False),
        (f"{ETAG}, {ETAG}", False),  # one validator, not a list
        ("Tue, 14 Nov 2023 22:13:20 GMT", True),
        ("Tue, 14 Nov 2023 22:13:21 GMT", False),  # later is not the same version
        ("Tue, 14 Nov 2023 22:13:19 GMT", False),
        ("0123456789abcdef0123456789abcdef", False),  # neither a tag nor a date
        ("", False),
        ("Tue, 14 Nov 99999 22:13:20 GMT", False),
    ],
)
def test_if_range(value: str, holds: bool) -> None:
    assert if_range_holds(value, ETAG, MODIFIED) is holds


@pytest.mark.parametrize(
    ("header", "strong", "weak"),
    [
        (ETAG, True, True),
        (ETAG.strip('"'), True, True),  # unquoted, as S3 takes it
        (f"W/{ETAG}", False, True),
        (f'"a", W/{ETAG}', False, True),
        (f'W/"a", {ETAG}', True, True),
        ("*", True, True),
        ('"a", "b"', False, False),
        ("W/*", False, False),
        ("", False, False),
    ],
)
def test_etag_comparison(header: str, strong: bool, weak: bool) -> None:
    assert etag_matches(header, ETAG) is strong
    assert etag_matches(header, ETAG, weak=True) is weak


@pytest.mark.parametrize("header", ["bytes=\u0661-\u0663", "bytes=0-\uff19", "bytes=-\u0663"])
def test_only_ascii_digits_make_a_range(header: str) -> None:
    assert parse_range(header, 10) is None


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime: no zone, GMT all the same
        "Sun, 06 Nov 1994 08:49:37 -0000",
    ],
)
def test_http_dates_are_gmt_whatever_the_servers_zone(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 9110 5.6.7: a recipient takes all three forms, and all are GMT. The asctime
    form has no zone; it was read in the server's local zone (an hour off in Paris), so an
    If-Modified-Since in it answered 304 or 200 wrongly for an hour's changes."""
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        assert parse_http_date(value) == 784111777.0
    finally:
        monkeypatch.undo()
        time.tzset()
