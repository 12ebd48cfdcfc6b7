"""Reads and what a browser touches (audit h7, 2026-12-08): the web seed's and `?torrent`'s
conditional requests, Range syntax on both read paths, PutBucketCors validation and browser
form uploads (POST Object) with fields that change what is stored."""

from __future__ import annotations

import itertools
import os
from typing import Any

import pytest
import requests

from tests.api.test_audit_conditional_reads import (
    BIG,
    FUTURE,
    PAST,
    both_paths,
    expected_status,
    header_of,
    status_of,
    web_seed_target,
)
from tests.api.test_quick_reads import exchange
from tests.conftest import LiveServer


@pytest.fixture
def public(s3: Any, bucket: str) -> str:
    s3.put_object(Bucket=bucket, Key="big", Body=BIG, ACL="public-read")
    return bucket


# ---- conditions on the web seed and on ?torrent ----


def test_the_web_seed_evaluates_every_precondition(
    server: LiveServer, s3: Any, public: str
) -> None:
    """The web seed answers with the object's ETag (and honoured If-Range) but ignored
    If-Match, If-None-Match and the dates: a cache revalidating a web-seed URL was sent the
    whole object again, and a client that asked for a range only if the object was still
    the one it knew (If-Match) was sent another one's bytes. Now the same evaluation as a
    GET of the object (HEAD, which the offload policy never refuses, for the matrix)."""
    head = s3.head_object(Bucket=public, Key="big")
    etag = head["ETag"]
    target = web_seed_target(server.endpoint, public, "big")
    choices = {
        "If-Match": [None, etag, '"0"', "*"],
        "If-Unmodified-Since": [None, PAST, FUTURE],
        "If-None-Match": [None, etag, '"0"'],
        "If-Modified-Since": [None, PAST, FUTURE],
        "Range": [None, "bytes=5-9"],
    }
    for values in itertools.product(*choices.values()):
        headers = {k: v for k, v in zip(choices, values, strict=True) if v is not None}
        want = expected_status(headers, etag)
        (answer,) = exchange(server, [("HEAD", target, headers)])
        assert status_of(answer) == want, headers
        if want == 304:
            assert header_of(answer, "ETag") == etag
            assert (
                header_of(answer, "Last-Modified")
                == head["ResponseMetadata"]["HTTPHeaders"]["last-modified"]
            )
    # GET: a 304 has no body, a 412 sends none of the object.
    (fresh,) = exchange(server, [("GET", target, {"If-None-Match": etag})])
    assert status_of(fresh) == 304 and fresh[1] == b""
    (stale,) = exchange(server, [("GET", target, {"If-Match": '"0"', "Range": "bytes=0-9"})])
    assert status_of(stale) == 412 and BIG[:10] not in stale[1]
    (modified,) = exchange(server, [("GET", target, {"If-Modified-Since": FUTURE})])
    assert status_of(modified) == 304 and modified[1] == b""


def torrent_target(bucket: str, key: str, form: str = "") -> str:
    return f"/{bucket}/{key}?torrent{form}"


