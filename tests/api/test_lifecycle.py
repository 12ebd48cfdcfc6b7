"""Bucket lifecycle configuration through boto3 and the AWS CLI: round-trips, S3's
validation errors, and the x-amz-expiration header on PUT, GET, HEAD, copy and multipart."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.api.test_cli_tools import aws as cli_aws
from tests.conftest import LiveServer


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    err = exc.value.response["Error"]
    return err["Code"], err.get("Message", "")


FULL_RULES: list[dict[str, Any]] = [
    {
        "ID": "logs",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 30},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
    },
    {
        "ID": "tagged-big",
        "Filter": {
            "And": {
                "Prefix": "data/",
                "Tags": [{"Key": "tier", "Value": "tmp"}, {"Key": "team", "Value": "a"}],
                "ObjectSizeGreaterThan": 100,
                "ObjectSizeLessThan": 10_000,
            }
        },
        "Status": "Disabled",
        "Expiration": {"Date": datetime(2031, 1, 1, tzinfo=UTC)},
    },
    {
        "ID": "versions",
        "Filter": {"Tag": {"Key": "k", "Value": "v"}},
        "Status": "Enabled",
        "NoncurrentVersionExpiration": {"NoncurrentDays": 10, "NewerNoncurrentVersions": 3},
    },
    {
        "ID": "markers",
        "Filter": {"ObjectSizeGreaterThan": 0},
        "Status": "Enabled",
        "Expiration": {"ExpiredObjectDeleteMarker": True},
    },
    {"ID": "legacy", "Prefix": "old/", "Status": "Enabled", "Expiration": {"Days": 1}},
]


def test_configuration_round_trips_with_boto3(s3: Any, bucket: str) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": FULL_RULES}
    )
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert got == FULL_RULES


def test_get_without_configuration_is_no_such_lifecycle_configuration(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_of(exc)[0] == "NoSuchLifecycleConfiguration"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_delete_removes_the_configuration(s3: Any, bucket: str) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": FULL_RULES[:1]}
    )
    s3.delete_bucket_lifecycle(Bucket=bucket)
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_of(exc)[0] == "NoSuchLifecycleConfiguration"


def _rule(**kw: Any) -> dict[str, Any]:
    return {"ID": "r", "Filter": {"Prefix": ""}, "Status": "Enabled", **kw}


@pytest.mark.parametrize(
    ("rules", "code", "message"),
    [
        ([_rule(Expiration={"Days": 0})], "InvalidArgument", "'Days' for Expiration action"),
        ([_rule(Expiration={"Days": -3})], "InvalidArgument", "positive integer"),
        (
            [_rule(Expiration={"Date": datetime(2030, 1, 1, 12, tzinfo=UTC)})],
            "InvalidArgument",
            "'Date' must be at midnight GMT",
        ),
        (
            [_rule(NoncurrentVersionExpiration={"NoncurrentDays": 0})],
            "InvalidArgument",
            "NoncurrentDays",
        ),
        (
            [_rule(AbortIncompleteMultipartUpload={"DaysAfterInitiation": 0})],
            "InvalidArgument",
            "DaysAfterInitiation",
        ),
        (
            [_rule(Expiration={"Days": 1}), _rule(Expiration={"Days": 2})],
            "InvalidArgument",
            "Rule ID must be unique",
        ),
        ([_rule(ID="x" * 256, Expiration={"Days": 1})], "InvalidArgument", "ID length"),
        ([_rule()], "InvalidRequest", "At least one action"),
        (
            [
                {
                    "ID": "r",
                    "Filter": {"Tag": {"Key": "a", "Value": "b"}},
                    "Status": "Enabled",
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                }
            ],
            "InvalidRequest",
            "AbortIncompleteMultipartUpload cannot be specified with Tags",
        ),
        (
            [
                {
                    "ID": "r",
                    "Filter": {"And": {"ObjectSizeGreaterThan": 500, "ObjectSizeLessThan": 100}},
                    "Status": "Enabled",
                    "Expiration": {"Days": 1},
                }
            ],
            "InvalidRequest",
            "ObjectSizeGreaterThan must be less than ObjectSizeLessThan",
        ),
        (
            [_rule(ID=f"r{i}", Expiration={"Days": 1}) for i in range(1001)],
            "InvalidRequest",
            "1000",
        ),
        (
            [_rule(Expiration={"Days": 1, "ExpiredObjectDeleteMarker": True})],
            "MalformedXML",
            "",
        ),
        (
            [_rule(Transitions=[{"Days": 30, "StorageClass": "GLACIER"}])],
            "NotImplemented",
            "one storage class",
        ),
        (
            [
                _rule(
                    NoncurrentVersionTransitions=[{"NoncurrentDays": 3, "StorageClass": "GLACIER"}]
                )
            ],
            "NotImplemented",
            "one storage class",
        ),
    ],
)
def test_invalid_configurations_get_s3s_errors(
    s3: Any, bucket: str, rules: list[dict[str, Any]], code: str, message: str
) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": rules}
        )
    got_code, got_message = error_of(exc)
    assert got_code == code
    assert message in got_message
    # Nothing was stored.
    with pytest.raises(ClientError):
        s3.get_bucket_lifecycle_configuration(Bucket=bucket)


def test_malformed_bodies_are_malformed_xml(server: LiveServer, bucket: str) -> None:
    import urllib.error
    import urllib.request

    from tests.conftest import sign_request

    url = f"{server.endpoint}/{bucket}?lifecycle"
    bodies = [
        b"<LifecycleConfiguration><Rule><ID>a</ID><Status>On</Status>"
        b"<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>",
        b"<LifecycleConfiguration><Rule><ID>a</ID><Status>Enabled</Status><Filter>"
        b"<Prefix>a</Prefix><ObjectSizeLessThan>5</ObjectSizeLessThan></Filter>"
        b"<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>",
        b"<LifecycleConfiguration><Rule><ID>a</ID><Status>Enabled</Status>"
        b"<Expiration><Days>one</Days></Expiration></Rule></LifecycleConfiguration>",
        b"<LifecycleConfiguration></LifecycleConfiguration>",
        b"<LifecycleConfiguration><Rule>",
    ]
    for body in bodies:
        md5 = {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()}
        req = urllib.request.Request(
            url, data=body, method="PUT", headers=sign_request("PUT", url, md5, body=body)
        )
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(req, timeout=10)
        assert exc.value.code == 400, body
        assert b"<Code>MalformedXML</Code>" in exc.value.read(), body


def test_put_needs_content_md5_or_a_checksum(server: LiveServer, bucket: str) -> None:
    """As S3 (its API model marks PutBucketLifecycleConfiguration's checksum required):
    without Content-MD5 or an x-amz-checksum-* header the configuration is refused and
    nothing is stored; with either it is taken."""
    from tests.conftest import sign_request

    url = f"{server.endpoint}/{bucket}?lifecycle"
    body = (
        b"<LifecycleConfiguration><Rule><ID>a</ID><Filter><Prefix>x/</Prefix></Filter>"
        b"<Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"
        b"</LifecycleConfiguration>"
    )
    r = requests.put(url, data=body, headers=sign_request("PUT", url, body=body), timeout=10)
    assert r.status_code == 400, r.text
    assert "<Code>InvalidRequest</Code>" in r.text
    assert "Missing required header for this request: Content-MD5" in r.text
    get = requests.get(url, headers=sign_request("GET", url), timeout=10)
    assert get.status_code == 404
    for extra in (
        {"Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode()},
        {"x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(body).digest()).decode()},
    ):
        r = requests.put(
            url, data=body, headers=sign_request("PUT", url, extra, body=body), timeout=10
        )
        assert r.status_code == 200, r.text
    # A Content-MD5 that is not the body's is BadDigest, as for every request.
    wrong = {"Content-MD5": base64.b64encode(hashlib.md5(b"other").digest()).decode()}
    r = requests.put(url, data=body, headers=sign_request("PUT", url, wrong, body=body), timeout=10)
    assert "<Code>BadDigest</Code>" in r.text


def test_transition_default_minimum_object_size(s3: Any, server: LiveServer, bucket: str) -> None:
    """x-amz-transition-default-minimum-object-size: S3 answers it on PUT and on every GET
    (all_storage_classes_128K unless the PUT chose varies_by_storage_class); Terraform's
    AWS provider waits for it. A value that is neither is refused, nothing stored."""
    from tests.conftest import sign_request

    rules = {"Rules": FULL_RULES[:1]}
    put = s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules)
    assert put["TransitionDefaultMinimumObjectSize"] == "all_storage_classes_128K"
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert got["TransitionDefaultMinimumObjectSize"] == "all_storage_classes_128K"
    put = s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration=rules,
        TransitionDefaultMinimumObjectSize="varies_by_storage_class",
    )
    assert put["TransitionDefaultMinimumObjectSize"] == "varies_by_storage_class"
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert got["TransitionDefaultMinimumObjectSize"] == "varies_by_storage_class"
    assert got["Rules"] == FULL_RULES[:1]
    # A PUT without the header is back to the default.
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=rules)
    got = s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert got["TransitionDefaultMinimumObjectSize"] == "all_storage_classes_128K"
    url = f"{server.endpoint}/{bucket}?lifecycle"
    body = (
        b"<LifecycleConfiguration><Rule><ID>other</ID><Filter><Prefix>x/</Prefix></Filter>"
        b"<Status>Enabled</Status><Expiration><Days>1</Days></Expiration></Rule>"
        b"</LifecycleConfiguration>"
    )
    extra = {
        "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
        "x-amz-transition-default-minimum-object-size": "all_storage_classes_64K",
    }
    r = requests.put(url, data=body, headers=sign_request("PUT", url, extra, body=body), timeout=10)
    assert r.status_code == 400, r.text
    assert "<Code>InvalidArgument</Code>" in r.text
    assert s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]["ID"] == "logs"


def test_policy_actions_guard_the_configuration(
    s3: Any, bob_s3: Any, bob: Any, bucket: str
) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": FULL_RULES[:1]}
    )
    with pytest.raises(ClientError) as exc:
        bob_s3.get_bucket_lifecycle_configuration(Bucket=bucket)
    assert error_of(exc)[0] == "AccessDenied"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetLifecycleConfiguration",
                "Resource": f"arn:aws:s3:::{bucket}",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    assert bob_s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]["ID"] == "logs"
    with pytest.raises(ClientError) as exc:
        bob_s3.delete_bucket_lifecycle(Bucket=bucket)
    assert error_of(exc)[0] == "AccessDenied"


def test_expiration_header_on_put_get_head(s3: Any, bucket: str) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                _rule(ID="logs rule", Filter={"Prefix": "logs/"}, Expiration={"Days": 3}),
                _rule(
                    ID="sooner",
                    Filter={"And": {"Prefix": "logs/", "Tags": [{"Key": "t", "Value": "1"}]}},
                    Expiration={"Days": 1},
                ),
            ]
        },
    )
    put = s3.put_object(Bucket=bucket, Key="logs/a", Body=b"x")
    head = s3.head_object(Bucket=bucket, Key="logs/a")
    created = head["LastModified"].timestamp()
    midnight = (int(created) // 86400 + 4) * 86400
    expected_date = datetime.fromtimestamp(midnight, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    want = f'expiry-date="{expected_date}", rule-id="logs%20rule"'
    assert put["Expiration"] == want
    assert head["Expiration"] == want
    assert s3.get_object(Bucket=bucket, Key="logs/a")["Expiration"] == want
    # The earliest matching rule names the date.
    s3.put_object(Bucket=bucket, Key="logs/b", Body=b"x", Tagging="t=1")
    assert 'rule-id="sooner"' in s3.head_object(Bucket=bucket, Key="logs/b")["Expiration"]
    # No rule, no header.
    s3.put_object(Bucket=bucket, Key="other", Body=b"x")
    assert "Expiration" not in s3.head_object(Bucket=bucket, Key="other")
    # A copy and a completed multipart upload are new objects a rule may expire, as in S3.
    copied = s3.copy_object(
        Bucket=bucket, Key="logs/c", CopySource={"Bucket": bucket, "Key": "other"}
    )
    assert 'rule-id="logs%20rule"' in copied["Expiration"]
    up = s3.create_multipart_upload(Bucket=bucket, Key="logs/m")
    part = s3.upload_part(
        Bucket=bucket, Key="logs/m", UploadId=up["UploadId"], PartNumber=1, Body=b"m"
    )
    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="logs/m",
        UploadId=up["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert 'rule-id="logs%20rule"' in done["Expiration"]
    plain = s3.copy_object(
        Bucket=bucket, Key="other2", CopySource={"Bucket": bucket, "Key": "other"}
    )
    assert "Expiration" not in plain


def test_no_expiration_header_for_a_named_version(s3: Any, bucket: str) -> None:
    """x-amz-expiration tells when the Expiration action will expire the current version:
    a GET or HEAD naming a version (a noncurrent one, which that action never deletes, or
    the current one) answers without it, as S3 does."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                _rule(
                    Expiration={"Days": 3},
                    NoncurrentVersionExpiration={"NoncurrentDays": 1},
                )
            ]
        },
    )
    old = s3.put_object(Bucket=bucket, Key="k", Body=b"1")["VersionId"]
    new = s3.put_object(Bucket=bucket, Key="k", Body=b"2")["VersionId"]
    assert "Expiration" in s3.head_object(Bucket=bucket, Key="k")
    assert "Expiration" in s3.get_object(Bucket=bucket, Key="k")
    for version in (old, new):
        assert "Expiration" not in s3.head_object(Bucket=bucket, Key="k", VersionId=version)
        assert "Expiration" not in s3.get_object(Bucket=bucket, Key="k", VersionId=version)


