"""GetObjectAttributes: an object's ETag, checksum, parts, storage class and size in one call.

Which attributes are wanted comes in the `x-amz-object-attributes` header, and the parts'
pagination in `x-amz-max-parts` / `x-amz-part-number-marker` (headers, not query
parameters, unlike ListParts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from s3torrent.access import facts as authz
from s3torrent.s3 import checksums, sse
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.buckets import xml_response
from s3torrent.s3.params import MAX_PARTS, capped_int
from s3torrent.s3.routing import Endpoint
from s3torrent.s3.server import S3Request
from s3torrent.s3.versioning import version_headers
from s3torrent.store import rows as md

ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
_BY_FOLDED = {name.lower(): name for name in ATTRIBUTES}
_DEFAULT_MAX_PARTS = 1000


@dataclass(frozen=True, slots=True)
class AttributesRequest:
    """What one GetObjectAttributes asks for: the attributes and the page of parts."""

    attributes: frozenset[str]
    max_parts: int = _DEFAULT_MAX_PARTS
    part_number_marker: int = 0


def parse_attributes_request(headers: Mapping[str, str]) -> AttributesRequest:
    """The attributes and pagination a request asks for; S3's errors for anything else."""
    raw = headers.get("x-amz-object-attributes", "")
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names:
        raise S3Error(
            "InvalidRequest", "Missing required header for this request: x-amz-object-attributes"
        )
    wanted: set[str] = set()
    for name in names:
        known = _BY_FOLDED.get(name.lower())
        if known is None:
            raise S3Error(
                "InvalidArgument",
                "Invalid attribute name specified.",
                extra={"ArgumentName": "x-amz-object-attributes", "ArgumentValue": name[:64]},
            )
        wanted.add(known)
    return AttributesRequest(
        attributes=frozenset(wanted),
        max_parts=capped_int(headers, "x-amz-max-parts", _DEFAULT_MAX_PARTS, _DEFAULT_MAX_PARTS),
        part_number_marker=capped_int(headers, "x-amz-part-number-marker", 0, MAX_PARTS),
    )


def _checksum(obj: md.ObjectVersion) -> dict[str, str] | None:
    """The object's checksum; a COMPOSITE one without the "-N" that GET, HEAD and the
    completion append (S3 answers GetObjectAttributes so)."""
    if not obj.checksum_algorithm or not obj.checksum_value:
        return None
    out = {f"Checksum{obj.checksum_algorithm}": checksums.without_part_count(obj.checksum_value)}
    if obj.checksum_type:
        out["ChecksumType"] = obj.checksum_type
    return out


def _object_parts(obj: md.ObjectVersion, ask: AttributesRequest) -> dict[str, Any] | None:
    """The page of parts after the marker; None for an object that was not uploaded in parts."""
    if obj.parts is None:
        return None
    total = len(obj.parts)
    first = min(ask.part_number_marker, total)
    page = list(enumerate(obj.parts, start=1))[first : first + ask.max_parts]
    truncated = first + len(page) < total
    parts = []
    for number, part in page:
        entry: dict[str, Any] = {"PartNumber": number, "Size": int(part["size"])}
        checksum = part.get("checksum")
        if checksum and obj.checksum_algorithm:
            entry[f"Checksum{obj.checksum_algorithm}"] = checksum
        parts.append(entry)
    return {
        "PartsCount": total,
        "PartNumberMarker": ask.part_number_marker,
        "NextPartNumberMarker": page[-1][0] if page else ask.part_number_marker,
        "MaxParts": ask.max_parts,
        "IsTruncated": truncated,
        "Part": parts,
    }


def render_attributes(obj: md.ObjectVersion, ask: AttributesRequest) -> bytes:
    """The response body: only the attributes asked for, in S3's order."""
    wanted = ask.attributes
    values: dict[str, Any] = {
        "ETag": obj.etag.strip('"') if "ETag" in wanted else None,
        "Checksum": _checksum(obj) if "Checksum" in wanted else None,
        "ObjectParts": _object_parts(obj, ask) if "ObjectParts" in wanted else None,
        "StorageClass": obj.headers.get("x-amz-storage-class", "STANDARD")
        if "StorageClass" in wanted
        else None,
        "ObjectSize": obj.size if "ObjectSize" in wanted else None,
    }
    return s3xml.render("GetObjectAttributesResponse", values)


def check_read_permission(req: S3Request) -> None:
    """The attributes tell what a read would (ETag, size, the checksums of the bytes): as in
    S3, they need s3:GetObject besides s3:GetObjectAttributes, and for a named version
    s3:GetObjectVersion besides s3:GetObjectVersionAttributes (the router asked the second
    of each pair, Endpoint.action_for; this asks the read a GET of the same would)."""
    assert req.bucket is not None
    ctx = req.access_context()
    action = Endpoint.GetObject.action_for(req.query)
    if not authz.may(req.principal, action, req.bucket, req.key, req.obj, ctx).allowed:
        raise S3Error("AccessDenied", resource=req.resource)


async def get_object_attributes(svc: S3Context, req: S3Request) -> web.StreamResponse:
    obj = req.obj
    assert obj is not None
    check_read_permission(req)
    ask = parse_attributes_request(req.http.headers)
    # An SSE-C object's attributes need its key, as its HEAD does (S3 documents both).
    customer = await sse.read_key(svc, req, obj)
    obj = await sse.open_checksums(svc, obj, customer)
    headers = {
        "Last-Modified": s3xml.http_date(obj.last_modified),
        **version_headers(req.bucket, obj),
    }
    return xml_response(render_attributes(obj, ask), headers=headers)
