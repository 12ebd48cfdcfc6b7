"""Object tagging (Get/Put/DeleteObjectTagging) and bucket tagging (Get/Put/DeleteBucketTagging)."""

from __future__ import annotations

from aiohttp import web

from s3torrent.access import facts as authz
from s3torrent.s3 import tagging
from s3torrent.s3.body import RequestBody
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.buckets import BUCKET_TAGS, xml_response
from s3torrent.s3.server import S3Request
from s3torrent.s3.versioning import marker_not_allowed, version_gone, version_headers


async def read_xml_body(svc: S3Context, req: S3Request, limit: int | None = None) -> bytes:
    """A configuration's XML body, within limit bytes (at most `limits.max_xml_body`)."""
    limits = svc.settings.limits
    body = RequestBody(
        req.http,
        req.auth,
        max_chunk_size=limits.max_chunk_size,
        read_timeout=limits.body_read_timeout,
    )
    raw = await body.read_all(min(limit, limits.max_xml_body) if limit else limits.max_xml_body)
    body.verify(md5=None)
    return raw


# ---- objects ----


async def get_object_tagging(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.obj is not None
    return xml_response(tagging.to_xml(req.obj.tags), headers=version_headers(req.bucket, req.obj))


async def put_object_tagging(svc: S3Context, req: S3Request) -> web.StreamResponse:
    obj = req.obj
    assert obj is not None and req.bucket is not None
    tags = tagging.from_xml(await read_xml_body(svc, req), tagging.MAX_OBJECT_TAGS)
    # S3 fills s3:RequestObjectTag/<key> and s3:RequestObjectTagKeys from the body: the
    # decision at the edge, asked before the body was read, is asked again with them.
    asked = req.access_context().with_values(tagging.request_tag_values(tags))
    action = req.endpoint.action_for(req.query)
    if not authz.may(req.principal, action, req.bucket, req.key, obj, asked).allowed:
        raise S3Error("AccessDenied", resource=req.resource)
    if obj.delete_marker:
        # Named by its version id; the edge leaves this to the decision above when the
        # bucket's policy tests request tags (S3Server._authorize).
        raise marker_not_allowed(obj, req.resource, "PUT")
    if not await svc.meta.set_object_tags(obj, tags):
        raise version_gone(req.resource, req.key, req.query.get("versionId"))
    return web.Response(status=200, headers=version_headers(req.bucket, obj))


async def delete_object_tagging(svc: S3Context, req: S3Request) -> web.StreamResponse:
    obj = req.obj
    assert obj is not None
    if not await svc.meta.set_object_tags(obj, ()):
        raise version_gone(req.resource, req.key, req.query.get("versionId"))
    return web.Response(status=204, headers=version_headers(req.bucket, obj))


# ---- buckets ----


async def get_bucket_tagging(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    stored = req.bucket.settings.get(BUCKET_TAGS)
    if not stored:
        raise S3Error(
            "NoSuchTagSet",
            "The TagSet does not exist",
            status=404,
            resource=req.resource,
            extra={"BucketName": req.bucket_name},
        )
    return xml_response(tagging.to_xml(tuple((str(k), str(v)) for k, v in stored)))


async def put_bucket_tagging(svc: S3Context, req: S3Request) -> web.StreamResponse:
    tags = tagging.from_xml(await read_xml_body(svc, req), tagging.MAX_BUCKET_TAGS)
    await svc.meta.set_bucket_setting(
        req.bucket_name, BUCKET_TAGS, [list(t) for t in tags], req.bucket_created
    )
    return web.Response(status=204)


async def delete_bucket_tagging(svc: S3Context, req: S3Request) -> web.StreamResponse:
    await svc.meta.set_bucket_setting(req.bucket_name, BUCKET_TAGS, None, req.bucket_created)
    return web.Response(status=204)
