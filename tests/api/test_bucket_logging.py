"""Server access logging to a target bucket: PutBucketLogging/GetBucketLogging, and lines
delivered in batches as objects under the target prefix."""

from __future__ import annotations

import os
import time
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, add_user, make_client, start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    s = start_server(
        tmp_path_factory.mktemp("bucketlog"),
        env={"S3TORRENT_LOGGING__BUCKET_LOG_INTERVAL": "0.5"},
    )
    yield s
    s.stop()


def names(stem: str) -> str:
    return f"{stem}-{os.getpid()}-{time.monotonic_ns() % 10**7}"


def log_objects(s3: Any, bucket: str, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return [o["Key"] for o in listed]


def wait_for_lines(s3: Any, bucket: str, prefix: str, needle: str) -> list[str]:
    deadline = time.monotonic() + 20
    while True:
        lines = [
            line
            for key in log_objects(s3, bucket, prefix)
            for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
        ]
        if any(needle in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.3)


def logging_into(s3: Any, source_stem: str, target_stem: str, prefix: str) -> tuple[str, str]:
    """A new source bucket logging into a new target bucket under prefix: their names."""
    source, target = names(source_stem), names(target_stem)
    s3.create_bucket(Bucket=source)
    s3.create_bucket(Bucket=target)
    s3.put_bucket_logging(
        Bucket=source,
        BucketLoggingStatus={"LoggingEnabled": {"TargetBucket": target, "TargetPrefix": prefix}},
    )
    return source, target


def test_requests_are_delivered_as_log_objects_under_the_prefix(srv: LiveServer) -> None:
    s3 = make_client(srv.endpoint)
    source, target = logging_into(s3, "src", "logs", "s/")
    got = s3.get_bucket_logging(Bucket=source)["LoggingEnabled"]
    assert got == {"TargetBucket": target, "TargetPrefix": "s/"}
    s3.put_object(Bucket=source, Key="hello.txt", Body=b"hi")
    with pytest.raises(ClientError):
        s3.get_object(Bucket=source, Key="missing")
    lines = wait_for_lines(s3, target, "s/", "missing")
    keys = log_objects(s3, target, "s/")
    assert keys and all(
        k.startswith("s/") and len(k) == len("s/2026-12-02-12-00-00-") + 16 for k in keys
    )
    owner = s3.list_buckets()["Owner"]["ID"]
    put = next(line for line in lines if " REST.PUT.OBJECT " in line)
    fields = put.split(" ")
    assert fields[0] == owner and fields[1] == source and fields[8] == "hello.txt"
    assert " 200 " in put
    # After the user agent: version id, host id (the request id), signature version, cipher,
    # authentication type, Host header, TLS version, access point, ACL required.
    assert fields[-9:] == [
        "-",
        fields[6],
        "SigV4",
        "-",
        "AuthHeader",
        f"127.0.0.1:{srv.port}",
        "-",
        "-",
        "-",
    ]
    missing = next(line for line in lines if " missing " in line)
    assert " REST.GET.OBJECT " in missing and " 404 NoSuchKey " in missing
    # Requests to the target bucket itself are not logged (its logging is off).
    assert all(line.split(" ")[1] == source for line in lines)


def test_delivered_lines_do_not_hold_presigned_signatures(srv: LiveServer) -> None:
    """A log bucket's readers must not get the source bucket's links: the Request-URI is
    delivered with the signature redacted, as Amazon S3 delivers it."""
    s3 = make_client(srv.endpoint)
    source, target = logging_into(s3, "linked", "linklogs", "l/")
    s3.put_object(Bucket=source, Key="shared.bin", Body=b"shared")
    link = make_client(srv.endpoint, signature_version="s3v4").generate_presigned_url(
        "get_object", Params={"Bucket": source, "Key": "shared.bin"}, ExpiresIn=600
    )
    with urllib.request.urlopen(link, timeout=10) as r:
        assert r.read() == b"shared"
    signature = link.split("X-Amz-Signature=", 1)[1]
    lines = wait_for_lines(s3, target, "l/", "X-Amz-Signature=")
    got = next(line for line in lines if " REST.GET.OBJECT " in line and "X-Amz-" in line)
    assert "X-Amz-Signature=REDACTED HTTP/1.1" in got
    assert all(signature not in line for line in lines)
    assert " QueryString " in got  # still logged as a presigned request


def test_a_bucket_logging_into_itself_does_not_log_its_deliveries(srv: LiveServer) -> None:
    s3 = make_client(srv.endpoint)
    b = names("self")
    s3.create_bucket(Bucket=b)
    s3.put_bucket_logging(
        Bucket=b,
        BucketLoggingStatus={"LoggingEnabled": {"TargetBucket": b, "TargetPrefix": "log/"}},
    )
    s3.put_object(Bucket=b, Key="x", Body=b"1")
    wait_for_lines(s3, b, "log/", " x ")
    # Reading the logs is logged (requests), but deliveries are not requests: the count of
    # log objects settles instead of growing on its own.
    time.sleep(2)
    first = len(log_objects(s3, b, "log/"))
    time.sleep(2)
    assert len(log_objects(s3, b, "log/")) <= first + 1


def test_logging_is_switched_off_by_an_empty_status(srv: LiveServer) -> None:
    s3 = make_client(srv.endpoint)
    source, target = names("off"), names("offlogs")
    s3.create_bucket(Bucket=source)
    s3.create_bucket(Bucket=target)
    conf = {"LoggingEnabled": {"TargetBucket": target, "TargetPrefix": ""}}
    s3.put_bucket_logging(Bucket=source, BucketLoggingStatus=conf)
    s3.put_bucket_logging(Bucket=source, BucketLoggingStatus={})
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=source)
    s3.put_object(Bucket=source, Key="quiet", Body=b"1")
    time.sleep(1.5)
    # The request that switched logging off is logged still (as S3 does); nothing after it.
    lines = [
        line
        for key in log_objects(s3, target, "")
        for line in s3.get_object(Bucket=target, Key=key)["Body"].read().decode().splitlines()
    ]
    assert [line for line in lines if " REST.PUT.LOGGING_STATUS " not in line] == []