def test_abort_date_on_create_multipart_upload_and_list_parts(s3: Any, bucket: str) -> None:
    """S3 answers CreateMultipartUpload and ListParts of an upload an
    AbortIncompleteMultipartUpload rule will abort with x-amz-abort-date (the first midnight
    UTC after initiation + DaysAfterInitiation) and x-amz-abort-rule-id."""
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                _rule(
                    ID="uploads",
                    Filter={"Prefix": "big/"},
                    AbortIncompleteMultipartUpload={"DaysAfterInitiation": 3},
                )
            ]
        },
    )
    up = s3.create_multipart_upload(Bucket=bucket, Key="big/a")
    listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    initiated = next(u for u in listed if u["UploadId"] == up["UploadId"])["Initiated"]
    midnight = (int(initiated.timestamp()) // 86400 + 4) * 86400
    assert up["AbortDate"] == datetime.fromtimestamp(midnight, UTC)
    assert up["AbortRuleId"] == "uploads"
    parts = s3.list_parts(Bucket=bucket, Key="big/a", UploadId=up["UploadId"])
    assert parts["AbortDate"] == up["AbortDate"]
    assert parts["AbortRuleId"] == "uploads"
    other = s3.create_multipart_upload(Bucket=bucket, Key="small/a")
    assert "AbortDate" not in other and "AbortRuleId" not in other
    parts = s3.list_parts(Bucket=bucket, Key="small/a", UploadId=other["UploadId"])
    assert "AbortDate" not in parts


def test_expiration_header_on_a_form_upload(s3: Any, s3v4: Any, bucket: str) -> None:
    """POST Object answers x-amz-expiration as PutObject does (S3 lists it among POST's
    response headers), whatever success_action_status asks for."""
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [_rule(ID="form rule", Filter={"Prefix": "in/"}, Expiration={"Days": 2})]
        },
    )
    for status in ("204", "201"):
        p = s3v4.generate_presigned_post(
            bucket,
            f"in/{status}",
            Fields={"success_action_status": status},
            Conditions=[{"success_action_status": status}],
        )
        r = requests.post(p["url"], data=p["fields"], files={"file": ("f", b"x")}, timeout=30)
        assert r.status_code == int(status), r.text
        head = s3.head_object(Bucket=bucket, Key=f"in/{status}")
        assert r.headers["x-amz-expiration"] == head["Expiration"]
        assert 'rule-id="form%20rule"' in head["Expiration"]
    p = s3v4.generate_presigned_post(bucket, "out", ExpiresIn=300)
    r = requests.post(p["url"], data=p["fields"], files={"file": ("f", b"x")}, timeout=30)
    assert r.status_code == 204
    assert "x-amz-expiration" not in r.headers


