"""Bucket CORS configuration: PutBucketCors, GetBucketCors, DeleteBucketCors."""

from __future__ import annotations

from aiohttp import web

from s3torrent.s3 import cors
from s3torrent.s3.body import require_integrity_header
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.buckets import xml_response
from s3torrent.s3.ops.tagging import read_xml_body
from s3torrent.s3.server import S3Request


async def _read_body(svc: S3Context, req: S3Request) -> bytes:
    require_integrity_header(req.http.headers)
    return await read_xml_body(svc, req, cors.MAX_CONFIGURATION_SIZE)


async def get_bucket_cors(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    rules = cors.bucket_rules(req.bucket.settings)
    if rules is None:
        raise S3Error(
            "NoSuchCORSConfiguration",
            "The CORS configuration does not exist",
            status=404,
            resource=req.resource,
            extra={"BucketName": req.bucket_name},
        )
    return xml_response(cors.render_configuration(rules))


async def put_bucket_cors(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    rules = cors.parse_configuration(await _read_body(svc, req))
    await svc.meta.set_bucket_setting(
        req.bucket_name, cors.SETTING, cors.to_setting(rules), req.bucket_created
    )
    return web.Response(status=200)


async def delete_bucket_cors(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    if cors.SETTING in req.bucket.settings:
        await svc.meta.set_bucket_setting(req.bucket_name, cors.SETTING, None, req.bucket_created)
    return web.Response(status=204)
