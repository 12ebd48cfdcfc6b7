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
from s3torrent.s3.sse import BLOCKED_TYPES, BUCKET_ENCRYPTION

# What a PutBucketEncryption body may hold (S3's API model, 2026-12); anything else is
# MalformedXML, never ignored, and a Rule's elements come once each.
ENCRYPTION_SCHEMA: s3xml.Schema = {
    "Rule": {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": None, "KMSMasterKeyID": None},
        "BucketKeyEnabled": None,
        "BlockedEncryptionTypes": {"EncryptionType": None},
    }
}
_RULE_PARTS = ("ApplyServerSideEncryptionByDefault", "BucketKeyEnabled", "BlockedEncryptionTypes")
_ENCRYPTION_TYPES = frozenset({"SSE-C", "NONE"})


def _bucket_key(rule: Any) -> bool:
    """A Rule's BucketKeyEnabled, an xsd:boolean (false when absent)."""
    value = s3xml.text(rule, "BucketKeyEnabled")
    if value is None:
        return False
    folded = value.strip().lower()
    if folded not in ("true", "false"):
        raise S3Error("MalformedXML")
    return folded == "true"


def _rule(algorithm: str, bucket_key: bool, blocked: list[str] | None = None) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": algorithm},
        "BucketKeyEnabled": "true" if bucket_key else "false",
    }
    if blocked is not None:
        rule["BlockedEncryptionTypes"] = {"EncryptionType": blocked}
    return {"Rule": rule}


def _blocked_types(rule: Any) -> list[str] | None:
    """A Rule's BlockedEncryptionTypes: the encryption types new objects may not use
    (SSE-C, or NONE to block nothing); None when the rule does not name them."""
    element = s3xml.child(rule, "BlockedEncryptionTypes")
    if element is None:
        return None
    types = [(t.text or "").strip() for t in s3xml.children(element, "EncryptionType")]
    if any(t not in _ENCRYPTION_TYPES for t in types):
        raise S3Error("MalformedXML")
    return sorted(set(types))


async def get_bucket_encryption(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    rule = req.bucket.settings.get(BUCKET_ENCRYPTION)
    if isinstance(rule, dict):
        blocked = rule.get(BLOCKED_TYPES)
        body = _rule(
            str(rule["SSEAlgorithm"]),
            bool(rule.get("BucketKeyEnabled")),
            [str(t) for t in blocked] if isinstance(blocked, list) else None,
        )
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
    s3xml.check_document(root, "ServerSideEncryptionConfiguration", ENCRYPTION_SCHEMA)
    rules = s3xml.children(root, "Rule")
    if len(rules) != 1:
        raise S3Error("MalformedXML")
    s3xml.check_once(
        rules[0],
        ("ApplyServerSideEncryptionByDefault", "BucketKeyEnabled", "BlockedEncryptionTypes"),
    )
    default = s3xml.child(rules[0], "ApplyServerSideEncryptionByDefault")
    if default is not None:
        s3xml.check_once(default, ("SSEAlgorithm", "KMSMasterKeyID"))
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
    setting: dict[str, Any] = {"SSEAlgorithm": algorithm, "BucketKeyEnabled": _bucket_key(rules[0])}
    blocked = _blocked_types(rules[0])
    if blocked is not None:
        # Acted on by sse.write_spec: a write asking for SSE-C is then 403, as on S3.
        setting[BLOCKED_TYPES] = blocked
    await svc.meta.set_bucket_setting(
        req.bucket_name, BUCKET_ENCRYPTION, setting, req.bucket_created
    )
    return web.Response(status=200)


async def delete_bucket_encryption(svc: S3Context, req: S3Request) -> web.StreamResponse:
    await svc.meta.set_bucket_setting(req.bucket_name, BUCKET_ENCRYPTION, None, req.bucket_created)
    return web.Response(status=204)
