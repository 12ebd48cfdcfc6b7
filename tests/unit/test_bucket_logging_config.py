"""BucketLoggingStatus bodies and log object keys (pure)."""

from __future__ import annotations

import re

import pytest

from s3torrent.s3.bucket_logs import log_key
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.logging import logging_target, parse_status, status_xml

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def body(inner: str) -> bytes:
    return f"<BucketLoggingStatus {NS}>{inner}</BucketLoggingStatus>".encode()


def test_status_round_trips() -> None:
    target = ("logs", "p/")
    assert parse_status(status_xml(target)) == target
    assert parse_status(status_xml(None)) is None


def test_simple_prefix_format_is_accepted_partitioned_is_refused() -> None:
    enabled = "<TargetBucket>t</TargetBucket><TargetPrefix>x</TargetPrefix>"
    simple = "<TargetObjectKeyFormat><SimplePrefix/></TargetObjectKeyFormat>"
    assert parse_status(body(f"<LoggingEnabled>{enabled}{simple}</LoggingEnabled>")) == ("t", "x")
    partitioned = (
        "<TargetObjectKeyFormat><PartitionedPrefix><PartitionDateSource>EventTime"
        "</PartitionDateSource></PartitionedPrefix></TargetObjectKeyFormat>"
    )
    with pytest.raises(S3Error) as err:
        parse_status(body(f"<LoggingEnabled>{enabled}{partitioned}</LoggingEnabled>"))
    assert err.value.code == "NotImplemented"


@pytest.mark.parametrize(
    "raw",
    [
        b"<Nope/>",
        body("<LoggingEnabled><TargetPrefix>x</TargetPrefix></LoggingEnabled>"),
        b"not xml",
    ],
)
def test_malformed_bodies_are_refused(raw: bytes) -> None:
    with pytest.raises(S3Error) as err:
        parse_status(raw)
    assert err.value.code == "MalformedXML"


def test_prefix_longer_than_a_key_is_refused() -> None:
    long = "p" * 1025
    with pytest.raises(S3Error) as err:
        parse_status(body(f"<LoggingEnabled><TargetBucket>t</TargetBucket><TargetPrefix>{long}"
                          "</TargetPrefix></LoggingEnabled>"))  # fmt: skip
    assert err.value.code == "InvalidArgument"


def test_log_keys_follow_s3s_names() -> None:
    key = log_key("logs/", 1764679657.9)
    assert re.fullmatch(r"logs/2025-12-02-12-47-37-[0-9A-F]{16}", key), key
    assert log_key("", 0) != log_key("", 0)


def test_settings_without_logging_have_no_target() -> None:
    assert logging_target({}) is None
    assert logging_target({"logging": None}) is None
    assert logging_target({"logging": {"target_bucket": "b", "target_prefix": "p"}}) == ("b", "p")


def test_operations_carry_s3s_log_names() -> None:
    from s3torrent.s3.bucket_logs import AWS_OPERATIONS, aws_operation
    from s3torrent.s3.routing import Endpoint

    assert aws_operation("GetObject", "GET", "object") == "REST.GET.OBJECT"
    assert aws_operation("HeadBucket", "HEAD", "bucket") == "REST.HEAD.BUCKET"
    assert aws_operation("DeleteObjects", "POST", "bucket") == "REST.POST.MULTI_OBJECT_DELETE"
    # Every named operation is one of ours (no typo leaves one unnamed).
    assert set(AWS_OPERATIONS) <= {e.op for e in Endpoint}
