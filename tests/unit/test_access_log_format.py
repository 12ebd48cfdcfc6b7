"""Access log lines: S3 field order, escaping of hostile values, JSON, batching, and
presigned signatures redacted."""

from __future__ import annotations

import io
import json
import logging
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.s3 import access_log
from s3torrent.s3.access_log import (
    AccessLog,
    AccessRecord,
    format_json,
    format_s3,
    redact_signatures,
)


def record(**changes: object) -> AccessRecord:
    base = AccessRecord(
        at=1764679657.25,
        remote="127.0.0.1",
        requester="alice",
        request_id="0DE90BB8AEBC67A1",
        operation="GetObject",
        bucket="releases",
        key="big.iso",
        method="GET",
        target="/releases/big.iso",
        version=(1, 1),
        status=200,
        error_code="",
        bytes_sent=1048576,
        bytes_received=0,
        seconds=0.012,
        referer="",
        user_agent="aws-cli/2.15",
        host="127.0.0.1:9000",
    )
    return base._replace(**changes)  # type: ignore[arg-type]


def test_s3_fields_in_order() -> None:
    line = format_s3(record(), "02/Dec/2026:12:47:37 +0000")
    assert line == (
        "- releases [02/Dec/2026:12:47:37 +0000] 127.0.0.1 alice 0DE90BB8AEBC67A1 GetObject "
        'big.iso "GET /releases/big.iso HTTP/1.1" 200 - 1048576 - 12 - "-" "aws-cli/2.15"\n'
    )


def test_hostile_values_stay_on_one_line_and_in_their_field() -> None:
    line = format_s3(
        record(key="a b\nc", user_agent='x" 200 forged\n', status=404, error_code="NoSuchKey"),
        "t",
    )
    assert line.count("\n") == 1 and line.endswith("\n")
    fields = line.split(" ")
    assert fields[7] == "a%20b\\nc"
    assert '"x\\" 200 forged\\n"' in line


def test_json_line_is_one_object() -> None:
    obj = json.loads(format_json(record(status=403, error_code="AccessDenied"), "T"))
    assert obj["status"] == 403 and obj["error_code"] == "AccessDenied"
    assert obj["request_id"] == "0DE90BB8AEBC67A1" and obj["time"] == "T"


def test_records_are_written_in_batches_on_flush() -> None:
    out = io.StringIO()
    log = AccessLog(out, "json", max_pending=1000)
    log._pending.extend([record(request_id=str(i)) for i in range(3)])
    assert out.getvalue() == ""
    log.flush()
    assert log.output.drain()  # written by the output's thread
    assert [json.loads(x)["request_id"] for x in out.getvalue().splitlines()] == ["0", "1", "2"]


_TEXT = st.text(st.characters(), max_size=40) | st.sampled_from(["", '"', "\\", "\n", "\u2028"])


@settings(max_examples=200, deadline=None)
@given(key=_TEXT, user_agent=_TEXT, referer=_TEXT, requester=_TEXT, target=_TEXT, host=_TEXT)
def test_json_lines_written_by_hand_parse_back_to_every_value(
    key: str, user_agent: str, referer: str, requester: str, target: str, host: str
) -> None:
    r = record(
        key=key, user_agent=user_agent, referer=referer, requester=requester, target=target,
        host=host,
    )  # fmt: skip
    line = format_json(r, "T")
    assert line.endswith("\n") and line.count("\n") == 1
    obj = json.loads(line)
    assert obj["key"] == (key or None)
    assert obj["user_agent"] == (user_agent or None)
    assert obj["referer"] == (referer or None)
    assert obj["requester"] == (requester or None)
    assert obj["uri"] == (redact_signatures(target) or None)
    assert obj["host"] == (host or None)
    assert obj["ms"] == 12.0 and obj["bytes_sent"] == 1048576


def test_long_values_are_cut_in_both_formats() -> None:
    long = "k" * 5000
    assert len(json.loads(format_json(record(user_agent=long), "T"))["user_agent"]) == 2048
    assert f'"{"k" * 2048}"\n' in format_s3(record(user_agent=long), "t")


