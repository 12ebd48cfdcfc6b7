"""Conditional and ranged reads on every path that serves an object's bytes: GetObject and
HeadObject on the quick path (small objects) and through aiohttp (large ones, or a small
one behind a request the quick path never takes), and the web seed."""

from __future__ import annotations

import os
import urllib.request
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from botocore.exceptions import ClientError
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.api.test_quick_reads import exchange
from tests.conftest import LiveServer

SMALL = os.urandom(4096)  # kept in its metadata row: answered by the quick path
BIG = os.urandom(300_000)  # a blob file: its GET is streamed by aiohttp


@pytest.fixture
def public(s3: Any, bucket: str) -> str:
    s3.put_object(Bucket=bucket, Key="small", Body=SMALL, ACL="public-read")
    s3.put_object(Bucket=bucket, Key="big", Body=BIG, ACL="public-read")
    return bucket


def status_of(answer: tuple[bytes, bytes]) -> int:
    return int(answer[0].split(b" ", 2)[1])


def header_of(answer: tuple[bytes, bytes], name: str) -> str | None:
    for line in answer[0].split(b"\r\n")[1:]:
        field, _, value = line.partition(b":")
        if field.strip().lower() == name.lower().encode():
            return value.strip().decode()
    return None


def both_paths(
    srv: LiveServer, method: str, target: str, headers: dict[str, str]
) -> list[tuple[bytes, bytes]]:
    """The answer of the quick path (when it takes the request) and of aiohttp (the same
    request behind one the quick path never takes, so the connection is aiohttp's)."""
    case = (method, target, headers)
    (first,) = exchange(srv, [case])
    _, behind = exchange(srv, [("GET", "/_health", {}), case])
    return [first, behind]


def web_seed_target(endpoint: str, bucket: str, key: str) -> str:
    url = f"{endpoint}/{bucket}/{quote(key)}?torrent"
    with urllib.request.urlopen(url, timeout=30) as r:
        torrent = bdecode(r.read())
    seeds = torrent[b"url-list"]
    seed = seeds if isinstance(seeds, bytes) else seeds[0]
    return urlsplit(seed.decode()).path + quote(key)


@pytest.mark.parametrize("key", ["small", "big"])
def test_a_stale_if_range_gets_the_whole_object(
    server: LiveServer, s3: Any, public: str, key: str
) -> None:
    """A client resuming a download sends If-Range with what it had: if the object
    changed since, the Range must be ignored and the whole new object sent (RFC 9110
    13.1.5), or it splices the new object's tail onto the old one's head."""
    data = SMALL if key == "small" else BIG
    head = s3.head_object(Bucket=public, Key=key)
    etag = head["ETag"]
    modified = head["ResponseMetadata"]["HTTPHeaders"]["last-modified"]
    target = f"/{public}/{key}"
    rng = {"Range": "bytes=100-199"}
    for validator in ('"0123456789abcdef0123456789abcdef"', f"W/{etag}", "not a validator",
                      "Mon, 01 Jan 2001 00:00:00 GMT"):  # fmt: skip
        for answer in both_paths(server, "GET", target, {**rng, "If-Range": validator}):
            assert status_of(answer) == 200, validator
            assert answer[1] == data, validator
            assert header_of(answer, "Content-Range") is None
        for answer in both_paths(server, "HEAD", target, {**rng, "If-Range": validator}):
            assert status_of(answer) == 200, validator
            assert header_of(answer, "Content-Length") == str(len(data))
    for validator in (etag, modified):
        for answer in both_paths(server, "GET", target, {**rng, "If-Range": validator}):
            assert status_of(answer) == 206, validator
            assert answer[1] == data[100:200]
            assert header_of(answer, "Content-Range") == f"bytes 100-199/{len(data)}"


def test_the_web_seed_honours_if_range(server: LiveServer, s3: Any, public: str) -> None:
    """Each request on an object of its own: the web seed refuses a lone client a piece it
    was sent a moment before (the offload policy), which is not what is tested here."""
    s3.put_object(Bucket=public, Key="big2", Body=BIG, ACL="public-read")
    etag = s3.head_object(Bucket=public, Key="big2")["ETag"]
    rng = {"Range": "bytes=16384-32767"}
    target = web_seed_target(server.endpoint, public, "big")
    (stale,) = exchange(server, [("GET", target, {**rng, "If-Range": '"not-this-one"'})])
    assert status_of(stale) == 200
    assert stale[1] == BIG
    target = web_seed_target(server.endpoint, public, "big2")
    (fresh,) = exchange(server, [("GET", target, {**rng, "If-Range": etag})])
    assert status_of(fresh) == 206
    assert fresh[1] == BIG[16384:32768]


