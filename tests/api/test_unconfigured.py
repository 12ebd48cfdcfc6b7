"""Bucket features that cannot be configured here read as never configured, as on S3.

Website, replication, notifications, requester pays and acceleration: their reads answer what
S3 answers for a bucket that never had them (s3cmd `info`/`ws-info` and the AWS CLI included),
deleting what does not exist succeeds, the payer can be set only to what it is, and every
write that would configure one is still refused. Reads are the bucket owner's, as on S3.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, aws_cli, s3cmd_command, sign_request


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = exc.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def test_reads_answer_never_configured(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_website(Bucket=bucket)
    assert _error(exc) == (404, "NoSuchWebsiteConfiguration")
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_replication(Bucket=bucket)
    assert _error(exc) == (404, "ReplicationConfigurationNotFoundError")
    notification = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert not {k for k in notification if k != "ResponseMetadata"}
    assert s3.get_bucket_request_payment(Bucket=bucket)["Payer"] == "BucketOwner"
    assert "Status" not in s3.get_bucket_accelerate_configuration(Bucket=bucket)
    for delete in (s3.delete_bucket_website, s3.delete_bucket_replication):
        assert delete(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_a_missing_bucket_is_still_no_such_bucket(s3: Any) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_request_payment(Bucket="no-such-bucket-here")
    assert _error(exc) == (404, "NoSuchBucket")


def test_configuring_is_refused_and_changes_nothing(s3: Any, bucket: str) -> None:
    calls = [
        lambda: s3.put_bucket_website(
            Bucket=bucket, WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}}
        ),
        lambda: s3.put_bucket_accelerate_configuration(
            Bucket=bucket, AccelerateConfiguration={"Status": "Enabled"}
        ),
        lambda: s3.put_bucket_request_payment(
            Bucket=bucket, RequestPaymentConfiguration={"Payer": "Requester"}
        ),
        lambda: s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": "arn:aws:sqs:us-east-1:1:q", "Events": ["s3:ObjectCreated:*"]}
                ]
            },
        ),
    ]
    for call in calls:
        with pytest.raises(ClientError) as exc:
            call()
        assert _error(exc) == (501, "NotImplemented")
    assert s3.get_bucket_request_payment(Bucket=bucket)["Payer"] == "BucketOwner"
    assert "Status" not in s3.get_bucket_accelerate_configuration(Bucket=bucket)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_website(Bucket=bucket)
    assert _error(exc) == (404, "NoSuchWebsiteConfiguration")


def test_the_payer_can_be_set_to_what_it_is(s3: Any, server: LiveServer, bucket: str) -> None:
    resp = s3.put_bucket_request_payment(
        Bucket=bucket, RequestPaymentConfiguration={"Payer": "BucketOwner"}
    )
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.get_bucket_request_payment(Bucket=bucket)["Payer"] == "BucketOwner"


def test_only_the_bucket_owner_reads_them(
    s3: Any, bob_s3: Any, server: LiveServer, bucket: str
) -> None:
    for call in (
        bob_s3.get_bucket_request_payment,
        bob_s3.get_bucket_website,
        bob_s3.get_bucket_notification_configuration,
        bob_s3.delete_bucket_website,
        bob_s3.delete_bucket_replication,
    ):
        with pytest.raises(ClientError) as exc:
            call(Bucket=bucket)
        assert _error(exc) == (403, "AccessDenied")
    for sub in ("website", "requestPayment", "accelerate", "replication", "notification"):
        assert requests.get(f"{server.endpoint}/{bucket}?{sub}", timeout=10).status_code == 403
    # A policy may grant them, as any bucket action.
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetBucketRequestPayment",
                "Resource": f"arn:aws:s3:::{bucket}",
            }
        ]
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert bob_s3.get_bucket_request_payment(Bucket=bucket)["Payer"] == "BucketOwner"
    with pytest.raises(ClientError) as exc:
        bob_s3.get_bucket_website(Bucket=bucket)
    assert _error(exc) == (403, "AccessDenied")


@pytest.mark.parametrize(
    "body",
    [
        b"<RequestPaymentConfiguration><Payer>Nobody</Payer></RequestPaymentConfiguration>",
        b"<RequestPaymentConfiguration/>",
        b"<Other><Payer>BucketOwner</Payer></Other>",
        b"<RequestPaymentConfiguration><Payer>BucketOwner</Payer>",
    ],
)
def test_a_malformed_payer_is_refused(server: LiveServer, bucket: str, body: bytes) -> None:
    url = f"{server.endpoint}/{bucket}?requestPayment"
    headers = sign_request("PUT", url, body=body)
    resp = requests.put(url, data=body, headers=headers, timeout=10)
    assert resp.status_code == 400, resp.text
    assert "<Code>MalformedXML</Code>" in resp.text


@pytest.mark.skipif(
    not shutil.which("s3cmd") and not os.environ.get("S3TORRENT_REQUIRE_ENGINES"),
    reason="s3cmd is not installed (scripts/test.sh installs it and requires it)",
)
def test_s3cmd_info_and_ws_info(server: LiveServer, bucket: str, tmp_path: Path) -> None:
    base = s3cmd_command(server.endpoint, tmp_path)
    info = subprocess.run(
        [*base, "info", f"s3://{bucket}"], capture_output=True, text=True, timeout=60
    )
    assert info.returncode == 0, info.stderr
    assert "BucketOwner" in info.stdout
    ws = subprocess.run(
        [*base, "ws-info", f"s3://{bucket}"], capture_output=True, text=True, timeout=60
    )
    assert ws.returncode == 0, ws.stderr
    assert "Unable to receive website configuration" in ws.stdout + ws.stderr


@pytest.mark.skipif(
    not shutil.which("aws") and not os.environ.get("S3TORRENT_REQUIRE_ENGINES"),
    reason="the AWS CLI is not installed",
)
def test_aws_cli_reads_the_payer(server: LiveServer, bucket: str) -> None:
    res = aws_cli(server.endpoint, "s3api", "get-bucket-request-payment", "--bucket", bucket)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"Payer": "BucketOwner"}
