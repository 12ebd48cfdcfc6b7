"""S3 XML: rendering responses and parsing request bodies (defusedxml against entity bombs)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from defusedxml import ElementTree as SafeET

from s3torrent.s3.errors import S3Error

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"

XmlValue = str | int | bool | None | list[Any] | dict[str, Any]


def iso8601(ts: float) -> str:
    """S3's timestamp style in XML: 2009-10-12T17:50:30.000Z."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def http_date(ts: float) -> str:
    """RFC 7231 IMF-fixdate, as in Last-Modified (cached: objects share few seconds)."""
    return _http_date(int(ts))


def _append(parent: ET.Element, name: str, value: XmlValue) -> None:
    if value is None:
        return
    if isinstance(value, list):
        for item in value:
            _append(parent, name, item)
        return
    el = ET.SubElement(parent, name)
    if isinstance(value, dict):
        for k, v in value.items():
            _append(el, k, v)
    elif isinstance(value, bool):
        el.text = "true" if value else "false"
    else:
        el.text = str(value)


def render(
    root: str,
    children: Mapping[str, Any] | Iterable[tuple[str, Any]],
    *,
    ns: bool = True,
    text: str | None = None,
) -> bytes:
    """Render {'Name': value} (lists repeat the element, dicts nest, None is omitted)."""
    el = ET.Element(root)
    if ns:
        el.set("xmlns", S3_NS)
    el.text = text
    items = children.items() if isinstance(children, Mapping) else children
    for name, value in items:
        _append(el, name, value)
    body: bytes = ET.tostring(el, encoding="utf-8")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


def parse(body: bytes) -> ET.Element:
    """Parse a request body; MalformedXML on anything that is not well-formed XML."""
    if not body.strip():
        raise S3Error("MalformedXML")
    try:
        root: ET.Element = SafeET.fromstring(body, forbid_dtd=True)
    except Exception as exc:
        raise S3Error("MalformedXML") from exc
    return root


def local(tag: str) -> str:
    """An element name without its namespace."""
    return tag.rsplit("}", 1)[-1]


def child(el: ET.Element, name: str) -> ET.Element | None:
    for c in el:
        if local(c.tag) == name:
            return c
    return None


def children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if local(c.tag) == name]


def text(el: ET.Element, name: str) -> str | None:
    c = child(el, name)
    return (c.text or "") if c is not None else None