def test_a_torrent_file_revalidates_by_its_etag(server: LiveServer, public: str) -> None:
    """`?torrent` sent an ETag (the .torrent's MD5) but ignored If-None-Match: a cache
    revalidating the torrent file was sent it whole every time. Now If-None-Match gives 304
    and If-Match that fails 412; the file has no Last-Modified (it changes with bucket
    settings, not with the object alone), so the date conditions are ignored (RFC 9110
    13.1.3, 13.1.4: a resource without a modification date)."""
    target = torrent_target(public, "big")
    (first,) = exchange(server, [("GET", target, {})])
    assert status_of(first) == 200
    etag = header_of(first, "ETag")
    assert etag is not None and header_of(first, "Last-Modified") is None
    for method in ("GET", "HEAD"):
        (again,) = exchange(server, [(method, target, {"If-None-Match": f'"x", {etag}'})])
        assert status_of(again) == 304, method
        assert again[1] == b"" and header_of(again, "ETag") == etag
        (weak,) = exchange(server, [(method, target, {"If-None-Match": f"W/{etag}"})])
        assert status_of(weak) == 304, method
        (other,) = exchange(server, [(method, target, {"If-None-Match": '"0"'})])
        assert status_of(other) == 200, method
        (failed,) = exchange(server, [(method, target, {"If-Match": '"0"'})])
        assert status_of(failed) == 412, method
        (held,) = exchange(server, [(method, target, {"If-Match": etag})])
        assert status_of(held) == 200, method
        for date in ({"If-Modified-Since": FUTURE}, {"If-Unmodified-Since": PAST}):
            (ignored,) = exchange(server, [(method, target, date)])
            assert status_of(ignored) == 200, (method, date)
    (body,) = exchange(server, [("GET", target, {"If-None-Match": '"0"'})])
    assert body[1] == first[1]


@pytest.mark.parametrize("form", ["&format=magnet", "&format=html"])
def test_the_other_torrent_forms_revalidate_too(server: LiveServer, public: str, form: str) -> None:
    target = torrent_target(public, "big", form)
    (first,) = exchange(server, [("GET", target, {})])
    assert status_of(first) == 200
    etag = header_of(first, "ETag")
    assert etag is not None
    (again,) = exchange(server, [("GET", target, {"If-None-Match": etag})])
    assert status_of(again) == 304 and again[1] == b""
    (failed,) = exchange(server, [("GET", target, {"If-Match": '"0"'})])
    assert status_of(failed) == 412


# ---- browser form uploads (POST Object) ----


def _post_form(presigned: dict[str, Any], data: bytes, **extra: str) -> requests.Response:
    fields = {**presigned["fields"], **extra}
    return requests.post(presigned["url"], data=fields, files={"file": ("f", data)}, timeout=30)


def _code(r: requests.Response) -> str:
    return r.text.split("<Code>")[1].split("</Code>")[0]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("If-None-Match", "*"),
        ("If-Match", '"d41d8cd98f00b204e9800998ecf8427e"'),
        ("x-amz-grant-read", 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'),
        ("x-amz-grant-full-control", 'id="someone"'),
        ("x-amz-tagging", "a=b"),
    ],
)
def test_form_fields_a_form_does_not_act_on_are_refused(
    s3: Any, s3v4: Any, bucket: str, field: str, value: str
) -> None:
    """A PutObject header sent as a form field that POST Object does not act on was
    accepted and ignored (a signed policy may name any field): `If-None-Match: *` meant to
    create the key only if absent overwrote it, a grant or tags asked for were not given.
    S3 documents none of them for forms; they are refused (NotImplemented), and nothing is
    stored."""
    s3.put_object(Bucket=bucket, Key="kept", Body=b"original")
    p = s3v4.generate_presigned_post(
        bucket, "kept", Fields={field: value}, Conditions=[{field: value}]
    )
    r = _post_form(p, b"replaced")
    assert r.status_code == 501, r.text
    assert _code(r) == "NotImplemented"
    assert field.lower() in r.text.lower()
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"original"


