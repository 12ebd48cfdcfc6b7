"""s3.xml.render builds strings instead of an element tree (listing pages are thousands of
elements); its bytes must be the ones ElementTree wrote, escaping included."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import pytest

from s3torrent.s3 import xml as s3xml
from s3torrent.s3.ops.listing import version_entries
from s3torrent.store.rows import ObjectVersion

# Keys S3 accepts that are hard to render: markup characters, entities, quotes, unicode
# beyond the BMP, combining marks, whitespace, and (sent with encoding-type=url)
# control characters.
TRICKY = [
    "plain/key.txt",
    "a&b<c>d",
    "&amp;&lt;already escaped&gt;",
    "]]>cdata end",
    "quotes \"double\" and 'single'",
    "<Key>injected</Key>",
    "unicode/日本語/ключ/🚀🎉",
    "e\u0301 combining",
    "tab\there",
    "  leading and trailing  ",
    "",
    "0",
    "emoji \U0001f600 & <tags>",
]
CONTROL = ["\x01start", "bell\x07", "nul\x00byte", "cr\rlf\n", "\x1f\x7f"]


def _reference_append(parent: ET.Element, name: str, value: Any) -> None:
    """The element-tree renderer this module used before (kept as the reference)."""
    if value is None:
        return
    if isinstance(value, list):
        for item in value:
            _reference_append(parent, name, item)
        return
    el = ET.SubElement(parent, name)
    if isinstance(value, dict):
        for k, v in value.items():
            _reference_append(el, k, v)
    elif isinstance(value, bool):
        el.text = "true" if value else "false"
    else:
        el.text = str(value)


def _reference(
    root: str, children: Iterable[tuple[str, Any]], ns: bool = True, text: str | None = None
) -> bytes:
    el = ET.Element(root)
    if ns:
        el.set("xmlns", s3xml.S3_NS)
    el.text = text
    for name, value in children:
        _reference_append(el, name, value)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(el, encoding="utf-8")


def _version_listing(keys: list[str], url: bool) -> list[tuple[str, Any]]:
    def enc(k: str) -> str:
        return quote(k, safe="/") if url else k

    children: list[tuple[str, Any]] = [
        ("Name", "bucket"),
        ("Prefix", enc(keys[0])),
        ("KeyMarker", ""),
        ("VersionIdMarker", ""),
        ("MaxKeys", 1000),
        ("Delimiter", None),
        ("IsTruncated", False),
    ]
    if url:
        children.append(("EncodingType", "url"))
    for i, key in enumerate(keys):
        item = {
            "Key": enc(key),
            "VersionId": "null" if i % 2 else f"{i:032x}",
            "IsLatest": i % 3 == 0,
            "LastModified": "2026-12-02T15:00:00.000Z",
            "ETag": '"0123456789abcdef"',
            "Size": i * 1000,
            "Owner": {"ID": "owner<&>", "DisplayName": enc(key)},
            "StorageClass": "STANDARD",
        }
        children.append(("DeleteMarker" if i % 5 == 4 else "Version", item))
    children.append(("CommonPrefixes", [{"Prefix": enc(k)} for k in keys[:3]]))
    return children


@pytest.mark.parametrize("url", [False, True])
def test_listing_bytes_match_element_tree(url: bool) -> None:
    keys = TRICKY + (CONTROL if url else [])
    children = _version_listing(keys, url)
    fast = s3xml.render("ListVersionsResult", children)
    assert fast == _reference("ListVersionsResult", children)
    root = ET.fromstring(fast)
    listed = [el.findtext(f"{{{s3xml.S3_NS}}}Key") for el in root if s3xml.local(el.tag) != "Name"]
    got = [unquote(k) if url else k for k in listed if k is not None]
    assert got == keys


def test_special_characters_are_escaped_and_round_trip() -> None:
    body = s3xml.render("R", [("Key", "a&b<c>d]]>"), ("Empty", ""), ("Flag", True)])
    assert b"<Key>a&amp;b&lt;c&gt;d]]&gt;</Key>" in body
    assert b"<Empty />" in body
    root = ET.fromstring(body)
    assert s3xml.text(root, "Key") == "a&b<c>d]]>"
    assert s3xml.text(root, "Flag") == "true"


@pytest.mark.parametrize(
    ("root", "children", "ns", "text"),
    [
        ("Empty", [], True, None),
        ("Empty", [], False, ""),
        ("Text", [], False, "a < b & c"),
        ("Nested", [("A", {"B": None, "C": {"D": None}})], True, None),
        ("Lists", [("Item", []), ("Item", [1, "two", False, None, {"X": "y"}])], True, None),
        ("Numbers", [("Size", 0), ("Size", -1), ("Big", 2**70)], True, None),
        ("Surrogate", [("Key", "lone \udc80 surrogate")], True, None),
        ("Mapping", {"Status": "Enabled", "MfaDelete": None}, True, None),
    ],
)
def test_edge_shapes_match_element_tree(root: str, children: Any, ns: bool, text: str) -> None:
    items = list(children.items()) if isinstance(children, dict) else children
    assert s3xml.render(root, children, ns=ns, text=text) == _reference(root, items, ns, text)


def test_random_text_matches_element_tree() -> None:
    rng = random.Random(16)
    alphabet = "ab&<>\"'/ ]\t\n\u00e9\u65e5\U0001f680"
    for _ in range(300):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        children = [("Key", value), ("Owner", {"ID": value, "DisplayName": value})]
        assert s3xml.render("R", children) == _reference("R", children)


def _generic_entries(
    versions: list[tuple[ObjectVersion, bool]], url: bool
) -> list[tuple[str, dict[str, Any]]]:
    """ListObjectVersions entries as the handler built them before its fast path."""

    def enc(k: str) -> str:
        return quote(k, safe="/") if url else k

    out: list[tuple[str, dict[str, Any]]] = []
    for o, latest in versions:
        item: dict[str, Any] = {
            "Key": enc(o.key),
            "VersionId": o.s3_version_id,
            "IsLatest": latest,
            "LastModified": _reference_iso8601(o.last_modified),
        }
        owner = {"ID": o.owner_id, "DisplayName": _names.get(o.owner_id, "")}
        if o.delete_marker:
            item["Owner"] = owner
            out.append(("DeleteMarker", item))
            continue
        item["ETag"] = o.etag
        if o.checksum_algorithm:
            item["ChecksumAlgorithm"] = o.checksum_algorithm
            if o.checksum_type:
                item["ChecksumType"] = o.checksum_type
        item["Size"] = o.size
        item["Owner"] = owner
        item["StorageClass"] = o.headers.get("x-amz-storage-class", "STANDARD")
        out.append(("Version", item))
    return out


def _reference_iso8601(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


_names = {"owner<&>": "Name & <Co>", "plain": "plain-user"}


@pytest.mark.parametrize("url", [False, True])
def test_version_entries_match_the_generic_rendering(url: bool) -> None:
    keys = TRICKY[:-3] + ["x", "emoji \U0001f600 & <tags>"] + (CONTROL if url else [])
    versions = []
    for i, key in enumerate(keys):
        v = ObjectVersion(
            "b",
            key or "k",
            f"{i:032x}",
            i * 7,
            f'"{i:032x}"' if i % 4 else "",
            1_700_000_000 + i * 0.0004999 + (0.9999996 if i == 3 else 0),
            ["owner<&>", "plain", "", "unknown"][i % 4],
            headers={"x-amz-storage-class": "GLACIER<&>"} if i % 3 == 0 else {},
            checksum_algorithm="CRC32" if i % 2 else None,
            checksum_type="FULL_OBJECT" if i % 4 == 1 else None,
            versioned=i % 5 != 0,
            delete_marker=i % 6 == 5,
        )
        versions.append((v, i % 2 == 0))
    fast = version_entries(versions, url, lambda owner: _names.get(owner, ""))
    generic = _generic_entries(versions, url)
    assert s3xml.render("ListVersionsResult", fast) == s3xml.render("ListVersionsResult", generic)
    assert s3xml.render("R", generic) == _reference("R", generic)


def test_iso8601_rounds_as_datetime_does() -> None:
    rng = random.Random(8601)
    stamps = [rng.uniform(0, 4e9) for _ in range(20_000)]
    stamps += [0.0, 1.9999996, 1_700_000_000.9999995, 1_700_000_000.0005, -1.5]
    assert [s3xml.iso8601(t) for t in stamps] == [_reference_iso8601(t) for t in stamps]
