"""Bucket features that cannot be configured here read as never configured, as on S3.

Website, replication, notifications, requester pays and acceleration: their reads answer what
S3 answers for a bucket that never had them (s3cmd `info`/`ws-info` and the AWS CLI included),
deleting what does not exist succeeds, the payer can be set only to what it is, notifications
only to none, and every write that would configure one is still refused. Analytics,
inventory, metrics and Intelligent-Tiering configurations, held by id: none is listed, none
can be read or deleted (NoSuchConfiguration), none can be set. Reads are the bucket owner's,
as on S3.
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


def test_an_empty_notification_configuration_is_what_the_bucket_has(
    s3: Any, bob_s3: Any, bucket: str
) -> None:
    # How tools remove a bucket's notifications (Terraform on destroy, the CLI with `{}`).
    resp = s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    notification = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert not {k for k in notification if k != "ResponseMetadata"}
    # Still the owner's to set, as on S3; and EventBridge is a destination too.
    with pytest.raises(ClientError) as exc:
        bob_s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    assert _error(exc) == (403, "AccessDenied")
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
    assert _error(exc) == (501, "NotImplemented")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "MalformedXML"),
        (b"<NotificationConfiguration><Nonsense/></NotificationConfiguration>", "MalformedXML"),
        (b"<Other/>", "MalformedXML"),
        (b"<NotificationConfiguration>", "MalformedXML"),
        # The legacy form (PutBucketNotification) names its destination the same way.
        (
            b"<NotificationConfiguration><TopicConfiguration><Topic>arn:aws:sns:us-east-1:1:t"
            b"</Topic><Event>s3:ReducedRedundancyLostObject</Event></TopicConfiguration>"
            b"</NotificationConfiguration>",
            "NotImplemented",
        ),
    ],
)
def test_a_notification_configuration_is_read_strictly(
    server: LiveServer, bucket: str, body: bytes, code: str
) -> None:
    url = f"{server.endpoint}/{bucket}?notification"
    headers = sign_request("PUT", url, body=body)
    resp = requests.put(url, data=body, headers=headers, timeout=10)
    assert resp.status_code == (501 if code == "NotImplemented" else 400), resp.text
    assert f"<Code>{code}</Code>" in resp.text


@pytest.mark.skipif(
    not shutil.which("aws") and not os.environ.get("S3TORRENT_REQUIRE_ENGINES"),
    reason="the AWS CLI is not installed",
)
def test_aws_cli_removes_notifications(server: LiveServer, bucket: str) -> None:
    res = aws_cli(
        server.endpoint, "s3api", "put-bucket-notification-configuration", "--bucket", bucket,
        "--notification-configuration", "{}",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    res = aws_cli(
        server.endpoint, "s3api", "put-bucket-notification-configuration", "--bucket", bucket,
        "--notification-configuration",
        json.dumps({"QueueConfigurations": [
            {"QueueArn": "arn:aws:sqs:us-east-1:1:q", "Events": ["s3:ObjectCreated:*"]}
        ]}),
    )  # fmt: skip
    assert res.returncode != 0
    assert "NotImplemented" in res.stderr


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


# The configurations a bucket holds by id: (boto3's name for them, S3's sub-resource, a
# configuration to try to set, the key of the list in the List answer).
_BY_ID = [
    (
        "analytics",
        "analytics",
        {"Id": "a1", "StorageClassAnalysis": {}},
        "AnalyticsConfigurationList",
    ),
    (
        "inventory",
        "inventory",
        {
            "Id": "i1",
            "IsEnabled": True,
            "IncludedObjectVersions": "Current",
            "Schedule": {"Frequency": "Daily"},
            "Destination": {
                "S3BucketDestination": {"Bucket": "arn:aws:s3:::elsewhere", "Format": "CSV"}
            },
        },
        "InventoryConfigurationList",
    ),
    ("metrics", "metrics", {"Id": "m1"}, "MetricsConfigurationList"),
    (
        "intelligent_tiering",
        "intelligent-tiering",
        {
            "Id": "t1",
            "Status": "Enabled",
            "Tierings": [{"Days": 90, "AccessTier": "ARCHIVE_ACCESS"}],
        },
        "IntelligentTieringConfigurationList",
    ),
]


def _by_id_calls(client: Any, name: str) -> tuple[Any, Any, Any, Any]:
    """boto3's get, list, delete and put calls of one by-id configuration."""
    get = getattr(client, f"get_bucket_{name}_configuration")
    list_all = getattr(client, f"list_bucket_{name}_configurations")
    delete = getattr(client, f"delete_bucket_{name}_configuration")
    put = getattr(client, f"put_bucket_{name}_configuration")
    return get, list_all, delete, put


