"""Signatures as an attacker meets them: a captured signed request or presigned URL, a
form signed by a key that no longer signs, headers added in transit."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.error
import urllib.request
from typing import Any

import pytest
import requests

from s3torrent.access import ACCOUNT_ID
from tests.conftest import (
    ROOT_AK,
    ROOT_SK,
    LiveServer,
    UserKeys,
    add_user,
    make_client,
    sign_request,
)


def _admin(server: LiveServer, method: str, path: str) -> int:
    """One admin API request signed by root: its status."""
    url = server.endpoint + path
    headers = sign_request(method, url, {"x-s3torrent-nonce": os.urandom(8).hex()})
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _code(text: str) -> str:
    return text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in text else ""


def test_form_upload_signed_by_a_disabled_users_key_is_refused(server: LiveServer) -> None:
    """A disabled user's key signs nothing: a POST policy it signed before is refused as any
    request it signs is (InvalidAccessKeyId), and nothing is stored under its name."""
    who = add_user(server, f"formdis{os.getpid()}{os.urandom(3).hex()}")
    theirs: Any = make_client(
        server.endpoint, who.access_key, who.secret_key, signature_version="s3v4"
    )
    bucket = f"formdis-{os.urandom(4).hex()}"
    theirs.create_bucket(Bucket=bucket)
    form = theirs.generate_presigned_post(bucket, "late", ExpiresIn=300)
    assert _admin(server, "POST", f"/_admin/users/{who.name}/disable") == 200
    r = requests.post(form["url"], data=form["fields"], files={"file": ("f", b"x")}, timeout=30)
    assert r.status_code == 403, r.text
    assert _code(r.text) == "InvalidAccessKeyId"
    assert _admin(server, "POST", f"/_admin/users/{who.name}/enable") == 200
    try:
        theirs.head_object(Bucket=bucket, Key="late")
        raise AssertionError("the disabled user's form stored an object")
    except theirs.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "404"
    # Enabled again, the same form works: only the key's state was in the way.
    r = requests.post(form["url"], data=form["fields"], files={"file": ("f", b"x")}, timeout=30)
    assert r.status_code == 204, r.text


# ---- a signed header split in two, or two joined in one

# SigV4 and SigV2 sign a header's values joined by commas, so one header `a,b` and two
# headers `a` and `b` carry the same signature: whoever holds a captured request can send
# either. The server must not act on them differently.


def _send_split(
    server: LiveServer,
    path: str,
    signed: dict[str, str],
    sent: list[tuple[str, str]],
    body: bytes = b"data",
    *,
    sigv2: bool = False,
) -> tuple[int, str]:
    """PUT `path` signed with the headers `signed` (one field each), but sent with the
    fields `sent` in their place: the raw request an attacker replays."""
    url = server.endpoint + path
    headers = _sign_v2("PUT", url, signed) if sigv2 else sign_request("PUT", url, signed, body)
    replaced = {name.lower() for name, _ in sent}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("PUT", path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{server.port}")
        conn.putheader("Content-Length", str(len(body)))
        for name, value in headers.items():
            if name.lower() not in replaced and name.lower() not in ("host", "content-length"):
                conn.putheader(name, value)
        for name, value in sent:
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _sign_v2(
    method: str, url: str, headers: dict[str, str], user: UserKeys | None = None
) -> dict[str, str]:
    from botocore.auth import HmacV1Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    keys = (user.access_key, user.secret_key) if user is not None else (ROOT_AK, ROOT_SK)
    req = AWSRequest(method=method, url=url, headers=dict(headers))
    HmacV1Auth(Credentials(*keys)).add_auth(req)
    return dict(req.headers.items())


@pytest.mark.parametrize("sigv2", [False, True], ids=["sigv4", "sigv2"])
def test_a_signed_copy_source_split_in_two_is_refused_not_cut_short(
    server: LiveServer, s3: Any, bucket: str, sigv2: bool
) -> None:
    """A copy of `old,new` signed, sent with `x-amz-copy-source` split at its comma: the
    signature holds, and the server copied `old` (the first field), an object nobody asked
    to copy, into the destination."""
    s3.put_object(Bucket=bucket, Key="old", Body=b"not this one")
    s3.put_object(Bucket=bucket, Key="old,new", Body=b"this one")
    source = f"/{bucket}/old,new"
    status, text = _send_split(
        server,
        f"/{bucket}/copy",
        {"x-amz-copy-source": source},
        [("x-amz-copy-source", f"/{bucket}/old"), ("x-amz-copy-source", "new")],
        b"",
        sigv2=sigv2,
    )
    assert status == 400, text
    assert _code(text) == "InvalidArgument"
    assert "x-amz-copy-source" in text
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert "copy" not in keys
    # Sent as it was signed, the object named is the one copied.
    status, text = _send_split(
        server, f"/{bucket}/copy", {"x-amz-copy-source": source}, [], b"", sigv2=sigv2
    )
    assert status == 200, text
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == b"this one"


def test_repeated_metadata_and_content_headers_are_stored_joined_as_signed(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    """S3 combines headers of one name into a comma-separated list: the user metadata and
    the content headers of a write sent as two fields are stored as the one value signed,
    not the last field alone."""
    signed = {"x-amz-meta-who": "ann,bob", "Cache-Control": "no-cache,no-store"}
    sent = [
        ("x-amz-meta-who", "ann"),
        ("X-Amz-Meta-Who", "bob"),
        ("Cache-Control", "no-cache"),
        ("cache-control", "no-store"),
    ]
    status, text = _send_split(server, f"/{bucket}/joined", signed, sent)
    assert status == 200, text
    head = s3.head_object(Bucket=bucket, Key="joined")
    assert head["Metadata"] == {"who": "ann,bob"}
    assert head["CacheControl"] == "no-cache,no-store"


# ---- a form upload whose request is signed


def test_a_header_signed_form_upload_with_another_body_is_refused(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    """A POST Object signed in its Authorization header (the form itself unsigned: the
    request's signer uploads) names its body's SHA-256 in x-amz-content-sha256. Sent with
    another body (another key, a public ACL, other content), it was stored as the signer's
    upload; the body a signature names must be the body obeyed."""
    signed_body, ctype = _form([("key", b"signed"), ("file", b"signed content")])
    other, _ = _form([("key", b"other"), ("acl", b"public-read"), ("file", b"other content")])
    url = f"{server.endpoint}/{bucket}"
    headers = sign_request("POST", url, {"Content-Type": ctype}, signed_body)
    status, text = _post_raw(server, f"/{bucket}", headers, other)
    assert status == 400, text
    assert _code(text) == "XAmzContentSHA256Mismatch"
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    status, text = _post_raw(server, f"/{bucket}", headers, signed_body)
    assert status == 204, text
    assert s3.get_object(Bucket=bucket, Key="signed")["Body"].read() == b"signed content"
    # Fields after the file are part of the body the signature names too.
    tail, _ = _form([("key", b"tail"), ("file", b"x"), ("x-ignore-later", b"1")])
    headers = sign_request("POST", url, {"Content-Type": ctype}, tail)
    status, text = _post_raw(server, f"/{bucket}", headers, tail.replace(b"1\r\n", b"2\r\n"))
    assert status == 400, text
    assert _code(text) == "XAmzContentSHA256Mismatch"
    status, text = _post_raw(server, f"/{bucket}", headers, tail)
    assert status == 204, text


def _form(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body with these fields in this order ("file" is the file)."""
    boundary = "----auditsigningboundary"
    out = bytearray()
    for name, value in parts:
        disposition = f'form-data; name="{name}"'
        if name == "file":
            disposition += '; filename="f.bin"'
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += value + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def _post_raw(
    server: LiveServer, path: str, headers: dict[str, str], body: bytes
) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={**headers, "Content-Length": str(len(body))})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_a_form_upload_signed_as_aws_chunked_is_refused(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    """A POST signed with a streaming payload marker says its body is aws-chunked, each
    chunk signed; a form is never decoded so, and a plain form sent in its place was
    stored with no chunk signature checked."""
    body, ctype = _form([("key", b"chunked"), ("file", b"content")])
    url = f"{server.endpoint}/{bucket}"
    headers = sign_request(
        "POST",
        url,
        {"Content-Type": ctype, "x-amz-decoded-content-length": str(len(body))},
        body,
        payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    )
    status, text = _post_raw(server, f"/{bucket}", headers, body)
    assert status == 400, text
    assert _code(text) == "InvalidRequest"
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


# ---- SigV2 and the body's SHA-256


def _put_v2(server: LiveServer, path: str, signed: dict[str, str], body: bytes) -> tuple[int, str]:
    headers = _sign_v2("PUT", server.endpoint + path, signed)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("PUT", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_a_sigv2_request_is_held_to_the_body_sha256_it_signed(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    """SigV2 signs every x-amz-* header, x-amz-content-sha256 among them: a request that
    names its body's SHA-256 so is held to it, as an unsigned or a SigV4 one is. It was
    ignored: a captured SigV2 PUT stored any body sent with it."""
    claimed = {"x-amz-content-sha256": hashlib.sha256(b"signed body").hexdigest()}
    status, text = _put_v2(server, f"/{bucket}/v2", claimed, b"another body")
    assert status == 400, text
    assert _code(text) == "XAmzContentSHA256Mismatch"
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    status, text = _put_v2(server, f"/{bucket}/v2", claimed, b"signed body")
    assert status == 200, text
    assert s3.get_object(Bucket=bucket, Key="v2")["Body"].read() == b"signed body"
    # Chunk signatures are SigV4's: a SigV2 request cannot have its chunks checked.
    signed_chunks = {"x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"}
    status, text = _put_v2(server, f"/{bucket}/v2chunks", signed_chunks, b"0\r\n\r\n")
    assert status == 400, text
    assert _code(text) == "InvalidRequest"


def test_a_form_upload_signed_by_its_request_is_judged_by_how_the_request_was_signed(
    server: LiveServer, s3: Any, bob: UserKeys, bucket: str
) -> None:
    """A form without a signature of its own uploads as the request's signer; the access
    decision must see how that request was signed (s3:signatureversion, s3:authType), as
    for any request. It saw nothing: a bucket policy refusing SigV2 let a SigV2-signed
    POST through."""
    principal = {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"}
    resource = f"arn:aws:s3:::{bucket}/*"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": principal, "Action": "s3:PutObject",
             "Resource": resource},
            {"Effect": "Deny", "Principal": principal, "Action": "s3:PutObject",
             "Resource": resource,
             "Condition": {"StringEquals": {"s3:signatureversion": "AWS"}}},
        ],
    }  # fmt: skip
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    body, ctype = _form([("key", b"v2form"), ("file", b"content")])
    path = f"/{bucket}"
    headers = _sign_v2("POST", server.endpoint + path, {"Content-Type": ctype}, bob)
    status, text = _post_raw(server, path, headers, body)
    assert status == 403, text
    assert _code(text) == "AccessDenied"
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    # Signed with SigV4, the same form is allowed.
    url = server.endpoint + path
    headers = sign_request(
        "POST", url, {"Content-Type": ctype}, body, ak=bob.access_key, sk=bob.secret_key
    )
    status, text = _post_raw(server, path, headers, body)
    assert status == 204, text


def test_a_form_upload_with_an_unsigned_payload_is_judged_by_it(
    server: LiveServer, s3: Any, bob: UserKeys, bucket: str
) -> None:
    """A bucket policy refusing unsigned payloads (s3:x-amz-content-sha256) holds for a
    form upload whose request names UNSIGNED-PAYLOAD as it does for a PUT."""
    principal = {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/{bob.name}"}
    resource = f"arn:aws:s3:::{bucket}/*"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": principal, "Action": "s3:PutObject",
             "Resource": resource},
            {"Effect": "Deny", "Principal": principal, "Action": "s3:PutObject",
             "Resource": resource,
             "Condition": {"StringEquals": {"s3:x-amz-content-sha256": "UNSIGNED-PAYLOAD"}}},
        ],
    }  # fmt: skip
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    body, ctype = _form([("key", b"unsigned"), ("file", b"content")])
    url = f"{server.endpoint}/{bucket}"
    keys = {"ak": bob.access_key, "sk": bob.secret_key}
    headers = sign_request(
        "POST", url, {"Content-Type": ctype}, body, payload_hash="UNSIGNED-PAYLOAD", **keys
    )
    status, text = _post_raw(server, f"/{bucket}", headers, body)
    assert status == 403, text
    assert _code(text) == "AccessDenied"
    headers = sign_request("POST", url, {"Content-Type": ctype}, body, **keys)
    status, text = _post_raw(server, f"/{bucket}", headers, body)
    assert status == 204, text


def test_a_large_header_signed_form_upload_is_checked_as_it_streams(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    """Beyond what is stored inline (the blob path), the body's SHA-256 is still checked,
    over the whole body, before the upload is kept."""
    content = os.urandom(3 * 1024 * 1024 + 7)
    body, ctype = _form([("key", b"large"), ("file", content)])
    url = f"{server.endpoint}/{bucket}"
    headers = sign_request("POST", url, {"Content-Type": ctype}, body)
    flipped = bytearray(body)
    flipped[len(body) // 2] ^= 1
    status, text = _post_raw(server, f"/{bucket}", headers, bytes(flipped))
    assert status == 400, text
    assert _code(text) == "XAmzContentSHA256Mismatch"
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    status, text = _post_raw(server, f"/{bucket}", headers, body)
    assert status == 204, text
    assert s3.get_object(Bucket=bucket, Key="large")["Body"].read() == content
