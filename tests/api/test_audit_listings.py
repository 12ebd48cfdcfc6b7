"""Audit of listings and their markers: a marker or token may place a page, never widen it
past the prefix the request (and the policy decision on it) named."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, UserKeys, s3cmd_command


def _versioned(s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def _allow_listing_under(s3: Any, bucket: str, action: str, prefix: str) -> None:
    """A bucket policy letting everyone list only with s3:prefix = `prefix`."""
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": action,
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringEquals": {"s3:prefix": prefix}},
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))


def test_version_marker_outside_the_prefix_lists_nothing_of_its_key(
    s3: Any, bob_s3: Any, bob: UserKeys, bucket: str
) -> None:
    """A user allowed ListBucketVersions only under public/ names a key-marker outside it
    with that key's version id: the page must not hold that key's older versions."""
    _versioned(s3, bucket)
    s3.put_object(Bucket=bucket, Key="secret/x", Body=b"old secret")
    current = s3.put_object(Bucket=bucket, Key="secret/x", Body=b"new secret")["VersionId"]
    s3.put_object(Bucket=bucket, Key="public/a", Body=b"a")
    _allow_listing_under(s3, bucket, "s3:ListBucketVersions", "public/")
    resp = bob_s3.list_object_versions(
        Bucket=bucket, Prefix="public/", KeyMarker="secret/x", VersionIdMarker=current
    )
    listed = [v["Key"] for v in resp.get("Versions", []) + resp.get("DeleteMarkers", [])]
    assert all(k.startswith("public/") for k in listed), listed
    # A marker before the prefix lists the prefix from its start, as without a marker.
    resp = bob_s3.list_object_versions(
        Bucket=bucket, Prefix="public/", KeyMarker="a", VersionIdMarker="null"
    )
    assert [v["Key"] for v in resp.get("Versions", [])] == ["public/a"]


def _upload_listing(s3: Any, bucket: str, **kwargs: Any) -> tuple[list[str], list[str]]:
    resp = s3.list_multipart_uploads(Bucket=bucket, **kwargs)
    return (
        [u["Key"] for u in resp.get("Uploads", [])],
        [p["Prefix"] for p in resp.get("CommonPrefixes", [])],
    )


def test_upload_key_marker_equal_to_the_prefix_skips_only_that_key(s3: Any, bucket: str) -> None:
    """key-marker "a/" with prefix "a/" and delimiter "/": "a/" is no common prefix of this
    listing (its rest after the prefix holds no delimiter), so only uploads of key "a/"
    itself are behind the marker. Before, every upload under a/ was skipped."""
    for key in ("a/", "a/b", "a/c/d", "b"):
        s3.create_multipart_upload(Bucket=bucket, Key=key)
    assert _upload_listing(s3, bucket, Prefix="a/", Delimiter="/", KeyMarker="a/") == (
        ["a/b"],
        ["a/c/"],
    )
    # A marker that is a common prefix of the listing still skips all of its uploads.
    assert _upload_listing(s3, bucket, Delimiter="/", KeyMarker="a/") == (["b"], [])


def _tool_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    return env | {
        "AWS_ACCESS_KEY_ID": ROOT_AK,
        "AWS_SECRET_ACCESS_KEY": ROOT_SK,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def _tool_listings(server: LiveServer, bucket: str, tmp_path: Path) -> dict[str, list[str]]:
    """The bucket's keys as each real client lists them, in small pages."""
    env = _tool_env()
    out: dict[str, list[str]] = {}

    def run(name: str, argv: list[str]) -> str:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
        assert res.returncode == 0, (name, res.stderr[-2000:])
        return res.stdout

    if shutil.which("aws"):
        text = run("aws s3 ls", ["aws", "--endpoint-url", server.endpoint, "s3", "ls",
                                 "--recursive", "--page-size", "97", f"s3://{bucket}"])  # fmt: skip
        out["aws s3 ls"] = [line.split(None, 3)[3] for line in text.splitlines()]
        text = run("aws s3api", ["aws", "--endpoint-url", server.endpoint, "s3api",
                                 "list-objects-v2", "--bucket", bucket, "--page-size", "89",
                                 "--query", "Contents[].Key", "--output", "json"])  # fmt: skip
        out["aws s3api list-objects-v2"] = json.loads(text)
    if shutil.which("rclone"):
        text = run("rclone", ["rclone", "lsf", "-R", "--files-only", "--s3-provider", "Other",
                              "--s3-endpoint", server.endpoint, "--s3-access-key-id", ROOT_AK,
                              "--s3-secret-access-key", ROOT_SK, "--s3-list-chunk", "83",
                              f":s3:{bucket}"])  # fmt: skip
        out["rclone lsf"] = text.splitlines()
    if shutil.which("s3cmd"):
        text = run("s3cmd", [*s3cmd_command(server.endpoint, tmp_path), "ls", "--recursive",
                             f"s3://{bucket}"])  # fmt: skip
        out["s3cmd ls"] = [line.split(None, 3)[3].removeprefix(f"s3://{bucket}/")
                           for line in text.splitlines()]  # fmt: skip
    return out


