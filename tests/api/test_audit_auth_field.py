"""Audit of request authentication (session 49): x-amz-* headers carried in the query of a
header-signed or anonymous request, and an SSE-C completion's retry."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest
import requests
from botocore.exceptions import ClientError

from tests.api.test_audit_presigned_headers import _customer_query, _public_read
from tests.api.test_encryption import SSE_C_HTTP, _code, _ssec
from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, make_client, start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("audit-auth"), env=SSE_C_HTTP)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def as3(srv: LiveServer) -> Any:
    return make_client(srv.endpoint)


_n = [0]


@pytest.fixture
def abucket(as3: Any) -> str:
    _n[0] += 1
    name = f"audit-auth-{os.getpid()}-{_n[0]}"
    as3.create_bucket(Bucket=name)
    return name


def _signed(
    srv: LiveServer,
    method: str,
    path: str,
    query: dict[str, str],
    body: bytes = b"",
    v2: bool = False,
) -> requests.Response:
    """`method` on `path` with `query`, signed with an Authorization header (SigV4 signs the
    whole query; SigV2 none of its x-amz-* parameters)."""
    url = f"{srv.endpoint}{path}"
    if query:
        url += "?" + urlencode(query, quote_via=quote)
    req = botocore.awsrequest.AWSRequest(method, url, data=body)
    creds = botocore.credentials.Credentials(ROOT_AK, ROOT_SK)
    if v2:
        botocore.auth.HmacV1Auth(creds).add_auth(req)
    else:
        botocore.auth.S3SigV4Auth(creds, "s3", "us-east-1").add_auth(req)
    prepared = req.prepare()
    return requests.request(
        method, prepared.url, data=body, headers=dict(prepared.headers), timeout=30
    )


def test_a_header_signed_sigv4_request_obeys_the_headers_its_signed_query_carries(
    srv: LiveServer, as3: Any, abucket: str
) -> None:
    """A PUT signed with an Authorization header (SigV4 signs its whole query) whose query
    asks for public-read, metadata and SSE-C had those ignored: the object was stored
    private, plaintext, without the metadata, and 200 answered. They are obeyed now, as a
    presigned URL's are."""
    key = os.urandom(32)
    query = {"x-amz-acl": "public-read", "x-amz-meta-colour": "blue", **_customer_query(key)}
    r = _signed(srv, "PUT", f"/{abucket}/k", query, b"body")
    assert r.status_code == 200, r.text
    assert r.headers.get("x-amz-server-side-encryption-customer-algorithm") == "AES256"
    with pytest.raises(ClientError) as exc:
        as3.head_object(Bucket=abucket, Key="k")  # sealed: the key is needed
    assert _code(exc)[1] == 400
    head = as3.head_object(Bucket=abucket, Key="k", **_ssec(key))
    assert head["Metadata"] == {"colour": "blue"}
    assert _public_read(as3, abucket, "k")
    # The customer key in a signed query reads it back too.
    r = _signed(srv, "GET", f"/{abucket}/k", _customer_query(key))
    assert r.status_code == 200 and r.content == b"body", r.text


