"""An attacker's audit of what a browser touches: bucket CORS (rules, preflights, the headers
of answers) and browser form uploads (POST Object), as S3 does them."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, UserKeys, make_client, sign_request, start_server

DOMAIN = "s3.localtest"


def _rule(**overrides: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "AllowedOrigins": ["https://app.example.com"],
        "AllowedMethods": ["GET", "PUT"],
        "AllowedHeaders": ["*"],
    }
    rule.update(overrides)
    return rule


def _post(presigned: dict[str, Any], data: bytes, **extra: str) -> requests.Response:
    fields = {**presigned["fields"], **extra}
    return requests.post(presigned["url"], data=fields, files={"file": ("f.bin", data)}, timeout=30)


def _code(r: requests.Response) -> str:
    return r.text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in r.text else ""


def _allow_put(s3: Any, bucket: str) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "*"},
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def _ownership(s3: Any, bucket: str, rule: str) -> None:
    s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": rule}]}
    )


# ---------------------------------------------------------------- virtual hosts


@pytest.fixture(scope="module")
def vhost_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("vhost-cors"), "--domain", DOMAIN)
    yield srv
    srv.stop()


def test_virtual_host_preflight_of_a_key_starting_with_underscore(
    vhost_server: LiveServer,
) -> None:
    """On a virtual host the path is all key: `/_next/app.js` is an object of the Host's
    bucket (a static site's usual layout), and its preflight is answered from that bucket's
    rules like any other key's."""
    s3 = make_client(vhost_server.endpoint)
    s3.create_bucket(Bucket="site")
    s3.put_bucket_cors(Bucket="site", CORSConfiguration={"CORSRules": [_rule()]})
    s3.put_object(Bucket="site", Key="_next/app.js", Body=b"js", ACL="public-read")
    host = {"Host": f"site.{DOMAIN}:{vhost_server.port}"}
    url = f"{vhost_server.endpoint}/_next/app.js"
    origin = {"Origin": "https://app.example.com"}
    got = requests.get(url, headers={**host, **origin}, timeout=10)
    assert got.status_code == 200 and got.content == b"js"
    assert got.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    pre = requests.options(
        url, headers={**host, **origin, "Access-Control-Request-Method": "GET"}, timeout=10
    )
    assert pre.status_code == 200, pre.text
    assert pre.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    # The server's own paths stay no bucket's, whatever the Host: the bucket's rules do not
    # open the admin API to its origins.
    admin = requests.options(
        f"{vhost_server.endpoint}/_admin/users",
        headers={**host, **origin, "Access-Control-Request-Method": "GET"},
        timeout=10,
    )
    assert admin.status_code == 403
    assert "Access-Control-Allow-Origin" not in admin.headers


# ---------------------------------------------------------------- form uploads


def test_form_acl_in_a_bucket_without_acls_is_refused(
    s3: Any, bob_s3: Any, bucket: str, bob: UserKeys
) -> None:
    """BucketOwnerEnforced: a form's `acl` is refused as PutObject's x-amz-acl is, and what
    a form writes is the bucket owner's."""
    _ownership(s3, bucket, "BucketOwnerEnforced")
    _allow_put(s3, bucket)
    with pytest.raises(ClientError) as exc:
        bob_s3.put_object(Bucket=bucket, Key="put", Body=b"x", ACL="public-read")
    assert exc.value.response["Error"]["Code"] == "AccessControlListNotSupported"
    p = bob_s3.generate_presigned_post(
        bucket, "form", Fields={"acl": "public-read"}, Conditions=[{"acl": "public-read"}]
    )
    r = _post(p, b"x")
    assert r.status_code == 400, r.text
    assert _code(r) == "AccessControlListNotSupported"
    r = _post(bob_s3.generate_presigned_post(bucket, "plain"), b"x")
    assert r.status_code == 204, r.text
    owner = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"][0]["Owner"]["ID"]
    assert owner == s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]


