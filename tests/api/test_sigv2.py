"""SigV2 against the live server: boto3's default presigned URLs and HmacV1-signed requests."""

from __future__ import annotations

import base64
import hashlib
import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer


def _sigv2_client(server: LiveServer, secret: str = ROOT_SK) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ROOT_AK,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(signature_version="s3", retries={"max_attempts": 1}),
    )


def _default_presigner(server: LiveServer) -> Any:
    """boto3 with nothing configured: S3 presigned URLs come out as SigV2."""
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ROOT_AK,
        aws_secret_access_key=ROOT_SK,
        region_name="us-east-1",
    )


def _fetch(
    url: str, method: str = "GET", data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, Any]:
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers


def test_default_boto3_presigned_get_over_plain_http(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    key = "dir/sp ace+ünï~.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"hello sigv2", ContentType="text/plain")
    url = _default_presigner(server).generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": key, "ResponseContentType": "application/x-test"},
        ExpiresIn=300,
    )
    assert "AWSAccessKeyId=" in url and "Signature=" in url and "Expires=" in url
    status, body, headers = _fetch(url)
    assert status == 200, body
    assert body == b"hello sigv2"
    assert headers["Content-Type"] == "application/x-test"

    # Tampering with the URL breaks it.
    status, body, _ = _fetch(url.replace("Expires=", "Expires=1"))
    assert status == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in body
    assert b"<StringToSign>" in body


def test_default_boto3_presigned_expired_url_is_denied(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    url = _default_presigner(server).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "k"}, ExpiresIn=-10
    )
    status, body, _ = _fetch(url)
    assert status == 403
    assert b"<Code>AccessDenied</Code>" in body
    assert b"Request has expired" in body


def test_default_boto3_presigned_put(server: LiveServer, s3: Any, bucket: str) -> None:
    url = _default_presigner(server).generate_presigned_url(
        "put_object",
        Params={"Bucket": bucket, "Key": "uploaded", "ContentType": "text/plain"},
        ExpiresIn=300,
    )
    # Content-Type is signed (botocore carries it in the query too); the upload must send it.
    status, body, _ = _fetch(url, "PUT", b"via presigned sigv2 put", {"Content-Type": "text/plain"})
    assert status == 200, body
    got = s3.get_object(Bucket=bucket, Key="uploaded")
    assert got["Body"].read() == b"via presigned sigv2 put"
    assert got["ContentType"] == "text/plain"

    status, body, _ = _fetch(url, "PUT", b"other", {"Content-Type": "text/html"})
    assert status == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in body


def test_hmacv1_signed_put_get_list_and_delete(server: LiveServer, s3: Any, bucket: str) -> None:
    v2 = _sigv2_client(server)
    data = b"signed with AWS AKID:signature" * 1000
    put = v2.put_object(
        Bucket=bucket,
        Key="v2/obj ect",
        Body=data,
        ContentType="application/octet-stream",
        Metadata={"colour": "blue"},
    )
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = v2.get_object(Bucket=bucket, Key="v2/obj ect")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"colour": "blue"}
    assert v2.head_object(Bucket=bucket, Key="v2/obj ect")["ContentLength"] == len(data)
    # A bucket-level request: botocore signs "/bucket/" for the path "/bucket".
    listed = v2.list_objects(Bucket=bucket, Prefix="v2/")
    assert [o["Key"] for o in listed["Contents"]] == ["v2/obj ect"]
    assert v2.list_objects_v2(Bucket=bucket)["KeyCount"] >= 1
    # A sub-resource request (signed as "?acl").
    assert v2.get_object_acl(Bucket=bucket, Key="v2/obj ect")["Owner"]
    v2.delete_object(Bucket=bucket, Key="v2/obj ect")
    with pytest.raises(ClientError) as info:
        s3.head_object(Bucket=bucket, Key="v2/obj ect")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_hmacv1_signed_with_wrong_secret_is_rejected(server: LiveServer, bucket: str) -> None:
    v2 = _sigv2_client(server, secret="not-the-secret")
    with pytest.raises(ClientError) as info:
        v2.get_object(Bucket=bucket, Key="missing")
    assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_hmacv1_signed_put_replayed_with_a_second_content_type_is_refused(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    # SigV2 signs the Content-Type line, one value. A captured signed PUT resent with a
    # second Content-Type (text/html after the signed text/plain) passed the signature on
    # the first and stored the last: a page nobody signed. aiohttp refuses the duplicate
    # (400); the quick path, which answers small PUTs itself, must refuse it the same way.
    import http.client

    from botocore.auth import HmacV1Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key = "replayed-content-type"
    body = b"<script>alert(1)</script>"
    req = AWSRequest(
        method="PUT",
        url=f"{server.endpoint}/{bucket}/{key}",
        data=body,
        headers={
            "Content-Type": "text/plain",
            "Content-MD5": base64.b64encode(hashlib.md5(body).digest()).decode(),
        },
    )
    HmacV1Auth(Credentials(ROOT_AK, ROOT_SK)).add_auth(req)
    signed = [(k, str(v)) for k, v in req.headers.items()]
    signed += [("Host", f"127.0.0.1:{server.port}"), ("Content-Length", str(len(body)))]
    for extra in (
        [("Content-Type", "text/html"), *signed],
        [*signed, ("Content-Type", "text/html")],
    ):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.putrequest("PUT", f"/{bucket}/{key}", skip_host=True, skip_accept_encoding=True)
            for name, value in extra:
                conn.putheader(name, value)
            conn.endheaders(body)
            status = conn.getresponse().status
        finally:
            conn.close()
        assert status == 400, extra
    with pytest.raises(ClientError, match="404"):
        s3.head_object(Bucket=bucket, Key=key)
