"""ListObjects (v1), ListObjectsV2 and ListObjectVersions: keyset pagination on (bucket, key).

Each page is a few index range scans, whatever page it is: a page never re-reads the keys of
the pages before it, and a common prefix is skipped with one seek past all its keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from s3torrent.s3 import xml as s3xml
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.buckets import display_name, owner_xml, xml_response
from s3torrent.s3.params import ListParams
from s3torrent.s3.server import S3Request
from s3torrent.s3.tokens import decode_token, encode_token
from s3torrent.store import rows as md


def storage_class(obj: md.ObjectVersion) -> str:
    """The class the object was stored with: listings say what HEAD and GET say."""
    return obj.headers.get("x-amz-storage-class", "STANDARD")


def list_params(req: S3Request) -> ListParams:
    params = req.params
    assert isinstance(params, ListParams)
    _check_optional_attributes(req.http.headers.get("x-amz-optional-object-attributes"))
    return params


# The optional attributes a listing can be asked for (S3's API, 2026-12). RestoreStatus is
# acted on: S3 gives it only for an object restored from an archive, and no object here
# ever is, so no entry has one.
_OPTIONAL_ATTRIBUTES = frozenset({"RestoreStatus"})


def _check_optional_attributes(raw: str | None) -> None:
    """x-amz-optional-object-attributes: any other name is 400 InvalidArgument, as in S3,
    never a listing without the attribute asked for."""
    if raw is None:
        return
    for name in raw.split(","):
        if name.strip() not in _OPTIONAL_ATTRIBUTES:
            raise S3Error(
                "InvalidArgument",
                "Invalid attribute name specified",
                extra={
                    "ArgumentName": "x-amz-optional-object-attributes",
                    "ArgumentValue": name.strip()[:64],
                },
            )


def _enc(value: str, url: bool) -> str:
    return quote(value, safe="/") if url else value


def _contents(
    svc: S3Context, objs: list[md.ObjectVersion], url: bool, owner: bool
) -> list[dict[str, Any]]:
    out = []
    for o in objs:
        item: dict[str, Any] = {
            "Key": _enc(o.key, url),
            "LastModified": s3xml.iso8601(o.last_modified),
            "ETag": o.etag,
        }
        if o.checksum_algorithm:
            item["ChecksumAlgorithm"] = o.checksum_algorithm
            if o.checksum_type:
                item["ChecksumType"] = o.checksum_type
        item["Size"] = o.size
        if owner:
            item["Owner"] = owner_xml(svc, o.owner_id)
        item["StorageClass"] = storage_class(o)
        out.append(item)
    return out


async def list_objects(svc: S3Context, req: S3Request) -> web.StreamResponse:
    p = list_params(req)
    marker = p.marker
    page = await svc.meta.list_page(
        req.bucket_name, p.prefix, p.delimiter, marker or None, p.max_keys
    )
    children: list[tuple[str, Any]] = [
        ("Name", req.bucket_name),
        # v1 encodes keys, markers and the delimiter, not the prefix it was asked for.
        ("Prefix", p.prefix),
        ("Marker", _enc(marker, p.url_encode)),
    ]
    if page.truncated and p.delimiter and page.last is not None:
        children.append(("NextMarker", _enc(page.last, p.url_encode)))
    children += [
        ("MaxKeys", p.max_keys),
        ("Delimiter", _enc(p.delimiter, p.url_encode) if p.delimiter else None),
        ("IsTruncated", page.truncated),
    ]
    if p.url_encode:
        children.append(("EncodingType", "url"))
    children += [("Contents", _contents(svc, page.objects, p.url_encode, True))]
    children += [("CommonPrefixes", [{"Prefix": _enc(cp, p.url_encode)} for cp in page.prefixes])]
    return xml_response(s3xml.render("ListBucketResult", children))


async def list_objects_v2(svc: S3Context, req: S3Request) -> web.StreamResponse:
    p = list_params(req)
    token = p.continuation_token
    start_after = p.start_after
    after: str | None = decode_token(token) if token else (start_after or None)
    fetch_owner = p.fetch_owner
    page = await svc.meta.list_page(req.bucket_name, p.prefix, p.delimiter, after, p.max_keys)
    children: list[tuple[str, Any]] = [
        ("Name", req.bucket_name),
        ("Prefix", _enc(p.prefix, p.url_encode)),
        ("MaxKeys", p.max_keys),
        ("Delimiter", _enc(p.delimiter, p.url_encode) if p.delimiter else None),
        ("IsTruncated", page.truncated),
        ("KeyCount", len(page.objects) + len(page.prefixes)),
    ]
    if p.url_encode:
        children.append(("EncodingType", "url"))
    if token is not None:
        children.append(("ContinuationToken", token))
    if page.truncated and page.last is not None:
        children.append(("NextContinuationToken", encode_token(page.last)))
    if start_after:
        children.append(("StartAfter", _enc(start_after, p.url_encode)))
    children += [("Contents", _contents(svc, page.objects, p.url_encode, fetch_owner))]
    children += [("CommonPrefixes", [{"Prefix": _enc(cp, p.url_encode)} for cp in page.prefixes])]
    return xml_response(s3xml.render("ListBucketResult", children))


def version_entries(
    versions: list[tuple[md.ObjectVersion, bool]], url: bool, name_of: Callable[[str], str]
) -> list[tuple[str, s3xml.Rendered]]:
    """The <Version> and <DeleteMarker> elements of a ListObjectVersions page, rendered
    here: a page is up to 1,000 of them, and going through a dict each and the generic
    renderer was a third of the request. The bytes are the generic renderer's
    (tests/unit/test_xml_render.py compares them)."""
    leaf = s3xml.leaf
    owners: dict[str, str] = {}
    out: list[tuple[str, s3xml.Rendered]] = []
    for o, latest in versions:
        owner = owners.get(o.owner_id)
        if owner is None:
            owner = (
                f"<Owner>{leaf('ID', o.owner_id)}{leaf('DisplayName', name_of(o.owner_id))}</Owner>"
            )
            owners[o.owner_id] = owner
        head = (
            f"{leaf('Key', _enc(o.key, url))}{leaf('VersionId', o.s3_version_id)}"
            f"<IsLatest>{'true' if latest else 'false'}</IsLatest>"
            f"{leaf('LastModified', s3xml.iso8601(o.last_modified))}"
        )
        if o.delete_marker:
            out.append(
                ("DeleteMarker", s3xml.Rendered(f"<DeleteMarker>{head}{owner}</DeleteMarker>"))
            )
            continue
        checksum = ""
        if o.checksum_algorithm:
            checksum = leaf("ChecksumAlgorithm", o.checksum_algorithm)
            if o.checksum_type:
                checksum += leaf("ChecksumType", o.checksum_type)
        out.append(
            (
                "Version",
                s3xml.Rendered(
                    f"<Version>{head}{leaf('ETag', o.etag)}{checksum}<Size>{o.size}</Size>"
                    f"{owner}{leaf('StorageClass', storage_class(o))}</Version>"
                ),
            )
        )
    return out


async def list_object_versions(svc: S3Context, req: S3Request) -> web.StreamResponse:
    """Every version and delete marker, keys in order, each key's versions newest first."""
    p = list_params(req)
    key_marker = p.key_marker
    vid_marker = p.version_id_marker  # checked with the parameters
    # A version-id marker after an empty key-marker marks no place: S3 lists from the start.
    page = await svc.meta.list_versions_page(
        req.bucket_name,
        p.prefix,
        p.delimiter,
        key_marker,
        vid_marker if key_marker else None,
        p.max_keys,
    )
    entries = version_entries(page.versions, p.url_encode, lambda i: display_name(svc, i))
    children: list[tuple[str, Any]] = [
        ("Name", req.bucket_name),
        ("Prefix", _enc(p.prefix, p.url_encode)),
        ("KeyMarker", _enc(key_marker, p.url_encode)),
        ("VersionIdMarker", vid_marker or ""),
    ]
    if page.truncated and page.next_key is not None:
        children.append(("NextKeyMarker", _enc(page.next_key, p.url_encode)))
        if page.next_version_id is not None:
            children.append(("NextVersionIdMarker", page.next_version_id))
    children += [
        ("MaxKeys", p.max_keys_asked),
        ("Delimiter", _enc(p.delimiter, p.url_encode) if p.delimiter_sent else None),
        ("IsTruncated", page.truncated),
    ]
    if p.url_encode:
        children.append(("EncodingType", "url"))
    children += entries
    children += [("CommonPrefixes", [{"Prefix": _enc(cp, p.url_encode)} for cp in page.prefixes])]
    return xml_response(s3xml.render("ListVersionsResult", children))
