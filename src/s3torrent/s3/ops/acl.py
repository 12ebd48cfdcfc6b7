"""ACL operations: Get/PutBucketAcl and Get/PutObjectAcl."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from aiohttp import web

from s3torrent.access import (
    AccessControlList,
    CanonicalUser,
    Grant,
    Owner,
    PublicAccessBlock,
    acl_from_xml,
    acl_to_xml,
    canned_acl,
    check_acl_allowed,
    grants_from_headers,
)
from s3torrent.access import facts as authz
from s3torrent.access.ownership import acls_disabled, settable_without_acls
from s3torrent.s3.body import RequestBody
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.buckets import display_name, xml_response
from s3torrent.s3.server import S3Request
from s3torrent.s3.versioning import version_gone
from s3torrent.store import rows as md


def _known_user(svc: S3Context) -> Callable[[str], str | None]:
    def known(canonical_id: str) -> str | None:
        user = svc.users.by_id(canonical_id)
        return user.name if user is not None else None

    return known


def _with_display_names(svc: S3Context, acl: AccessControlList) -> AccessControlList:
    """Stored ACLs may predate a user's name; answer with the names we know now."""
    grants = tuple(
        Grant(CanonicalUser(g.grantee.id, display_name(svc, g.grantee.id)), g.permission)
        if isinstance(g.grantee, CanonicalUser)
        else g
        for g in acl.grants
    )
    owner = Owner(acl.owner.id, display_name(svc, acl.owner.id))
    return AccessControlList(owner, grants)


def _pab(bucket: md.Bucket) -> PublicAccessBlock | None:
    if not bucket.public_access_block:
        return None
    return authz.decode_public_access_block(bucket.public_access_block)


async def _requested_acl(
    svc: S3Context, req: S3Request, owner: Owner, bucket_owner: Owner
) -> AccessControlList:
    """The new ACL from x-amz-acl, x-amz-grant-* or an AccessControlPolicy body (one of them)."""
    limits = svc.settings.limits
    body = RequestBody(
        req.http,
        req.auth,
        max_chunk_size=limits.max_chunk_size,
        read_timeout=limits.body_read_timeout,
    )
    raw = await body.read_all(limits.max_xml_body)
    body.verify(md5=None)
    headers = req.http.headers
    known = _known_user(svc)
    acl = grants_from_headers(headers, owner, known_user=known)
    if "x-amz-acl" in headers:
        acl = canned_acl(headers["x-amz-acl"], owner=owner, bucket_owner=bucket_owner)
    if acl is not None:
        if raw.strip():
            raise S3Error("UnexpectedContent", "This request does not support content")
        return acl
    if not raw.strip():
        raise S3Error(
            "MissingSecurityHeader",
            "Your request was missing a required header",
            extra={"MissingHeaderName": "x-amz-acl"},
        )
    return acl_from_xml(raw, expected_owner_id=owner.id, known_user=known)


def _check_acls_enabled(req: S3Request, bucket: md.Bucket, acl: AccessControlList) -> None:
    """BucketOwnerEnforced: only the bucket owner's full control may still be set. (Header
    forms were checked before the handler by refusals.refuse_acls; this is for a body.)"""
    if "x-amz-acl" in req.http.headers or not acls_disabled(bucket.settings):
        return
    if not settable_without_acls(acl, bucket.owner_id):
        raise S3Error("AccessControlListNotSupported", "The bucket does not allow ACLs")


# ---- bucket ----


async def get_bucket_acl(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    acl = _with_display_names(svc, authz.bucket_acl(req.bucket))
    return xml_response(acl_to_xml(acl))


async def put_bucket_acl(svc: S3Context, req: S3Request) -> web.StreamResponse:
    bucket = req.bucket
    assert bucket is not None
    owner = Owner(bucket.owner_id, display_name(svc, bucket.owner_id))
    acl = await _requested_acl(svc, req, owner, owner)
    _check_acls_enabled(req, bucket, acl)
    check_acl_allowed(acl, _pab(bucket))
    text = authz.encode_acl(acl)

    await svc.meta.set_bucket_acl(bucket.name, text, req.bucket_created)
    return web.Response(status=200)


# ---- object ----


async def get_object_acl(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None and req.obj is not None
    acl = _with_display_names(svc, authz.object_acl(req.bucket, req.obj))
    return xml_response(acl_to_xml(acl))


async def put_object_acl(svc: S3Context, req: S3Request) -> web.StreamResponse:
    bucket, obj = req.bucket, req.obj
    assert bucket is not None and obj is not None
    owner = Owner(obj.owner_id, display_name(svc, obj.owner_id))
    bucket_owner = Owner(bucket.owner_id, display_name(svc, bucket.owner_id))
    acl = await _requested_acl(svc, req, owner, bucket_owner)
    _check_acls_enabled(req, bucket, acl)
    check_acl_allowed(acl, _pab(bucket))
    text = authz.encode_acl(acl)

    # Exactly the version the access check saw: an overwrite since then keeps its own ACL.
    if not await svc.meta.set_object_acl(obj, text):
        raise version_gone(req.resource, req.key, req.query.get("versionId"))
    req.obj = replace(obj, acl=text)
    return web.Response(status=200)