def test_every_client_lists_each_steady_key_once_while_others_come_and_go(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """Keyset pages: while keys between the steady ones are written and deleted, every
    client's paginated listing holds each steady key exactly once, in byte order."""
    steady = [f"k/{i:05d}" for i in range(1100)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b""), steady))
    stop = threading.Event()
    churned = [0]

    def churn() -> None:
        rng = random.Random(7)
        while not stop.is_set():
            key = f"k/{rng.randrange(1100):05d}~"
            if rng.random() < 0.5:
                s3.put_object(Bucket=bucket, Key=key, Body=b"")
            else:
                s3.delete_object(Bucket=bucket, Key=key)
            churned[0] += 1

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        listings: dict[str, list[str]] = {}
        for op, field, size in (
            ("list_objects_v2", "Contents", 101),
            ("list_objects", "Contents", 103),
            ("list_object_versions", "Versions", 107),
        ):
            pages = s3.get_paginator(op).paginate(
                Bucket=bucket, PaginationConfig={"PageSize": size}
            )
            listings[f"boto3 {op}"] = [o["Key"] for page in pages for o in page.get(field, [])]
        listings |= _tool_listings(server, bucket, tmp_path)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert churned[0] > 0
    for name, keys in listings.items():
        assert keys == sorted(keys, key=lambda k: k.encode()), name
        assert [k for k in keys if not k.endswith("~")] == steady, name


def _version_pages(s3: Any, bucket: str, **kw: Any) -> tuple[list[set[tuple[str, str]]], list[str]]:
    """Each page's (key, version id) of its versions and delete markers (boto3 gives them
    apart, so a page's order is lost: a set), and the common prefixes, following
    NextKeyMarker/NextVersionIdMarker by hand."""
    pages: list[set[tuple[str, str]]] = []
    prefixes: list[str] = []
    markers: dict[str, str] = {}
    for _ in range(500):
        resp = s3.list_object_versions(Bucket=bucket, **kw, **markers)
        page = resp.get("Versions", []) + resp.get("DeleteMarkers", [])
        pages.append({(v["Key"], v["VersionId"]) for v in page})
        assert len(pages[-1]) == len(page)
        prefixes += [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
        if not resp["IsTruncated"]:
            return pages, prefixes
        markers = {"KeyMarker": resp["NextKeyMarker"]}
        if "NextVersionIdMarker" in resp:
            markers["VersionIdMarker"] = resp["NextVersionIdMarker"]
    raise AssertionError("the pages never ended")


def _flat(pages: list[set[tuple[str, str]]]) -> list[tuple[str, str]]:
    return [e for page in pages for e in sorted(page)]


def test_version_pages_over_null_versions_and_delete_markers_cover_each_once(
    s3: Any, bucket: str
) -> None:
    rng = random.Random(45)
    keys = ["a", "b/c", "b/d", "e", "f/g/h"]
    for status in ("Enabled", "Suspended", "Enabled"):
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})
        for _ in range(12):
            key = rng.choice(keys)
            if rng.random() < 0.3:
                s3.delete_object(Bucket=bucket, Key=key)
            else:
                s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    # Pages of one entry give the listing's order.
    ordered = _flat(_version_pages(s3, bucket, MaxKeys=1)[0])
    (whole,), _ = _version_pages(s3, bucket)
    assert sorted(ordered) == sorted(whole) and len(ordered) == len(whole)
    assert any(v == "null" for _, v in whole)
    assert [k for k, _ in ordered] == sorted(k for k, _ in ordered)
    for size in (2, 3, 5):
        pages, _ = _version_pages(s3, bucket, MaxKeys=size)
        assert pages == [set(ordered[i : i + size]) for i in range(0, len(ordered), size)]
        pages, prefixes = _version_pages(s3, bucket, MaxKeys=size, Delimiter="/")
        assert sorted(_flat(pages)) == sorted(e for e in ordered if "/" not in e[0]), size
        assert prefixes == ["b/", "f/"], size
        pages, _ = _version_pages(s3, bucket, MaxKeys=size, Prefix="b/")
        assert sorted(_flat(pages)) == sorted(e for e in ordered if e[0].startswith("b/"))