_SIG = "ca2bffdd0bddd0bb45a8b37eba11f9832040df020598a22e706f8a88a79a353f"


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/b/k", "/b/k"),
        (
            f"/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=60&X-Amz-Signature={_SIG}",
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=60&X-Amz-Signature=REDACTED",
        ),
        # SigV2's query authentication, the signature in the middle.
        (
            "/b/k?AWSAccessKeyId=AK&Signature=a%2Bb%3D&Expires=9",
            "/b/k?AWSAccessKeyId=AK&Signature=REDACTED&Expires=9",
        ),
        # Every field of those names; none of any other name.
        (
            "/b/k?XSignature=1&X-Amz-Signature=2&Signature=3&X-Amz-Signature=4",
            "/b/k?XSignature=1&X-Amz-Signature=REDACTED&Signature=REDACTED"
            "&X-Amz-Signature=REDACTED",
        ),
        ("/b/k?x=X-Amz-Signature=4&y=aSignature=5", "/b/k?x=X-Amz-Signature=4&y=aSignature=5"),
        # In the path it is a key's name, not a credential; the query's is still redacted.
        ("/b/X-Amz-Signature=1", "/b/X-Amz-Signature=1"),
        ("/b/X-Amz-Signature=1?Signature=2", "/b/X-Amz-Signature=1?Signature=REDACTED"),
        ("/b/k?Signature=", "/b/k?Signature=REDACTED"),
    ],
)
def test_presigned_signatures_are_redacted(target: str, logged: str) -> None:
    assert redact_signatures(target) == logged


def test_both_formats_log_the_uri_without_its_signature() -> None:
    target = f"/releases/big.iso?X-Amz-Credential=AK%2F20261206&X-Amz-Signature={_SIG}"
    s3_line = format_s3(record(target=target), "t")
    json_line = format_json(record(target=target), "T")
    assert _SIG not in s3_line and _SIG not in json_line
    assert '"GET /releases/big.iso?X-Amz-Credential=AK%2F20261206&X-Amz-Signature=REDACTED ' in (
        s3_line
    )
    assert json.loads(json_line)["uri"].endswith("&X-Amz-Signature=REDACTED")


def test_a_blocked_output_drops_lines_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """Standard output is a pipe nobody reads: batches past the output's bound are dropped,
    counted, and a warning (at most one per interval) says how many."""
    read_fd, write_fd = os.pipe()
    try:
        log = AccessLog(write_fd, "s3")
        log.output.limit = 100_000
        with caplog.at_level(logging.WARNING, "s3torrent.s3.access_log"):
            for _ in range(20):
                log._pending.extend([record(key="k" * 500)] * 100)  # ~70 KB a batch
                log.flush()
        assert log.output.dropped > 0 and log.output.dropped % 100 == 0
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 1
        assert (
            warnings[0] == "access log lines dropped (the output is blocked or failing): 100 so far"
        )
    finally:
        log.output.close(0.1)
        os.close(read_fd)
        os.close(write_fd)


def test_a_request_line_logged_again_is_the_same_line_redacted_and_the_memo_is_bounded() -> None:
    """Request lines are kept escaped for the next request with the same line: the kept one
    is what escaping gives (signature redacted, hostile bytes escaped, method and version
    its own), and the memo neither grows past its bound nor keeps an overlong target."""
    signed = "/releases/big.iso?X-Amz-Signature=" + "ab" * 32
    hostile = '/releases/a"b\x1b[31m?Signature=secret&x=1'
    for target in (signed, hostile, signed):
        for method, version in (("GET", (1, 1)), ("HEAD", (1, 0))):
            line = format_s3(record(method=method, target=target, version=version), "t")
            assert line == format_s3(record(method=method, target=target, version=version), "t")
            assert "ab" * 32 not in line and "secret" not in line
            assert f'"{method} ' in line and f' HTTP/{version[0]}.{version[1]}"' in line
            # Three quoted fields (request line, referer, user agent), a quote inside escaped.
            assert "\x1b" not in line and line.replace('\\"', "").count('"') == 6
    for i in range(access_log._LINES_MAX + 10):
        format_s3(record(target=f"/releases/{i}?Signature=s{i}"), "t")
        assert len(access_log._LINES) <= access_log._LINES_MAX
    long_target = "/releases/" + "k" * access_log._LINE_TARGET_MAX + "?X-Amz-Signature=cafe"
    line = format_s3(record(target=long_target), "t")
    assert "cafe" not in line and "X-Amz-Signature=REDACTED" in line
    assert all(target != long_target for _, target, _ in access_log._LINES)
