"""S3 XML: rendering responses and parsing request bodies (defusedxml against entity bombs)."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from defusedxml import ElementTree as SafeET

from s3torrent.s3.errors import S3Error
from s3torrent.xml_shapes import Schema as Schema
from s3torrent.xml_shapes import unknown_element

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"

XmlValue = str | int | bool | None | list[Any] | dict[str, Any]


def iso8601(ts: float) -> str:
    """S3's timestamp style in XML: 2009-10-12T17:50:30.000Z."""
    if ts < 0:
        dt = datetime.fromtimestamp(ts, UTC)
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    # datetime.fromtimestamp's rounding (half-even, to the microsecond), without building
    # a datetime per listed version; the seconds part is cached like http_date's.
    fraction, whole = math.modf(ts)
    micro = round(fraction * 1e6)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    return f"{_iso_seconds(int(whole))}.{micro // 1000:03d}Z"


@lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


@lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def http_date(ts: float) -> str:
    """RFC 7231 IMF-fixdate, as in Last-Modified (cached: objects share few seconds)."""
    return _http_date(int(ts))


# Characters a parser would not hand back as they are: a carriage return (XML parsers turn
# it into a line feed, so a key "a\rb" would be listed as "a\nb"), and the control characters
# and noncharacters XML 1.0 has no place for. S3 writes them as character references
# (`&#13;`; `&#1;`, which strict parsers refuse: that is what `encoding-type=url`, which
# botocore asks for, is for). Only a string that is not all printable is searched.
_REFERENCED = re.compile("[\x00-\x08\x0b-\x1f\ufffe\uffff]")


def _reference(match: re.Match[str]) -> str:
    return f"&#{ord(match.group())};"


def _escape(text: str) -> str:
    """Character data as S3 writes it: &, < and > as entities, a carriage return and the
    characters XML 1.0 cannot hold as character references, nothing else (a quote needs
    none outside attributes)."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if not text.isprintable():
        text = _REFERENCED.sub(_reference, text)
    return text


class Rendered(str):
    """One element already rendered (by `leaf` and friends, for a listing's thousands of
    entries): `render` inserts it as is, whatever name it is given under."""

    __slots__ = ()


def leaf(name: str, text: str) -> str:
    """<name>text</name>, text escaped; <name /> when empty (as `render` writes it)."""
    return f"<{name}>{_escape(text)}</{name}>" if text else f"<{name} />"


def _append(out: list[str], name: str, value: XmlValue | Rendered) -> None:
    # Strings joined, not an element tree: a listing page is thousands of elements, and
    # building then serializing a tree cost several times the store read behind it. The
    # bytes are the ones ElementTree wrote (tests/unit/test_xml_render.py compares them).
    if value is None:
        return
    if type(value) is Rendered:
        out.append(value)
        return
    if isinstance(value, list):
        for item in value:
            _append(out, name, item)
        return
    if isinstance(value, dict):
        start = len(out)
        out.append(f"<{name}>")
        for k, v in value.items():
            _append(out, k, v)
        if len(out) == start + 1:
            out[start] = f"<{name} />"
        else:
            out.append(f"</{name}>")
        return
    if value is True or value is False:
        out.append(f"<{name}>true</{name}>" if value else f"<{name}>false</{name}>")
        return
    body = _escape(str(value))
    out.append(f"<{name}>{body}</{name}>" if body else f"<{name} />")


def render(
    root: str,
    children: Mapping[str, Any] | Iterable[tuple[str, Any]],
    *,
    ns: bool = True,
    text: str | None = None,
) -> bytes:
    """Render {'Name': value} (lists repeat the element, dicts nest, None is omitted)."""
    head = f'<{root} xmlns="{S3_NS}"' if ns else f"<{root}"
    out = [head + ">"]
    if text:
        out.append(_escape(text))
    items = children.items() if isinstance(children, Mapping) else children
    for name, value in items:
        _append(out, name, value)
    if len(out) == 1:
        out[0] = head + " />"
    else:
        out.append(f"</{root}>")
    # xmlcharrefreplace: a lone surrogate becomes a character reference, as it did.
    return _DECLARATION + "".join(out).encode("utf-8", "xmlcharrefreplace")


_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


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


def check_schema(el: ET.Element, schema: Schema) -> None:
    """MalformedXML for an element that `schema` does not name, at any depth: S3 validates a
    body against its published schema and refuses one, where handlers reading the elements
    they knew dropped it (a misspelt or newer element, a condition, was accepted unread)."""
    if unknown_element(el, schema) is not None:
        raise S3Error("MalformedXML")


def check_document(root: ET.Element, name: str, schema: Schema) -> None:
    """MalformedXML unless `root` is the element `name`, holding only what `schema` names."""
    if local(root.tag) != name:
        raise S3Error("MalformedXML")
    check_schema(root, schema)


def check_once(el: ET.Element, names: Iterable[str]) -> None:
    """MalformedXML when `el` holds one of `names` more than once: S3's schema allows each
    once, and a handler reading the first would drop the next (a second SSEAlgorithm)."""
    found = [local(c.tag) for c in el]
    if any(found.count(name) > 1 for name in names):
        raise S3Error("MalformedXML")