@pytest.mark.parametrize("key", ["small", "big"])
def test_a_weak_tag_in_if_none_match_is_not_modified(
    server: LiveServer, s3: Any, public: str, key: str
) -> None:
    """If-None-Match compares weakly (RFC 9110 13.1.2): a cache or CDN that weakened the
    ETag it stored (as gzip-ing proxies do) and revalidates with `W/"..."` is told 304,
    not sent the object again; If-Match compares strongly, so `W/"..."` fails it."""
    etag = s3.head_object(Bucket=public, Key=key)["ETag"]
    target = f"/{public}/{key}"
    for method in ("GET", "HEAD"):
        for answer in both_paths(server, method, target, {"If-None-Match": f'"x", W/{etag}'}):
            assert status_of(answer) == 304, method
            assert answer[1] == b""
            assert header_of(answer, "ETag") == etag
        for answer in both_paths(server, method, target, {"If-Match": f"W/{etag}"}):
            assert status_of(answer) == 412, method
    with pytest.raises(s3.exceptions.ClientError) as exc:
        s3.copy_object(
            Bucket=public,
            Key="copy",
            CopySource={"Bucket": public, "Key": key},
            CopySourceIfNoneMatch=f"W/{etag}",
        )
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_copy_source_ranges_with_huge_or_foreign_numbers_are_refused(s3: Any, public: str) -> None:
    """x-amz-copy-source-range of more digits than int() takes (4,300) was a 500, and
    digits of other scripts were read as numbers (`bytes=0-١` copied two bytes)."""
    upload = s3.create_multipart_upload(Bucket=public, Key="parts")["UploadId"]
    cases = {
        "bytes=0-" + "9" * 5000: "InvalidRange",
        "bytes=" + "0" * 5000 + "-1": None,  # leading zeros: still bytes 0-1
        "bytes=0-\u0661": "InvalidArgument",
    }
    for rng, code in cases.items():
        args = {"Bucket": public, "Key": "parts", "UploadId": upload, "PartNumber": 1}
        source = {"Bucket": public, "Key": "small"}
        if code is None:
            s3.upload_part_copy(**args, CopySource=source, CopySourceRange=rng)
            continue
        with pytest.raises(s3.exceptions.ClientError) as exc:
            s3.upload_part_copy(**args, CopySource=source, CopySourceRange=rng)
        assert exc.value.response["Error"]["Code"] == code, rng[:20]


@pytest.mark.parametrize("key", ["small", "big"])
def test_a_range_of_foreign_digits_is_ignored(server: LiveServer, public: str, key: str) -> None:
    data = SMALL if key == "small" else BIG
    for answer in both_paths(server, "GET", f"/{public}/{key}", {"Range": "bytes=\u0661-\u0663"}):
        assert status_of(answer) == 200
        assert answer[1] == data


@pytest.mark.parametrize("key", ["small", "big"])
def test_a_304_carries_the_cache_headers_of_its_200(
    server: LiveServer, s3: Any, s3v4: Any, public: str, key: str
) -> None:
    """RFC 9110 15.4.5: a 304 carries the Cache-Control and Expires its 200 would, since a
    cache revalidating an entry takes them from it: without them a CDN kept the old max-age
    of an object whose Cache-Control a copy onto itself had changed (its ETag stays)."""
    data = SMALL if key == "small" else BIG
    expires = "Wed, 21 Oct 2037 07:28:00 GMT"
    s3.put_object(
        Bucket=public, Key=key, Body=data, ACL="public-read",
        CacheControl="max-age=600", Expires=expires,
    )  # fmt: skip
    etag = s3.head_object(Bucket=public, Key=key)["ETag"]
    target = f"/{public}/{key}"
    for method in ("GET", "HEAD"):
        for answer in both_paths(server, method, target, {"If-None-Match": etag}):
            assert status_of(answer) == 304
            assert header_of(answer, "Cache-Control") == "max-age=600"
            assert header_of(answer, "Expires") == expires
            assert header_of(answer, "ETag") == etag
    url = s3v4.generate_presigned_url(
        "get_object", Params={"Bucket": public, "Key": key, "ResponseCacheControl": "no-store"}
    )
    target = "/" + url.split("/", 3)[3]
    for answer in both_paths(server, "GET", target, {"If-None-Match": etag}):
        assert status_of(answer) == 304
        assert header_of(answer, "Cache-Control") == "no-store"


