"""x-amz-meta-* values beyond ASCII come back as S3 returns them: one RFC 2047 encoded word
that decodes to what was sent, whether the wire carried UTF-8, ISO-8859-1 or an encoded word."""

from __future__ import annotations

import http.client
from email.header import decode_header
from typing import Any

from tests.conftest import LiveServer, sign_request


def _decoded(value: str) -> str:
    """What a mail-safe header value says (the decoding an SDK applies)."""
    parts = decode_header(value)
    return "".join(p.decode(c or "ascii") if isinstance(p, bytes) else p for p, c in parts)


def _put_raw(server: LiveServer, path: str, headers: dict[str, bytes | str]) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest("PUT", path, skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": "1"}.items():
            conn.putheader(name, value)
        conn.endheaders(b"x")
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _meta(s3: Any, bucket: str, key: str) -> str:
    head = s3.head_object(Bucket=bucket, Key=key)
    return str(head["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-name"])


def test_a_latin_1_byte_comes_back_as_an_encoded_word(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    # An anonymous write: nothing to sign, so the single byte 0xE9 reaches the store as sent.
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    status = _put_raw(server, f"/{bucket}/latin", {"x-amz-meta-name": b"caf\xe9"})
    assert status == 200
    value = _meta(s3, bucket, "latin")
    assert value == "=?UTF-8?B?Y2Fmw6k=?="
    assert _decoded(value) == "café"


def test_signed_utf8_metadata_comes_back_as_an_encoded_word(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    url = f"{server.endpoint}/{bucket}/utf8"
    # botocore signs the text as UTF-8; the wire carries the same UTF-8 bytes.
    signed = sign_request("PUT", url, {"x-amz-meta-name": "naïve 日本"}, body=b"x")
    headers: dict[str, bytes | str] = {k: v for k, v in signed.items()}
    headers["x-amz-meta-name"] = "naïve 日本".encode()
    assert _put_raw(server, f"/{bucket}/utf8", headers) == 200
    assert _decoded(_meta(s3, bucket, "utf8")) == "naïve 日本"
    got = s3.get_object(Bucket=bucket, Key="utf8")["ResponseMetadata"]["HTTPHeaders"]
    assert got["x-amz-meta-name"].isascii()


def test_encoded_words_and_ascii_values_round_trip(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="word", Body=b"x", Metadata={"name": "=?UTF-8?B?w6k=?="})
    assert _meta(s3, bucket, "word") == "=?UTF-8?B?w6k=?="
    s3.put_object(Bucket=bucket, Key="q", Body=b"x", Metadata={"name": "=?UTF-8?Q?caf=C3=A9?="})
    assert _decoded(_meta(s3, bucket, "q")) == "café"
    s3.put_object(Bucket=bucket, Key="plain", Body=b"x", Metadata={"name": "plain =? text"})
    assert s3.head_object(Bucket=bucket, Key="plain")["Metadata"] == {"name": "plain =? text"}
