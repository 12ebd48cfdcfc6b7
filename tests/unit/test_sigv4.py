"""SigV4 verification against requests signed by botocore itself, plus AWS's published vector."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3torrent.s3.errors import S3Error
from s3torrent.s3.sigv4 import (
    STREAMING_SIGNED_PAYLOAD,
    VerifiedAuth,
    canonical_query,
    canonical_request,
    canonical_uri,
    has_auth,
    must_be_signed,
    string_to_sign,
    unsigned_headers,
    verify_request,
)

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "us-east-1"
HOST = "s3.example.test:9000"
SIGNED_AT = datetime(2013, 5, 24, 0, 0, 0)  # naive, as botocore's clock returns it
NOW = SIGNED_AT.replace(tzinfo=UTC)


def lookup(key: str) -> str | None:
    return SECRET if key == ACCESS_KEY else None


Request = tuple[str, str, list[tuple[str, str]], list[tuple[str, str]]]


def _as_received(req: AWSRequest) -> Request:
    parts = urlsplit(req.url)
    headers = [(str(k), str(v)) for k, v in req.headers.items()]
    if not any(k.lower() == "host" for k, _ in headers):
        headers.append(("Host", parts.netloc))
    return (
        req.method,
        parts.path,
        parse_qsl(parts.query, keep_blank_values=True),
        headers,
    )


def _url(key: str, query: list[tuple[str, str]]) -> str:
    path = "/bucket/" + quote(key, safe="/~")
    qs = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" if v or k != "torrent" else k
        for k, v in query
    )
    return f"http://{HOST}{path}" + (f"?{qs}" if qs else "")


def sign_header(
    method: str,
    key: str,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    at: datetime = SIGNED_AT,
    secret: str = SECRET,
    region: str = REGION,
) -> Request:
    req = AWSRequest(method=method, url=_url(key, query or []), headers=headers or {}, data=body)
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        S3SigV4Auth(Credentials(ACCESS_KEY, secret), "s3", region).add_auth(req)
    return _as_received(req)


def presign(
    method: str,
    key: str,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    expires: int = 3600,
    at: datetime = SIGNED_AT,
) -> Request:
    req = AWSRequest(method=method, url=_url(key, query or []), headers=headers or {})
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        S3SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET), "s3", REGION, expires=expires).add_auth(
            req
        )
    return _as_received(req)


def verify(request: Request, now: datetime = NOW, **kwargs: object) -> VerifiedAuth:
    method, raw_path, query_pairs, headers = request
    return verify_request(
        method=method,
        raw_path=raw_path,
        query_pairs=query_pairs,
        headers=headers,
        now=now,
        lookup_secret=lookup,
        region=REGION,
        **kwargs,  # type: ignore[arg-type]
    )


def expect_error(code: str, request: Request, now: datetime = NOW, **kwargs: object) -> S3Error:
    with pytest.raises(S3Error) as info:
        verify(request, now, **kwargs)
    assert info.value.code == code, info.value
    return info.value


def _flip(text: str, index: int) -> str:
    ch = text[index]
    replacement = "0" if ch != "0" else "1"
    return text[:index] + replacement + text[index + 1 :]


# ---------------------------------------------------------------- the AWS published example


AWS_EXAMPLE_HEADERS = [
    ("Host", "examplebucket.s3.amazonaws.com"),
    ("Range", "bytes=0-9"),
    ("x-amz-content-sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ("x-amz-date", "20130524T000000Z"),
    (
        "Authorization",
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    ),
]


def test_aws_documented_get_object_example_verifies() -> None:
    auth = verify(("GET", "/test.txt", [], AWS_EXAMPLE_HEADERS))
    assert auth.access_key == ACCESS_KEY
    assert auth.scope == "20130524/us-east-1/s3/aws4_request"
    assert auth.amz_date == "20130524T000000Z"
    assert auth.signature.startswith("f0e8bdb8")
    assert auth.payload_sha256 == auth.payload_hash
    assert not auth.presigned and not auth.chunked


EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
HOST_EXAMPLE = ("Host", "examplebucket.s3.amazonaws.com")


def _aws_example(
    signed: str, signature: str, extra: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    return [
        HOST_EXAMPLE,
        ("x-amz-date", "20130524T000000Z"),
        *extra,
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            f"SignedHeaders={signed},Signature={signature}",
        ),
    ]


@pytest.mark.parametrize(
    ("method", "path", "query", "headers"),
    [
        (
            "PUT",
            "/test%24file.text",
            [],
            _aws_example(
                "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
                "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
                [
                    ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
                    (
                        "x-amz-content-sha256",
                        "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
                    ),
                ],
            ),
        ),
        (
            "GET",
            "/",
            [("lifecycle", "")],
            _aws_example(
                "host;x-amz-content-sha256;x-amz-date",
                "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
                [("x-amz-content-sha256", EMPTY)],
            ),
        ),
        (
            "GET",
            "/",
            [("max-keys", "2"), ("prefix", "J")],
            _aws_example(
                "host;x-amz-content-sha256;x-amz-date",
                "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
                [("x-amz-content-sha256", EMPTY)],
            ),
        ),
    ],
)
def test_aws_documented_put_lifecycle_and_list_examples_verify(
    method: str, path: str, query: list[tuple[str, str]], headers: list[tuple[str, str]]
) -> None:
    assert verify((method, path, query, headers)).access_key == ACCESS_KEY


def test_aws_documented_example_canonical_request_hash() -> None:
    canonical = canonical_request(
        "GET",
        "/test.txt",
        [],
        AWS_EXAMPLE_HEADERS,
        "host;range;x-amz-content-sha256;x-amz-date",
        EMPTY,
    )
    sts = string_to_sign("20130524T000000Z", "20130524/us-east-1/s3/aws4_request", canonical)
    assert sts.endswith("\n7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972")


def test_aws_documented_example_with_altered_range_is_rejected_with_s3_details() -> None:
    headers = [(k, "bytes=0-10" if k == "Range" else v) for k, v in AWS_EXAMPLE_HEADERS]
    err = expect_error("SignatureDoesNotMatch", ("GET", "/test.txt", [], headers))
    assert err.status == 403
    assert err.extra["AWSAccessKeyId"] == ACCESS_KEY
    assert err.extra["SignatureProvided"].startswith("f0e8bdb8")
    assert err.extra["CanonicalRequest"].startswith("GET\n/test.txt\n\nhost:")
    assert "range:bytes=0-10\n" in err.extra["CanonicalRequest"]
    assert err.extra["StringToSign"].startswith("AWS4-HMAC-SHA256\n20130524T000000Z\n")
    assert err.extra["StringToSignBytes"].startswith("41 57 53 34 2d")
    assert err.extra["CanonicalRequestBytes"].startswith("47 45 54 0a")


def test_aws_documented_streaming_seed_signature_verifies() -> None:
    headers = [
        ("Host", "s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        ("x-amz-content-sha256", STREAMING_SIGNED_PAYLOAD),
        ("Content-Encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("Content-Length", "66824"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class,"
            "Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        ),
    ]
    auth = verify(("PUT", "/examplebucket/chunkObject.txt", [], headers))
    assert auth.chunked and auth.chunks_signed and not auth.has_trailer


# ---------------------------------------------------------------- canonical forms


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("/b/a%20b", "/b/a%20b"),
        ("/b/a+b", "/b/a%2Bb"),
        ("/b/a%2Bb", "/b/a%2Bb"),
        ("/b/100%25", "/b/100%25"),
        ("/b/../x", "/b/../x"),
        ("/b//x", "/b//x"),
        ("/b/~tilde", "/b/~tilde"),
        ("/b/%7Etilde", "/b/~tilde"),
        ("/b/a=b&c", "/b/a%3Db%26c"),
        ("/b/%c3%a9", "/b/%C3%A9"),
        ("", "/"),
    ],
)
def test_canonical_uri_is_s3_style_without_normalisation(raw: str, canonical: str) -> None:
    assert canonical_uri(raw) == canonical


def test_canonical_query_sorts_by_encoded_name_then_value() -> None:
    pairs = [("b", "2"), ("a", "z"), ("a", "y"), ("torrent", ""), ("k/x", "v w")]
    assert canonical_query(pairs) == "a=y&a=z&b=2&k%2Fx=v%20w&torrent="


# ---------------------------------------------------------------- botocore-signed requests


KEYS = [
    "plain.txt",
    "with space",
    "plus+sign",
    "percent%25and%",
    "dots/../up",
    "double//slash",
    "unicodé/日本語/😀",
    "tilde~",
    "eq=and&amp",
    "semi;colon,comma",
    "*star!(paren)'quote",
]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("method", ["GET", "PUT", "HEAD", "DELETE", "POST"])
def test_botocore_header_signed_requests_verify(key: str, method: str) -> None:
    req = sign_header(method, key, body=b"hello" if method in ("PUT", "POST") else b"")
    auth = verify(req)
    assert auth.access_key == ACCESS_KEY
    assert auth.payload_sha256 is not None


@pytest.mark.parametrize("key", KEYS)
def test_botocore_presigned_urls_verify(key: str) -> None:
    req = presign("GET", key, query=[("response-content-type", "text/plain; x=1")])
    auth = verify(req, NOW + timedelta(minutes=30))
    assert auth.presigned
    assert auth.payload_hash == "UNSIGNED-PAYLOAD"


def test_botocore_subresource_without_value_verifies() -> None:
    method, path, query, headers = sign_header("GET", "obj", query=[("torrent", "")])
    assert query == [("torrent", "")]
    verify((method, path, query, headers))


def test_boto3_generate_presigned_url_verifies() -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3",
        endpoint_url=f"http://{HOST}",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET,
        region_name=REGION,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    url = client.generate_presigned_url(
        "get_object",
        Params={"Bucket": "bucket", "Key": "dir/a b+c%d/é", "VersionId": "v1"},
        ExpiresIn=600,
    )
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    signed_at = datetime.strptime(dict(pairs)["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    request = ("GET", parts.path, pairs, [("Host", HOST)])
    assert verify(request, signed_at).presigned
    expect_error("AccessDenied", request, signed_at + timedelta(seconds=601))


def test_date_header_instead_of_x_amz_date_verifies() -> None:
    req = sign_header("GET", "k", headers={"Date": "placeholder"})
    names = [name.lower() for name, _ in req[3]]
    assert "date" in names and "x-amz-date" not in names
    verify(req)


def test_repeated_and_padded_header_values_canonicalise_like_botocore() -> None:
    req = sign_header("PUT", "k", headers={"x-amz-meta-a": "  lots   of   space  "}, body=b"x")
    verify(req)
    method, path, query, headers = req
    # Repeating a signed header on the wire changes its canonical value: must not verify.
    expect_error("SignatureDoesNotMatch", (method, path, query, [*headers, ("x-amz-meta-a", "2")]))


header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=0, max_size=20
)
key_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
query_names = st.text(
    alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=10
).filter(lambda s: not s.startswith("X-Amz-") and s != "torrent")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["GET", "PUT", "HEAD", "DELETE", "POST"]),
    key=key_text,
    query=st.lists(st.tuples(query_names, st.text(max_size=10)), max_size=4),
    meta=st.dictionaries(st.sampled_from(["x-amz-meta-a", "x-amz-meta-b", "range"]), header_text),
    data=st.data(),
)
def test_any_botocore_signed_request_verifies_and_any_tamper_is_caught(
    method: str,
    key: str,
    query: list[tuple[str, str]],
    meta: dict[str, str],
    data: st.DataObject,
) -> None:
    req = sign_header(method, key, query=query, headers=meta)
    verify(req)
    method, path, pairs, headers = req

    auth_index = next(i for i, (k, _) in enumerate(headers) if k.lower() == "authorization")
    auth_value = headers[auth_index][1]
    sig_at = auth_value.index("Signature=") + len("Signature=")
    i = data.draw(st.integers(sig_at, len(auth_value) - 1), label="signature index")
    bad_auth = [*headers]
    bad_auth[auth_index] = ("Authorization", _flip(auth_value, i))
    expect_error("SignatureDoesNotMatch", (method, path, pairs, bad_auth))

    bad_path = path + "x"
    expect_error("SignatureDoesNotMatch", (method, bad_path, pairs, headers))

    if pairs:
        j = data.draw(st.integers(0, len(pairs) - 1), label="query index")
        bad_pairs = [*pairs]
        bad_pairs[j] = (pairs[j][0], pairs[j][1] + "!")
        expect_error("SignatureDoesNotMatch", (method, path, bad_pairs, headers))

    signed = [k for k, _ in headers if k.lower() in ("x-amz-meta-a", "x-amz-meta-b", "range")]
    if signed:
        name = data.draw(st.sampled_from(signed), label="header")
        bad_headers = [(k, v + "Z" if k == name else v) for k, v in headers]
        expect_error("SignatureDoesNotMatch", (method, path, pairs, bad_headers))

    expect_error("SignatureDoesNotMatch", ("PATCH", path, pairs, headers))


@settings(max_examples=75, deadline=None)
@given(key=key_text, query=st.lists(st.tuples(query_names, st.text(max_size=10)), max_size=3))
def test_any_botocore_presigned_url_verifies_and_tampered_query_is_caught(
    key: str, query: list[tuple[str, str]]
) -> None:
    method, path, pairs, headers = presign("GET", key, query=query)
    verify((method, path, pairs, headers))
    bad = [(k, _flip(v, 0)) if k == "X-Amz-Signature" else (k, v) for k, v in pairs]
    expect_error("SignatureDoesNotMatch", (method, path, bad, headers))
    bad = [(k, "7200") if k == "X-Amz-Expires" else (k, v) for k, v in pairs]
    expect_error("SignatureDoesNotMatch", (method, path, bad, headers))


# ---------------------------------------------------------------- time


def test_header_signed_request_within_skew_is_accepted() -> None:
    req = sign_header("GET", "k")
    verify(req, NOW + timedelta(minutes=14))
    verify(req, NOW - timedelta(minutes=14))


@pytest.mark.parametrize("offset", [timedelta(minutes=16), timedelta(minutes=-16)])
def test_header_signed_request_beyond_skew_is_too_skewed(offset: timedelta) -> None:
    err = expect_error("RequestTimeTooSkewed", sign_header("GET", "k"), NOW + offset)
    assert err.status == 403
    assert err.extra["RequestTime"] == "20130524T000000Z"
    assert err.extra["MaxAllowedSkewMilliseconds"] == "900000"
    assert err.extra["ServerTime"] == (NOW + offset).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_presigned_url_is_valid_until_expiry_then_expired() -> None:
    req = presign("GET", "k", expires=600)
    verify(req, NOW + timedelta(seconds=600))
    err = expect_error("AccessDenied", req, NOW + timedelta(seconds=601))
    assert err.message == "Request has expired"
    assert err.extra["X-Amz-Expires"] == "600"
    assert err.extra["Expires"] == "2013-05-24T00:10:00Z"
    assert err.extra["ServerTime"] == "2013-05-24T00:10:01Z"


def test_presigned_url_valid_for_zero_seconds_has_expired_at_once() -> None:
    # S3's minimum X-Amz-Expires is 1; a 0 (boto3 will not sign one) was valid for the
    # rest of its signing second.
    err = expect_error("AccessDenied", presign("GET", "k", expires=0), NOW)
    assert err.message == "Request has expired"
    assert err.status == 403


def test_presigned_url_dated_in_the_future_beyond_skew_is_not_yet_valid() -> None:
    req = presign("GET", "k")
    verify(req, NOW - timedelta(minutes=14))
    err = expect_error("AccessDenied", req, NOW - timedelta(minutes=16))
    assert err.message == "Request is not valid yet"


def test_presigned_expiry_over_a_week_is_rejected() -> None:
    err = expect_error("AuthorizationQueryParametersError", presign("GET", "k", expires=604801))
    assert err.message == "X-Amz-Expires must be less than a week (in seconds) that is 604800"
    verify(presign("GET", "k", expires=604800))


@pytest.mark.parametrize(
    ("value", "message"),
    [("abc", "should be a number"), ("-1", "non-negative")],
)
def test_presigned_bad_expires_values_are_rejected(value: str, message: str) -> None:
    method, path, pairs, headers = presign("GET", "k")
    pairs = [(k, value if k == "X-Amz-Expires" else v) for k, v in pairs]
    err = expect_error("AuthorizationQueryParametersError", (method, path, pairs, headers))
    assert message in err.message


# ---------------------------------------------------------------- credentials and scope


def test_unknown_access_key_is_invalid_access_key_id() -> None:
    method, path, pairs, headers = sign_header("GET", "k")
    headers = [
        (k, v.replace(ACCESS_KEY, "AKIDUNKNOWN") if k == "Authorization" else v) for k, v in headers
    ]
    err = expect_error("InvalidAccessKeyId", (method, path, pairs, headers))
    assert err.extra["AWSAccessKeyId"] == "AKIDUNKNOWN"
    assert err.status == 403


def test_wrong_secret_is_signature_mismatch() -> None:
    expect_error("SignatureDoesNotMatch", sign_header("GET", "k", secret="not-the-secret"))


def test_wrong_region_names_the_expected_region() -> None:
    err = expect_error("AuthorizationHeaderMalformed", sign_header("GET", "k", region="eu-west-1"))
    assert err.message == (
        "The authorization header is malformed; the region 'eu-west-1' is wrong; "
        "expecting 'us-east-1'"
    )
    assert err.extra["Region"] == "us-east-1"


def test_presigned_wrong_region_is_query_parameters_error() -> None:
    method, path, pairs, headers = presign("GET", "k")
    pairs = [
        (k, v.replace("us-east-1", "eu-west-1") if k == "X-Amz-Credential" else v) for k, v in pairs
    ]
    err = expect_error("AuthorizationQueryParametersError", (method, path, pairs, headers))
    assert "the region 'eu-west-1' is wrong; expecting 'us-east-1'" in err.message
    assert err.extra["Region"] == "us-east-1"


def _with_auth(value: str, extra: list[tuple[str, str]] | None = None) -> Request:
    headers = [
        ("Host", HOST),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ("Authorization", value),
        *(extra or []),
    ]
    return ("GET", "/bucket/k", [], headers)


GOOD_CREDENTIAL = f"Credential={ACCESS_KEY}/20130524/us-east-1/s3/aws4_request"
GOOD_REST = "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" + "0" * 64


@pytest.mark.parametrize(
    ("authorization", "code", "fragment"),
    [
        (f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}", "AuthorizationHeaderMalformed", "three"),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20130524/us-east-1/s3, {GOOD_REST}",
            "AuthorizationHeaderMalformed",
            "mal-formed",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20130524/us-east-1/ec2/aws4_request, "
            f"{GOOD_REST}",
            "AuthorizationHeaderMalformed",
            "incorrect service",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20130524/us-east-1/s3/aws5_request, "
            f"{GOOD_REST}",
            "AuthorizationHeaderMalformed",
            "incorrect terminal",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/20130525/us-east-1/s3/aws4_request, "
            f"{GOOD_REST}",
            "AuthorizationHeaderMalformed",
            "Invalid credential date",
        ),
        (
            f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=x-amz-date, Signature=00",
            "AuthorizationHeaderMalformed",
            "host",
        ),
        ("AWS AKIAIOSFODNN7EXAMPLE:c2lnbmF0dXJl", "InvalidRequest", "AWS4-HMAC-SHA256"),
        (f"AWS4-ECDSA-P256-SHA256 {GOOD_CREDENTIAL}, {GOOD_REST}", "NotImplemented", "SigV4a"),
        ("Bearer token", "InvalidArgument", "Unsupported Authorization Type"),
        (f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, {GOOD_REST}", "SignatureDoesNotMatch", ""),
    ],
)
def test_malformed_authorization_headers_get_s3_errors(
    authorization: str, code: str, fragment: str
) -> None:
    err = expect_error(code, _with_auth(authorization))
    assert fragment in err.message


def test_missing_content_sha256_header_is_invalid_request() -> None:
    method, path, pairs, headers = sign_header("GET", "k")
    headers = [(k, v) for k, v in headers if k.lower() != "x-amz-content-sha256"]
    err = expect_error("InvalidRequest", (method, path, pairs, headers))
    assert err.message == "Missing required header for this request: x-amz-content-sha256"


def test_invalid_content_sha256_value_is_invalid_argument() -> None:
    method, path, pairs, headers = sign_header("GET", "k")
    headers = [(k, "not-a-hash" if k.lower() == "x-amz-content-sha256" else v) for k, v in headers]
    err = expect_error("InvalidArgument", (method, path, pairs, headers))
    assert err.extra["ArgumentName"] == "x-amz-content-sha256"


def test_missing_date_is_access_denied() -> None:
    method, path, pairs, headers = sign_header("GET", "k")
    headers = [(k, v) for k, v in headers if k.lower() != "x-amz-date"]
    err = expect_error("AccessDenied", (method, path, pairs, headers))
    assert "valid Date or x-amz-date" in err.message


def test_presigned_missing_parameter_is_query_parameters_error() -> None:
    method, path, pairs, headers = presign("GET", "k")
    pairs = [(k, v) for k, v in pairs if k != "X-Amz-SignedHeaders"]
    expect_error("AuthorizationQueryParametersError", (method, path, pairs, headers))


def test_presigned_request_with_unsigned_amz_header_is_denied() -> None:
    method, path, pairs, headers = presign("PUT", "k")
    err = expect_error("AccessDenied", (method, path, pairs, [*headers, ("x-amz-acl", "public")]))
    assert err.extra["HeadersNotSigned"] == "x-amz-acl"


def test_presigned_url_signing_extra_headers_requires_them() -> None:
    req = presign("PUT", "k", headers={"x-amz-acl": "public-read"})
    verify(req)
    method, path, pairs, headers = req
    changed = [(k, "private" if k == "x-amz-acl" else v) for k, v in headers]
    expect_error("SignatureDoesNotMatch", (method, path, pairs, changed))


def test_header_and_query_auth_together_are_rejected() -> None:
    method, path, pairs, headers = sign_header("GET", "k")
    pairs = [*pairs, ("X-Amz-Algorithm", "AWS4-HMAC-SHA256")]
    expect_error("InvalidArgument", (method, path, pairs, headers))


def test_presigned_sigv2_is_rejected_as_unsupported() -> None:
    req: Request = (
        "GET",
        "/bucket/k",
        [("AWSAccessKeyId", ACCESS_KEY), ("Signature", "abc"), ("Expires", "1")],
        [("Host", HOST)],
    )
    assert has_auth(req[3], req[2])
    expect_error("InvalidRequest", req)


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ([("Host", HOST)], [], False),
        ([("Host", HOST)], [("prefix", "a")], False),
        ([("authorization", "AWS4-HMAC-SHA256 ...")], [], True),
        ([("Authorization", "AWS key:sig")], [], True),
        ([], [("X-Amz-Algorithm", "AWS4-HMAC-SHA256")], True),
        ([], [("X-Amz-Signature", "x")], True),
        ([], [("Signature", "x"), ("AWSAccessKeyId", "k")], True),
    ],
)
def test_has_auth_detects_every_signature_form(
    headers: list[tuple[str, str]], query: list[tuple[str, str]], expected: bool
) -> None:
    assert has_auth(headers, query) is expected


def test_unsigned_trailer_payload_marker_from_botocore_is_reported() -> None:
    req = AWSRequest(method="PUT", url=_url("k", []), headers={}, data=b"body")
    req.context["checksum"] = {
        "request_algorithm": {"in": "trailer", "name": "x-amz-checksum-crc32"}
    }
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT):
        S3SigV4Auth(Credentials(ACCESS_KEY, SECRET), "s3", REGION).add_auth(req)
    auth = verify(_as_received(req))
    assert auth.payload_hash == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert auth.chunked and auth.has_trailer and not auth.chunks_signed
    assert auth.payload_sha256 is None


def test_signed_header_missing_on_arrival_signs_as_empty_and_mismatches() -> None:
    method, path, pairs, headers = sign_header("PUT", "k", headers={"x-amz-meta-a": "v"})
    headers = [(k, v) for k, v in headers if k.lower() != "x-amz-meta-a"]
    err = expect_error("SignatureDoesNotMatch", (method, path, pairs, headers))
    assert "\nx-amz-meta-a:\n" in err.extra["CanonicalRequest"]


def test_date_header_beyond_skew_is_too_skewed() -> None:
    req = sign_header("GET", "k", headers={"Date": "placeholder"})
    err = expect_error("RequestTimeTooSkewed", req, NOW + timedelta(hours=1))
    assert err.extra["RequestTime"].startswith("Fri, 24 May 2013 00:00:00")


auth_like = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda cred, rest: f"AWS4-HMAC-SHA256 Credential={cred}, {rest}",
        st.text(max_size=60),
        st.text(max_size=60),
    ),
)
amz_param = st.sampled_from(
    [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "Signature",
        "AWSAccessKeyId",
        "x",
    ]
)
date_like = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "99991231T235959Z",
            "00010101T000000Z",
            "20130524T000000Z",
            "Fri, 31 Dec 9999 23:59:59 GMT",
            "Mon, 99 Foo 2013 99:99:99 XYZ",
        ]
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    raw_path=st.text(max_size=30),
    query=st.lists(st.tuples(amz_param, st.one_of(date_like, st.text(max_size=20))), max_size=7),
    authorization=st.one_of(st.none(), auth_like),
    date=st.one_of(st.none(), date_like),
    date_header=st.sampled_from(["x-amz-date", "Date"]),
    content=st.one_of(st.none(), st.sampled_from(["UNSIGNED-PAYLOAD", "e3b0", "x" * 64])),
)
def test_garbage_requests_never_raise_anything_but_s3_error(
    raw_path: str,
    query: list[tuple[str, str]],
    authorization: str | None,
    date: str | None,
    date_header: str,
    content: str | None,
) -> None:
    headers = [("Host", HOST)]
    if authorization is not None:
        headers.append(("Authorization", authorization))
    if date is not None:
        headers.append((date_header, date))
    if content is not None:
        headers.append(("x-amz-content-sha256", content))
    with contextlib.suppress(S3Error):
        verify(("GET", raw_path, query, headers))


# ---------------------------------------------------------------- headers outside SignedHeaders

# A captured header-signed PUT (SignedHeaders=host;x-amz-content-sha256;x-amz-date) replayed
# within the skew window with one of these added must not be obeyed.
SMUGGLED = [
    ("x-amz-acl", "public-read"),
    ("x-amz-grant-full-control", 'id="attacker"'),
    ("x-amz-copy-source", "/bucket/secret"),
    ("X-Amz-Meta-Owner", "mallory"),
    ("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
]


@pytest.mark.parametrize(("name", "value"), SMUGGLED)
def test_header_signed_request_with_added_unsigned_header_is_denied(name: str, value: str) -> None:
    method, path, pairs, headers = sign_header("PUT", "k", body=b"data")
    signed_list = next(v for k, v in headers if k == "Authorization").split("SignedHeaders=")[1]
    assert signed_list.startswith("host;x-amz-content-sha256;x-amz-date,")
    err = expect_error("AccessDenied", (method, path, pairs, [*headers, (name, value)]))
    assert err.status == 403
    assert err.message == "There were headers present in the request which were not signed"
    assert err.extra["HeadersNotSigned"] == name.lower()


@pytest.mark.parametrize(("name", "value"), SMUGGLED)
def test_presigned_request_with_added_unsigned_header_is_denied(name: str, value: str) -> None:
    method, path, pairs, headers = presign("PUT", "k")
    err = expect_error("AccessDenied", (method, path, pairs, [*headers, (name, value)]))
    assert err.message == "There were headers present in the request which were not signed"
    assert err.extra["HeadersNotSigned"] == name.lower()


def test_every_unsigned_header_is_named_once_sorted() -> None:
    method, path, pairs, headers = sign_header("PUT", "k")
    extra = [("x-amz-acl", "a"), ("X-AMZ-ACL", "b"), ("content-md5", "c"), ("x-amz-b", "d")]
    err = expect_error("AccessDenied", (method, path, pairs, [*headers, *extra]))
    assert err.extra["HeadersNotSigned"] == "content-md5, x-amz-acl, x-amz-b"


def test_signed_amz_headers_and_unsigned_ordinary_headers_verify() -> None:
    signed = {
        "x-amz-acl": "private",
        "x-amz-meta-a": "1",
        "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
    }
    method, path, pairs, headers = sign_header("PUT", "k", headers=signed)
    # Headers S3 does not require to be signed may travel unsigned (proxies add some).
    ordinary = [("User-Agent", "x"), ("Content-Type", "text/plain"), ("Expect", "100-continue")]
    verify((method, path, pairs, [*headers, *ordinary]))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("x-amz-acl", True),
        ("X-Amz-Security-Token", True),
        ("x-amz-", True),
        ("Host", True),
        ("content-md5", True),
        ("Content-Type", False),
        ("x-amzn-trace-id", False),
        ("Range", False),
        ("amz-x-acl", False),
    ],
)
def test_must_be_signed_covers_amz_host_and_content_md5(name: str, expected: bool) -> None:
    assert must_be_signed(name) is expected


def test_unsigned_headers_compares_names_case_insensitively() -> None:
    present = ["Host", "X-Amz-Date", "x-amz-acl", "Content-Type"]
    assert unsigned_headers(present, ["host", "X-AMZ-DATE"]) == ["x-amz-acl"]
    assert unsigned_headers(present, ["host", "x-amz-date", "x-amz-acl"]) == []


# ---------------------------------------------------------------- x-amz-content-sha256 case


def _sign_with_payload_hash(payload_hash: str, body: bytes) -> Request:
    class _Signer(S3SigV4Auth):
        def payload(self, request: AWSRequest) -> str:
            return payload_hash

    req = AWSRequest(method="PUT", url=_url("k", []), headers={}, data=body)
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT):
        _Signer(Credentials(ACCESS_KEY, SECRET), "s3", REGION).add_auth(req)
    return _as_received(req)


def test_uppercase_content_sha256_verifies_and_is_normalised_to_lowercase() -> None:
    digest = hashlib.sha256(b"body").hexdigest()
    req = _sign_with_payload_hash(digest.upper(), b"body")
    assert ("X-Amz-Content-SHA256", digest.upper()) in req[3]
    auth = verify(req)
    assert auth.payload_hash == digest
    assert auth.payload_sha256 == digest


def test_mixed_case_content_sha256_must_still_match_what_was_signed() -> None:
    digest = hashlib.sha256(b"body").hexdigest()
    method, path, pairs, headers = _sign_with_payload_hash(digest.upper(), b"body")
    # The value is signed as sent: lowering it in transit breaks the signature.
    lowered = [(k, v.lower() if k.lower() == "x-amz-content-sha256" else v) for k, v in headers]
    expect_error("SignatureDoesNotMatch", (method, path, pairs, lowered))


# ---------------------------------------------------------------- the presigned window


def test_a_presigned_request_carries_the_window_it_is_valid_in() -> None:
    """What s3/auth.py's memo of verified requests relies on (tests/unit/test_auth_memo.py):
    inside the window the same request checks out again, outside it it does not."""
    req = presign("GET", "window/key", expires=600)
    verified = verify(req)
    assert verified.valid_between == (NOW - timedelta(minutes=15), NOW + timedelta(seconds=600))
    verify(req, NOW + timedelta(seconds=600))
    expect_error("AccessDenied", req, NOW + timedelta(seconds=601))
    verify(req, NOW - timedelta(minutes=15))
    expect_error("AccessDenied", req, NOW - timedelta(minutes=15, seconds=1))
    assert verify(sign_header("GET", "window/key")).valid_between is None
