"""s3.xml.render builds strings instead of an element tree (listing pages are thousands of
elements); its bytes must be the ones ElementTree wrote, escaping included."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote

import pytest

from s3torrent.s3 import xml as s3xml

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
