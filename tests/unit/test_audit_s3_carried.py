"""Unit checks of the S3 semantics audited in tests/api/test_audit_s3_carried.py."""

from __future__ import annotations

import pytest

from s3torrent.s3.errors import S3Error
from s3torrent.s3.server import query_pairs_of


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
