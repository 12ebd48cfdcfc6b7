"""Audit of the policy language on a live server: PutBucketPolicy refuses what IAM's grammar
refuses, and what it accepts is enforced as IAM would enforce it."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import LiveServer


def _anon_get(server: LiveServer, bucket: str, key: str) -> int:
    return requests.get(f"{server.endpoint}/{bucket}/{key}", timeout=10).status_code


def test_a_policy_with_a_duplicate_name_is_refused(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    """Public read with a Deny on secret/* whose statement names Resource twice: before, the
    second Resource silently replaced the first and anyone read secret/."""
    s3.put_object(Bucket=bucket, Key="secret/k", Body=b"s")
    text = (
        '{"Version": "2012-10-17", "Statement": ['
        '{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",'
        f' "Resource": "arn:aws:s3:::{bucket}/*"}},'
        '{"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject",'
        f' "Resource": "arn:aws:s3:::{bucket}/secret/*",'
        f' "Resource": "arn:aws:s3:::{bucket}/tmp/*"}}]}}'
    )
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_policy(Bucket=bucket, Policy=text)
    assert exc.value.response["Error"]["Code"] == "MalformedPolicy"
    assert _anon_get(server, bucket, "secret/k") == 403
