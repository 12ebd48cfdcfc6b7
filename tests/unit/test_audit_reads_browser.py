"""PutBucketCors validation as S3's model has it (audit h7, 2026-12-08)."""

from __future__ import annotations

import pytest

from s3torrent.s3 import cors
from s3torrent.s3.errors import S3Error


def _config(max_age: str) -> bytes:
    return (
        "<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
        f"<AllowedMethod>GET</AllowedMethod><MaxAgeSeconds>{max_age}</MaxAgeSeconds>"
        "</CORSRule></CORSConfiguration>"
    ).encode()


@pytest.mark.parametrize(
    "value", ["2147483648", "99999999999999999999", "\u0661\u0662", "1_000", "-1", "1.5", ""]
)
def test_max_age_beyond_an_int32_or_not_ascii_digits_is_malformed(value: str) -> None:
    """MaxAgeSeconds is an Integer in S3's model (32 bits): 10^20 was stored and rendered
    back by GetBucketCors (a Java or Go SDK fails to read it), and Python's int() took
    Arabic-Indic digits and `1_000`, which no XML integer is."""
    with pytest.raises(S3Error) as exc:
        cors.parse_configuration(_config(value))
    assert exc.value.code == "MalformedXML"


@pytest.mark.parametrize(
    ("value", "seconds"), [("0", 0), (" 600 ", 600), ("2147483647", 2**31 - 1)]
)
def test_max_age_within_an_int32_is_kept(value: str, seconds: int) -> None:
    (rule,) = cors.parse_configuration(_config(value))
    assert rule.max_age_seconds == seconds


# ---- the one evaluation of a read's conditions (s3/validators.py) ----

ETAG = '"0123456789abcdef0123456789abcdef"'
MODIFIED = 1_000_000_000.5  # 2001-09-09 01:46:40 GMT
BEFORE = "Sat, 08 Sep 2001 00:00:00 GMT"
AFTER = "Mon, 10 Sep 2001 00:00:00 GMT"


@pytest.mark.parametrize(
    ("headers", "last_modified", "failed"),
    [
        ({}, MODIFIED, None),
        ({"If-Match": '"other"'}, MODIFIED, "If-Match"),
        ({"If-Match": ETAG, "If-Unmodified-Since": BEFORE}, MODIFIED, None),
        ({"If-Unmodified-Since": BEFORE}, MODIFIED, "If-Unmodified-Since"),
        ({"If-None-Match": f"W/{ETAG}"}, MODIFIED, "If-None-Match"),
        ({"If-None-Match": '"other"', "If-Modified-Since": AFTER}, MODIFIED, None),
        ({"If-Modified-Since": AFTER}, MODIFIED, "If-Modified-Since"),
        ({"If-Modified-Since": "not a date"}, MODIFIED, None),
        # No Last-Modified (a generated document): the dates are no condition.
        ({"If-Modified-Since": AFTER}, None, None),
        ({"If-Unmodified-Since": BEFORE}, None, None),
        ({"If-None-Match": "*"}, None, "If-None-Match"),
    ],
)
def test_failed_condition(
    headers: dict[str, str], last_modified: float | None, failed: str | None
) -> None:
    from multidict import CIMultiDict

    from s3torrent.s3.validators import failed_condition

    assert failed_condition(CIMultiDict(headers), ETAG, last_modified) == failed
    prefixed = CIMultiDict({f"x-amz-copy-source-{k}": v for k, v in headers.items()})
    assert failed_condition(prefixed, ETAG, last_modified, prefix="x-amz-copy-source-") == failed