PAST = "Mon, 01 Jan 2001 00:00:00 GMT"
FUTURE = "Fri, 01 Jan 2100 00:00:00 GMT"


def expected_status(headers: dict[str, str], etag: str) -> int:
    """S3's documented order (RFC 9110 13.2.2): If-Match, else If-Unmodified-Since (412);
    then If-None-Match, else If-Modified-Since (304); an invalid date is no condition."""
    if "If-Match" in headers:
        if headers["If-Match"] not in (etag, "*"):
            return 412
    elif headers.get("If-Unmodified-Since") == PAST:
        return 412
    if "If-None-Match" in headers:
        if headers["If-None-Match"] in (etag, "*"):
            return 304
    elif headers.get("If-Modified-Since") == FUTURE:
        return 304
    return 206 if "Range" in headers else 200


@pytest.mark.parametrize("key", ["small", "big"])
def test_conditions_combine_as_s3_documents_on_both_paths(
    server: LiveServer, s3: Any, public: str, key: str
) -> None:
    """Every combination of the four conditions (each true, false, absent; dates also
    invalid) with and without a Range, GET and HEAD, quick path and aiohttp: the status
    S3 documents (If-Match true beats If-Unmodified-Since false: 200; If-None-Match false
    beats If-Modified-Since true: 304), the same answer on both paths, a 304 with the
    validators and no body, a 412 with PreconditionFailed (a HEAD's with no body)."""
    import itertools

    data = SMALL if key == "small" else BIG
    etag = s3.head_object(Bucket=public, Key=key)["ETag"]
    target = f"/{public}/{key}"
    choices = {
        "If-Match": [None, etag, '"0"', "*"],
        "If-Unmodified-Since": [None, PAST, FUTURE, "yesterday"],
        "If-None-Match": [None, etag, '"0"'],
        "If-Modified-Since": [None, PAST, FUTURE, "32 Foo 2020"],
        "Range": [None, "bytes=5-9"],
    }
    for values in itertools.product(*choices.values()):
        headers = {k: v for k, v in zip(choices, values, strict=True) if v is not None}
        want = expected_status(headers, etag)
        for method in ("GET", "HEAD"):
            quick, through = both_paths(server, method, target, headers)
            assert status_of(quick) == status_of(through) == want, (method, headers)
            if want == 304:
                for answer in (quick, through):
                    assert answer[1] == b""
                    assert header_of(answer, "ETag") == etag
                    assert header_of(answer, "Last-Modified") is not None
            elif want == 412:
                for answer in (quick, through):
                    if method == "HEAD":
                        assert answer[1] == b""
                    else:
                        assert b"<Code>PreconditionFailed</Code>" in answer[1]
            elif method == "GET":
                assert quick[1] == through[1] == (data[5:10] if want == 206 else data)


@pytest.mark.parametrize("key", ["small", "big"])
def test_hostile_ranges_and_tag_lists_are_answered_at_once(
    server: LiveServer, public: str, key: str
) -> None:
    """Thousands of ranges, numbers of thousands of digits, negative and spaced forms, a
    list of a thousand ETags: each answered (the whole object, a range, or aiohttp's 400
    for a field past its 8 KiB), alike on both paths, and on the web seed."""
    data = SMALL if key == "small" else BIG
    many = ",".join(f"{i}-{i}" for i in range(4000))
    cases: list[tuple[dict[str, str], int, bytes]] = [
        ({"Range": "bytes=" + many[:7000]}, 200, data),
        ({"Range": "bytes=" + many}, 400, b""),
        ({"Range": "bytes=" + "9" * 4000 + "-"}, 200, data),
        ({"Range": "bytes=0-" + "9" * 4000}, 200, data),
        ({"Range": "bytes=-5-10"}, 200, data),
        ({"Range": "bytes=--5"}, 200, data),
        ({"Range": "bytes = 1 - 3"}, 206, data[1:4]),
        ({"Range": "bytes=\t1-3"}, 206, data[1:4]),
        ({"If-None-Match": ",".join(f'"{i:032x}"' for i in range(230))}, 200, data),
    ]
    web_seed = web_seed_target(server.endpoint, public, key)
    for headers, status, body in cases:
        for answer in both_paths(server, "GET", f"/{public}/{key}", headers):
            assert status_of(answer) == status, str(headers)[:60]
            if status != 400:
                assert answer[1] == body, str(headers)[:60]
        if "Range" in headers:
            # The web seed may refuse a lone client what it sent it a moment before (503,
            # its offload policy); what it does send is exactly these bytes.
            (seeded,) = exchange(server, [("GET", web_seed, headers)])
            assert status_of(seeded) in (status, 503), str(headers)[:60]
            if status_of(seeded) == status != 400:
                assert seeded[1] == body


