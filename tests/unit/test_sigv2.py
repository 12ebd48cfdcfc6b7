"""SigV2 verification against requests signed by botocore itself, plus AWS's published examples."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from unittest import mock
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.s3.errors import S3Error
from s3torrent.s3.sigv2 import (
    canonical_amz_headers,
    canonical_resource,
    is_sigv2,
    sign,
    verify_request,
)
from s3torrent.s3.sigv4 import VerifiedAuth

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
HOST = "s3.example.test:9000"
NOW = datetime(2013, 5, 24, 0, 0, 0, tzinfo=UTC)
HTTP_NOW = format_datetime(NOW, usegmt=True)  # "Fri, 24 May 2013 00:00:00 GMT"
EXPIRES = int(NOW.timestamp()) + 3600

Request = tuple[str, str, list[tuple[str, str]], list[tuple[str, str]]]


def lookup(key: str) -> str | None:
    return SECRET if key == ACCESS_KEY else None


def _as_received(req: AWSRequest) -> Request:
    parts = urlsplit(req.url)
    headers = [(str(k), str(v)) for k, v in req.headers.items()]
    if not any(k.lower() == "host" for k, _ in headers):
        headers.append(("Host", parts.netloc))
    return req.method, parts.path, parse_qsl(parts.query, keep_blank_values=True), headers


def _url(key: str, query: list[tuple[str, str]], bucket: str = "bucket") -> str:
    path = f"/{bucket}/" + quote(key, safe="/~")
    qs = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" if v else k for k, v in query)
    return f"http://{HOST}{path}" + (f"?{qs}" if qs else "")


def sign_header(
    method: str,
    key: str,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    date: str = HTTP_NOW,
) -> Request:
    req = AWSRequest(method=method, url=_url(key, query or []))
    for name, value in headers.items() if isinstance(headers, dict) else headers or []:
        req.headers[name] = value  # HTTPHeaders appends: repeats stay repeated
    with mock.patch.object(HmacV1Auth, "_get_date", return_value=date):
        HmacV1Auth(Credentials(ACCESS_KEY, SECRET)).add_auth(req)
    return _as_received(req)


def presign(
    method: str,
    key: str,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    expires: int = EXPIRES,
) -> Request:
    req = AWSRequest(method=method, url=_url(key, query or []), headers=headers or {})
    with mock.patch.object(HmacV1QueryAuth, "_get_date", return_value=str(expires)):
        HmacV1QueryAuth(Credentials(ACCESS_KEY, SECRET)).add_auth(req)
    method, path, pairs, _ = _as_received(req)
    return method, path, pairs, [("Host", HOST)]  # the URL is all a browser or curl sends


def verify(request: Request, now: datetime = NOW, **kwargs: Any) -> VerifiedAuth:
    method, raw_path, query_pairs, headers = request
    return verify_request(
        method=method,
        raw_path=raw_path,
        query_pairs=query_pairs,
        headers=headers,
        now=now,
        lookup_secret=lookup,
        **kwargs,
    )


def expect_error(code: str, request: Request, now: datetime = NOW, **kwargs: Any) -> S3Error:
    with pytest.raises(S3Error) as info:
        verify(request, now, **kwargs)
    assert info.value.code == code, info.value
    return info.value


def _replace_header(request: Request, name: str, value: str) -> Request:
    method, path, pairs, headers = request
    return method, path, pairs, [(k, value if k.lower() == name else v) for k, v in headers]


def _replace_param(request: Request, name: str, value: str) -> Request:
    method, path, pairs, headers = request
    return method, path, [(k, value if k == name else v) for k, v in pairs], headers


# ---------------------------------------------------------------- AWS's published examples


@pytest.mark.parametrize(
    ("method", "headers", "date", "signature"),
    [
        ("GET", [], "Tue, 27 Mar 2007 19:36:42 +0000", "bWq2s1WEIj+Ydj0vQ697zp+IXMU="),
        (
            "PUT",
            [("Content-Type", "image/jpeg")],
            "Tue, 27 Mar 2007 21:15:45 +0000",
            "MyyxeRY7whkBe+bq8fHCL/2kKUg=",
        ),
    ],
)
def test_aws_documented_header_examples(
    method: str, headers: list[tuple[str, str]], date: str, signature: str
) -> None:
    auth_header = ("Authorization", f"AWS {ACCESS_KEY}:{signature}")
    req: Request = (
        method,
        "/johnsmith/photos/puppy.jpg",
        [],
        [("Host", HOST), ("Date", date), *headers, auth_header],
    )
    auth = verify(req, now=parsedate_to_datetime(date) + timedelta(minutes=3))
    assert auth.access_key == ACCESS_KEY and auth.signature == signature


def test_aws_documented_virtual_host_example() -> None:
    req: Request = (
        "GET",
        "/photos/puppy.jpg",
        [],
        [
            ("Host", "awsexamplebucket1.us-west-1.s3.amazonaws.com"),
            ("Date", "Tue, 27 Mar 2007 19:36:42 +0000"),
            ("Authorization", f"AWS {ACCESS_KEY}:qgk2+6Sv9/oM7G3qLEjTH1a1l1g="),
        ],
    )
    verify(req, datetime(2007, 3, 27, 19, 40, tzinfo=UTC), virtual_host_bucket="awsexamplebucket1")


def test_aws_documented_presigned_example() -> None:
    req: Request = (
        "GET",
        "/johnsmith/photos/puppy.jpg",
        parse_qsl(
            f"AWSAccessKeyId={ACCESS_KEY}&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D"
            "&Expires=1175139620"
        ),
        [("Host", HOST)],
    )
    auth = verify(req, datetime(2007, 3, 29, 3, 0, tzinfo=UTC))
    assert auth.presigned
    expect_error("AccessDenied", req, datetime(2007, 3, 29, 3, 40, 21, tzinfo=UTC))


# ---------------------------------------------------------------- header form (HmacV1Auth)


HEADER_CASES = [
    ("GET", "k", [], {}),
    ("GET", "dir/with space/ünï+cødé~!$&'()*,;=:@.txt", [], {}),
    ("GET", "", [("prefix", "a b"), ("max-keys", "5"), ("encoding-type", "url")], {}),
    ("GET", "k", [("acl", "")], {}),
    ("GET", "k", [("versionId", "3/L4kqtJl40Nr8X8gdRQBpUMLUo")], {}),
    ("GET", "k", [("response-content-type", "text/plain; charset=utf-8"), ("x-id", "1")], {}),
    ("POST", "k", [("uploads", "")], {"Content-Type": "application/octet-stream"}),
    ("PUT", "k", [("partNumber", "2"), ("uploadId", "abc/def+g")], {}),
    ("POST", "", [("delete", "")], {"Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}),
    (
        "PUT",
        "k",
        [],
        {
            "Content-Type": "text/plain",
            "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
            "X-Amz-Meta-Colour": "  blue  ",
            "x-amz-acl": "public-read",
            "X-AMZ-Storage-Class": "STANDARD",
        },
    ),
]


@pytest.mark.parametrize(("method", "key", "query", "headers"), HEADER_CASES)
def test_botocore_header_signatures_verify(
    method: str, key: str, query: list[tuple[str, str]], headers: dict[str, str]
) -> None:
    req = sign_header(method, key, query, headers)
    auth = verify(req)
    assert auth.access_key == ACCESS_KEY
    assert not auth.presigned
    assert auth.payload_hash == "UNSIGNED-PAYLOAD"
    assert auth.payload_sha256 is None and not auth.chunked
    assert auth.signing_key == b"" and auth.scope == ""
    assert auth.amz_date == "20130524T000000Z"
    assert auth.signature == dict(req[3])["Authorization"].rpartition(":")[2]


def test_repeated_amz_headers_are_joined_with_commas() -> None:
    req = sign_header("PUT", "k", headers=[("x-amz-meta-a", "1"), ("x-amz-meta-a", " 2 ")])
    assert sum(1 for k, _ in req[3] if k == "x-amz-meta-a") == 2
    verify(req)
    # Only the first value changed: still a different string to sign.
    method, path, pairs, headers = req
    seen: list[str] = []
    changed = []
    for k, v in headers:
        if k == "x-amz-meta-a" and not seen:
            seen.append(v)
            v = "9"
        changed.append((k, v))
    err = expect_error("SignatureDoesNotMatch", (method, path, pairs, changed))
    assert "x-amz-meta-a:9,2\n" in err.extra["StringToSign"]


def _add_header(request: Request, name: str, value: str) -> Request:
    method, path, pairs, headers = request
    return method, path, pairs, [*headers, (name, value)]


HEADER_TAMPERS = {
    "method": lambda r: ("DELETE", *r[1:]),
    "path": lambda r: (r[0], r[1] + "x", *r[2:]),
    "path-encoding": lambda r: (r[0], r[1].replace("%20", "+"), *r[2:]),
    "bucket": lambda r: (r[0], r[1].replace("/bucket/", "/other/"), *r[2:]),
    "subresource-value": lambda r: _replace_param(r, "versionId", "v2"),
    "added-subresource": lambda r: (r[0], r[1], [*r[2], ("acl", "")], r[3]),
    "added-response-override": lambda r: (
        r[0],
        r[1],
        [*r[2], ("response-content-disposition", "attachment")],
        r[3],
    ),
    "content-md5": lambda r: _replace_header(r, "content-md5", "XrY7u+Ae7tCTyyK7j1rNww=="),
    "content-type": lambda r: _replace_header(r, "content-type", "text/html"),
    "amz-header": lambda r: _replace_header(r, "x-amz-acl", "public-read-write"),
    "added-amz-header": lambda r: _add_header(r, "x-amz-meta-extra", "1"),
    "date": lambda r: _replace_header(r, "date", "Fri, 24 May 2013 00:00:01 GMT"),
    "signature": lambda r: _replace_header(
        r, "authorization", f"AWS {ACCESS_KEY}:AAAAAAAAAAAAAAAAAAAAAAAAAAA="
    ),
}


@pytest.mark.parametrize("tamper", sorted(HEADER_TAMPERS))
def test_tampering_header_signed_request_is_signature_mismatch(tamper: str) -> None:
    req = sign_header(
        "PUT",
        "a key/x",
        [("versionId", "v1")],
        {
            "Content-Type": "text/plain",
            "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
            "x-amz-acl": "private",
        },
    )
    verify(req)
    err = expect_error("SignatureDoesNotMatch", HEADER_TAMPERS[tamper](req))
    assert err.status == 403
    assert err.extra["AWSAccessKeyId"] == ACCESS_KEY
    assert err.extra["SignatureProvided"]
    to_sign = err.extra["StringToSign"]
    assert err.extra["StringToSignBytes"] == " ".join(f"{b:02x}" for b in to_sign.encode())
    assert set(err.extra) == {
        "AWSAccessKeyId",
        "StringToSign",
        "SignatureProvided",
        "StringToSignBytes",
    }


def test_mismatch_reports_the_string_to_sign_s3_would_compute() -> None:
    req = sign_header("GET", "k", [("acl", ""), ("prefix", "p")], {"x-amz-meta-b": "2"})
    wrong = _replace_header(req, "authorization", f"AWS {ACCESS_KEY}:bad")
    err = expect_error("SignatureDoesNotMatch", wrong)
    assert err.extra["StringToSign"] == f"GET\n\n\n{HTTP_NOW}\nx-amz-meta-b:2\n/bucket/k?acl"
    assert err.extra["SignatureProvided"] == "bad"


def test_wrong_secret_is_signature_mismatch() -> None:
    req = sign_header("GET", "k")
    with pytest.raises(S3Error) as info:
        verify_request(
            method=req[0],
            raw_path=req[1],
            query_pairs=req[2],
            headers=req[3],
            now=NOW,
            lookup_secret=lambda _: "another-secret",
        )
    assert info.value.code == "SignatureDoesNotMatch"


def test_unknown_access_key() -> None:
    req = sign_header("GET", "k")
    req = _replace_header(req, "authorization", "AWS AKIDUNKNOWN:c2lnbmF0dXJl")
    err = expect_error("InvalidAccessKeyId", req)
    assert err.status == 403
    assert err.extra["AWSAccessKeyId"] == "AKIDUNKNOWN"


@pytest.mark.parametrize("offset", [timedelta(minutes=16), timedelta(minutes=-16)])
def test_date_beyond_fifteen_minutes_is_too_skewed(offset: timedelta) -> None:
    req = sign_header("GET", "k")
    err = expect_error("RequestTimeTooSkewed", req, NOW + offset)
    assert err.status == 403
    assert err.extra["RequestTime"] == HTTP_NOW
    assert err.extra["ServerTime"] == (NOW + offset).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert err.extra["MaxAllowedSkewMilliseconds"] == "900000"


@pytest.mark.parametrize("offset", [timedelta(minutes=14), timedelta(minutes=-14)])
def test_date_within_fifteen_minutes_verifies(offset: timedelta) -> None:
    verify(sign_header("GET", "k"), NOW + offset)


def test_naive_now_is_taken_as_utc() -> None:
    verify(sign_header("GET", "k"), NOW.replace(tzinfo=None))


@pytest.mark.parametrize("date", [None, "yesterday"])
def test_missing_or_invalid_date_is_access_denied(date: str | None) -> None:
    method, path, pairs, headers = sign_header("GET", "k")
    headers = [(k, v) for k, v in headers if k.lower() != "date"]
    if date is not None:
        headers.append(("Date", date))
    err = expect_error("AccessDenied", (method, path, pairs, headers))
    assert "valid Date or x-amz-date" in err.message


def _hand_signed(headers: list[tuple[str, str]], date_line: str) -> Request:
    to_sign = f"GET\n\n\n{date_line}\n" + "".join(
        f"{k.lower()}:{v}\n" for k, v in sorted(headers) if k.lower().startswith("x-amz-")
    )
    to_sign += "/bucket/k"
    auth = f"AWS {ACCESS_KEY}:{sign(SECRET, to_sign)}"
    return "GET", "/bucket/k", [], [("Host", HOST), *headers, ("Authorization", auth)]


def test_x_amz_date_signs_an_empty_date_line() -> None:
    stale = "Thu, 01 Jan 2009 00:00:00 GMT"  # a proxy-mangled Date is ignored
    req = _hand_signed([("Date", stale), ("x-amz-date", HTTP_NOW)], "")
    assert verify(req).amz_date == "20130524T000000Z"
    expect_error("RequestTimeTooSkewed", req, NOW + timedelta(hours=1))


def test_x_amz_date_with_date_line_as_botocore_signs_it_verifies() -> None:
    req = sign_header("GET", "k", headers={"x-amz-date": HTTP_NOW})
    verify(req)


def test_x_amz_date_in_iso_basic_format_is_accepted() -> None:
    verify(_hand_signed([("x-amz-date", "20130524T000500Z")], ""))


@pytest.mark.parametrize(
    "value",
    ["AWS", "AWS ", f"AWS {ACCESS_KEY}", f"AWS {ACCESS_KEY}:", "AWS :sig", "AWS4 a:b"],
)
def test_malformed_authorization_is_invalid_argument(value: str) -> None:
    req: Request = (
        "GET",
        "/bucket/k",
        [],
        [("Host", HOST), ("Date", HTTP_NOW), ("Authorization", value)],
    )
    err = expect_error("InvalidArgument", req)
    assert err.extra["ArgumentName"] == "Authorization"


def test_two_authorization_headers_are_rejected() -> None:
    req = sign_header("GET", "k")
    req = _add_header(req, "Authorization", dict(req[3])["Authorization"])
    expect_error("InvalidArgument", req)


@pytest.mark.parametrize("param", ["Signature", "AWSAccessKeyId", "X-Amz-Algorithm"])
def test_header_and_query_auth_together_are_rejected(param: str) -> None:
    method, path, pairs, headers = sign_header("GET", "k")
    err = expect_error("InvalidArgument", (method, path, [*pairs, (param, "x")], headers))
    assert "Only one auth mechanism" in err.message


def test_surrogate_escaped_header_values_do_not_crash() -> None:
    req = sign_header("PUT", "k", headers={"x-amz-meta-a": "v"})
    expect_error("SignatureDoesNotMatch", _replace_header(req, "x-amz-meta-a", "\udcff\udcfe"))


# ---------------------------------------------------------------- presigned (HmacV1QueryAuth)


def test_botocore_presigned_url_verifies() -> None:
    req = presign("GET", "some dir/ünï+x", [("response-content-type", "text/plain; x=1")])
    names = [k for k, _ in req[2]]
    assert {"AWSAccessKeyId", "Signature", "Expires"} <= set(names)
    auth = verify(req)
    assert auth.presigned
    assert auth.access_key == ACCESS_KEY
    assert auth.payload_hash == "UNSIGNED-PAYLOAD"
    assert auth.signature == dict(req[2])["Signature"]


def test_presigned_url_with_amz_and_content_headers_in_query_verifies() -> None:
    req = presign("PUT", "k", headers={"x-amz-acl": "public-read", "Content-Type": "text/plain"})
    params = dict(req[2])
    assert params["x-amz-acl"] == "public-read" and params["content-type"] == "text/plain"
    verify(req)
    # The client actually sending the same Content-Type header is fine too.
    verify(_add_header(req, "Content-Type", "text/plain"))
    expect_error("SignatureDoesNotMatch", _add_header(req, "Content-Type", "text/html"))


PRESIGN_TAMPERS = {
    "method": lambda r: ("PUT", *r[1:]),
    "path": lambda r: (r[0], r[1] + "2", *r[2:]),
    "expires": lambda r: _replace_param(r, "Expires", str(EXPIRES + 1)),
    "subresource-value": lambda r: _replace_param(r, "versionId", "v2"),
    "added-subresource": lambda r: (r[0], r[1], [*r[2], ("acl", "")], r[3]),
    "added-amz-header": lambda r: _add_header(r, "x-amz-meta-a", "1"),
    "added-content-md5": lambda r: _add_header(r, "Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
    "signature": lambda r: _replace_param(r, "Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
}


@pytest.mark.parametrize("tamper", sorted(PRESIGN_TAMPERS))
def test_tampering_presigned_url_is_signature_mismatch(tamper: str) -> None:
    req = presign("GET", "k", [("versionId", "v1")])
    verify(req)
    err = expect_error("SignatureDoesNotMatch", PRESIGN_TAMPERS[tamper](req))
    assert err.extra["AWSAccessKeyId"] == ACCESS_KEY


def test_non_subresource_query_params_are_not_signed() -> None:
    req = presign("GET", "k")
    verify((req[0], req[1], [*req[2], ("x-id", "GetObject"), ("foo", "bar")], req[3]))


def test_plus_in_signature_left_unencoded_arrives_as_space_and_still_verifies() -> None:
    for n in range(50):  # find a signature containing "+"
        req = presign("GET", f"k{n}")
        signature = dict(req[2])["Signature"]
        if "+" in signature:
            break
    else:
        pytest.fail("no signature with '+' found")
    verify(_replace_param(req, "Signature", signature.replace("+", " ")))


def test_presigned_expiry() -> None:
    req = presign("GET", "k", expires=EXPIRES)
    expires_at = datetime.fromtimestamp(EXPIRES, UTC)
    verify(req, expires_at)  # valid up to and including the Expires second
    err = expect_error("AccessDenied", req, expires_at + timedelta(seconds=1))
    assert err.message == "Request has expired"
    assert err.status == 403
    assert err.extra["Expires"] == expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert err.extra["ServerTime"] == (expires_at + timedelta(seconds=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def test_presigned_url_far_in_the_future_is_fine() -> None:
    verify(presign("GET", "k", expires=999999999999))


@pytest.mark.parametrize("missing", ["AWSAccessKeyId", "Signature", "Expires"])
def test_presigned_missing_parameter_is_access_denied(missing: str) -> None:
    method, path, pairs, headers = presign("GET", "k")
    pairs = [(k, v) for k, v in pairs if k != missing]
    err = expect_error("AccessDenied", (method, path, pairs, headers))
    assert "Query-string authentication requires" in err.message


@pytest.mark.parametrize("value", ["soon", "-5", "1.5", ""])
def test_presigned_malformed_expires_is_access_denied(value: str) -> None:
    expect_error("AccessDenied", _replace_param(presign("GET", "k"), "Expires", value))


def test_presigned_unknown_key() -> None:
    req = _replace_param(presign("GET", "k"), "AWSAccessKeyId", "AKIDUNKNOWN")
    err = expect_error("InvalidAccessKeyId", req)
    assert err.extra["AWSAccessKeyId"] == "AKIDUNKNOWN"


def test_presigned_expired_is_reported_before_unknown_key() -> None:
    req = _replace_param(presign("GET", "k"), "AWSAccessKeyId", "AKIDUNKNOWN")
    expect_error("AccessDenied", req, NOW + timedelta(days=1))


def test_unsigned_request_is_access_denied() -> None:
    expect_error("AccessDenied", ("GET", "/bucket/k", [], [("Host", HOST)]))


# ---------------------------------------------------------------- boto3, default config


def _boto3_client(**config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"http://{HOST}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        region_name="us-east-1",
        config=Config(**config) if config else None,
    )


def _from_url(method: str, url: str) -> Request:
    parts = urlsplit(url)
    return (
        method,
        parts.path,
        parse_qsl(parts.query, keep_blank_values=True),
        [("Host", parts.netloc)],
    )


@pytest.mark.parametrize(
    ("client_method", "params", "http_method"),
    [
        ("get_object", {"Key": "plain.txt"}, "GET"),
        ("get_object", {"Key": "sp ace/ünï+%/~x", "VersionId": "v/1+2"}, "GET"),
        (
            "get_object",
            {"Key": "k", "ResponseContentDisposition": 'attachment; filename="a b"'},
            "GET",
        ),
        ("put_object", {"Key": "k"}, "PUT"),
        ("head_object", {"Key": "k"}, "HEAD"),
        ("list_objects", {"Prefix": "a/", "Delimiter": "/"}, "GET"),
        ("get_object_acl", {"Key": "k"}, "GET"),
    ],
)
def test_boto3_default_presigned_urls_are_sigv2_and_verify(
    client_method: str, params: dict[str, str], http_method: str
) -> None:
    client = _boto3_client()
    url = client.generate_presigned_url(client_method, Params={"Bucket": "bucket", **params})
    req = _from_url(http_method, url)
    assert "AWSAccessKeyId" in dict(req[2]), url  # boto3's default for S3 presigning is SigV2
    expires = int(dict(req[2])["Expires"])
    auth = verify(req, datetime.now(UTC))
    assert auth.presigned
    expect_error("AccessDenied", req, datetime.fromtimestamp(expires + 1, UTC))
    expect_error("SignatureDoesNotMatch", ("POST", *req[1:]), datetime.now(UTC))


def test_boto3_virtual_hosted_presigned_url_needs_the_bucket() -> None:
    client = _boto3_client(s3={"addressing_style": "virtual"})
    url = client.generate_presigned_url("get_object", Params={"Bucket": "bucket", "Key": "a/b"})
    req = _from_url("GET", url)
    assert req[1] == "/a/b" and req[3][0][1].startswith("bucket.")
    verify(req, datetime.now(UTC), virtual_host_bucket="bucket")
    expect_error("SignatureDoesNotMatch", req, datetime.now(UTC))
    expect_error("SignatureDoesNotMatch", req, datetime.now(UTC), virtual_host_bucket="other")


def test_virtual_host_bucket_root_resource() -> None:
    assert canonical_resource("/", [("acl", "")], "b") == "/b/?acl"
    assert canonical_resource("", [], None) == "/"
    assert canonical_resource("/b/k", [("uploadId", "u"), ("partNumber", "1")]) == (
        "/b/k?partNumber=1&uploadId=u"
    )


# ---------------------------------------------------------------- detection and robustness


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ([("Host", HOST)], [], False),
        ([("Authorization", "AWS key:sig")], [], True),
        ([("authorization", "  AWS key:sig")], [], True),
        ([("Authorization", "AWS4-HMAC-SHA256 Credential=x")], [], False),
        ([("Authorization", "AWS4-HMAC-SHA256 Credential=x")], [("Signature", "s")], False),
        ([], [("Signature", "x"), ("AWSAccessKeyId", "k"), ("Expires", "1")], True),
        ([], [("AWSAccessKeyId", "k")], True),
        ([], [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"), ("Signature", "x")], False),
        ([], [("X-Amz-Signature", "x")], False),
    ],
)
def test_is_sigv2(
    headers: list[tuple[str, str]], query: list[tuple[str, str]], expected: bool
) -> None:
    assert is_sigv2(headers, query) is expected


_param = st.sampled_from(
    [
        "AWSAccessKeyId",
        "Signature",
        "Expires",
        "acl",
        "versionId",
        "x-amz-acl",
        "X-Amz-Algorithm",
        "x",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    raw_path=st.text(max_size=30),
    query=st.lists(st.tuples(_param, st.text(max_size=20)), max_size=6),
    authorization=st.one_of(
        st.none(), st.text(max_size=40), st.builds("AWS {}".format, st.text(max_size=40))
    ),
    date=st.one_of(st.none(), st.text(max_size=30), st.just(HTTP_NOW)),
    date_header=st.sampled_from(["x-amz-date", "Date"]),
)
def test_garbage_requests_never_raise_anything_but_s3_error(
    raw_path: str,
    query: list[tuple[str, str]],
    authorization: str | None,
    date: str | None,
    date_header: str,
) -> None:
    headers = [("Host", HOST)]
    if authorization is not None:
        headers.append(("Authorization", authorization))
    if date is not None:
        headers.append((date_header, date))
    with contextlib.suppress(S3Error):
        verify(("GET", raw_path, query, headers), virtual_host_bucket=None)


def test_path_style_bucket_alone_signs_with_a_trailing_slash() -> None:
    assert canonical_resource("/bucket", [("acl", "")]) == "/bucket/?acl"
    assert canonical_resource("/bucket/", []) == "/bucket/"
    date = ("Date", HTTP_NOW)
    for signed_path in ("/bucket/", "/bucket"):  # S3's reading, and the path as sent
        to_sign = f"GET\n\n\n{HTTP_NOW}\n{signed_path}"
        auth = ("Authorization", f"AWS {ACCESS_KEY}:{sign(SECRET, to_sign)}")
        verify(("GET", "/bucket", [("prefix", "p")], [("Host", HOST), date, auth]))
    to_sign = f"GET\n\n\n{HTTP_NOW}\n/bucket"
    auth = ("Authorization", f"AWS {ACCESS_KEY}:{sign(SECRET, to_sign)}")
    expect_error("SignatureDoesNotMatch", ("GET", "/other", [], [("Host", HOST), date, auth]))


def test_boto3_bucket_level_presigned_url_verifies() -> None:
    url = _boto3_client().generate_presigned_url("list_objects_v2", Params={"Bucket": "bucket"})
    req = _from_url("GET", url)
    assert req[1] == "/bucket"
    verify(req, datetime.now(UTC))


# ---------------------------------------------------------------- every x-amz-* header is signed

SMUGGLED = [
    ("x-amz-acl", "public-read"),
    ("x-amz-grant-full-control", 'id="attacker"'),
    ("x-amz-copy-source", "/bucket/secret"),
    ("X-Amz-Meta-Owner", "mallory"),
    ("X-AMZ-ACL", "public-read"),
]


@pytest.mark.parametrize(("name", "value"), SMUGGLED)
def test_added_amz_header_breaks_a_header_signature(name: str, value: str) -> None:
    req = sign_header("PUT", "k", headers={"Content-Type": "text/plain"})
    verify(req)
    err = expect_error("SignatureDoesNotMatch", _add_header(req, name, value))
    assert f"\n{name.lower()}:{value}\n" in err.extra["StringToSign"]


@pytest.mark.parametrize(("name", "value"), SMUGGLED)
def test_added_amz_header_breaks_a_presigned_url(name: str, value: str) -> None:
    req = presign("PUT", "k")
    verify(req)
    expect_error("SignatureDoesNotMatch", _add_header(req, name, value))


def test_second_value_for_a_signed_amz_header_breaks_the_signature() -> None:
    req = sign_header("PUT", "k", headers={"x-amz-acl": "private"})
    err = expect_error("SignatureDoesNotMatch", _add_header(req, "X-Amz-Acl", "public-read"))
    assert "\nx-amz-acl:private,public-read\n" in err.extra["StringToSign"]


def test_amz_headers_are_lowercased_sorted_and_repeats_joined() -> None:
    headers = [
        ("X-Amz-Meta-Zeta", "z"),
        ("x-amz-acl", " private "),
        ("X-AMZ-META-A", "1"),
        ("x-amz-meta-a", "2"),
        ("Content-Type", "text/plain"),
        ("Host", HOST),
    ]
    assert canonical_amz_headers(headers) == (
        "x-amz-acl:private\nx-amz-meta-a:1,2\nx-amz-meta-zeta:z\n"
    )


amz_name = st.from_regex(r"x-amz-[a-z0-9-]{1,12}", fullmatch=True)
amz_value = st.from_regex(r"[A-Za-z0-9=/._-]{1,12}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(
    # One field a name: a repeated x-amz-* header is refused even when signed.
    signed=st.lists(st.tuples(amz_name, amz_value), max_size=5, unique_by=lambda h: h[0]),
    added=st.tuples(amz_name, amz_value),
    upper=st.booleans(),
)
def test_any_added_or_changed_amz_header_is_caught(
    signed: list[tuple[str, str]], added: tuple[str, str], upper: bool
) -> None:
    req = sign_header("PUT", "k", headers=signed)
    verify(req)
    name, value = added
    expect_error("SignatureDoesNotMatch", _add_header(req, name.upper() if upper else name, value))
    if signed:
        target = signed[0][0]
        expect_error("SignatureDoesNotMatch", _replace_header(req, target, signed[0][1] + "x"))


def test_a_signed_amz_header_sent_twice_is_refused_but_metadata_is_joined() -> None:
    """Signed joined by commas, `a,b` in one field and `a`, `b` in two sign alike: the
    second form is refused (but for user metadata, which S3 stores joined)."""
    req = sign_header("PUT", "k", headers=[("x-amz-tagging", "a=1"), ("x-amz-tagging", "b=2")])
    err = expect_error("InvalidArgument", req)
    assert err.extra["ArgumentName"] == "x-amz-tagging"
    verify(sign_header("PUT", "k", headers=[("x-amz-meta-a", "1"), ("x-amz-meta-a", "2")]))