def test_target_must_exist_and_have_the_same_owner(srv: LiveServer) -> None:
    s3 = make_client(srv.endpoint)
    source = names("own")
    s3.create_bucket(Bucket=source)
    with pytest.raises(ClientError) as err:
        s3.put_bucket_logging(
            Bucket=source,
            BucketLoggingStatus={
                "LoggingEnabled": {"TargetBucket": names("none"), "TargetPrefix": ""}
            },
        )
    assert err.value.response["Error"]["Code"] == "InvalidTargetBucketForLogging"
    other = add_user(srv, names("other"))
    theirs = make_client(srv.endpoint, other.access_key, other.secret_key)
    foreign = names("foreign")
    theirs.create_bucket(Bucket=foreign)
    with pytest.raises(ClientError) as err:
        s3.put_bucket_logging(
            Bucket=source,
            BucketLoggingStatus={"LoggingEnabled": {"TargetBucket": foreign, "TargetPrefix": ""}},
        )
    assert err.value.response["Error"]["Code"] == "InvalidTargetBucketForLogging"
    # Nor may another user configure (or read) the logging of a bucket not theirs.
    for call in (
        lambda: theirs.get_bucket_logging(Bucket=source),
        lambda: theirs.put_bucket_logging(
            Bucket=source,
            BucketLoggingStatus={"LoggingEnabled": {"TargetBucket": foreign, "TargetPrefix": ""}},
        ),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert err.value.response["Error"]["Code"] == "AccessDenied"


def test_target_grants_are_refused_not_ignored(srv: LiveServer) -> None:
    s3 = make_client(srv.endpoint)
    b = names("grants")
    s3.create_bucket(Bucket=b)
    grant = {
        "Grantee": {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"},
        "Permission": "READ",
    }
    with pytest.raises(ClientError) as err:
        s3.put_bucket_logging(
            Bucket=b,
            BucketLoggingStatus={
                "LoggingEnabled": {"TargetBucket": b, "TargetPrefix": "", "TargetGrants": [grant]}
            },
        )
    assert err.value.response["Error"]["Code"] == "NotImplemented"
