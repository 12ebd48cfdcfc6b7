"""Default bucket encryption: Put/Get/DeleteBucketEncryption (a bucket setting)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from s3torrent.s3 import xml as s3xml
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.buckets import xml_response
from s3torrent.s3.ops.tagging import read_xml_body
from s3torrent.s3.server import S3Request
from s3torrent.s3.sse import BUCKET_ENCRYPTION


def _rule(algorithm: str, bucket_key: bool) -> dict[str, Any]:
    return {
        "Rule": {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": algorithm},
            "BucketKeyEnabled": "true" if bucket_key else "false",
        }
    }


async def get_bucket_encryption(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    rule = req.bucket.settings.get(BUCKET_ENCRYPTION)
    if isinstance(rule, dict):
        body = _rule(str(rule["SSEAlgorithm"]), bool(rule.get("BucketKeyEnabled")))
    elif svc.settings.encryption.default == "AES256":
        # The server encrypts every new object: say so, as S3 does for every bucket.
        body = _rule("AES256", False)
    else:
        raise S3Error(
            "ServerSideEncryptionConfigurationNotFoundError",
            resource=req.resource,
            extra={"BucketName": req.bucket_name},
        )
    return xml_response(s3xml.render("ServerSideEncryptionConfiguration", body))


async def put_bucket_encryption(svc: S3Context, req: S3Request) -> web.StreamResponse:
    root = s3xml.parse(await read_xml_body(svc, req))
    if s3xml.local(root.tag) != "ServerSideEncryptionConfiguration":
        raise S3Error("MalformedXML")
    rules = s3xml.children(root, "Rule")
    if len(rules) != 1:
        raise S3Error("MalformedXML")
    default = s3xml.child(rules[0], "ApplyServerSideEncryptionByDefault")
    algorithm = s3xml.text(default, "SSEAlgorithm") if default is not None else None
    if algorithm is None:
        raise S3Error("MalformedXML")
    if algorithm.startswith("aws:kms"):
        raise S3Error("NotImplemented", "SSE-KMS (aws:kms) is not implemented; use AES256.")
    if algorithm != "AES256":
        raise S3Error(
            "MalformedXML",
            "The XML you provided was not well-formed or did not "
            "validate against our published schema (SSEAlgorithm).",
        )
    if default is not None and s3xml.text(default, "KMSMasterKeyID"):
        raise S3Error(
            "InvalidArgument",
            "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms",
        )
    bucket_key = (s3xml.text(rules[0], "BucketKeyEnabled") or "").strip().lower() == "true"
    setting = {"SSEAlgorithm": algorithm, "BucketKeyEnabled": bucket_key}
    await svc.meta.set_bucket_setting(req.bucket_name, BUCKET_ENCRYPTION, setting)
    return web.Response(status=200)


async def delete_bucket_encryption(svc: S3Context, req: S3Request) -> web.StreamResponse:
    await svc.meta.set_bucket_setting(req.bucket_name, BUCKET_ENCRYPTION, None)
    return web.Response(status=204)
