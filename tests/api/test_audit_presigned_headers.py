"""Audit of presigned URLs whose query string carries x-amz-* headers: boto3's SigV2
presigner moves every x-amz-* header there (signed), SDKs hoist them into SigV4 URLs (whose
whole query is signed), and S3 obeys them as headers. Signed, they are obeyed; anything
added after signing (a query parameter, a header) is refused, never obeyed."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import requests
from botocore.exceptions import ClientError

from s3torrent.s3 import sigv2
from tests.api.test_encryption import SSE_C_HTTP, _c_headers, _code, _ssec
from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, make_client, start_server

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("audit-presigned"), env=SSE_C_HTTP)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ps3(srv: LiveServer) -> Any:
    return make_client(srv.endpoint)


_n = [0]


@pytest.fixture
def pbucket(ps3: Any) -> str:
    _n[0] += 1
    name = f"audit-presigned-{os.getpid()}-{_n[0]}"
    ps3.create_bucket(Bucket=name)
    return name


def _v2_url(srv: LiveServer, method: str, path: str, query: dict[str, str]) -> str:
    """A SigV2 presigned URL signing `query`'s x-amz-* parameters as botocore's HmacV1QueryAuth
    does (as canonical x-amz-* headers, then moved into the query)."""
    expires = str(int(time.time()) + 300)
    amz = [(k, v) for k, v in query.items() if k.startswith("x-amz-")]
    to_sign = sigv2.string_to_sign(method, "", "", expires, amz, path)
    signature = sigv2.sign(ROOT_SK, to_sign)
    auth = {"AWSAccessKeyId": ROOT_AK, "Expires": expires, "Signature": signature}
    return f"{srv.endpoint}{path}?{urlencode({**query, **auth}, quote_via=quote)}"


def _v4_url(srv: LiveServer, method: str, path: str, query: dict[str, str]) -> str:
    """A SigV4 presigned URL whose (signed) query carries `query`, as SDKs that hoist x-amz-*
    headers into the query string make them."""
    import botocore.auth
    import botocore.awsrequest
    import botocore.credentials

    url = f"{srv.endpoint}{path}"
    if query:
        url += "?" + urlencode(query, quote_via=quote)
    req = botocore.awsrequest.AWSRequest(method, url)
    creds = botocore.credentials.Credentials(ROOT_AK, ROOT_SK)
    botocore.auth.S3SigV4QueryAuth(creds, "s3", "us-east-1", expires=300).add_auth(req)
    return str(req.url)


def _customer_query(key: bytes) -> dict[str, str]:
    return {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
        "x-amz-server-side-encryption-customer-key-md5": base64.b64encode(
            hashlib.md5(key).digest()
        ).decode(),
    }


def _public_read(ps3: Any, bucket: str, key: str) -> bool:
    grants = ps3.get_object_acl(Bucket=bucket, Key=key)["Grants"]
    return any(g["Grantee"].get("URI") == ALL_USERS and g["Permission"] == "READ" for g in grants)


def _as_header_put_makes_it(ps3: Any, bucket: str, key: str, ssec_key: bytes) -> dict[str, Any]:
    """What the same PutObject sent with headers stores: its metadata and encryption."""
    ps3.put_object(
        Bucket=bucket, Key=key, Body=b"body", ACL="public-read", Metadata={"colour": "blue"},
        **_ssec(ssec_key),
    )  # fmt: skip
    return _shape(ps3, bucket, key, ssec_key)


def _shape(ps3: Any, bucket: str, key: str, ssec_key: bytes) -> dict[str, Any]:
    head = ps3.head_object(Bucket=bucket, Key=key, **_ssec(ssec_key))
    with pytest.raises(ClientError) as exc:
        ps3.head_object(Bucket=bucket, Key=key)  # no key: the object is sealed
    body = ps3.get_object(Bucket=bucket, Key=key, **_ssec(ssec_key))["Body"].read()
    return {
        "metadata": head["Metadata"],
        "algorithm": head.get("SSECustomerAlgorithm"),
        "key_md5": head.get("SSECustomerKeyMD5"),
        "without_key": _code(exc)[1],
        "public_read": _public_read(ps3, bucket, key),
        "body": body,
    }


@pytest.mark.parametrize("signature_version", ["s3", "s3v4"])
def test_a_presigned_put_obeys_the_headers_its_query_carries(
    srv: LiveServer, ps3: Any, pbucket: str, signature_version: str
) -> None:
    """A presigned PUT asking (in its signed query) for public-read, user metadata and SSE-C
    was refused with 501 (before that: stored plaintext, private, without the metadata, and
    answered 200). It now stores the object exactly as the same PutObject sent with headers
    does: sealed under the customer's key, public-read, with the metadata."""
    key = os.urandom(32)
    expected = _as_header_put_makes_it(ps3, pbucket, "by-headers", key)
    assert expected["public_read"] and expected["without_key"] == 400
    if signature_version == "s3":
        # boto3's own SigV2 presigner: it moves every x-amz-* header into the query.
        url = make_client(srv.endpoint).generate_presigned_url(
            "put_object",
            Params={
                "Bucket": pbucket, "Key": "by-query", "ACL": "public-read",
                "Metadata": {"colour": "blue"}, **_ssec(key),
            },
            ExpiresIn=300,
        )  # fmt: skip
        assert "AWSAccessKeyId=" in url and "x-amz-acl=public-read" in url
    else:
        query = {"x-amz-acl": "public-read", "x-amz-meta-colour": "blue", **_customer_query(key)}
        url = _v4_url(srv, "PUT", f"/{pbucket}/by-query", query)
        assert "X-Amz-Signature=" in url and "x-amz-acl=public-read" in url
    r = requests.put(url, data=b"body", timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
    assert _shape(ps3, pbucket, "by-query", key) == expected


@pytest.mark.parametrize("signature_version", ["s3", "s3v4"])
def test_a_presigned_get_reads_an_sse_c_object_with_the_key_in_its_query(
    srv: LiveServer, ps3: Any, pbucket: str, signature_version: str
) -> None:
    """A presigned GET of an SSE-C object carrying the customer key in its signed query (boto3's
    SigV2 presigner puts it there) reads the object, as on S3."""
    key = os.urandom(32)
    ps3.put_object(Bucket=pbucket, Key="c", Body=b"sealed", **_ssec(key))
    if signature_version == "s3":
        url = make_client(srv.endpoint).generate_presigned_url(
            "get_object", Params={"Bucket": pbucket, "Key": "c", **_ssec(key)}, ExpiresIn=300
        )
    else:
        url = _v4_url(srv, "GET", f"/{pbucket}/c", _customer_query(key))
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == b"sealed", r.text


def test_what_is_added_to_a_presigned_url_after_signing_is_never_obeyed(
    srv: LiveServer, ps3: Any, pbucket: str
) -> None:
    """The holder of a presigned URL adds what the signer did not ask for: a query parameter
    or a header (public-read, another customer key, metadata). SigV4 signs its whole query
    and every x-amz-* header must be signed; SigV2 signs its x-amz-* parameters and headers
    as one canonical list: each is 403, and nothing is stored."""
    v2 = _v2_url(srv, "PUT", f"/{pbucket}/k", {"x-amz-acl": "private"})
    v4 = _v4_url(srv, "PUT", f"/{pbucket}/k", {"x-amz-acl": "private"})
    bare_v2 = make_client(srv.endpoint).generate_presigned_url(
        "put_object", Params={"Bucket": pbucket, "Key": "k"}, ExpiresIn=300
    )
    for url in (v2, v4, bare_v2):
        tampered = [
            requests.put(url + "&x-amz-meta-evil=1", data=b"x", timeout=30),
            requests.put(url + "&x-amz-grant-read=uri%3D" + quote(ALL_USERS, safe=""),
                         data=b"x", timeout=30),
            requests.put(url, data=b"x", headers={"x-amz-acl": "public-read"}, timeout=30),
            requests.put(url, data=b"x", headers=_c_headers(os.urandom(32)), timeout=30),
        ]  # fmt: skip
        if "x-amz-acl=private" in url:
            changed = url.replace("x-amz-acl=private", "x-amz-acl=public-read")
            tampered.append(requests.put(changed, data=b"x", timeout=30))
        for r in tampered:
            assert r.status_code == 403, (url, r.status_code, r.text)
    with pytest.raises(ClientError) as exc:
        ps3.head_object(Bucket=pbucket, Key="k")
    assert _code(exc)[1] == 404
    # As signed, the URLs work.
    assert requests.put(v2, data=b"x", timeout=30).status_code == 200
    assert requests.put(v4, data=b"x", timeout=30).status_code == 200
    assert not _public_read(ps3, pbucket, "k")


def test_a_header_signed_twice_in_query_and_header_is_refused(
    srv: LiveServer, ps3: Any, pbucket: str
) -> None:
    """A SigV2 URL whose signer put x-amz-acl both in the query and among the headers signs
    both values; neither is picked: 400 InvalidArgument, as for a header sent twice."""
    path = f"/{pbucket}/twice"
    expires = str(int(time.time()) + 300)
    amz = [("x-amz-acl", "public-read"), ("x-amz-acl", "private")]  # header first
    to_sign = sigv2.string_to_sign("PUT", "", "", expires, amz, path)
    query = {"x-amz-acl": "private", "AWSAccessKeyId": ROOT_AK, "Expires": expires,
             "Signature": sigv2.sign(ROOT_SK, to_sign)}  # fmt: skip
    url = f"{srv.endpoint}{path}?{urlencode(query, quote_via=quote)}"
    r = requests.put(url, data=b"x", headers={"x-amz-acl": "public-read"}, timeout=30)
    assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text, r.text


def test_what_is_not_implemented_stays_refused_from_the_query(
    srv: LiveServer, ps3: Any, pbucket: str
) -> None:
    """Headers in a query are refused as the same headers are: a storage class not kept, SSE-KMS;
    and x-amz-copy-source, which would make the PUT another operation than the one routed,
    is 501 as before."""
    ps3.put_object(Bucket=pbucket, Key="src", Body=b"src")
    for query, status, code in (
        ({"x-amz-storage-class": "GLACIER"}, 400, "InvalidStorageClass"),
        ({"x-amz-server-side-encryption-aws-kms-key-id": "k"}, 501, "NotImplemented"),
        ({"x-amz-copy-source": f"/{pbucket}/src"}, 501, "NotImplemented"),
    ):
        for url in (
            _v2_url(srv, "PUT", f"/{pbucket}/dst", query),
            _v4_url(srv, "PUT", f"/{pbucket}/dst", query),
        ):
            r = requests.put(url, data=b"x", timeout=30)
            assert r.status_code == status and f"<Code>{code}</Code>" in r.text, (query, r.text)
    with pytest.raises(ClientError) as exc:
        ps3.head_object(Bucket=pbucket, Key="dst")
    assert _code(exc)[1] == 404


def test_a_sigv2_presigned_put_holds_the_body_to_its_signed_content_md5(
    srv: LiveServer, ps3: Any, pbucket: str
) -> None:
    """boto3's SigV2 presigner also moves Content-MD5 and Content-Type into the query, and the
    server signed them from there (when not sent as headers): a URL presigned for one body
    (its MD5 signed, so that nothing else can be uploaded with it) took any body, stored with
    no Content-Type. Signed there, they are now the request's headers: another body is 400
    BadDigest, the intended one is stored with the signed type."""
    intended = b"intended"
    md5 = base64.b64encode(hashlib.md5(intended).digest()).decode()
    url = make_client(srv.endpoint).generate_presigned_url(
        "put_object",
        Params={"Bucket": pbucket, "Key": "k", "ContentMD5": md5, "ContentType": "text/plain"},
        ExpiresIn=300,
    )
    assert "content-md5=" in url and "AWSAccessKeyId=" in url
    r = requests.put(url, data=b"something else", timeout=30)
    assert r.status_code == 400 and "<Code>BadDigest</Code>" in r.text, r.text
    with pytest.raises(ClientError) as exc:
        ps3.head_object(Bucket=pbucket, Key="k")
    assert _code(exc)[1] == 404
    assert requests.put(url, data=intended, timeout=30).status_code == 200
    head = ps3.head_object(Bucket=pbucket, Key="k")
    assert head["ContentType"] == "text/plain" and head["ContentLength"] == len(intended)
    # Sent as headers too, the headers are what is signed (and the query's are not read).
    r = requests.put(
        url, data=intended, headers={"Content-MD5": md5, "Content-Type": "text/plain"}, timeout=30
    )
    assert r.status_code == 200, r.text


def test_a_line_break_in_a_header_of_the_query_is_refused(
    srv: LiveServer, ps3: Any, pbucket: str
) -> None:
    """A header sent as a header cannot hold a line break; one in a query can. Taken from a
    signed query as a header, a Content-Type holding one was stored, and every GET of the
    object was then a 500 (aiohttp refuses to send such a header). Refused (400, as S3
    refuses such a response-content-type), as is any x-amz-* value holding one."""
    path = f"/{pbucket}/broken"
    expires = str(int(time.time()) + 300)
    content_type = "text/plain\r\nSet-Cookie: a=b"
    to_sign = sigv2.string_to_sign("PUT", "", content_type, expires, [], path)
    query = {"content-type": content_type, "AWSAccessKeyId": ROOT_AK, "Expires": expires,
             "Signature": sigv2.sign(ROOT_SK, to_sign)}  # fmt: skip
    urls = [
        f"{srv.endpoint}{path}?{urlencode(query, quote_via=quote)}",
        _v4_url(srv, "PUT", path, {"x-amz-meta-a": "one\ntwo"}),
        _v2_url(srv, "PUT", path, {"x-amz-meta-a": "one\rtwo"}),
    ]
    for url in urls:
        r = requests.put(url, data=b"x", timeout=30)
        assert r.status_code == 400 and "<Code>InvalidArgument</Code>" in r.text, r.text
    with pytest.raises(ClientError) as exc:
        ps3.head_object(Bucket=pbucket, Key="broken")
    assert _code(exc)[1] == 404


def test_what_sigv2_does_not_sign_of_a_value_is_not_obeyed(
    srv: LiveServer, ps3: Any, pbucket: str
) -> None:
    """SigV2 signs a value trimmed of whitespace (Python's and S3's: spaces, tabs, and others
    such as U+00A0 and U+0085), so the holder of a SigV2 URL may add some around a signed
    value without breaking the signature. What is obeyed is what was signed: the trimmed
    value, never the holder's additions."""
    url = _v2_url(srv, "PUT", f"/{pbucket}/k", {"x-amz-meta-colour": "blue"})
    padded = url.replace("x-amz-meta-colour=blue", "x-amz-meta-colour=%C2%A0blue%C2%85%09")
    assert padded != url
    r = requests.put(padded, data=b"x", timeout=30)
    assert r.status_code == 200, r.text
    assert ps3.head_object(Bucket=pbucket, Key="k")["Metadata"] == {"colour": "blue"}


def test_a_bucket_policy_sees_the_headers_of_the_query(
    srv: LiveServer, ps3: Any, pbucket: str
) -> None:
    """A condition on s3:x-amz-acl (or any header's key) is tested on the headers a
    presigned URL's query carries, as on headers: moving x-amz-acl into the query does not
    get a public-read object past a policy that denies it."""
    import json

    from tests.conftest import add_user

    bob = add_user(srv, f"pbob{os.getpid()}")
    arn = f"arn:aws:s3:::{pbucket}/*"
    statements = [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:PutObject", "Resource": arn},
        {
            "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": arn,
            "Condition": {"StringEquals": {"s3:x-amz-acl": "public-read"}},
        },
    ]  # fmt: skip
    policy = {"Version": "2012-10-17", "Statement": statements}
    ps3.put_bucket_policy(Bucket=pbucket, Policy=json.dumps(policy))
    presigner = make_client(srv.endpoint, bob.access_key, bob.secret_key)
    for params in ({"ACL": "public-read"}, {}):
        url = presigner.generate_presigned_url(
            "put_object", Params={"Bucket": pbucket, "Key": "p", **params}, ExpiresIn=300
        )
        r = requests.put(url, data=b"x", timeout=30)
        assert r.status_code == (403 if params else 200), (params, r.text)
    assert not _public_read(ps3, pbucket, "p")
