"""Bucket CORS (Put/Get/DeleteBucketCors), preflights and CORS headers on live answers."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from fastbencode import bdecode

from tests.conftest import LiveServer, sign_request

NOT_ALLOWED = "CORSResponse: This CORS request is not allowed."
NOT_ENABLED = "CORSResponse: CORS is not enabled for this bucket."


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _rules(**overrides: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "ID": "site",
        "AllowedOrigins": ["https://*.example.com"],
        "AllowedMethods": ["GET", "PUT"],
        "AllowedHeaders": ["x-amz-*", "content-type"],
        "ExposeHeaders": ["ETag", "x-amz-request-id"],
        "MaxAgeSeconds": 600,
    }
    rule.update(overrides)
    return {"CORSRules": [rule]}


def _preflight(
    server: LiveServer, path: str, origin: str | None, method: str | None, headers: str = ""
) -> requests.Response:
    h = {}
    if origin is not None:
        h["Origin"] = origin
    if method is not None:
        h["Access-Control-Request-Method"] = method
    if headers:
        h["Access-Control-Request-Headers"] = headers
    return requests.options(f"{server.endpoint}{path}", headers=h, timeout=10)


def test_put_get_delete_bucket_cors(s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=bucket)
    assert _code(exc) == "NoSuchCORSConfiguration"
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=_rules())
    [rule] = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert rule == _rules()["CORSRules"][0]
    resp = s3.delete_bucket_cors(Bucket=bucket)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_cors(Bucket=bucket)
    assert _code(exc) == "NoSuchCORSConfiguration"


@pytest.mark.parametrize(
    ("rule", "code", "message"),
    [
        ({"AllowedMethods": ["PATCH"]}, "InvalidRequest", "Unsupported method is PATCH"),
        ({"AllowedOrigins": ["https://*.*.com"]}, "InvalidRequest", "more than one wildcard"),
        ({"AllowedHeaders": ["x-*-*"]}, "InvalidRequest", "more than one wildcard"),
        ({"ExposeHeaders": ["x-amz-*"]}, "InvalidRequest", "wildcard for ExposeHeader"),
        ({"ID": "x" * 256}, "InvalidArgument", "255"),
    ],
)
def test_put_bucket_cors_refuses_what_s3_refuses(
    s3: Any, bucket: str, rule: dict[str, Any], code: str, message: str
) -> None:
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=_rules(**rule))
    assert _code(exc) == code
    assert message in exc.value.response["Error"]["Message"]


def test_put_bucket_cors_allows_100_rules_not_101(s3: Any, bucket: str) -> None:
    rule = _rules()["CORSRules"][0]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [rule] * 100})
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [rule] * 101})
    assert _code(exc) == "MalformedXML"


def test_preflight_without_configuration_is_403(server: LiveServer, bucket: str) -> None:
    r = _preflight(server, f"/{bucket}/k", "https://a.example.com", "PUT")
    assert r.status_code == 403
    assert NOT_ENABLED in r.text and "<Code>AccessForbidden</Code>" in r.text
    assert "Access-Control-Allow-Origin" not in r.headers


def test_preflight_answers_from_the_matching_rule(s3: Any, server: LiveServer, bucket: str) -> None:
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=_rules())
    asked = "X-Amz-Meta-A, content-type"
    r = _preflight(server, f"/{bucket}/some/key", "https://app.example.com", "PUT", asked)
    assert r.status_code == 200, r.text
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, PUT"
    assert r.headers["Access-Control-Allow-Headers"] == "x-amz-meta-a, content-type"
    assert r.headers["Access-Control-Max-Age"] == "600"
    assert r.headers["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"
    assert "Origin" in r.headers["Vary"]
    # On the bucket itself too.
    assert _preflight(server, f"/{bucket}", "https://app.example.com", "GET").status_code == 200


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        ("https://evil.com", "PUT", ""),  # origin
        ("http://app.example.com", "PUT", ""),  # scheme is part of the origin
        ("https://app.example.com", "DELETE", ""),  # method
        ("https://app.example.com", "PUT", "authorization"),  # a header no rule allows
    ],
)
def test_preflight_refused_when_no_rule_matches(
    s3: Any, server: LiveServer, bucket: str, origin: str, method: str, headers: str
) -> None:
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=_rules())
    r = _preflight(server, f"/{bucket}/k", origin, method, headers)
    assert r.status_code == 403
    assert NOT_ALLOWED in r.text
    assert "Access-Control-Allow-Origin" not in r.headers


def test_preflight_needs_origin_and_method(s3: Any, server: LiveServer, bucket: str) -> None:
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=_rules())
    assert _preflight(server, f"/{bucket}/k", None, "GET").status_code == 400
    assert _preflight(server, f"/{bucket}/k", "https://a.example.com", None).status_code == 400
    r = _preflight(server, "/no-such-bucket-cors/k", "https://a.example.com", "GET")
    assert r.status_code == 404


def test_star_origin_answers_star_without_credentials(
    s3: Any, server: LiveServer, bucket: str
) -> None:
    s3.put_bucket_cors(
        Bucket=bucket, CORSConfiguration=_rules(AllowedOrigins=["*"], AllowedHeaders=["*"])
    )
    r = _preflight(server, f"/{bucket}/k", "https://anywhere.org", "GET", "range, x-custom")
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in r.headers
    assert r.headers["Access-Control-Allow-Headers"] == "range, x-custom"


def _signed_get(server: LiveServer, path: str, origin: str) -> requests.Response:
    url = f"{server.endpoint}{path}"
    headers = sign_request("GET", url)
    headers["Origin"] = origin  # browsers add it; it is never signed
    return requests.get(url, headers=headers, timeout=10)


def test_actual_answers_carry_cors_headers_errors_included(
    s3: Any, server: LiveServer, bucket: str
) -> None:
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=_rules())
    s3.put_object(Bucket=bucket, Key="k", Body=b"private bytes")
    ok = _signed_get(server, f"/{bucket}/k", "https://app.example.com")
    assert ok.status_code == 200 and ok.content == b"private bytes"
    assert ok.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert ok.headers["Access-Control-Expose-Headers"] == "ETag, x-amz-request-id"
    missing = _signed_get(server, f"/{bucket}/missing", "https://app.example.com")
    assert missing.status_code == 404
    assert missing.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    # An anonymous request is still refused: a rule adds headers, it grants nothing.
    anon = requests.get(
        f"{server.endpoint}/{bucket}/k", headers={"Origin": "https://app.example.com"}, timeout=10
    )
    assert anon.status_code == 403
    assert anon.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    other = _signed_get(server, f"/{bucket}/k", "https://evil.com")
    assert other.status_code == 200
    assert "Access-Control-Allow-Origin" not in other.headers
    plain = requests.get(f"{server.endpoint}/{bucket}/k", headers=sign_request("GET", ok.url))
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_public_objects_get_the_default_rule(s3: Any, server: LiveServer, bucket: str) -> None:
    data = bytes(range(256)) * 400
    s3.put_object(Bucket=bucket, Key="pub.bin", Body=data, ACL="public-read")
    s3.put_object(Bucket=bucket, Key="priv.bin", Body=data)
    origin = {"Origin": "https://viewer.test"}
    url = f"{server.endpoint}/{bucket}/pub.bin"
    ranged = requests.get(url, headers={**origin, "Range": "bytes=10-19"}, timeout=10)
    assert ranged.status_code == 206 and ranged.content == data[10:20]
    assert ranged.headers["Access-Control-Allow-Origin"] == "*"
    exposed = ranged.headers["Access-Control-Expose-Headers"]
    assert {"Content-Range", "ETag", "Accept-Ranges"} <= {h.strip() for h in exposed.split(",")}
    torrent = requests.get(url + "?torrent", headers=origin, timeout=30)
    assert torrent.status_code == 200
    assert torrent.headers["Access-Control-Allow-Origin"] == "*"
    # The web seed the torrent names, cross-origin too.
    [seed] = [u.decode() for u in bdecode(torrent.content)[b"url-list"]]
    seeded = requests.get(seed + "pub.bin", headers={**origin, "Range": "bytes=0-9"}, timeout=10)
    assert seeded.status_code == 206 and seeded.content == data[:10]
    assert seeded.headers["Access-Control-Allow-Origin"] == "*"
    pre = _preflight(server, seed[len(server.endpoint) :] + "pub.bin", "https://v.test", "GET")
    assert pre.status_code == 200 and pre.headers["Access-Control-Allow-Origin"] == "*"
    pre = _preflight(server, f"/{bucket}/pub.bin", "https://v.test", "GET", "range")
    assert pre.status_code == 200
    assert _preflight(server, f"/{bucket}/pub.bin", "https://v.test", "PUT").status_code == 403
    # Not anonymously readable: no default rule, on the answer or the preflight.
    priv = requests.get(f"{server.endpoint}/{bucket}/priv.bin", headers=origin, timeout=10)
    assert priv.status_code == 403 and "Access-Control-Allow-Origin" not in priv.headers
    assert _preflight(server, f"/{bucket}/priv.bin", "https://v.test", "GET").status_code == 403


def test_bucket_rules_replace_the_default(s3: Any, server: LiveServer, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="pub", Body=b"x", ACL="public-read")
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=_rules())
    url = f"{server.endpoint}/{bucket}/pub"
    r = requests.get(url, headers={"Origin": "https://viewer.test"}, timeout=10)
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
    r = requests.get(url, headers={"Origin": "https://a.example.com"}, timeout=10)
    assert r.headers["Access-Control-Allow-Origin"] == "https://a.example.com"


def test_put_bucket_cors_needs_a_digest(server: LiveServer, bucket: str) -> None:
    body = (
        b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
        b"<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>"
    )
    url = f"{server.endpoint}/{bucket}?cors"
    r = requests.put(url, data=body, headers=sign_request("PUT", url, body=body), timeout=10)
    assert r.status_code == 400 and "Content-MD5" in r.text
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    headers = sign_request("PUT", url, {"Content-MD5": md5}, body=body)
    assert requests.put(url, data=body, headers=headers, timeout=10).status_code == 200
    bad = sign_request("PUT", url, {"Content-MD5": md5}, body=body + b" ")
    r = requests.put(url, data=body + b" ", headers=bad, timeout=10)
    assert r.status_code == 400 and "BadDigest" in r.text
