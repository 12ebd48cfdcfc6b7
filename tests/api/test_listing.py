"""ListObjects v1, ListObjectsV2, ListObjectVersions: pagination, prefixes, encoding, scale."""

from __future__ import annotations

import http.client
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from s3torrent.store import metadata as md
from tests.conftest import LiveServer, make_client, sign_request, start_server

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def put_keys(s3: Any, bucket: str, keys: Iterable[str], workers: int = 16) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b""), keys))


def raw_list_bytes(server: LiveServer, bucket: str, params: dict[str, str]) -> bytes:
    """A listing's body as the server wrote it (boto3 would url-decode keys for us)."""
    query = urlencode(sorted(params.items()), quote_via=quote)
    path = f"/{bucket}?{query}" if query else f"/{bucket}"
    headers = sign_request("GET", server.endpoint + path)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200, body
    return body


def raw_list(server: LiveServer, bucket: str, params: dict[str, str]) -> ET.Element:
    return ET.fromstring(raw_list_bytes(server, bucket, params))


def test_keys_xml_cannot_hold_as_they_are_are_character_references(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    """A carriage return in a key is listed as &#13; (an XML parser would hand a raw one back
    as a line feed: another key), and a control character as its reference, as S3 writes
    them; with encoding-type=url (boto3's default) every key comes back exactly."""
    keys = ["cr\rkey", "lf\nkey", "tab\tkey", "ctl\x01key"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    listed = raw_list(server, bucket, {"list-type": "2", "prefix": "cr"})
    assert [e.text for e in listed.iter() if e.tag.endswith("}Key")] == ["cr\rkey"]
    versions = raw_list(server, bucket, {"versions": "", "prefix": "lf"})
    assert [e.text for e in versions.iter() if e.tag.endswith("}Key")] == ["lf\nkey"]
    body = raw_list_bytes(server, bucket, {"list-type": "2", "prefix": "ctl"})
    assert b"<Key>ctl&#1;key</Key>" in body and b"\x01" not in body
    got = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(got) == sorted(keys)
    for key in keys:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"x"


TREE = [
    "a.txt",
    "dir/",
    "dir/one",
    "dir/sub/two",
    "dir/sub/three",
    "dir2/x",
    "photos/2024/jan/1.jpg",
    "photos/2024/feb/2.jpg",
    "photos/2025/mar/3.jpg",
    "z",
]


@pytest.fixture
def tree(s3: Any, bucket: str) -> str:
    put_keys(s3, bucket, TREE)
    return bucket


def test_list_v2_returns_all_keys_in_byte_order(s3: Any, tree: str) -> None:
    resp = s3.list_objects_v2(Bucket=tree)
    assert [o["Key"] for o in resp["Contents"]] == sorted(TREE)
    assert resp["KeyCount"] == len(TREE)
    assert resp["IsTruncated"] is False
    assert all(o["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"' for o in resp["Contents"])
    assert all(o["Size"] == 0 and o["StorageClass"] == "STANDARD" for o in resp["Contents"])
    assert "Owner" not in resp["Contents"][0]


def test_list_orders_keys_by_utf8_bytes(s3: Any, bucket: str) -> None:
    keys = ["a", "B", "z", "é", "日本", "😀", "~", "a/b", "a-b", "a0"]
    put_keys(s3, bucket, keys)
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode("utf-8"))
    v1 = [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]]
    assert v1 == listed


def test_list_v2_prefix_and_delimiter_give_common_prefixes(s3: Any, tree: str) -> None:
    resp = s3.list_objects_v2(Bucket=tree, Delimiter="/")
    assert [o["Key"] for o in resp["Contents"]] == ["a.txt", "z"]
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["dir/", "dir2/", "photos/"]
    assert resp["KeyCount"] == 5
    sub = s3.list_objects_v2(Bucket=tree, Prefix="dir/", Delimiter="/")
    assert [o["Key"] for o in sub["Contents"]] == ["dir/", "dir/one"]
    assert [p["Prefix"] for p in sub["CommonPrefixes"]] == ["dir/sub/"]
    deep = s3.list_objects_v2(Bucket=tree, Prefix="photos/2024/", Delimiter="/")
    assert "Contents" not in deep
    assert [p["Prefix"] for p in deep["CommonPrefixes"]] == [
        "photos/2024/feb/",
        "photos/2024/jan/",
    ]


def test_list_v2_prefix_without_delimiter(s3: Any, tree: str) -> None:
    resp = s3.list_objects_v2(Bucket=tree, Prefix="dir")
    assert [o["Key"] for o in resp["Contents"]] == sorted(k for k in TREE if k.startswith("dir"))
    none = s3.list_objects_v2(Bucket=tree, Prefix="nothing-here")
    assert none["KeyCount"] == 0
    assert "Contents" not in none


def test_list_v2_multi_character_delimiter(s3: Any, bucket: str) -> None:
    put_keys(s3, bucket, ["x--1", "x--2", "y--z--w", "plain"])
    resp = s3.list_objects_v2(Bucket=bucket, Delimiter="--")
    assert [o["Key"] for o in resp["Contents"]] == ["plain"]
    assert [p["Prefix"] for p in resp["CommonPrefixes"]] == ["x--", "y--"]


def test_list_v2_continuation_pages_cover_keys_and_prefixes_once(s3: Any, tree: str) -> None:
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"Bucket": tree, "Delimiter": "/", "MaxKeys": 2}
        if token:
            kwargs["ContinuationToken"] = token
        resp = s3.list_objects_v2(**kwargs)
        pages += 1
        assert resp["KeyCount"] <= 2
        seen += [o["Key"] for o in resp.get("Contents", [])]
        seen += [p["Prefix"] for p in resp.get("CommonPrefixes", [])]
        if not resp["IsTruncated"]:
            assert "NextContinuationToken" not in resp
            break
        token = resp["NextContinuationToken"]
        assert resp["ContinuationToken" if "ContinuationToken" in kwargs else "MaxKeys"]
    assert sorted(seen) == ["a.txt", "dir/", "dir2/", "photos/", "z"]
    assert len(seen) == len(set(seen))
    assert pages == 3


def test_list_v2_start_after(s3: Any, tree: str) -> None:
    resp = s3.list_objects_v2(Bucket=tree, StartAfter="dir/sub/three")
    assert [o["Key"] for o in resp["Contents"]] == [k for k in sorted(TREE) if k > "dir/sub/three"]
    assert resp["StartAfter"] == "dir/sub/three"
    after_all = s3.list_objects_v2(Bucket=tree, StartAfter="zz")
    assert after_all["KeyCount"] == 0


def test_list_v2_fetch_owner(s3: Any, tree: str) -> None:
    resp = s3.list_objects_v2(Bucket=tree, FetchOwner=True, MaxKeys=1)
    owner = resp["Contents"][0]["Owner"]
    assert owner["ID"] == s3.list_buckets()["Owner"]["ID"]


def test_list_v2_max_keys_zero_and_over_limit(s3: Any, tree: str) -> None:
    zero = s3.list_objects_v2(Bucket=tree, MaxKeys=0)
    assert zero["KeyCount"] == 0
    assert "Contents" not in zero
    big = s3.list_objects_v2(Bucket=tree, MaxKeys=5000)
    assert big["MaxKeys"] == 1000
    assert big["KeyCount"] == len(TREE)


def test_list_v2_empty_continuation_token_starts_at_the_beginning(s3: Any, tree: str) -> None:
    resp = s3.list_objects_v2(Bucket=tree, ContinuationToken="")
    assert resp["ContinuationToken"] == ""
    assert resp["KeyCount"] == len(TREE) and not resp["IsTruncated"]


def test_list_v2_invalid_arguments(s3: Any, tree: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=tree, ContinuationToken="%%%not-base64")
    assert exc.value.response["Error"]["Code"] == "InvalidArgument"
    with pytest.raises(ClientError) as exc2:
        s3.list_objects_v2(Bucket=tree, MaxKeys=-1)
    assert exc2.value.response["Error"]["Code"] == "InvalidArgument"


def test_list_v2_encoding_type_url_encodes_keys_and_prefixes(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    keys = ["sp ace/x", "plus+/y", "ctl\x01key", "é/z"]
    put_keys(s3, bucket, keys)
    root = raw_list(server, bucket, {"list-type": "2", "encoding-type": "url", "delimiter": "/"})
    assert root.findtext(f"{NS}EncodingType") == "url"
    got_keys = [c.findtext(f"{NS}Key") for c in root.findall(f"{NS}Contents")]
    assert got_keys == [quote("ctl\x01key", safe="/")]
    prefixes = [p.findtext(f"{NS}Prefix") for p in root.findall(f"{NS}CommonPrefixes")]
    assert prefixes == [quote(p, safe="/") for p in ["plus+/", "sp ace/", "é/"]]
    # boto3 asks for url encoding and decodes it again: the round trip is lossless.
    listed = s3.list_objects_v2(Bucket=bucket)
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(keys)


def test_list_v1_marker_and_next_marker_with_delimiter(s3: Any, tree: str) -> None:
    first = s3.list_objects(Bucket=tree, Delimiter="/", MaxKeys=2)
    assert first["IsTruncated"] is True
    got = [o["Key"] for o in first.get("Contents", [])]
    got += [p["Prefix"] for p in first.get("CommonPrefixes", [])]
    assert sorted(got) == ["a.txt", "dir/"]
    assert first["NextMarker"] == "dir/"
    second = s3.list_objects(Bucket=tree, Delimiter="/", MaxKeys=2, Marker=first["NextMarker"])
    got2 = [o["Key"] for o in second.get("Contents", [])]
    got2 += [p["Prefix"] for p in second.get("CommonPrefixes", [])]
    assert sorted(got2) == ["dir2/", "photos/"]
    assert second["Marker"] == "dir/"


def test_list_v1_marker_without_delimiter(s3: Any, tree: str) -> None:
    first = s3.list_objects(Bucket=tree, MaxKeys=3)
    assert [o["Key"] for o in first["Contents"]] == sorted(TREE)[:3]
    assert first["IsTruncated"] is True
    rest = s3.list_objects(Bucket=tree, Marker=first["Contents"][-1]["Key"])
    assert [o["Key"] for o in rest["Contents"]] == sorted(TREE)[3:]
    assert rest["IsTruncated"] is False
    assert "Owner" in rest["Contents"][0]


def test_list_object_versions_reports_null_version_ids(s3: Any, tree: str) -> None:
    resp = s3.list_object_versions(Bucket=tree)
    versions = resp["Versions"]
    assert [v["Key"] for v in versions] == sorted(TREE)
    assert {v["VersionId"] for v in versions} == {"null"}
    assert all(v["IsLatest"] for v in versions)
    assert "DeleteMarkers" not in resp
    paged = s3.list_object_versions(Bucket=tree, MaxKeys=4, Prefix="dir")
    assert paged["IsTruncated"] is True
    assert paged["NextKeyMarker"] == sorted(k for k in TREE if k.startswith("dir"))[3]
    assert paged["NextVersionIdMarker"] == "null"


def test_paginators_return_every_key_once_in_order(s3: Any, bucket: str) -> None:
    # Past one 1000-key page; sized for a small shared CI box (every PUT is fsynced).
    n = 1234
    keys = [f"k/{i:05d}" for i in range(n)]
    put_keys(s3, bucket, keys)
    for op, field_name, kwargs in (
        ("list_objects_v2", "Contents", {}),
        ("list_objects", "Contents", {}),
        ("list_object_versions", "Versions", {}),
        ("list_objects_v2", "Contents", {"PaginationConfig": {"PageSize": 333}}),
    ):
        seen: list[str] = []
        pages = 0
        for page in s3.get_paginator(op).paginate(Bucket=bucket, **kwargs):
            pages += 1
            seen += [o["Key"] for o in page.get(field_name, [])]
        assert seen == keys, op
        expected_pages = -(-n // kwargs.get("PaginationConfig", {}).get("PageSize", 1000))
        assert pages == expected_pages, (op, pages)


def test_listing_100k_keys_stays_fast_on_the_last_page(tmp_path: Path) -> None:
    """Keyset pagination: the last page costs what the first does (no OFFSET scans)."""
    srv = start_server(tmp_path)
    try:
        client = make_client(srv.endpoint)
        client.create_bucket(Bucket="big")
        client.put_object(Bucket="big", Key="seed", Body=b"")
        srv.stop()
        # Straight into the server's metadata database (SQLite or PostgreSQL), 100k rows.
        url = srv.env.get("S3TORRENT_METADATA_URL") or (
            f"sqlite:///{srv.data_dir / 'metadata.sqlite3'}"
        )
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            seed = conn.execute(
                sa.select(md.objects.c.owner_id, md.objects.c.headers).where(
                    md.objects.c.bucket == "big"
                )
            ).one()
            now = time.time()
            conn.execute(md.objects.delete().where(md.objects.c.bucket == "big"))
            conn.execute(
                md.objects.insert(),
                [
                    {
                        "bucket": "big",
                        "key": f"deep/{i // 1000:03d}/key-{i:06d}".encode(),
                        "version_id": f"{i:032x}",
                        "size": 0,
                        "etag": '"d41d8cd98f00b204e9800998ecf8427e"',
                        "last_modified": now,
                        "owner_id": seed.owner_id,
                        "headers": seed.headers,
                    }
                    for i in range(100_000)
                ],
            )
        engine.dispose()
        srv.start()
        client = make_client(srv.endpoint)

        def page(params: dict[str, str]) -> tuple[float, list[str], ET.Element]:
            # Raw requests: time the server, not boto3's XML parsing.
            t0 = time.perf_counter()
            root = raw_list(srv, "big", {"list-type": "2", "max-keys": "1000", **params})
            elapsed = time.perf_counter() - t0
            return (
                elapsed,
                [c.findtext(f"{NS}Key") or "" for c in root.findall(f"{NS}Contents")],
                root,
            )

        # The first pages, following continuation tokens...
        first_times: list[float] = []
        token = None
        for n in range(5):
            elapsed, keys, root = page({"continuation-token": token} if token else {})
            assert keys[0] == f"deep/{n:03d}/key-{n * 1000:06d}"
            first_times.append(elapsed)
            token = root.findtext(f"{NS}NextContinuationToken")
        # ...and the last pages, reached with start-after (the same keyset seek).
        last_times: list[float] = []
        for n in range(95, 100):
            elapsed, keys, root = page({"start-after": f"deep/{n - 1:03d}/key-{n * 1000 - 1:06d}"})
            assert keys[0] == f"deep/{n:03d}/key-{n * 1000:06d}"
            assert len(keys) == 1000
            last_times.append(elapsed)
            token = root.findtext(f"{NS}NextContinuationToken")
            if n < 99:
                _, next_keys, _ = page({"continuation-token": token or ""})
                assert next_keys[0] == f"deep/{n + 1:03d}/key-{(n + 1) * 1000:06d}"
        assert root.findtext(f"{NS}IsTruncated") == "false"
        assert keys[-1] == "deep/099/key-099999"
        first = min(first_times[1:])  # page 0 warms caches
        last = min(last_times)
        assert last < 3 * first, f"first pages {first_times}, last pages {last_times}"
        # With a delimiter, one seek per common prefix: 100 prefixes on one page, quickly.
        t0 = time.perf_counter()
        resp = client.list_objects_v2(Bucket="big", Prefix="deep/", Delimiter="/")
        elapsed = time.perf_counter() - t0
        assert len(resp["CommonPrefixes"]) == 100
        assert elapsed < 10 * max(first, 0.05), (elapsed, first)
    finally:
        srv.stop()


def test_empty_continuation_token_is_as_if_absent(server: LiveServer, tree: str) -> None:
    with_empty = raw_list(server, tree, {"list-type": "2", "continuation-token": ""})
    without = raw_list(server, tree, {"list-type": "2"})
    keys = [c.findtext(f"{NS}Key") for c in with_empty.findall(f"{NS}Contents")]
    assert keys == [c.findtext(f"{NS}Key") for c in without.findall(f"{NS}Contents")]
    assert keys


def test_list_v1_url_encoding_leaves_the_prefix_as_asked(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="a b/c d", Body=b"x")
    root = raw_list(server, bucket, {"encoding-type": "url", "prefix": "a b/"})
    assert root.findtext(f"{NS}Prefix") == "a b/"
    assert [c.findtext(f"{NS}Key") for c in root.findall(f"{NS}Contents")] == ["a%20b/c%20d"]


def test_listings_report_the_storage_class_head_reports(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="rr", Body=b"x", StorageClass="REDUCED_REDUNDANCY")
    s3.put_object(Bucket=bucket, Key="std", Body=b"x")
    head = s3.head_object(Bucket=bucket, Key="rr")
    assert head["StorageClass"] == "REDUCED_REDUNDANCY"
    classes = {o["Key"]: o["StorageClass"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert classes == {"rr": "REDUCED_REDUNDANCY", "std": "STANDARD"}
    v1 = {o["Key"]: o["StorageClass"] for o in s3.list_objects(Bucket=bucket)["Contents"]}
    assert v1 == classes
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert {v["Key"]: v["StorageClass"] for v in versions} == classes


def test_optional_object_attributes_other_than_restore_status_are_refused(
    s3: Any, tree: str
) -> None:
    """x-amz-optional-object-attributes names what a listing adds to each entry: S3 knows
    only RestoreStatus (which no object here has, never having been archived) and refuses
    any other name; it was accepted and the listing answered without it."""
    listings = (s3.list_objects, s3.list_objects_v2, s3.list_object_versions)
    for listing in listings:
        resp = listing(Bucket=tree, OptionalObjectAttributes=["RestoreStatus"])
        entries = resp.get("Contents") or resp.get("Versions")
        assert entries and all("RestoreStatus" not in e for e in entries)
        with pytest.raises(ClientError) as exc:
            listing(Bucket=tree, OptionalObjectAttributes=["RestoreStatus", "Owner"])
        assert exc.value.response["Error"]["Code"] == "InvalidArgument"
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
