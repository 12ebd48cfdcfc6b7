"""Server access logging to a target bucket: GetBucketLogging and PutBucketLogging.

The configuration is a bucket setting; s3/bucket_logs.py writes the lines. As S3 asks, the
target bucket must exist and have the source bucket's owner (the lines name the source
bucket's requesters and keys; they go nowhere its owner does not own).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from s3torrent.s3 import xml as s3xml
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.buckets import xml_response
from s3torrent.s3.ops.tagging import read_xml_body
from s3torrent.s3.server import S3Request

BUCKET_LOGGING = "logging"
MAX_PREFIX = 1024  # S3 keys are at most 1024 bytes: a longer prefix could name no object


def logging_target(bucket_settings: dict[str, Any]) -> tuple[str, str] | None:
    """(target bucket, target prefix) of a bucket whose requests are logged, else None."""
    conf = bucket_settings.get(BUCKET_LOGGING)
    if not isinstance(conf, dict):
        return None
    return str(conf.get("target_bucket", "")), str(conf.get("target_prefix", ""))


# What a PutBucketLogging body may hold (S3's API model, 2026-12; a grantee's xsi:type is
# an attribute).
_GRANTEE: s3xml.Schema = dict.fromkeys(("DisplayName", "EmailAddress", "ID", "URI"))
LOGGING_SCHEMA: s3xml.Schema = {
    "LoggingEnabled": {
        "TargetBucket": None,
        "TargetGrants": {"Grant": {"Grantee": _GRANTEE, "Permission": None}},
        "TargetPrefix": None,
        "TargetObjectKeyFormat": {
            "SimplePrefix": {},
            "PartitionedPrefix": {"PartitionDateSource": None},
        },
    }
}


def parse_status(body: bytes) -> tuple[str, str] | None:
    """A BucketLoggingStatus body: (target bucket, prefix), or None to switch logging off."""
    root = s3xml.parse(body)
    s3xml.check_document(root, "BucketLoggingStatus", LOGGING_SCHEMA)
    enabled = s3xml.child(root, "LoggingEnabled")
    if enabled is None:
        return None
    for unsupported in ("TargetGrants", "TargetObjectKeyFormat"):
        el = s3xml.child(enabled, unsupported)
        if el is not None and len(el):
            simple = unsupported == "TargetObjectKeyFormat" and [
                s3xml.local(c.tag) for c in el
            ] == ["SimplePrefix"]
            if not simple:
                raise S3Error(
                    "NotImplemented", f"{unsupported} is not implemented: lines use SimplePrefix"
                )
    target = s3xml.text(enabled, "TargetBucket")
    prefix = s3xml.text(enabled, "TargetPrefix") or ""
    if not target:
        raise S3Error("MalformedXML")
    if len(prefix.encode("utf-8")) > MAX_PREFIX:
        raise S3Error("InvalidArgument", "TargetPrefix is too long")
    return target, prefix


def status_xml(target: tuple[str, str] | None) -> bytes:
    if target is None:
        return s3xml.render("BucketLoggingStatus", {})
    return s3xml.render(
        "BucketLoggingStatus",
        {"LoggingEnabled": {"TargetBucket": target[0], "TargetPrefix": target[1]}},
    )


async def get_bucket_logging(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    return xml_response(status_xml(logging_target(req.bucket.settings)))


async def put_bucket_logging(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    target = parse_status(await read_xml_body(svc, req))
    if target is None:
        await svc.meta.set_bucket_setting(req.bucket_name, BUCKET_LOGGING, None, req.bucket_created)
        return web.Response(status=200)
    name, prefix = target
    target_bucket = await svc.meta.bucket(name)
    if target_bucket is None:
        raise S3Error(
            "InvalidTargetBucketForLogging",
            "The target bucket for logging does not exist",
            extra={"TargetBucket": name},
        )
    if target_bucket.owner_id != req.bucket.owner_id:
        raise S3Error(
            "InvalidTargetBucketForLogging",
            "The owner for the bucket to be logged and the target bucket must be the same.",
            extra={"TargetBucket": name},
        )
    conf = {"target_bucket": name, "target_prefix": prefix}
    await svc.meta.set_bucket_setting(req.bucket_name, BUCKET_LOGGING, conf, req.bucket_created)
    return web.Response(status=200)
