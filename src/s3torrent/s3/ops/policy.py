"""Bucket policy and Block Public Access operations."""

from __future__ import annotations

from aiohttp import web

from s3torrent.access import (
    PublicAccessBlock,
    check_policy_allowed,
    named_users,
    parse_policy,
    policy_is_public,
    public_access_block_from_xml,
    public_access_block_to_xml,
)
from s3torrent.access import facts as authz
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.body import RequestBody
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.buckets import xml_response
from s3torrent.s3.server import S3Request
from s3torrent.store import rows as md


async def _read_body(svc: S3Context, req: S3Request) -> bytes:
    limits = svc.settings.limits
    body = RequestBody(
        req.http,
        req.auth,
        max_chunk_size=limits.max_chunk_size,
        read_timeout=limits.body_read_timeout,
    )
    raw = await body.read_all(limits.max_xml_body)
    body.verify(md5=None)
    return raw


def _pab(bucket: md.Bucket) -> PublicAccessBlock | None:
    if not bucket.public_access_block:
        return None
    return authz.decode_public_access_block(bucket.public_access_block)


# ---- bucket policy ----


async def get_bucket_policy(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    if req.bucket.policy is None:
        raise S3Error(
            "NoSuchBucketPolicy", resource=req.resource, extra={"BucketName": req.bucket_name}
        )
    return web.Response(
        status=200, body=req.bucket.policy.encode("utf-8"), content_type="application/json"
    )


async def put_bucket_policy(svc: S3Context, req: S3Request) -> web.StreamResponse:
    bucket = req.bucket
    assert bucket is not None
    raw = await _read_body(svc, req)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise S3Error("MalformedPolicy", "Policies must be valid UTF-8 JSON") from exc
    policy = parse_policy(text, bucket=bucket.name)
    check_policy_allowed(policy, _pab(bucket))
    await svc.meta.set_bucket_policy(
        bucket.name, text, req.bucket_created, users=named_users(policy)
    )
    return web.Response(status=204)


async def delete_bucket_policy(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    if req.bucket.policy is not None:
        await svc.meta.set_bucket_policy(req.bucket_name, None, req.bucket_created)
    return web.Response(status=204)


# ---- Block Public Access ----


async def get_public_access_block(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    pab = _pab(req.bucket)
    if pab is None:
        raise S3Error(
            "NoSuchPublicAccessBlockConfiguration",
            resource=req.resource,
            extra={"BucketName": req.bucket_name},
        )
    return xml_response(public_access_block_to_xml(pab))


async def put_public_access_block(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    pab = public_access_block_from_xml(await _read_body(svc, req))
    await svc.meta.set_public_access_block(
        req.bucket_name, authz.encode_public_access_block(pab), req.bucket_created
    )
    return web.Response(status=200)


async def delete_public_access_block(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    if req.bucket.public_access_block is not None:
        await svc.meta.set_public_access_block(req.bucket_name, None, req.bucket_created)
    return web.Response(status=204)


async def get_bucket_policy_status(svc: S3Context, req: S3Request) -> web.StreamResponse:
    """IsPublic: whether the bucket's policy grants anyone access (as Block Public Access
    judges a public policy), and no setting restricts it to the owner's account."""
    bucket = req.bucket
    assert bucket is not None
    if bucket.policy is None:
        raise S3Error(
            "NoSuchBucketPolicy", resource=req.resource, extra={"BucketName": req.bucket_name}
        )
    pab = _pab(bucket)
    public = False
    if bucket.policy:
        public = policy_is_public(authz.decode_policy(bucket.policy, bucket.name)) and not (
            pab is not None and pab.restrict_public_buckets
        )
    return xml_response(s3xml.render("PolicyStatus", {"IsPublic": public}))