@pytest.mark.parametrize("how", ["sigv2-header", "anonymous"])
def test_an_unsigned_header_in_the_query_is_refused_not_ignored(
    srv: LiveServer, as3: Any, abucket: str, how: str
) -> None:
    """A SigV2 Authorization header signs none of the query's x-amz-* parameters and an
    anonymous request signs nothing: a header there had been ignored (the PUT stored the
    object private and plaintext, the GET answered as if it were not there). It is 403
    AccessDenied naming it, as an unsigned x-amz-* header is, and nothing is stored."""
    as3.put_bucket_policy(
        Bucket=abucket,
        Policy=(
            '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
            f'"Action":["s3:GetObject","s3:PutObject"],"Resource":"arn:aws:s3:::{abucket}/*"}}]}}'
        ),
    )
    as3.put_object(Bucket=abucket, Key="open", Body=b"open")
    query = {"x-amz-acl": "public-read", "x-amz-meta-colour": "blue"}
    path = f"/{abucket}/new"
    if how == "anonymous":
        url = f"{srv.endpoint}{path}?{urlencode(query)}"
        put = requests.put(url, data=b"x", timeout=30)
        get = requests.get(
            f"{srv.endpoint}/{abucket}/open?x-amz-request-payer=requester", timeout=30
        )
        # Without the parameter the same anonymous requests are allowed.
        assert requests.get(f"{srv.endpoint}/{abucket}/open", timeout=30).status_code == 200
    else:
        put = _signed(srv, "PUT", path, query, b"x", v2=True)
        get = _signed(srv, "GET", f"/{abucket}/open", {"x-amz-request-payer": "requester"}, v2=True)
        assert _signed(srv, "GET", f"/{abucket}/open", {}, v2=True).status_code == 200
    assert put.status_code == 403 and "<Code>AccessDenied</Code>" in put.text, put.text
    assert "<HeadersNotSigned>x-amz-acl, x-amz-meta-colour</HeadersNotSigned>" in put.text
    assert get.status_code == 403 and "x-amz-request-payer" in get.text, get.text
    with pytest.raises(ClientError) as exc:
        as3.head_object(Bucket=abucket, Key="new")
    assert _code(exc)[1] == 404


def _sse_answer(response: dict[str, Any]) -> dict[str, Any]:
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    sse = {k: v for k, v in headers.items() if k.startswith("x-amz-server-side-encryption")}
    keep = ("ETag", "ChecksumSHA256", "ChecksumType", "VersionId")
    return {**{k: response.get(k) for k in keep}, **sse}


