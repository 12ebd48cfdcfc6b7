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