@pytest.mark.parametrize(
    "header",
    [
        {"If-None-Match": "*"},
        {"If-Match": '"d41d8cd98f00b204e9800998ecf8427e"'},
        {"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
    ],
)
def test_a_form_upload_with_a_condition_header_is_refused(
    s3: Any, s3v4: Any, bucket: str, header: dict[str, str]
) -> None:
    """The same conditions sent as the POST request's own headers (fetch() can set them)
    were ignored too: `If-None-Match: *` overwrote the key. Their target would be the
    bucket's URL, not the key the form names; refused before the form is read."""
    s3.put_object(Bucket=bucket, Key="kept", Body=b"original")
    p = s3v4.generate_presigned_post(bucket, "kept")
    r = requests.post(
        p["url"], data=p["fields"], files={"file": ("f", b"replaced")}, headers=header, timeout=30
    )
    assert r.status_code == 501 and _code(r) == "NotImplemented", r.text
    assert s3.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"original"


def test_a_flood_of_fields_and_a_huge_field_name_are_bounded(
    s3v4: Any, server: LiveServer, bucket: str
) -> None:
    """1,000 empty fields exhaust the pre-file budget (MaxPostPreDataLengthExceeded); a
    field name of 1 MB is a part header line longer than the multipart reader takes (400,
    never read whole or a 500); a file before the policy leaves a form without its key."""
    p = s3v4.generate_presigned_post(bucket, "flood")
    many = {f"x-ignore-{i}": "" for i in range(1000)}
    r = _post_form(p, b"x", **many)
    assert r.status_code == 400 and _code(r) == "MaxPostPreDataLengthExceeded", r.text
    boundary = "b0undary"
    name = "x" * (1 << 20)
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\nv\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
        f"data\r\n--{boundary}--\r\n"
    ).encode()
    r = requests.post(
        f"{server.endpoint}/{bucket}",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert r.status_code == 400 and _code(r) == "MalformedPOSTRequest", r.text
    parts = [("file", ("f", b"data"))] + [(k, (None, v)) for k, v in p["fields"].items()]
    r = requests.post(p["url"], files=parts, timeout=30)
    assert r.status_code == 400, r.text
    assert "key" in r.text


def test_a_form_that_fills_its_budget_exactly_is_taken(s3: Any, s3v4: Any, bucket: str) -> None:
    """The fields before the file may use all of `limits.max_post_form_size` (20 KiB). The
    reader asked aiohttp for what was left of the budget plus one byte, and aiohttp's part
    reader asserts on a chunk shorter than its boundary: a form ending within a few bytes of
    the budget was refused as MalformedPOSTRequest; one byte over is still refused."""
    from tests.api.test_post_object import _multipart

    budget, overhead = 20 * 1024, 64
    p = s3v4.generate_presigned_post(bucket, "full")
    parts: list[tuple[str, bytes, str | None]] = [
        (k, v.encode(), None) for k, v in p["fields"].items()
    ]

    def cost(name: str, value: bytes) -> int:
        return overhead + len("Content-Disposition") + len(f'form-data; name="{name}"') + len(value)

    used = sum(cost(k, v) for k, v, _ in parts)
    pad, last = "x-ignore-pad", "x-ignore-last"
    for spare, status in ((2, 204), (-1, 400)):
        # The last field (empty) starts with `spare` bytes of the budget left.
        size = budget - used - cost(pad, b"") - cost(last, b"") - spare
        fields = [*parts, (pad, b"a" * size, None), (last, b"", None)]
        body, ctype = _multipart([*fields, ("file", b"data", "f")])
        r = requests.post(p["url"], data=body, headers={"Content-Type": ctype}, timeout=30)
        assert r.status_code == status, (spare, r.text)
        if status == 400:
            assert _code(r) == "MaxPostPreDataLengthExceeded"
    assert s3.get_object(Bucket=bucket, Key="full")["Body"].read() == b"data"


# ---- Range syntax: one answer on both read paths and the web seed ----

SMALL = os.urandom(4096)

# What each Range is answered with (None: the whole object, 200; else the bytes, 206;
# 416: InvalidRange). Several ranges are ignored whole, as S3 does (aws-c-s3 issue 257:
# `bytes=0-499,500-502` is a 200 of the whole object); what is not one well-formed
# `bytes=` range is ignored (S3 answers `bytes=10-1`, `bytes=1-10a` and a bare `bytes=`
# with the whole object too).
RANGES: dict[str, str | int | None] = {
    "bytes=0-9": "0:10",
    "bytes = 0-9": "0:10",
    "bytes=-10": "n-10:n",
    "bytes=4090-": "4090:n",
    "bytes=0-99999999999999999999": "0:n",
    "bytes={n}-": 416,
    "bytes=-0": 416,
    "bytes=0-9,20-29": None,
    "bytes=0-9, 20-29": None,
    "bytes=0-9,": None,
    "bytes=10-1": None,
    "bytes=1-10a": None,
    "bytes=": None,
    "items=0-9": None,
    # RFC 9110 14.1 has range units compared case-insensitively, but what S3 makes of
    # another spelling is not documented: ignored (the whole object), which RFC 9110 14.2
    # allows any server, alike on every path.
    "BYTES=0-9": None,
}


def _bound(text: str, n: int) -> int:
    return n - int(text[2:]) if text.startswith("n-") else n if text == "n" else int(text)


def test_range_forms_answer_alike_on_both_paths(server: LiveServer, s3: Any, bucket: str) -> None:
    for key, data in (("small", SMALL), ("big", BIG)):
        s3.put_object(Bucket=bucket, Key=key, Body=data, ACL="public-read")
        n = len(data)
        for form, want in RANGES.items():
            rng = form.format(n=n)
            quick, through = both_paths(server, "GET", f"/{bucket}/{key}", {"Range": rng})
            assert status_of(quick) == status_of(through), (key, rng)
            assert quick[1].split(b"<RequestId>")[0] == through[1].split(b"<RequestId>")[0]
            if want is None:
                assert status_of(quick) == 200 and quick[1] == data, (key, rng)
            elif want == 416:
                assert status_of(quick) == 416, (key, rng)
                assert header_of(quick, "Content-Range") == f"bytes */{n}"
            else:
                first, last = str(want).split(":")
                start, end = _bound(first, n), _bound(last, n)
                assert status_of(quick) == 206, (key, rng)
                assert quick[1] == data[start:end], (key, rng)
                assert header_of(quick, "Content-Range") == f"bytes {start}-{end - 1}/{n}"
            if key == "big":
                # The web seed parses a Range as GetObject does (HEAD: no offload policy).
                seed = web_seed_target(server.endpoint, bucket, key)
                (answer,) = exchange(server, [("HEAD", seed, {"Range": rng})])
                assert status_of(answer) == status_of(quick), (key, rng)
                assert header_of(answer, "Content-Range") == header_of(quick, "Content-Range")


@pytest.mark.parametrize("query", ["&format=json", "&format=MAGNET", "&format=", "&magnet=btmh"])
def test_a_torrent_form_the_server_does_not_have_is_refused(
    server: LiveServer, public: str, query: str
) -> None:
    """`format=` names the form of the answer (magnet, html) and `magnet=` the magnet's
    hash; another value, or `magnet=` without `format=magnet`, was answered with the
    .torrent file, which is not what the client asked for."""
    (answer,) = exchange(server, [("GET", torrent_target(public, "big", query), {})])
    assert status_of(answer) == 400, answer
    assert b"<Code>InvalidArgument</Code>" in answer[1]


def test_web_seed_answers_are_revalidated_by_caches(
    server: LiveServer, s3: Any, public: str
) -> None:
    """Since its answers carry Last-Modified (for If-Range and If-Modified-Since), a cache
    could give them a heuristic freshness (RFC 9111 4.2.2: a tenth of their age) and serve
    them on after a revocation. `Cache-Control: no-cache` on every answer, 304s included,
    has a cache ask again, and the question is admitted (or refused) first."""
    etag = s3.head_object(Bucket=public, Key="big")["ETag"]
    target = web_seed_target(server.endpoint, public, "big")
    for headers in ({}, {"Range": "bytes=0-9"}, {"If-None-Match": etag}):
        (answer,) = exchange(server, [("HEAD", target, headers)])
        assert status_of(answer) in (200, 206, 304), headers
        assert header_of(answer, "Cache-Control") == "no-cache", headers
    s3.put_object_acl(Bucket=public, Key="big", ACL="private")
    (revalidated,) = exchange(server, [("HEAD", target, {"If-None-Match": etag})])
    assert status_of(revalidated) == 403
