"""Condition keys S3 fills from how a request was signed and from what only its body says,
as the bucket policies of S3's own examples test them: a presigned URL refused, an old
signature refused, SigV2 refused, an unsigned payload refused, SSE-C required, retention
capped. Until 2026-12-07 these keys were accepted in a policy and never filled, so each
Deny below denied nothing (or, negated, everything)."""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from s3torrent.access import ACCOUNT_ID
from tests.conftest import (
    LiveServer,
    UserKeys,
    add_user,
    make_client,
    sign_request,
    start_server,
)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path_factory.mktemp("sigkeys"), env={"S3TORRENT_ENCRYPTION__SSE_C_OVER_HTTP": "true"}
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def carol(srv: LiveServer) -> UserKeys:
    return add_user(srv, "carol")


@pytest.fixture(scope="module")
def root(srv: LiveServer) -> Any:
    return make_client(srv.endpoint)


@pytest.fixture(scope="module")
def carol_s3(srv: LiveServer, carol: UserKeys) -> Any:
    return make_client(srv.endpoint, carol.access_key, carol.secret_key)


_n = [0]


@pytest.fixture
def bucket(root: Any) -> str:
    _n[0] += 1
    name = f"sigkeys-{_n[0]}"
    root.create_bucket(Bucket=name)
    return name


def _allow_and_deny(
    root: Any,
    bucket: str,
    carol: UserKeys,
    actions: list[str],
    condition: dict[str, Any],
    more_denies: tuple[tuple[list[str], dict[str, Any]], ...] = (),
) -> None:
    """Carol may do `actions` in the bucket, but not when `condition` holds (nor each of
    `more_denies`' actions when its condition holds)."""
    principal = {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/{carol.name}"}
    resource = [f"arn:aws:s3:::{bucket}/*"]
    allowed = actions + [a for denied, _ in more_denies for a in denied]
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Principal": principal, "Action": allowed, "Resource": resource}
    ]
    for denied, cond in ((actions, condition), *more_denies):
        statements.append(
            {
                "Effect": "Deny",
                "Principal": principal,
                "Action": denied,
                "Resource": resource,
                "Condition": cond,
            }
        )
    policy = {"Version": "2012-10-17", "Statement": statements}
    root.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_presigned_urls_refused_by_auth_type(
    root: Any, carol_s3: Any, carol: UserKeys, bucket: str
) -> None:
    root.put_object(Bucket=bucket, Key="k", Body=b"v")
    _allow_and_deny(
        root,
        bucket,
        carol,
        ["s3:GetObject"],
        {"StringEquals": {"s3:authType": "REST-QUERY-STRING"}},
    )
    assert carol_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    url = carol_s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    assert requests.get(url, timeout=10).status_code == 403
    # The memo of verified presigned URLs answers the same the second time.
    assert requests.get(url, timeout=10).status_code == 403


def test_old_signatures_refused_by_signature_age(
    srv: LiveServer, root: Any, carol_s3: Any, carol: UserKeys, bucket: str
) -> None:
    root.put_object(Bucket=bucket, Key="k", Body=b"v")
    _allow_and_deny(
        root, bucket, carol, ["s3:GetObject"], {"NumericGreaterThan": {"s3:signatureAge": "2500"}}
    )
    # SigV4 (a SigV2 URL's age is always 0, as S3 documents).
    v4 = make_client(srv.endpoint, carol.access_key, carol.secret_key, signature_version="s3v4")
    url = v4.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=600
    )
    assert requests.get(url, timeout=10).status_code == 200
    time.sleep(3)
    # The same URL, still inside its ten minutes, is now older than the policy allows.
    assert requests.get(url, timeout=10).status_code == 403
    # A header signature is made afresh for each request.
    assert carol_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_sigv2_refused_by_signature_version(
    srv: LiveServer, root: Any, carol: UserKeys, bucket: str
) -> None:
    root.put_object(Bucket=bucket, Key="k", Body=b"v")
    _allow_and_deny(
        root,
        bucket,
        carol,
        ["s3:GetObject"],
        {"StringNotEquals": {"s3:signatureversion": "AWS4-HMAC-SHA256"}},
    )
    v4 = make_client(srv.endpoint, carol.access_key, carol.secret_key)
    v2 = make_client(srv.endpoint, carol.access_key, carol.secret_key, signature_version="s3")
    assert v4.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    with pytest.raises(ClientError) as exc:
        v2.get_object(Bucket=bucket, Key="k")
    assert _code(exc) == "AccessDenied"