def test_an_invalid_read_is_refused_whatever_its_conditions(
    server: LiveServer, s3: Any, s3v4: Any, public: str
) -> None:
    """RFC 9110 13.2.1: preconditions are ignored when the request without them would
    fail. An anonymous GET with response-* overrides, and a Range with partNumber, are 400
    InvalidRequest; a matching If-None-Match or a failing If-Match made them 304 or 412
    (the 304 carrying the anonymous request's override)."""
    etag = s3.head_object(Bucket=public, Key="small")["ETag"]

    def part(method: str) -> str:
        operation = "get_object" if method == "GET" else "head_object"
        params = {"Bucket": public, "Key": "small", "PartNumber": 1}
        return "/" + s3v4.generate_presigned_url(operation, Params=params).split("/", 3)[3]

    cases = [
        (lambda _: f"/{public}/small?response-cache-control=no-store", {}),
        (part, {"Range": "bytes=0-1"}),
    ]
    for target, base in cases:
        for condition in ({}, {"If-None-Match": etag}, {"If-Match": '"0"'},
                          {"If-Modified-Since": FUTURE}):  # fmt: skip
            for method in ("GET", "HEAD"):
                headers = {**base, **condition}
                for answer in both_paths(server, method, target(method), headers):
                    assert status_of(answer) == 400, (target(method), condition, method)
                    if method == "GET":
                        assert b"<Code>InvalidRequest</Code>" in answer[1]


def expected_copy_status(headers: dict[str, str], etag: str) -> int:
    """CopyObject's documented rules: if-match true beats if-unmodified-since false (the
    copy is made); if-none-match false with if-modified-since true is 412; every failing
    copy-source condition is 412 (there is no 304 for a copy)."""
    status = expected_status(headers, etag)
    return 412 if status in (304, 412) else 200


def test_copy_source_conditions_combine_as_s3_documents(s3: Any, public: str) -> None:
    import itertools

    etag = s3.head_object(Bucket=public, Key="small")["ETag"]
    choices = {
        "If-Match": [None, etag, '"0"'],
        "If-Unmodified-Since": [None, PAST, FUTURE, "yesterday"],
        "If-None-Match": [None, etag, '"0"'],
        "If-Modified-Since": [None, PAST, FUTURE, "32 Foo 2020"],
    }
    upload = s3.create_multipart_upload(Bucket=public, Key="parts")["UploadId"]
    # Sent as written (botocore would format a date argument itself, and refuse an invalid one).
    sent: dict[str, str] = {}

    def add_headers(request: Any, **_: Any) -> None:
        for name, value in sent.items():
            request.headers[f"x-amz-copy-source-{name.lower()}"] = value

    copy_object = {"Bucket": public, "Key": "copy", "CopySource": f"{public}/small"}
    part = {**copy_object, "Key": "parts", "UploadId": upload, "PartNumber": 1}
    copies = [("copy_object", copy_object), ("upload_part_copy", part)]
    s3.meta.events.register("before-sign.s3.*", add_headers)
    try:
        for values in itertools.product(*choices.values()):
            headers = {k: v for k, v in zip(choices, values, strict=True) if v is not None}
            want = expected_copy_status(headers, etag)
            sent.clear()
            sent.update(headers)
            for operation, args in copies:
                try:
                    status = getattr(s3, operation)(**args)["ResponseMetadata"]["HTTPStatusCode"]
                except s3.exceptions.ClientError as exc:
                    status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
                assert status == want, headers
    finally:
        s3.meta.events.unregister("before-sign.s3.*", add_headers)


