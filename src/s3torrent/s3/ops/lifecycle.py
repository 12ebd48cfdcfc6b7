"""Put/Get/DeleteBucketLifecycleConfiguration, the x-amz-expiration header of objects a
rule will expire (GET, HEAD, PUT), and the x-amz-abort-date of uploads a rule will abort."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from s3torrent.config import Settings
from s3torrent.lifecycle import rules
from s3torrent.lifecycle.evaluate import ObjectFacts, current_expiry, upload_abort_expiry
from s3torrent.s3 import lifecycle_xml
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.body import require_integrity_header
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.buckets import xml_response
from s3torrent.s3.ops.tagging import read_xml_body
from s3torrent.s3.server import S3Request
from s3torrent.store.rows import Bucket, ObjectVersion, Upload

# S3 answers it on PUT and GET (Terraform's AWS provider waits for it on GET).
MIN_SIZE_HEADER = "x-amz-transition-default-minimum-object-size"


async def put_bucket_lifecycle(svc: S3Context, req: S3Request) -> web.StreamResponse:
    require_integrity_header(req.http.headers)
    min_size = req.http.headers.get(MIN_SIZE_HEADER, rules.MIN_SIZE_DEFAULT)
    if min_size not in rules.MIN_SIZE_VALUES:
        raise S3Error(
            "InvalidArgument",
            f"Invalid value for {MIN_SIZE_HEADER}: expected one of "
            + ", ".join(rules.MIN_SIZE_VALUES),
            extra={"ArgumentName": MIN_SIZE_HEADER, "ArgumentValue": min_size[:256]},
        )
    config = lifecycle_xml.parse(await read_xml_body(svc, req), min_size)
    await svc.meta.set_bucket_setting(
        req.bucket_name, rules.SETTING, rules.to_stored(config), req.bucket_created
    )
    # New rules: the next pass starts at the bucket's first key (not where the old rules'
    # pass, or a deleted bucket of the same name, stopped).
    await svc.meta.save_lifecycle_cursor(req.bucket_name, None)
    return web.Response(status=200, headers={MIN_SIZE_HEADER: config.transition_min_size})


async def get_bucket_lifecycle(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    config = rules.of_bucket(req.bucket.settings)
    if config is None:
        raise S3Error(
            "NoSuchLifecycleConfiguration",
            "The lifecycle configuration does not exist",
            status=404,
            resource=req.resource,
            extra={"BucketName": req.bucket_name},
        )
    return xml_response(
        lifecycle_xml.render(config), headers={MIN_SIZE_HEADER: config.transition_min_size}
    )


async def delete_bucket_lifecycle(svc: S3Context, req: S3Request) -> web.StreamResponse:
    await svc.meta.set_bucket_setting(req.bucket_name, rules.SETTING, None, req.bucket_created)
    return web.Response(status=204)


def expiration_headers(
    settings: Settings, bucket: Bucket | None, obj: ObjectVersion
) -> dict[str, str]:
    """x-amz-expiration for a current version some rule of its bucket expires ({}: none)."""
    config = rules.of_bucket(bucket.settings) if bucket is not None else None
    if config is None:
        return {}
    facts = ObjectFacts(obj.key, obj.size, obj.last_modified, obj.tags)
    expiry = current_expiry(config, facts, settings.lifecycle.day_seconds)
    if expiry is None:
        return {}
    # S3 URL-encodes the rule id inside the quoted pair.
    rule_id = quote(expiry.rule_id, safe="")
    return {"x-amz-expiration": f'expiry-date="{s3xml.http_date(expiry.at)}", rule-id="{rule_id}"'}


def abort_headers(settings: Settings, bucket: Bucket | None, up: Upload) -> dict[str, str]:
    """x-amz-abort-date and x-amz-abort-rule-id for an upload an AbortIncompleteMultipartUpload
    rule of its bucket will abort ({}: none), as CreateMultipartUpload and ListParts answer."""
    config = rules.of_bucket(bucket.settings) if bucket is not None else None
    if config is None:
        return {}
    due = upload_abort_expiry(config, up.key, up.initiated, settings.lifecycle.day_seconds)
    if due is None:
        return {}
    rule_id = due.rule_id
    if not (rule_id.isascii() and rule_id.isprintable()):
        rule_id = quote(rule_id, safe="")  # a header value is printable ASCII
    return {"x-amz-abort-date": s3xml.http_date(due.at), "x-amz-abort-rule-id": rule_id}