@pytest.mark.parametrize("versioned", [False, True])
def test_a_retried_sse_c_completion_answers_its_checksum_as_the_first_did(
    as3: Any, abucket: str, versioned: bool
) -> None:
    """CompleteMultipartUpload of an SSE-C upload with a SHA-256, retried (its answer lost):
    the retry was answered from the first completion's receipt without the object's checksum
    (kept out, as it was in the clear) nor the SSE-C headers. The receipt keeps the checksum
    sealed under the customer's key, so the retry with the key answers as the first did; with
    another key it is refused as the first would have been, and without one it tells nothing
    of the checksum."""
    if versioned:
        as3.put_bucket_versioning(Bucket=abucket, VersioningConfiguration={"Status": "Enabled"})
    key = os.urandom(32)
    c = _ssec(key)
    up = as3.create_multipart_upload(Bucket=abucket, Key="mp", ChecksumAlgorithm="SHA256", **c)
    part = as3.upload_part(
        Bucket=abucket, Key="mp", UploadId=up["UploadId"], PartNumber=1, Body=b"secret part",
        ChecksumAlgorithm="SHA256", **c,
    )  # fmt: skip
    parts = {
        "Parts": [{"PartNumber": 1, "ETag": part["ETag"], "ChecksumSHA256": part["ChecksumSHA256"]}]
    }

    def complete(**extra: Any) -> dict[str, Any]:
        return as3.complete_multipart_upload(  # type: ignore[no-any-return]
            Bucket=abucket, Key="mp", UploadId=up["UploadId"], MultipartUpload=parts, **extra
        )

    first = complete(**c)
    shape = _sse_answer(first)
    assert shape["ChecksumSHA256"] and shape["ChecksumType"] == "COMPOSITE"
    assert shape["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
    assert (shape["VersionId"] is not None) == versioned
    assert _sse_answer(complete(**c)) == shape
    with pytest.raises(ClientError) as exc:
        complete(**_ssec(os.urandom(32)))
    assert _code(exc) == ("InvalidArgument", 400)
    keyless = complete()
    assert keyless["ETag"] == first["ETag"] and "ChecksumSHA256" not in keyless


class _FixedPayload(botocore.auth.S3SigV4Auth):
    """SigV4 header signing with the x-amz-content-sha256 the test names."""

    def __init__(self, payload: str) -> None:
        creds = botocore.credentials.Credentials(ROOT_AK, ROOT_SK)
        super().__init__(creds, "s3", "us-east-1")
        self._payload = payload

    def payload(self, request: Any) -> str:
        return self._payload


@pytest.mark.parametrize("declared", ["1_0", "+10", "0x0a"])
def test_a_decoded_length_that_is_not_a_number_is_refused(
    srv: LiveServer, as3: Any, abucket: str, declared: str
) -> None:
    """x-amz-decoded-content-length read with Python's int(): "1_0" and "+10" were taken as
    10 and the upload stored. It is a count of bytes as S3 reads it, ASCII digits only:
    anything else is 400 InvalidArgument."""
    path = f"/{abucket}/chunked"
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": declared}
    req = botocore.awsrequest.AWSRequest("PUT", f"{srv.endpoint}{path}", headers=headers)
    _FixedPayload("STREAMING-UNSIGNED-PAYLOAD-TRAILER").add_auth(req)
    body = b"a\r\n0123456789\r\n0\r\n\r\n"
    r = requests.put(f"{srv.endpoint}{path}", data=body, headers=dict(req.headers), timeout=30)
    assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text, r.text
    with pytest.raises(ClientError) as exc:
        as3.head_object(Bucket=abucket, Key="chunked")
    assert _code(exc)[1] == 404
    # As a number, the same upload is stored.
    headers["x-amz-decoded-content-length"] = "10"
    req = botocore.awsrequest.AWSRequest("PUT", f"{srv.endpoint}{path}", headers=headers)
    _FixedPayload("STREAMING-UNSIGNED-PAYLOAD-TRAILER").add_auth(req)
    r = requests.put(f"{srv.endpoint}{path}", data=body, headers=dict(req.headers), timeout=30)
    assert r.status_code == 200, r.text
    assert as3.get_object(Bucket=abucket, Key="chunked")["Body"].read() == b"0123456789"


def test_a_request_naming_a_session_token_is_refused_not_ignored(
    srv: LiveServer, as3: Any, abucket: str
) -> None:
    """x-amz-security-token names the temporary credentials (and their session policy) a
    request is signed with. There are none here: signed with a user's key and a token
    (header-signed, presigned, a form) or sent anonymously with one, the token had been
    ignored and the request served under the key's full rights. It is 400 InvalidToken, as
    S3 answers a token it does not know."""
    as3.put_object(Bucket=abucket, Key="k", Body=b"k")
    as3.put_object_acl(Bucket=abucket, Key="k", ACL="public-read")
    creds = botocore.credentials.Credentials(ROOT_AK, ROOT_SK, "some-session-token")
    url = f"{srv.endpoint}/{abucket}/k"
    header = botocore.awsrequest.AWSRequest("GET", url)
    botocore.auth.S3SigV4Auth(creds, "s3", "us-east-1").add_auth(header)
    assert header.headers["X-Amz-Security-Token"] == "some-session-token"
    query = botocore.awsrequest.AWSRequest("GET", url)
    botocore.auth.S3SigV4QueryAuth(creds, "s3", "us-east-1", expires=300).add_auth(query)
    assert "X-Amz-Security-Token=" in query.url
    tokened = boto3.client(
        "s3", endpoint_url=srv.endpoint, region_name="us-east-1", aws_access_key_id=ROOT_AK,
        aws_secret_access_key=ROOT_SK, aws_session_token="some-session-token",
    )  # fmt: skip
    post = tokened.generate_presigned_post(abucket, "form")
    assert "x-amz-security-token" in post["fields"]
    answers = [
        requests.get(url, headers=dict(header.headers), timeout=30),
        requests.get(query.url, timeout=30),
        requests.get(url, headers={"x-amz-security-token": "t"}, timeout=30),
        requests.post(post["url"], data=post["fields"], files={"file": b"x"}, timeout=30),
    ]
    for r in answers:
        assert r.status_code == 400 and "<Code>InvalidToken</Code>" in r.text, r.text
    assert requests.get(url, timeout=30).status_code == 200
    with pytest.raises(ClientError) as exc:
        as3.head_object(Bucket=abucket, Key="form")
    assert _code(exc)[1] == 404