def test_conditions_on_versions_and_delete_markers(
    server: LiveServer, s3: Any, s3v4: Any, bucket: str
) -> None:
    """A read naming a version is conditioned on that version, not the current one; a
    delete marker's 404 (current) and 405 (named) stand whatever the conditions say, with
    their x-amz-delete-marker headers (RFC 9110 13.2.1: conditions are ignored when the
    answer would be an error anyway)."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=bucket, Key="k", Body=b"old")
    s3.put_object(Bucket=bucket, Key="k", Body=b"new")

    def signed(method: str, **params: Any) -> str:
        operation = "get_object" if method == "GET" else "head_object"
        url = s3v4.generate_presigned_url(
            operation, Params={"Bucket": bucket, "Key": "k", **params}
        )
        return "/" + url.split("/", 3)[3]

    for method in ("GET", "HEAD"):
        named = signed(method, VersionId=old["VersionId"])
        cases = [
            ({"If-Match": old["ETag"]}, 200),
            ({"If-None-Match": old["ETag"]}, 304),
            ({"If-Range": old["ETag"], "Range": "bytes=1-"}, 206),
        ]
        for headers, status in cases:
            for answer in both_paths(server, method, named, headers):
                assert status_of(answer) == status, (method, headers)
                if method == "GET" and status != 304:
                    assert answer[1] == b"old"[1 if status == 206 else 0 :]
    marker = s3.delete_object(Bucket=bucket, Key="k")["VersionId"]
    for method in ("GET", "HEAD"):
        for target, status in ((signed(method), 404), (signed(method, VersionId=marker), 405)):
            for condition in ({"If-None-Match": "*"}, {"If-Match": '"0"'}, {"If-Match": "*"}):
                for answer in both_paths(server, method, target, condition):
                    assert status_of(answer) == status, (method, condition)
                    assert header_of(answer, "x-amz-delete-marker") == "true"


@pytest.mark.parametrize("key", ["small", "big"])
def test_part_one_of_an_object_uploaded_whole_is_a_range(
    server: LiveServer, s3: Any, s3v4: Any, public: str, key: str
) -> None:
    """S3 answers ?partNumber=1 of an object uploaded in one piece as a range of all of
    it: 206 with Content-Range (AWS's answer: `Content-Range: bytes 0-9/10` for 10
    bytes), with its checksum when asked for; it was 200 without one here."""
    data = SMALL if key == "small" else BIG
    for method, operation in (("GET", "get_object"), ("HEAD", "head_object")):
        params = {"Bucket": public, "Key": key, "PartNumber": 1}
        url = s3v4.generate_presigned_url(operation, Params=params)
        for answer in both_paths(server, method, "/" + url.split("/", 3)[3], {}):
            assert status_of(answer) == 206
            assert header_of(answer, "Content-Range") == f"bytes 0-{len(data) - 1}/{len(data)}"
            assert header_of(answer, "Content-Length") == str(len(data))
            assert header_of(answer, "x-amz-mp-parts-count") is None
            if method == "GET":
                assert answer[1] == data
    head = s3.head_object(Bucket=public, Key=key, ChecksumMode="ENABLED")
    stored = [name for name in head if name.startswith("Checksum") and name != "ChecksumType"]
    assert stored
    got = s3.get_object(Bucket=public, Key=key, PartNumber=1, ChecksumMode="ENABLED")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == data
    assert [got.get(name) for name in stored] == [head[name] for name in stored]


def test_copy_object_refuses_a_source_range(s3: Any, bucket: str) -> None:
    """x-amz-copy-source-range is UploadPartCopy's: a CopyObject carrying it had copied the
    whole object, not what its sender asked for."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"0123456789")

    def add_range(request: Any, **_: Any) -> None:
        request.headers["x-amz-copy-source-range"] = "bytes=0-3"

    s3.meta.events.register_first("before-sign.s3.CopyObject", add_range)
    try:
        with pytest.raises(ClientError) as exc:
            s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    finally:
        s3.meta.events.unregister("before-sign.s3.CopyObject", add_range)
    assert exc.value.response["Error"]["Code"] == "InvalidArgument"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="dst")