def test_form_bucket_owner_full_control_makes_the_bucket_owner_own_it(
    s3: Any, bob_s3: Any, bucket: str
) -> None:
    _ownership(s3, bucket, "BucketOwnerPreferred")
    _allow_put(s3, bucket)
    canned = "bucket-owner-full-control"
    p = bob_s3.generate_presigned_post(
        bucket, "k", Fields={"acl": canned}, Conditions=[{"acl": canned}]
    )
    assert _post(p, b"x").status_code == 204
    owner = s3.get_object_acl(Bucket=bucket, Key="k")["Owner"]["ID"]
    assert owner == s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Content-Type", "text/html\r\nSet-Cookie: session=attacker"),
        ("Cache-Control", "no-cache\nX-Injected: 1"),
        ("Content-Disposition", "inline\x01"),
        ("success_action_redirect", "https://example.com/ok\r\nSet-Cookie: a=b"),
    ],
)
def test_form_fields_that_become_headers_hold_no_line_breaks(
    s3: Any, s3v4: Any, server: LiveServer, bucket: str, field: str, value: str
) -> None:
    """A form field's value is any text; a header's never holds a line break. Stored, such
    a value made every GET of the object a 500 (aiohttp refuses to write it), and as the
    redirect it made the upload's own answer a dropped connection."""
    p = s3v4.generate_presigned_post(
        bucket, "nl", Fields={field: value}, Conditions=[["starts-with", f"${field}", ""]]
    )
    r = _post(p, b"x")
    assert r.status_code == 400, r.text
    assert _code(r) == "InvalidArgument"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="nl")
    assert exc.value.response["Error"]["Code"] == "404"
    # User metadata is returned RFC 2047-encoded, so its line breaks are kept and harmless.
    p = s3v4.generate_presigned_post(
        bucket,
        "meta",
        Fields={"x-amz-meta-note": "two\nlines"},
        Conditions=[["starts-with", "$x-amz-meta-note", ""]],
    )
    assert _post(p, b"x").status_code == 204
    url = f"{server.endpoint}/{bucket}/meta"
    got = requests.get(url, headers=sign_request("GET", url), timeout=10)
    assert got.status_code == 200 and got.content == b"x"
    assert got.headers["x-amz-meta-note"].startswith("=?UTF-8?B?")


def _put_cors_xml(server: LiveServer, bucket: str, body: bytes) -> requests.Response:
    url = f"{server.endpoint}/{bucket}?cors"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    headers = sign_request("PUT", url, {"Content-MD5": md5}, body=body)
    return requests.put(url, data=body, headers=headers, timeout=10)


