"""Bucket operations: list, create, head, delete, location, versioning."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from s3torrent.access import Owner, canned_acl, check_acl_allowed, grants_from_headers
from s3torrent.access import facts as authz
from s3torrent.access.ownership import SETTING as OWNERSHIP_SETTING
from s3torrent.access.ownership import effective_ownership
from s3torrent.s3 import tagging
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.body import RequestBody
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.ownership import ownership_on_create
from s3torrent.s3.params import BucketListParams
from s3torrent.s3.routing import check_bucket_name
from s3torrent.s3.server import S3Request
from s3torrent.s3.tokens import decode_token, encode_token
from s3torrent.store.errors import BucketAlreadyExists, BucketNotEmpty
from s3torrent.store.retention import LOCK_SETTING, lock_enabled
from s3torrent.store.rows import Bucket, Tags

# The bucket setting holding its tags (ops/tagging.py reads and writes it).
BUCKET_TAGS = "tags"


def xml_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/xml", headers=headers)


def display_name(svc: S3Context, canonical_id: str) -> str:
    return svc.display_name(canonical_id)


def owner_xml(svc: S3Context, canonical_id: str) -> dict[str, str]:
    return {"ID": canonical_id, "DisplayName": display_name(svc, canonical_id)}


async def list_buckets(svc: S3Context, req: S3Request) -> web.StreamResponse:
    p = req.principal
    assert p.canonical_id is not None
    owner_filter = None if p.is_root else p.canonical_id
    rows = await svc.meta.list_buckets(owner_filter)
    params = req.params
    assert isinstance(params, BucketListParams)
    after = decode_token(params.continuation_token) if params.continuation_token else ""
    rows = [
        b
        for b in rows
        if b.name.startswith(params.prefix)
        and b.name > after
        and (params.bucket_region is None or b.region == params.bucket_region)
    ]
    token = None
    if params.max_buckets is not None and len(rows) > params.max_buckets:
        rows = rows[: params.max_buckets]
        token = encode_token(rows[-1].name)
    body = s3xml.render(
        "ListAllMyBucketsResult",
        {
            "Owner": owner_xml(svc, p.canonical_id),
            "Buckets": {
                "Bucket": [
                    {
                        "Name": b.name,
                        "CreationDate": s3xml.iso8601(b.created_at),
                        "BucketRegion": b.region,
                    }
                    for b in rows
                ]
            },
            "ContinuationToken": token,
            "Prefix": params.prefix or None,
        },
    )
    return xml_response(body)


async def create_bucket(svc: S3Context, req: S3Request) -> web.StreamResponse:
    name = req.bucket_name
    check_bucket_name(name)
    p = req.principal
    assert p.canonical_id is not None
    region = svc.settings.region
    request_body = RequestBody(
        req.http,
        req.auth,
        max_chunk_size=svc.settings.limits.max_chunk_size,
        read_timeout=svc.settings.limits.body_read_timeout,
    )
    body = await request_body.read_all(svc.settings.limits.max_xml_body)
    # Content-MD5 and x-amz-checksum-* are checked here as on every other body.
    request_body.verify(md5=None)
    tags = _configuration(body, region) if body.strip() else ()
    owner = Owner(p.canonical_id, p.name or "")
    headers = req.http.headers
    acl = grants_from_headers(headers, owner)
    if "x-amz-acl" in headers:
        if acl is not None:
            raise S3Error(
                "InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed"
            )
        acl = canned_acl(headers["x-amz-acl"], owner=owner, bucket_owner=owner)
    if acl is not None:
        check_acl_allowed(acl, None)
    acl_text = authz.encode_acl(acl) if acl is not None else None
    ownership = ownership_on_create(headers, acl)
    settings = _lock_at_creation(headers.get("x-amz-bucket-object-lock-enabled"))
    if ownership is not None:
        # Stored with the bucket, in its one transaction: no moment without the rule.
        settings = {**(settings or {}), OWNERSHIP_SETTING: ownership}
    if tags:
        # Likewise the tags CreateBucketConfiguration names (S3 creates the bucket with them).
        settings = {**(settings or {}), BUCKET_TAGS: [list(t) for t in tags]}

    try:
        # The request's bucket from now on: its usage is this bucket's (meter._record).
        req.bucket = await svc.meta.create_bucket(name, p.canonical_id, region, acl_text, settings)
    except BucketAlreadyExists as exc:
        if exc.owner_id != p.canonical_id:
            raise S3Error(
                "BucketAlreadyExists", resource=f"/{name}", extra={"BucketName": name}
            ) from None
        existing = await svc.meta.bucket(name)
        same_acl = acl_text is None or (existing is not None and existing.acl == acl_text)
        if region == "us-east-1" and same_acl:
            if existing is not None and not _has_settings(existing, settings):
                # A 200 would tell the caller the bucket has them (ACLs off, a lock, tags).
                raise S3Error(
                    "BucketAlreadyOwnedByYou", resource=f"/{name}", extra={"BucketName": name}
                ) from None
            # AWS's legacy behaviour in us-east-1: creating a bucket you own succeeds again.
            req.bucket = existing
            return web.Response(status=200, headers={"Location": f"/{name}"})
        code = "BucketAlreadyOwnedByYou" if same_acl else "BucketAlreadyExists"
        raise S3Error(code, resource=f"/{name}", extra={"BucketName": name}) from None
    return web.Response(status=200, headers={"Location": f"/{name}"})


def _has_settings(existing: Bucket, asked: Mapping[str, Any] | None) -> bool:
    """Whether a bucket already has every setting a CreateBucket asks for: its ownership
    rule in force, object lock enabled (with whatever default rule), the same tags."""
    for setting, value in (asked or {}).items():
        if setting == OWNERSHIP_SETTING:
            held = effective_ownership(existing.settings).value == value
        elif setting == LOCK_SETTING:
            held = lock_enabled(existing)
        else:
            held = existing.settings.get(setting) == value
        if not held:
            return False
    return True


# What a CreateBucketConfiguration may hold for a general purpose bucket; its <Location> and
# <Bucket> describe a directory bucket (S3 Express), which this server does not implement.
_CONFIGURATION = frozenset({"LocationConstraint", "Tags"})
_DIRECTORY_BUCKET = frozenset({"Location", "Bucket"})


def _configuration(body: bytes, region: str) -> Tags:
    """A CreateBucketConfiguration: its location constraint checked against the server's
    region, and the tags the bucket is created with (validated as PutBucketTagging's). An
    element of a directory bucket is refused as not implemented, any other unknown one as
    malformed: none is accepted and ignored."""
    root = s3xml.parse(body)
    if s3xml.local(root.tag) != "CreateBucketConfiguration":
        raise S3Error("MalformedXML")
    for element in root:
        name = s3xml.local(element.tag)
        if name in _DIRECTORY_BUCKET:
            raise S3Error(
                "NotImplemented",
                f"Directory buckets are not implemented: <{name}> in CreateBucketConfiguration.",
            )
        if name not in _CONFIGURATION:
            raise S3Error("MalformedXML")
    constraint = s3xml.text(root, "LocationConstraint")
    if (
        constraint is not None
        and constraint != region
        and not (constraint == "" and region == "us-east-1")
    ):
        raise S3Error(
            "IllegalLocationConstraintException",
            f"The {constraint} location constraint is incompatible for the region specific "
            f"endpoint this request was sent to.",
            status=400,
        )
    tag_list = s3xml.child(root, "Tags")
    if tag_list is None:
        return ()
    # A TagSet's shape, as PutBucketTagging's (an unknown element was dropped here too).
    s3xml.check_schema(tag_list, tagging.TAG_SET_SCHEMA)
    return tagging.tags_in(tag_list, tagging.MAX_BUCKET_TAGS)


def _lock_at_creation(value: str | None) -> dict[str, Any] | None:
    """x-amz-bucket-object-lock-enabled: true makes a bucket with object lock, which
    enables versioning for good (it can never be suspended)."""
    if value is None or value.strip().lower() == "false":
        return None
    if value.strip().lower() != "true":
        raise S3Error(
            "InvalidArgument",
            "x-amz-bucket-object-lock-enabled must be true or false",
            extra={"ArgumentName": "x-amz-bucket-object-lock-enabled"},
        )
    return {"versioning": "Enabled", LOCK_SETTING: {"enabled": True, "default": None}}


async def head_bucket(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    return web.Response(
        status=200,
        headers={"x-amz-bucket-region": req.bucket.region, "x-amz-access-point-alias": "false"},
    )


async def delete_bucket(svc: S3Context, req: S3Request) -> web.StreamResponse:
    name = req.bucket_name

    gone = False
    while not gone:
        # In steps, each its own transaction (SqlBuckets.delete_bucket).
        try:
            part_blobs, gone = await svc.meta.delete_bucket(name)
        except BucketNotEmpty:
            raise S3Error(
                "BucketNotEmpty", resource=f"/{name}", extra={"BucketName": name}
            ) from None
        # Its uploads in progress go with it (as on S3); a crash before this leaves their
        # parts' files to the startup's cleanup of blobs no row references.
        await svc.store.delete_blobs(part_blobs)
    return web.Response(status=204)


async def get_bucket_location(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    region = req.bucket.region
    # S3 answers an empty LocationConstraint for us-east-1.
    text = None if region == "us-east-1" else region
    return xml_response(s3xml.render("LocationConstraint", [], text=text))