def test_aws_cli_round_trip_from_a_json_file(
    server: LiveServer, bucket: str, tmp_path: Path
) -> None:
    if shutil.which("aws") is None:
        pytest.skip("the AWS CLI is not installed")
    config = {
        "Rules": [
            {
                "ID": "cli",
                "Filter": {"Prefix": "tmp/"},
                "Status": "Enabled",
                "Expiration": {"Days": 2},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
            }
        ]
    }
    (tmp_path / "lc.json").write_text(json.dumps(config))

    def aws(*args: str) -> subprocess.CompletedProcess[str]:
        return cli_aws(server, tmp_path, "s3api", *args)

    put = aws(
        "put-bucket-lifecycle-configuration",
        "--bucket",
        bucket,
        "--lifecycle-configuration",
        f"file://{tmp_path / 'lc.json'}",
    )
    assert put.returncode == 0, put.stderr
    got = aws("get-bucket-lifecycle-configuration", "--bucket", bucket)
    assert got.returncode == 0, got.stderr
    # As against AWS, the output names the transition minimum size in force.
    want = {**config, "TransitionDefaultMinimumObjectSize": "all_storage_classes_128K"}
    assert json.loads(got.stdout) == want
    gone = aws("delete-bucket-lifecycle", "--bucket", bucket)
    assert gone.returncode == 0, gone.stderr
    missing = aws("get-bucket-lifecycle-configuration", "--bucket", bucket)
    assert missing.returncode != 0
    assert "NoSuchLifecycleConfiguration" in missing.stderr