def test_markers_and_tokens_outside_the_prefix_list_only_under_it(
    s3: Any, bob_s3: Any, bob: UserKeys, bucket: str
) -> None:
    """Allowed ListBucket only with s3:prefix = public/, a user crafts start-after, markers
    and continuation tokens naming keys before, inside and after that prefix (a token is
    base64 of a key): no page holds a key outside public/; a bad token is S3's error."""
    for key in ("a", "public/1", "public/2/x", "secret/x", "zz"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    _allow_listing_under(s3, bucket, "s3:ListBucket", "public/")
    for place in ("", "a", "public/", "public/1", "secret/", "secret/x", "\U0010ffff"):
        token = base64.urlsafe_b64encode(place.encode()).decode()
        for delimiter in ("", "/"):
            d = {"Delimiter": delimiter} if delimiter else {}
            for resp in (
                bob_s3.list_objects_v2(Bucket=bucket, Prefix="public/", StartAfter=place, **d),
                bob_s3.list_objects_v2(
                    Bucket=bucket, Prefix="public/", ContinuationToken=token, **d
                ),
                bob_s3.list_objects(Bucket=bucket, Prefix="public/", Marker=place, **d),
            ):
                keys = [o["Key"] for o in resp.get("Contents", [])]
                keys += [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
                assert all(k.startswith("public/") for k in keys), (place, keys)
    with pytest.raises(ClientError) as exc:
        bob_s3.list_objects_v2(Bucket=bucket, Prefix="public/", ContinuationToken="_w==")
    assert exc.value.response["Error"]["Code"] == "InvalidArgument"
    with pytest.raises(ClientError) as exc:
        bob_s3.list_objects_v2(Bucket=bucket, Prefix="secret/", ContinuationToken=token)
    assert exc.value.response["Error"]["Code"] == "AccessDenied"


def test_upload_markers_outside_the_prefix_list_only_under_it(s3: Any, bucket: str) -> None:
    ids = {
        k: s3.create_multipart_upload(Bucket=bucket, Key=k)["UploadId"] for k in ("a", "p/1", "z")
    }
    for key, uid in ids.items():
        resp = s3.list_multipart_uploads(
            Bucket=bucket, Prefix="p/", KeyMarker=key, UploadIdMarker=uid
        )
        assert all(u["Key"].startswith("p/") for u in resp.get("Uploads", [])), key


def test_upload_paginator_with_a_delimiter_gives_each_entry_once(s3: Any, bucket: str) -> None:
    keys = ["a/1", "a/2", "a/3", "b", "b", "c/d/1", "c/e", "d"]
    for key in keys:
        s3.create_multipart_upload(Bucket=bucket, Key=key)
    for kwargs in ({"Delimiter": "/"}, {}, {"Prefix": "c/", "Delimiter": "/"}):
        uploads: list[str] = []
        prefixes: list[str] = []
        pages = s3.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 1}, **kwargs
        )
        for page in pages:
            uploads += [u["Key"] for u in page.get("Uploads", [])]
            prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        if kwargs == {"Delimiter": "/"}:
            assert (uploads, prefixes) == (["b", "b", "d"], ["a/", "c/"])
        elif kwargs:
            assert (uploads, prefixes) == (["c/e"], ["c/d/"])
        else:
            assert (uploads, prefixes) == (keys, [])