@pytest.mark.parametrize("expose", ["x-a&#13;&#10;Set-Cookie: a=b", "x-a&#10;x-b", "x a", "é"])
def test_expose_header_is_a_header_name(
    s3: Any, server: LiveServer, bucket: str, expose: str
) -> None:
    """ExposeHeader is returned as Access-Control-Expose-Headers' value: one with a line
    break had been stored, and every answer to a matching Origin was then a dropped
    connection (aiohttp refuses to write it)."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", ACL="public-read")
    body = (
        "<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
        f"<AllowedMethod>GET</AllowedMethod><ExposeHeader>{expose}</ExposeHeader>"
        "</CORSRule></CORSConfiguration>"
    ).encode()
    r = _put_cors_xml(server, bucket, body)
    assert r.status_code == 400, r.text
    assert _code(r) == "InvalidRequest"
    got = requests.get(
        f"{server.endpoint}/{bucket}/k", headers={"Origin": "https://a.test"}, timeout=10
    )
    assert got.status_code == 200 and got.content == b"x"


def test_form_content_md5_is_checked(s3: Any, s3v4: Any, bucket: str) -> None:
    """S3 documents the Content-MD5 form field: the file is checked against it. It had been
    ignored, and a file that was not the one the client hashed was stored."""
    data = b"the bytes the page hashed"

    def post(key: str, md5: str, body: bytes) -> requests.Response:
        p = s3v4.generate_presigned_post(
            bucket, key, Fields={"Content-MD5": md5}, Conditions=[{"Content-MD5": md5}]
        )
        return _post(p, body)

    right = base64.b64encode(hashlib.md5(data).digest()).decode()
    r = post("bad", right, data + b" and one more")
    assert r.status_code == 400 and _code(r) == "BadDigest", r.text
    r = post("invalid", "not-an-md5", data)
    assert r.status_code == 400 and _code(r) == "InvalidDigest", r.text
    for key in ("bad", "invalid"):
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket=bucket, Key=key)
        assert exc.value.response["Error"]["Code"] == "404"
    r = post("good", right, data)
    assert r.status_code == 204, r.text
    assert s3.get_object(Bucket=bucket, Key="good")["Body"].read() == data


def test_answers_without_origin_say_they_vary_by_it(
    s3: Any, server: LiveServer, bucket: str
) -> None:
    """Whether an answer carries Access-Control-* headers depends on the Origin, sent or
    not: a cache (the browser's, when a page shows an object and then fetch()es it, or a
    shared one) had answered the CORS read from the copy read without an Origin."""
    s3.put_object(Bucket=bucket, Key="pub", Body=b"x", ACL="public-read")
    url = f"{server.endpoint}/{bucket}/pub"
    # The default rule (public objects), on the quick path's small reads too.
    for _ in range(2):
        assert "Origin" in requests.get(url, timeout=10).headers.get("Vary", "")
    assert "Origin" in requests.head(url, timeout=10).headers.get("Vary", "")
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [_rule()]})
    plain = requests.get(url, timeout=10)
    assert plain.status_code == 200 and "Origin" in plain.headers["Vary"]
    other = requests.get(url, headers={"Origin": "https://evil.test"}, timeout=10)
    assert "Access-Control-Allow-Origin" not in other.headers
    assert "Origin" in other.headers["Vary"]
    missing = requests.get(f"{server.endpoint}/{bucket}/missing", timeout=10)
    assert missing.status_code == 403 and "Origin" in missing.headers["Vary"]
    # A bucket without rules: its listing's answers do not depend on an Origin.
    s3.delete_bucket_cors(Bucket=bucket)
    listing = requests.get(f"{server.endpoint}/{bucket}", timeout=10)
    assert "Vary" not in listing.headers


def test_cors_configuration_is_at_most_64_kb(s3: Any, bucket: str) -> None:
    """S3 limits the document to 64 KB. Every answer to a request with an Origin is matched
    against it: a 2 MiB one (tens of thousands of origins) had been taken, which made each
    such request, anyone's, cost tens of milliseconds of the server's CPU."""

    def config(origins: int) -> dict[str, Any]:
        listed = [f"https://*.site{i:05d}.example.com" for i in range(origins)]
        return {"CORSRules": [_rule(AllowedOrigins=listed)]}

    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=config(1000))  # about 63 KB
    with pytest.raises(ClientError) as exc:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=config(1100))  # about 69 KB
    assert exc.value.response["Error"]["Code"] == "MaxMessageLengthExceeded"
    assert len(s3.get_bucket_cors(Bucket=bucket)["CORSRules"][0]["AllowedOrigins"]) == 1000


@pytest.mark.parametrize(
    "rule",
    [
        "<ExposeHeaders>ETag</ExposeHeaders>",  # misspelt: had been dropped silently
        "<MaxAge>600</MaxAge>",
        "<MaxAgeSeconds>1</MaxAgeSeconds><MaxAgeSeconds>2</MaxAgeSeconds>",
        "<ID>a</ID><ID>b</ID>",
    ],
)
def test_cors_rule_elements_are_s3_schemas(server: LiveServer, bucket: str, rule: str) -> None:
    body = (
        "<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
        f"<AllowedMethod>GET</AllowedMethod>{rule}</CORSRule></CORSConfiguration>"
    ).encode()
    r = _put_cors_xml(server, bucket, body)
    assert r.status_code == 400 and _code(r) == "MalformedXML", r.text


def test_cors_configuration_holds_rules_only(server: LiveServer, bucket: str) -> None:
    rule = "<CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule>"
    body = f"<CORSConfiguration>{rule}<CORSRules>{rule}</CORSRules></CORSConfiguration>"
    r = _put_cors_xml(server, bucket, body.encode())
    assert r.status_code == 400 and _code(r) == "MalformedXML", r.text
    ok = _put_cors_xml(server, bucket, f"<CORSConfiguration>{rule}</CORSConfiguration>".encode())
    assert ok.status_code == 200, ok.text
