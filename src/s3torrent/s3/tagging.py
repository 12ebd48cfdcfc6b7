"""Object and bucket tags: the `x-amz-tagging` header, Tagging XML bodies, and S3's limits."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl

from s3torrent.s3 import xml as s3xml
from s3torrent.s3.errors import S3Error
from s3torrent.store.rows import Tags

MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 256
# Letters, digits, spaces and + - = . _ : / @ in any script, as AWS documents for tags.
_ALLOWED_PUNCTUATION = frozenset(" +-=._:/@")


def _valid_chars(text: str) -> bool:
    return all(c.isalnum() or c in _ALLOWED_PUNCTUATION for c in text)


def validate(tags: Tags, limit: int) -> Tags:
    """The tags if they meet S3's rules, else S3's error for the first one they break."""
    if len(tags) > limit:
        raise _too_many(limit)
    seen: set[str] = set()
    for key, value in tags:
        if not key or len(key) > MAX_KEY_LENGTH or not _valid_chars(key):
            raise S3Error("InvalidTag", "The TagKey you have provided is invalid", status=400)
        if len(value) > MAX_VALUE_LENGTH or not _valid_chars(value):
            raise S3Error("InvalidTag", "The TagValue you have provided is invalid", status=400)
        if key.lower().startswith("aws:"):
            raise S3Error("InvalidTag", "Your TagKey cannot be prefixed with aws:", status=400)
        if key in seen:
            raise S3Error(
                "InvalidTag", "Cannot provide multiple Tags with the same key", status=400
            )
        seen.add(key)
    return tags


def _too_many(limit: int) -> S3Error:
    what = "Object" if limit == MAX_OBJECT_TAGS else "Bucket"
    return S3Error("BadRequest", f"{what} tags cannot be greater than {limit}", status=400)


def from_header(value: str) -> Tags:
    """`x-amz-tagging: k1=v1&k2=v2` (URL query encoding), validated for an object. The
    parser stops past one field more than the limit, with a ValueError: S3's 400, as for
    exactly one more."""
    try:
        pairs = parse_qsl(value, keep_blank_values=True, max_num_fields=MAX_OBJECT_TAGS + 1)
    except ValueError:
        raise _too_many(MAX_OBJECT_TAGS) from None
    return validate(tuple(pairs), MAX_OBJECT_TAGS)


# What a Put(Object|Bucket)Tagging body may hold (S3's API model, 2026-12).
TAG_SET_SCHEMA: s3xml.Schema = {"Tag": {"Key": None, "Value": None}}
TAGGING_SCHEMA: s3xml.Schema = {"TagSet": TAG_SET_SCHEMA}


def from_xml(body: bytes, limit: int) -> Tags:
    """A `<Tagging><TagSet><Tag><Key/><Value/></Tag>...` body, validated."""
    root = s3xml.parse(body)
    s3xml.check_document(root, "Tagging", TAGGING_SCHEMA)
    tag_set = s3xml.child(root, "TagSet")
    if tag_set is None:
        raise S3Error("MalformedXML")
    return tags_in(tag_set, limit)


def tags_in(tag_set: ET.Element, limit: int) -> Tags:
    """The `<Tag><Key/><Value/></Tag>` children of an element (a TagSet, or
    CreateBucketConfiguration's Tags), validated."""
    tags: list[tuple[str, str]] = []
    for tag in s3xml.children(tag_set, "Tag"):
        key = s3xml.text(tag, "Key")
        if key is None:
            raise S3Error("MalformedXML")
        tags.append((key, s3xml.text(tag, "Value") or ""))
        if len(tags) > limit:
            break
    return validate(tuple(tags), limit)


def to_xml(tags: Tags) -> bytes:
    return s3xml.render("Tagging", {"TagSet": {"Tag": [{"Key": k, "Value": v} for k, v in tags]}})


def request_tag_values(tags: Tags) -> dict[str, str | list[str]]:
    """The condition values of the tags a request sets (an x-amz-tagging header, a form's
    tagging field, a PutObjectTagging body): s3:RequestObjectTag/<key> for each tag, and
    s3:RequestObjectTagKeys, multi-valued: one value per key (ForAnyValue/ForAllValues
    test each; none when there are no tags)."""
    values: dict[str, str | list[str]] = {f"s3:RequestObjectTag/{k}": v for k, v in tags}
    if tags:
        values["s3:RequestObjectTagKeys"] = [k for k, _ in tags]
    return values