def _raw_put(srv: LiveServer, bucket: str, key: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.request("PUT", f"/{bucket}/{key}", body=b"data", headers=headers)
    status = conn.getresponse().status
    conn.close()
    return status


def test_unsigned_payloads_refused_by_content_sha256(
    srv: LiveServer, root: Any, carol: UserKeys, bucket: str
) -> None:
    _allow_and_deny(
        root,
        bucket,
        carol,
        ["s3:PutObject"],
        {"StringEquals": {"s3:x-amz-content-sha256": "UNSIGNED-PAYLOAD"}},
    )
    url = f"{srv.endpoint}/{bucket}/"
    keys = {"ak": carol.access_key, "sk": carol.secret_key}
    unsigned = sign_request("PUT", url + "u", body=b"data", payload_hash="UNSIGNED-PAYLOAD", **keys)
    assert _raw_put(srv, bucket, "u", unsigned) == 403
    signed = sign_request("PUT", url + "s", body=b"data", **keys)
    assert _raw_put(srv, bucket, "s", signed) == 200


def test_sse_c_required_and_its_algorithm_tested(
    root: Any, carol_s3: Any, carol: UserKeys, bucket: str
) -> None:
    # s3-tests' "SSE-C enforced" policy: a Deny for uploads that do not name the algorithm.
    _allow_and_deny(
        root,
        bucket,
        carol,
        ["s3:PutObject"],
        {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": "true"}},
    )
    key = os.urandom(32)
    sse_c = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    carol_s3.put_object(Bucket=bucket, Key="c", Body=b"secret", **sse_c)
    assert carol_s3.get_object(Bucket=bucket, Key="c", **sse_c)["Body"].read() == b"secret"
    with pytest.raises(ClientError) as exc:
        carol_s3.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert _code(exc) == "AccessDenied"


def _locked_bucket(root: Any, name: str) -> str:
    root.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def _retention(days: int) -> dict[str, Any]:
    until = datetime.now(UTC) + timedelta(days=days)
    return {"Mode": "GOVERNANCE", "RetainUntilDate": until}


def test_retention_capped_by_remaining_days_from_the_body_and_the_headers(
    root: Any, carol_s3: Any, carol: UserKeys
) -> None:
    bucket = _locked_bucket(root, "sigkeys-locked")
    _allow_and_deny(
        root,
        bucket,
        carol,
        ["s3:PutObject", "s3:PutObjectRetention"],
        {"NumericGreaterThan": {"s3:object-lock-remaining-retention-days": "30"}},
        more_denies=(
            (["s3:PutObjectLegalHold"], {"StringEquals": {"s3:object-lock-legal-hold": "ON"}}),
        ),
    )
    # The bucket owner's object: a bucket policy reaches only those (ObjectWriter ownership).
    root.put_object(Bucket=bucket, Key="k", Body=b"v")
    carol_s3.put_object_retention(Bucket=bucket, Key="k", Retention=_retention(10))
    with pytest.raises(ClientError) as exc:
        carol_s3.put_object_retention(Bucket=bucket, Key="k", Retention=_retention(60))
    assert _code(exc) == "AccessDenied"
    got = root.get_object_retention(Bucket=bucket, Key="k")["Retention"]
    assert got["RetainUntilDate"] < datetime.now(UTC) + timedelta(days=11)
    # The same cap on a PutObject's lock headers.
    until = datetime.now(UTC) + timedelta(days=60)
    with pytest.raises(ClientError) as exc:
        carol_s3.put_object(
            Bucket=bucket,
            Key="long",
            Body=b"v",
            ObjectLockMode="GOVERNANCE",
            ObjectLockRetainUntilDate=until,
        )
    assert _code(exc) == "AccessDenied"
    # A legal hold from the body: OFF passes, ON is denied.
    carol_s3.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "OFF"})
    with pytest.raises(ClientError) as exc:
        carol_s3.put_object_legal_hold(Bucket=bucket, Key="k", LegalHold={"Status": "ON"})
    assert _code(exc) == "AccessDenied"
    assert root.get_object_legal_hold(Bucket=bucket, Key="k")["LegalHold"]["Status"] == "OFF"


def test_form_uploads_refused_by_auth_type(
    srv: LiveServer, root: Any, carol_s3: Any, carol: UserKeys, bucket: str
) -> None:
    _allow_and_deny(
        root, bucket, carol, ["s3:PutObject"], {"StringEquals": {"s3:authType": "POST"}}
    )
    form = carol_s3.generate_presigned_post(bucket, "form", ExpiresIn=300)
    r = requests.post(form["url"], data=form["fields"], files={"file": ("f", b"x")}, timeout=10)
    assert r.status_code == 403, r.text
    carol_s3.put_object(Bucket=bucket, Key="put", Body=b"x")
    keys = [o["Key"] for o in root.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["put"]


def test_tls_version_is_refused_in_a_policy(root: Any, bucket: str) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}},
            }
        ],
    }
    with pytest.raises(ClientError) as exc:
        root.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert _code(exc) == "MalformedPolicy"
    assert "aws:SecureTransport" in exc.value.response["Error"]["Message"]


def test_resource_account_is_the_account(
    root: Any, carol_s3: Any, carol: UserKeys, bucket: str
) -> None:
    root.put_object(Bucket=bucket, Key="k", Body=b"v")
    _allow_and_deny(
        root,
        bucket,
        carol,
        ["s3:GetObject"],
        {"StringNotEquals": {"s3:ResourceAccount": ACCOUNT_ID}},
    )
    assert carol_s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
