"""Bucket ownership controls: Put/Get/DeleteBucketOwnershipControls, `x-amz-object-ownership`
on CreateBucket, and who owns what a write creates (requests that would set an ACL while
ACLs are disabled are refused before any handler, by `refusals.refuse_acls`).

The rule itself (who owns a new object, which ACL is in force) is `access.ownership`; the
rule is one entry of the bucket's settings, so changing it is an access change like any
other (torrents are decided again).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from s3torrent.access import AccessControlList
from s3torrent.access import facts as authz
from s3torrent.access.ownership import (
    SETTING,
    ObjectOwnership,
    new_object_owner,
    only_owner_full_control,
    stored_ownership,
)
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.body import RequestBody
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.server import S3Request

_ENFORCED_WITH_ACL = (
    "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting"
)


def write_owner(req: S3Request, headers: Mapping[str, str]) -> str:
    """The owner of an object this request writes, under the bucket's ownership rule."""
    bucket = req.bucket
    assert bucket is not None
    writer = req.principal.canonical_id or bucket.owner_id
    return new_object_owner(bucket.settings, writer, bucket.owner_id, headers.get("x-amz-acl"))


def ownership_on_create(headers: Mapping[str, str], acl: AccessControlList | None) -> str | None:
    """The rule a CreateBucket asks for with x-amz-object-ownership (None: the default),
    refused when it disables ACLs that the same request sets."""
    raw = headers.get("x-amz-object-ownership")
    if raw is None:
        return None
    rule = ObjectOwnership.parse(raw)
    if rule is None:
        raise S3Error(
            "InvalidArgument",
            "Invalid x-amz-object-ownership header",
            extra={"ArgumentName": "x-amz-object-ownership", "ArgumentValue": raw[:64]},
        )
    enforced = rule is ObjectOwnership.BUCKET_OWNER_ENFORCED
    if enforced and acl is not None and not only_owner_full_control(acl):
        raise S3Error("InvalidBucketAclWithObjectOwnership", _ENFORCED_WITH_ACL, status=400)
    return rule.value


async def get_bucket_ownership_controls(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    rule = stored_ownership(req.bucket.settings)
    if rule is None:
        raise S3Error(
            "OwnershipControlsNotFoundError",
            "The bucket ownership controls were not found",
            status=404,
            extra={"BucketName": req.bucket_name},
        )
    body = s3xml.render("OwnershipControls", {"Rule": {"ObjectOwnership": rule.value}})
    return web.Response(body=body, content_type="application/xml")


# What a PutBucketOwnershipControls body may hold (S3's API model, 2026-12).
OWNERSHIP_SCHEMA: s3xml.Schema = {"Rule": {"ObjectOwnership": None}}


def _parse_controls(raw: bytes) -> ObjectOwnership:
    root = s3xml.parse(raw)
    s3xml.check_document(root, "OwnershipControls", OWNERSHIP_SCHEMA)
    rules = s3xml.children(root, "Rule")
    if len(rules) != 1:
        raise S3Error("MalformedXML")
    rule = ObjectOwnership.parse(s3xml.text(rules[0], "ObjectOwnership") or "")
    if rule is None:
        raise S3Error("MalformedXML")
    return rule


async def put_bucket_ownership_controls(svc: S3Context, req: S3Request) -> web.StreamResponse:
    bucket = req.bucket
    assert bucket is not None
    limits = svc.settings.limits
    body = RequestBody(
        req.http,
        req.auth,
        max_chunk_size=limits.max_chunk_size,
        read_timeout=limits.body_read_timeout,
    )
    raw = await body.read_all(limits.max_xml_body)
    body.verify(md5=None)
    rule = _parse_controls(raw)
    # As in S3: to disable ACLs the bucket's own ACL must first grant nothing but its
    # owner's full control (object ACLs are simply ignored from then on).
    acl = authz.decode_acl(bucket.acl) if bucket.acl else None
    if rule is ObjectOwnership.BUCKET_OWNER_ENFORCED and acl and not only_owner_full_control(acl):
        raise S3Error("InvalidBucketAclWithObjectOwnership", _ENFORCED_WITH_ACL, status=400)
    await svc.meta.set_bucket_setting(bucket.name, SETTING, rule.value, req.bucket_created)
    return web.Response(status=200)


async def delete_bucket_ownership_controls(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    await svc.meta.set_bucket_setting(req.bucket.name, SETTING, None, req.bucket_created)
    return web.Response(status=204)
