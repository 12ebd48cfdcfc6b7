"""Bucket versioning and object lock: Put/GetBucketVersioning, Put/GetObjectLockConfiguration,
Put/GetObjectRetention, Put/GetObjectLegalHold, and the x-amz-object-lock-* headers of
writes.

The settings live in the bucket's settings ("versioning"; "object_lock": enabled and the
default retention rule) and in each version's row (mode, retain-until date, legal hold).
Whether a version may be removed is decided by the metadata store (store.retention), for
every path alike; here only the requests are parsed and the governance bypass is checked.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from s3torrent.access import facts as authz
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.body import RequestBody
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.buckets import xml_response
from s3torrent.s3.ops.deletes import may_bypass_governance
from s3torrent.s3.server import S3Request
from s3torrent.s3.versioning import (
    MISSING_LOCK,
    lock_condition_values,
    parse_lock_date,
    require_integrity_header,
    version_gone,
    version_headers,
)
from s3torrent.store import rows as md
from s3torrent.store.retention import LOCK_SETTING, MODES, lock_enabled

# The longest default retention S3 accepts.
_MAX_DAYS = 36500
_MAX_YEARS = 100


async def _xml_body(svc: S3Context, req: S3Request) -> Any:
    limits = svc.settings.limits
    body = RequestBody(
        req.http,
        req.auth,
        max_chunk_size=limits.max_chunk_size,
        read_timeout=limits.body_read_timeout,
    )
    raw = await body.read_all(limits.max_xml_body)
    body.verify(md5=None)
    return s3xml.parse(raw)


# What each body may hold (S3's API model, 2026-12).
VERSIONING_SCHEMA: s3xml.Schema = {"Status": None, "MfaDelete": None}
LOCK_CONFIGURATION_SCHEMA: s3xml.Schema = {
    "ObjectLockEnabled": None,
    "Rule": {"DefaultRetention": {"Mode": None, "Days": None, "Years": None}},
}
RETENTION_SCHEMA: s3xml.Schema = {"Mode": None, "RetainUntilDate": None}
LEGAL_HOLD_SCHEMA: s3xml.Schema = {"Status": None}


# ---- bucket versioning ----


async def get_bucket_versioning(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    state = req.bucket.versioning
    children: list[tuple[str, Any]] = []
    if state is not None:
        children = [("Status", state), ("MfaDelete", "Disabled")]
    return xml_response(s3xml.render("VersioningConfiguration", children))


async def put_bucket_versioning(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    root = await _xml_body(svc, req)
    s3xml.check_document(root, "VersioningConfiguration", VERSIONING_SCHEMA)
    mfa = s3xml.text(root, "MfaDelete")
    if (mfa is not None and mfa != "Disabled") or "x-amz-mfa" in req.http.headers:
        raise S3Error("NotImplemented", "MFA delete is not implemented.")
    status = s3xml.text(root, "Status")
    if status not in ("Enabled", "Suspended"):
        # There is no way back to unversioned: only these two states can be asked for.
        raise S3Error("IllegalVersioningConfigurationException")

    def allowed(bucket: md.Bucket) -> None:
        if status == "Suspended" and lock_enabled(bucket):
            raise S3Error(
                "InvalidBucketState",
                "An Object Lock configuration is present on this bucket, so the versioning "
                "state cannot be changed.",
            )

    # Decided on the bucket as the write reads it: a lock configuration racing this.
    await svc.meta.set_bucket_setting(
        req.bucket_name, "versioning", status, req.bucket_created, allowed
    )
    return web.Response(status=200)


# ---- object lock configuration ----


def lock_settings(default: dict[str, Any] | None) -> dict[str, Any]:
    """The bucket setting "object_lock": enabled, with an optional default rule."""
    return {"enabled": True, "default": default}


async def get_object_lock_configuration(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    if not lock_enabled(req.bucket):
        raise S3Error("ObjectLockConfigurationNotFoundError", extra={"BucketName": req.bucket_name})
    children: list[tuple[str, Any]] = [("ObjectLockEnabled", "Enabled")]
    rule = req.bucket.settings[LOCK_SETTING].get("default")
    if isinstance(rule, dict):
        retention: dict[str, Any] = {"Mode": rule["mode"]}
        if rule.get("days") is not None:
            retention["Days"] = rule["days"]
        else:
            retention["Years"] = rule["years"]
        children.append(("Rule", {"DefaultRetention": retention}))
    return xml_response(s3xml.render("ObjectLockConfiguration", children))


def _positive(value: str | None, maximum: int) -> int | None:
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or not 0 < int(value) <= maximum:
        raise S3Error("InvalidRetentionPeriod", "Default retention period must be a positive "
                      f"integer value of at most {maximum}.")  # fmt: skip
    return int(value)


def _may_lock(bucket: md.Bucket) -> None:
    if not lock_enabled(bucket) and bucket.versioning != "Enabled":
        raise S3Error(
            "InvalidBucketState",
            "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration",
        )


async def put_object_lock_configuration(svc: S3Context, req: S3Request) -> web.StreamResponse:
    bucket = req.bucket
    assert bucket is not None
    require_integrity_header(req.http.headers, "PutObjectLockConfiguration")
    if "x-amz-bucket-object-lock-token" in req.http.headers:
        raise S3Error("NotImplemented", "Object lock tokens are not implemented.")
    root = await _xml_body(svc, req)
    s3xml.check_document(root, "ObjectLockConfiguration", LOCK_CONFIGURATION_SCHEMA)
    if s3xml.text(root, "ObjectLockEnabled") != "Enabled":
        raise S3Error("MalformedXML")
    _may_lock(bucket)
    default: dict[str, Any] | None = None
    rules = s3xml.children(root, "Rule")
    if rules:
        found = s3xml.children(rules[0], "DefaultRetention")
        if not found:
            raise S3Error("MalformedXML")
        retention = found[0]
        mode = s3xml.text(retention, "Mode")
        days = _positive(s3xml.text(retention, "Days"), _MAX_DAYS)
        years = _positive(s3xml.text(retention, "Years"), _MAX_YEARS)
        if mode not in MODES or (days is None) == (years is None):
            raise S3Error("MalformedXML")
        default = {"mode": mode, "days": days, "years": years}
    # Decided again on the bucket as the write reads it: a suspension of versioning racing.
    await svc.meta.set_bucket_setting(
        req.bucket_name, LOCK_SETTING, lock_settings(default), req.bucket_created, _may_lock
    )
    return web.Response(status=200)


# ---- per-version retention and legal hold ----


def _locked_bucket(req: S3Request) -> md.Bucket:
    bucket = req.bucket
    assert bucket is not None
    if not lock_enabled(bucket):
        raise S3Error("InvalidRequest", MISSING_LOCK)
    return bucket


def _target(req: S3Request) -> md.ObjectVersion:
    obj = req.obj
    assert obj is not None
    return obj


def _gone(req: S3Request, changed: md.ObjectVersion | None) -> None:
    """The version was deleted between the request's lookup and its change (None from the
    store): never 200 for a setting that is not kept anywhere."""
    if changed is None:
        raise version_gone(req.resource, req.key, req.query.get("versionId"))


async def get_object_retention(svc: S3Context, req: S3Request) -> web.StreamResponse:
    _locked_bucket(req)
    obj = _target(req)
    if not obj.lock_mode or obj.lock_until is None:
        raise S3Error("NoSuchObjectLockConfiguration")
    body = s3xml.render(
        "Retention", [("Mode", obj.lock_mode), ("RetainUntilDate", s3xml.iso8601(obj.lock_until))]
    )
    return xml_response(body)


async def put_object_retention(svc: S3Context, req: S3Request) -> web.StreamResponse:
    bucket = _locked_bucket(req)
    obj = _target(req)
    require_integrity_header(req.http.headers, "PutObjectRetention")
    root = await _xml_body(svc, req)
    s3xml.check_document(root, "Retention", RETENTION_SCHEMA)
    mode = s3xml.text(root, "Mode")
    date = s3xml.text(root, "RetainUntilDate")
    until: float | None = None
    if mode is not None or date is not None:
        if mode not in MODES or date is None:
            raise S3Error("MalformedXML")
        until = parse_lock_date(date)
        if until <= req.now.timestamp():
            raise S3Error("InvalidArgument", "The retain until date must be in the future!")
        # What the body asks for is what a bucket policy's object lock conditions test.
        _ask_again(req, "s3:PutObjectRetention", lock_condition_values(mode, date, req.now))
    bypass = may_bypass_governance(req, req.key)
    changed = await svc.meta.set_retention(
        bucket.name, req.key, obj.s3_version_id, mode, until, bypass
    )
    _gone(req, changed)
    return web.Response(status=200, headers=version_headers(bucket, obj))


def _ask_again(req: S3Request, action: str, values: dict[str, str]) -> None:
    """The access decision once more, with condition values only the body held (S3 fills
    s3:object-lock-* from PutObjectRetention's and PutObjectLegalHold's XML): the first one,
    at the edge, was asked before the body was read."""
    assert req.bucket is not None
    asked = req.access_context().with_values(values)
    if not authz.may(req.principal, action, req.bucket, req.key, req.obj, asked).allowed:
        raise S3Error("AccessDenied", resource=req.resource)


async def get_object_legal_hold(svc: S3Context, req: S3Request) -> web.StreamResponse:
    _locked_bucket(req)
    obj = _target(req)
    status = obj.legal_hold_status
    if status is None:
        # Never set (S3: HeadObject leaves its header out; this answers as for a retention).
        raise S3Error("NoSuchObjectLockConfiguration")
    return xml_response(s3xml.render("LegalHold", [("Status", status)]))


async def put_object_legal_hold(svc: S3Context, req: S3Request) -> web.StreamResponse:
    bucket = _locked_bucket(req)
    obj = _target(req)
    require_integrity_header(req.http.headers, "PutObjectLegalHold")
    root = await _xml_body(svc, req)
    s3xml.check_document(root, "LegalHold", LEGAL_HOLD_SCHEMA)
    status = s3xml.text(root, "Status")
    if status not in ("ON", "OFF"):
        raise S3Error("MalformedXML")
    _ask_again(req, "s3:PutObjectLegalHold", {"s3:object-lock-legal-hold": status})
    changed = await svc.meta.update_version(
        bucket.name, req.key, obj.s3_version_id, legal_hold=status == "ON", legal_hold_set=True
    )
    _gone(req, changed)
    return web.Response(status=200, headers=version_headers(bucket, obj))
