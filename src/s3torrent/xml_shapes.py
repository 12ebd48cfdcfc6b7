"""The shape of a request body: which elements each element may hold, as S3's API model
defines them. Shared by the S3 edge (s3/xml.py) and the access layer (ACL bodies), which
raise their own errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias
from xml.etree.ElementTree import Element

Schema: TypeAlias = Mapping[str, "Schema | None"]
"""What an element may hold: each child's name, mapped to what that child may hold in turn
(None: text only)."""


def unknown_element(el: Element, schema: Schema) -> str | None:
    """The name of the first element under `el`, at any depth, that `schema` does not name
    (or that holds elements where it says text only); None when there is none."""
    for c in el:
        name = c.tag.rsplit("}", 1)[-1]
        if name not in schema:
            return name
        inner = schema[name]
        if inner is None:
            if len(c):
                return c[0].tag.rsplit("}", 1)[-1]
            continue
        found = unknown_element(c, inner)
        if found is not None:
            return found
    return None
