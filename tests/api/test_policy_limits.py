"""A bucket policy cannot stall the server: adversarial wildcards, deep nesting, odd principals."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import LiveServer

QUESTION_RUN = "*" + "?" * 7999 + "#*"
UA_16K = "a" * 16_000


def _statement(bucket: str, effect: str, **extra: Any) -> dict[str, Any]:
    return {
        "Effect": effect,
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
        **extra,
    }


def _user_agent_policy(bucket: str, *patterns: str) -> str:
    """Public reads, except for User-Agents matching `patterns`."""
    deny = _statement(
        bucket, "Deny", Sid="NoBots", Condition={"StringLike": {"aws:UserAgent": list(patterns)}}
    )
    allow = _statement(bucket, "Allow", Sid="Read")
    return json.dumps({"Version": "2012-10-17", "Statement": [allow, deny]})


def _put_refused(s3: Any, bucket: str, text: str) -> ClientError:
    with pytest.raises(ClientError) as info:
        s3.put_bucket_policy(Bucket=bucket, Policy=text)
    return info.value


def test_adversarial_wildcard_answers_quickly_and_health_stays_responsive(
    s3: Any, bucket: str, server: LiveServer
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"hello")
    s3.put_bucket_policy(Bucket=bucket, Policy=_user_agent_policy(bucket, QUESTION_RUN))
    url = f"{server.endpoint}/{bucket}/k"

    get_seconds: list[float] = []
    statuses: list[int] = []

    def anonymous_gets() -> None:
        for _ in range(5):
            started = time.perf_counter()
            response = requests.get(url, headers={"User-Agent": UA_16K}, timeout=30)
            get_seconds.append(time.perf_counter() - started)
            statuses.append(response.status_code)

    worker = threading.Thread(target=anonymous_gets)
    worker.start()
    health_seconds: list[float] = []
    while worker.is_alive() or not health_seconds:
        started = time.perf_counter()
        assert requests.get(f"{server.endpoint}/_health", timeout=30).status_code == 200
        health_seconds.append(time.perf_counter() - started)
    worker.join()

    assert statuses == [200] * 5
    assert max(get_seconds) < 2.0, get_seconds
    assert max(health_seconds) < 1.0, health_seconds
    # The condition is evaluated, not skipped: a matching User-Agent is denied.
    denied = requests.get(url, headers={"User-Agent": UA_16K[:-1] + "#"}, timeout=30)
    assert denied.status_code == 403


@pytest.mark.parametrize("depth", [5000, 100])
def test_deeply_nested_policy_is_malformed_not_a_server_error(
    s3: Any, bucket: str, depth: int
) -> None:
    text = '{"Version": "2012-10-17", "Statement": ' + "[" * depth + "]" * depth + "}"
    error = _put_refused(s3, bucket, text)
    assert error.response["Error"]["Code"] == "MalformedPolicy"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_policy_too_costly_to_evaluate_is_refused(s3: Any, bucket: str) -> None:
    error = _put_refused(s3, bucket, _user_agent_policy(bucket, "*" + "a?" * 4000 + "b*"))
    assert error.response["Error"]["Code"] == "MalformedPolicy"
    assert "too costly" in error.response["Error"]["Message"]


def test_policy_over_20_kb_is_refused(s3: Any, bucket: str) -> None:
    error = _put_refused(s3, bucket, _user_agent_policy(bucket, "x" * 21_000))
    assert error.response["Error"]["Code"] == "MalformedPolicy"


@pytest.mark.parametrize(
    "principal",
    ["arn:aws:iam::000000000000:user/*", "123456789012", "arn:aws:iam::123456789012:root"],
)
def test_deny_to_a_principal_that_cannot_match_is_refused(
    s3: Any, bucket: str, principal: str
) -> None:
    deny = {**_statement(bucket, "Deny", Sid="NoOne"), "Principal": {"AWS": principal}}
    text = json.dumps({"Version": "2012-10-17", "Statement": [deny]})
    error = _put_refused(s3, bucket, text)
    assert error.response["Error"]["Code"] == "MalformedPolicy"
    assert "Invalid principal in policy" in error.response["Error"]["Message"]
    with pytest.raises(ClientError) as info:
        s3.get_bucket_policy(Bucket=bucket)
    assert info.value.response["Error"]["Code"] == "NoSuchBucketPolicy"