@pytest.mark.parametrize(("name", "sub", "config", "list_key"), _BY_ID, ids=lambda v: str(v))
def test_configurations_by_id_read_as_none(
    s3: Any, bucket: str, name: str, sub: str, config: dict[str, Any], list_key: str
) -> None:
    get, list_all, delete, put = _by_id_calls(s3, name)
    listed = list_all(Bucket=bucket)
    assert listed["IsTruncated"] is False
    assert list_key not in listed  # no configuration at all
    for call in (get, delete):
        with pytest.raises(ClientError) as exc:
            call(Bucket=bucket, Id="any")
        assert _error(exc) == (404, "NoSuchConfiguration")
    # Setting one is refused, and leaves nothing behind.
    config_key = {
        "analytics": "AnalyticsConfiguration",
        "inventory": "InventoryConfiguration",
        "metrics": "MetricsConfiguration",
        "intelligent_tiering": "IntelligentTieringConfiguration",
    }[name]
    with pytest.raises(ClientError) as exc:
        put(Bucket=bucket, Id=config["Id"], **{config_key: config})
    assert _error(exc) == (501, "NotImplemented")
    with pytest.raises(ClientError) as exc:
        get(Bucket=bucket, Id=config["Id"])
    assert _error(exc) == (404, "NoSuchConfiguration")
    assert list_key not in list_all(Bucket=bucket)


@pytest.mark.parametrize("sub", [s for _, s, _, _ in _BY_ID])
def test_configurations_by_id_refuse_what_no_list_gave(
    server: LiveServer, bucket: str, sub: str
) -> None:
    # A continuation token we never issued, and a delete that names no configuration.
    for method, query, code in (
        ("GET", f"{sub}&continuation-token=abc", "InvalidArgument"),
        ("DELETE", sub, "InvalidArgument"),
        ("DELETE", f"{sub}&id=", "InvalidArgument"),
    ):
        url = f"{server.endpoint}/{bucket}?{query}"
        resp = requests.request(method, url, headers=sign_request(method, url), timeout=10)
        assert resp.status_code == 400, (method, query, resp.text)
        assert f"<Code>{code}</Code>" in resp.text
    # The answer names the document S3 names.
    url = f"{server.endpoint}/{bucket}?{sub}"
    resp = requests.get(url, headers=sign_request("GET", url), timeout=10)
    assert resp.status_code == 200
    assert "<IsTruncated>false</IsTruncated>" in resp.text


def test_configurations_by_id_are_the_owners_unless_a_policy_grants_them(
    s3: Any, bob_s3: Any, server: LiveServer, bucket: str
) -> None:
    for name, sub, _, _ in _BY_ID:
        get, list_all, delete, _ = _by_id_calls(bob_s3, name)
        for call, kwargs in ((list_all, {}), (get, {"Id": "x"}), (delete, {"Id": "x"})):
            with pytest.raises(ClientError) as exc:
                call(Bucket=bucket, **kwargs)
            assert _error(exc) == (403, "AccessDenied"), (name, call)
        for query in (sub, f"{sub}&id=x"):
            assert (
                requests.get(f"{server.endpoint}/{bucket}?{query}", timeout=10).status_code == 403
            )
    # Reading is s3:GetMetricsConfiguration (and so on); deleting needs the Put action.
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetMetricsConfiguration",
                "Resource": f"arn:aws:s3:::{bucket}",
            }
        ]
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert bob_s3.list_bucket_metrics_configurations(Bucket=bucket)["IsTruncated"] is False
    with pytest.raises(ClientError) as exc:
        bob_s3.get_bucket_metrics_configuration(Bucket=bucket, Id="x")
    assert _error(exc) == (404, "NoSuchConfiguration")
    with pytest.raises(ClientError) as exc:
        bob_s3.delete_bucket_metrics_configuration(Bucket=bucket, Id="x")
    assert _error(exc) == (403, "AccessDenied")
    with pytest.raises(ClientError) as exc:
        bob_s3.list_bucket_inventory_configurations(Bucket=bucket)
    assert _error(exc) == (403, "AccessDenied")


@pytest.mark.skipif(
    not shutil.which("aws") and not os.environ.get("S3TORRENT_REQUIRE_ENGINES"),
    reason="the AWS CLI is not installed",
)
def test_aws_cli_lists_no_configurations(server: LiveServer, bucket: str) -> None:
    for command in (
        "list-bucket-analytics-configurations",
        "list-bucket-inventory-configurations",
        "list-bucket-metrics-configurations",
        "list-bucket-intelligent-tiering-configurations",
    ):
        res = aws_cli(server.endpoint, "s3api", command, "--bucket", bucket)
        assert res.returncode == 0, (command, res.stderr)
        assert json.loads(res.stdout) == {"IsTruncated": False}
    res = aws_cli(
        server.endpoint, "s3api", "get-bucket-metrics-configuration", "--bucket", bucket,
        "--id", "m1",
    )  # fmt: skip
    assert res.returncode != 0
    assert "NoSuchConfiguration" in res.stderr
