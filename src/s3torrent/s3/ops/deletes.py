"""DeleteObject and DeleteObjects: the current version (a delete marker in a versioned
bucket), or one version for good (?versionId=, <VersionId>), object lock permitting."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from s3torrent.access import facts as authz
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.body import RequestBody, require_integrity_header
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error, s3_error_of
from s3torrent.s3.ops.buckets import xml_response
from s3torrent.s3.ops.objects import check_may_compare
from s3torrent.s3.server import S3Request
from s3torrent.s3.versioning import parse_version_id, removal_headers
from s3torrent.store import rows as md
from s3torrent.store.conditions import NO_CONDITION, WriteCondition
from s3torrent.store.errors import StoreError

# DeleteObjects: how many deletes are in flight at once (they share group commits).
_DELETE_WAVE = 256


def delete_condition(if_match: str | None) -> WriteCondition:
    """A delete's condition: If-Match (an ETag, or "*": the object must exist)."""
    if if_match is None:
        return NO_CONDITION
    if not if_match.strip():
        raise S3Error("InvalidArgument", "If-Match must not be empty.")
    return WriteCondition(if_match=if_match.strip())


def may_bypass_governance(req: S3Request, key: str) -> bool:
    """x-amz-bypass-governance-retention: true, and the caller holds
    s3:BypassGovernanceRetention on the key (else the header is refused: 403)."""
    value = req.http.headers.get("x-amz-bypass-governance-retention")
    if value is None or value.strip().lower() != "true":
        return False
    assert req.bucket is not None
    ctx = req.access_context()
    decision = authz.may(req.principal, "s3:BypassGovernanceRetention", req.bucket, key, None, ctx)
    if not decision.allowed:
        raise S3Error("AccessDenied", resource=f"/{req.bucket_name}/{key}")
    return True


async def remove(
    svc: S3Context,
    req: S3Request,
    key: str,
    version_id: str | None,
    condition: WriteCondition,
    bypass: bool,
) -> md.Removed:
    """One delete: a version for good, or the key's current version (a delete marker)."""
    condition = req.bound(condition)
    if version_id is not None:
        # If-Match (<ETag>) names the ETag of the version being removed.
        return await svc.store.delete_version(
            req.bucket_name, key, version_id, bypass, condition=condition
        )
    owner = req.principal.canonical_id or (req.bucket.owner_id if req.bucket else "")
    return await svc.store.delete(req.bucket_name, key, condition, owner)


async def delete_object(svc: S3Context, req: S3Request) -> web.StreamResponse:
    condition = delete_condition(req.http.headers.get("If-Match"))
    check_may_compare(req, req.key, condition)
    raw = req.query.get("versionId")
    version_id = parse_version_id(raw) if raw is not None else None
    bypass = may_bypass_governance(req, req.key) if version_id is not None else False
    removed = await remove(svc, req, req.key, version_id, condition, bypass)
    headers = removal_headers(removed)
    if version_id is not None and req.bucket is not None and req.bucket.versioning is not None:
        # S3 names the version asked for even when there was none to remove.
        headers.setdefault("x-amz-version-id", version_id)
    return web.Response(status=204, headers=headers)


# What a DeleteObjects body may hold (S3's API model, 2026-12).
DELETE_SCHEMA: s3xml.Schema = {
    "Quiet": None,
    "Object": {
        "Key": None,
        "VersionId": None,
        "ETag": None,
        "LastModifiedTime": None,
        "Size": None,
    },
}


def _delete_entry(entry: Any) -> tuple[str, str | None, WriteCondition]:
    """One <Object> of a DeleteObjects body: its key, version id and condition (<ETag>)."""
    key = s3xml.text(entry, "Key")
    if key is None or key == "":
        raise S3Error("MalformedXML")
    for unsupported in ("LastModifiedTime", "Size"):
        if s3xml.text(entry, unsupported) is not None:
            raise S3Error("NotImplemented", f"DeleteObjects does not support <{unsupported}>.")
    version_id = s3xml.text(entry, "VersionId")
    return key, version_id, delete_condition(s3xml.text(entry, "ETag"))


def _deleted(key: str, removed: md.Removed, asked: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {"Key": key}
    if asked is not None:
        item["VersionId"] = asked
    if removed.delete_marker:
        item["DeleteMarker"] = True
        if removed.s3_version_id is not None:
            item["DeleteMarkerVersionId"] = removed.s3_version_id
    return item


async def delete_objects(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    limits = svc.settings.limits
    body = RequestBody(
        req.http,
        req.auth,
        max_chunk_size=limits.max_chunk_size,
        read_timeout=limits.body_read_timeout,
    )
    require_integrity_header(req.http.headers)
    raw = await body.read_all(limits.max_xml_body)
    body.verify(md5=None)
    root = s3xml.parse(raw)
    s3xml.check_document(root, "Delete", DELETE_SCHEMA)
    quiet = (s3xml.text(root, "Quiet") or "").strip().lower() == "true"
    entries = s3xml.children(root, "Object")
    if not entries or len(entries) > limits.max_delete_objects:
        raise S3Error("MalformedXML")
    deleted: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    allowed: list[tuple[str, str | None, WriteCondition, bool]] = []
    ctx = req.access_context()
    # S3 acts on, and reports, a repeated (key, version id) once: a key named twice gets one
    # delete marker. A bare key and that key with the version id "null" are two entries.
    seen: set[tuple[str, str | None]] = set()
    for entry in entries:
        key, version_id, condition = _delete_entry(entry)
        if (key, version_id) in seen:
            continue
        seen.add((key, version_id))
        if len(key.encode()) > 1024:
            errors.append(
                {"Key": key, "Code": "KeyTooLongError", "Message": "Your key is too long."}
            )
            continue
        # Each entry is decided as its own DELETE would be (the edge asked nothing): a
        # version's, with the s3:VersionId that DELETE ?versionId= has.
        if version_id is None:
            decision = authz.may(req.principal, "s3:DeleteObject", req.bucket, key, None, ctx)
        else:
            asked = ctx.with_values({"s3:versionid": version_id})
            action = "s3:DeleteObjectVersion"
            decision = authz.may(req.principal, action, req.bucket, key, None, asked)
        try:
            if version_id is not None:
                parse_version_id(version_id)
            if not decision.allowed:
                raise S3Error("AccessDenied")
            check_may_compare(req, key, condition)
            bypass = may_bypass_governance(req, key) if version_id is not None else False
        except S3Error as refused:
            error = {"Key": key, "Code": refused.code, "Message": refused.message}
            if version_id is not None:
                error["VersionId"] = version_id
            errors.append(error)
            continue
        allowed.append((key, version_id, condition, bypass))
    # Issued together, the deletes share group commits instead of costing a commit each.
    for i in range(0, len(allowed), _DELETE_WAVE):
        wave = allowed[i : i + _DELETE_WAVE]
        results = await asyncio.gather(
            *(remove(svc, req, k, v, c, b) for k, v, c, b in wave), return_exceptions=True
        )
        for (key, version_id, _, _), result in zip(wave, results, strict=True):
            if isinstance(result, StoreError | S3Error):
                # A failed <ETag> condition or a locked version is that key's error.
                err = result if isinstance(result, S3Error) else s3_error_of(result)
                error = {"Key": key, "Code": err.code, "Message": err.message}
                if version_id is not None:
                    error["VersionId"] = version_id
                errors.append(error)
            elif isinstance(result, BaseException):
                raise result
            elif not quiet:
                deleted.append(_deleted(key, result, version_id))
    return xml_response(s3xml.render("DeleteResult", {"Deleted": deleted, "Error": errors}))
