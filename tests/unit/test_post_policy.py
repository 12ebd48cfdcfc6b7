"""POST Object's policy document: decoding, conditions, signatures (pure)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3torrent.s3 import post_policy as pp
from s3torrent.s3.errors import S3Error
from s3torrent.s3.sigv2 import sign
from s3torrent.s3.sigv4_signing import hmac_hex, signing_key

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _encode(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def _policy(*conditions: Any, expiration: str = "2026-01-02T00:00:00Z") -> pp.PostPolicy:
    return pp.decode_policy(_encode({"expiration": expiration, "conditions": list(conditions)}))


@given(st.binary(max_size=200))
def test_any_policy_field_is_a_policy_or_invalid_policy_document(raw: bytes) -> None:
    for encoded in (base64.b64encode(raw).decode(), raw.decode("latin-1")):
        try:
            pp.decode_policy(encoded)
        except S3Error as exc:
            assert exc.code == "InvalidPolicyDocument"


@given(st.recursive(st.none() | st.integers() | st.text(max_size=5), st.lists, max_leaves=8))
def test_any_condition_shape_is_handled(condition: Any) -> None:
    try:
        _policy(condition)
    except S3Error as exc:
        assert exc.code == "InvalidPolicyDocument"


def test_conditions_hold_or_name_the_failing_one() -> None:
    policy = _policy(
        {"bucket": "b"},
        ["starts-with", "$key", "u/"],
        ["starts-with", "$Content-Type", ""],
        ["eq", "$x-amz-meta-a", "1"],
        ["content-length-range", 1, 10],
    )
    fields = {"key": "u/x", "content-type": "", "x-amz-meta-a": "1", "x-ignore-me": "?"}
    pp.check_conditions(policy, {**fields, "policy": "p", "file": ""}, "b")
    assert policy.length_range == (1, 10)
    with pytest.raises(S3Error) as exc:
        pp.check_conditions(policy, fields, "other-bucket")
    assert exc.value.message == (
        'Invalid according to Policy: Policy Condition failed: ["eq", "$bucket", "b"]'
    )
    with pytest.raises(S3Error) as exc:
        pp.check_conditions(policy, {**fields, "acl": "public-read"}, "b")
    assert exc.value.message.endswith("Extra input fields: acl")
    with pytest.raises(S3Error):
        pp.check_conditions(policy, {k: v for k, v in fields.items() if k != "content-type"}, "b")


@pytest.mark.parametrize(
    "text",
    ["2026-01-02T00:00:00Z", "2026-01-02T00:00:00.000Z", "2026-01-02T00:00:00.123456789Z"],
)
def test_expiration_in_iso_8601_utc_is_read(text: str) -> None:
    assert _policy(expiration=text).expiration.isoformat().startswith("2026-01-02T00:00:00")


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-02 00:00:00.123+00:00",  # str() of a datetime, as a careless script sends
        "2026-01-02",
        "2026-01-02T00:00:00",
        "2026-01-02T00:00:00+02:00",
        "2026-13-02T00:00:00Z",
        "2026-01-02T00:00:00.Z",
        "soon",
    ],
)
def test_expiration_not_in_iso_8601_utc_is_refused(text: str) -> None:
    with pytest.raises(S3Error) as exc:
        _policy(expiration=text)
    assert "Invalid 'expiration' value" in exc.value.message


def test_expiration_and_length() -> None:
    policy = _policy(["content-length-range", 5, 6], expiration="2025-12-31T23:59:59.000Z")
    with pytest.raises(S3Error) as exc:
        pp.check_expiration(policy, NOW)
    assert exc.value.message == "Invalid according to Policy: Policy expired."
    with pytest.raises(S3Error) as exc:
        pp.check_length(policy, 4)
    assert exc.value.code == "EntityTooSmall"
    with pytest.raises(S3Error) as exc:
        pp.check_length(policy, 7)
    assert exc.value.code == "EntityTooLarge"
    pp.check_length(policy, 6)
    with pytest.raises(S3Error):
        _policy(["content-length-range", 6, 5])


def test_signatures_v4_and_v2() -> None:
    secrets = {"AK": "secret-key-000"}
    policy = _encode({"expiration": "2026-01-02T00:00:00Z", "conditions": []})
    v4 = {
        "policy": policy,
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": "AK/20260101/us-east-1/s3/aws4_request",
        "x-amz-date": "20260101T000000Z",
        "x-amz-signature": hmac_hex(signing_key("secret-key-000", "20260101", "us-east-1"), policy),
    }
    assert pp.verify_signature(v4, secrets.get, "us-east-1") == "AK"
    with pytest.raises(S3Error) as exc:
        pp.verify_signature(v4, secrets.get, "eu-west-1")
    assert exc.value.code == "InvalidArgument"
    with pytest.raises(S3Error) as exc:
        pp.verify_signature({**v4, "x-amz-signature": "0" * 64}, secrets.get, "us-east-1")
    assert exc.value.code == "SignatureDoesNotMatch"
    v2 = {"policy": policy, "awsaccesskeyid": "AK", "signature": sign("secret-key-000", policy)}
    assert pp.verify_signature(v2, secrets.get, "us-east-1") == "AK"
    with pytest.raises(S3Error) as exc:
        pp.verify_signature({**v2, "awsaccesskeyid": "NO"}, secrets.get, "us-east-1")
    assert exc.value.code == "InvalidAccessKeyId"
