"""Versioning at the S3 edge: version ids as clients send them, the headers that name a
version, and the answers about delete markers.

A version id is "null" (the version written while the bucket was unversioned or suspended)
or one of ours (32 hex digits, or "v" and 31 for a version without a blob: see
store.rows.new_row_version_id); anything else is S3's InvalidArgument, before any lookup.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from s3torrent.access.conditions import parse_timestamp
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.body import has_integrity_header
from s3torrent.s3.errors import S3Error
from s3torrent.store import rows as md
from s3torrent.store.metastore import MetadataStore
from s3torrent.store.retention import MODES, lock_enabled, retain_until

_OUR_IDS = re.compile(r"^[0-9a-fv][0-9a-f]{31}$")
MISSING_LOCK = "Bucket is missing Object Lock Configuration"
# A write's own object lock settings: (mode, retain-until, legal hold "ON" or "OFF" or None
# when the write names none).
RequestedLock = tuple[str | None, float | None, str | None]
NO_LOCK: RequestedLock = (None, None, None)


def parse_version_id(value: str, argument: str = "versionId") -> str:
    """A version id a client sent: "null" or one of ours; InvalidArgument otherwise."""
    if value == md.NULL_VERSION or _OUR_IDS.match(value):
        return value
    empty = value == "" and argument == "versionId"
    raise S3Error(
        "InvalidArgument",
        "Version id cannot be the empty string" if empty else "Invalid version id specified",
        extra={"ArgumentName": argument, "ArgumentValue": value[:64]},
    )


async def named_version(
    meta: MetadataStore, bucket: md.Bucket, key: str, version_id: str
) -> md.ObjectVersion | None:
    """The version ?versionId= names (a delete marker too), or None."""
    return await meta.object_version(bucket.name, key, parse_version_id(version_id))


def version_headers(bucket: md.Bucket | None, obj: md.ObjectVersion) -> dict[str, str]:
    """x-amz-version-id, as S3 sends it: on every version of a bucket that has (or had)
    versioning, and never in a bucket that was never versioned."""
    if obj.versioned or (bucket is not None and bucket.versioning is not None):
        return {"x-amz-version-id": obj.s3_version_id}
    return {}


def written_version_headers(bucket: md.Bucket | None, obj: md.ObjectVersion) -> dict[str, str]:
    """x-amz-version-id in the answer to a write (PUT, POST, copy, completed upload) that made
    `obj`: none for the null version, which a write in a suspended bucket makes. S3 leaves
    the header out there (its PutObject reference's suspended-bucket example), while GET and
    HEAD of that version then say `null`."""
    if obj.s3_version_id == md.NULL_VERSION:
        return {}
    return version_headers(bucket, obj)


def lock_headers(
    obj: md.ObjectVersion, *, retention: bool = True, legal_hold: bool = True
) -> dict[str, str]:
    """The version's object lock settings, as GET and HEAD report them: its retention when
    `retention`, its legal hold when `legal_hold` (what the requester may read)."""
    h: dict[str, str] = {}
    if retention and obj.lock_mode and obj.lock_until is not None:
        h["x-amz-object-lock-mode"] = obj.lock_mode
        h["x-amz-object-lock-retain-until-date"] = s3xml.iso8601(obj.lock_until)
    status = obj.legal_hold_status
    if legal_hold and status is not None:
        h["x-amz-object-lock-legal-hold"] = status
    return h


async def no_such_key(meta: MetadataStore, bucket: md.Bucket, key: str, resource: str) -> S3Error:
    """NoSuchKey; when the key's latest version is a delete marker, S3 says so in headers."""
    headers: dict[str, str] = {}
    if bucket.versioning is not None:
        marker = await meta.latest_delete_marker(bucket.name, key)
        if marker is not None:
            headers = {"x-amz-delete-marker": "true", "x-amz-version-id": marker.s3_version_id}
    return S3Error("NoSuchKey", resource=resource, extra={"Key": key}, headers=headers or None)


def version_gone(resource: str, key: str, version_id: str | None) -> S3Error:
    """A version the request found is no longer there when its change commits (deleted
    meanwhile): the error its lookup would have answered, NoSuchVersion when the request
    named the version, else NoSuchKey."""
    if version_id is not None:
        return S3Error(
            "NoSuchVersion", resource=resource, extra={"Key": key, "VersionId": version_id}
        )
    return S3Error("NoSuchKey", resource=resource, extra={"Key": key})


def marker_not_allowed(marker: md.ObjectVersion, resource: str, method: str = "GET") -> S3Error:
    """A delete marker named by version id: 405, as S3 answers (it has no data), naming the
    request's method."""
    return S3Error(
        "MethodNotAllowed",
        resource=resource,
        extra={"Method": method, "ResourceType": "DeleteMarker"},
        headers={
            "x-amz-delete-marker": "true",
            "x-amz-version-id": marker.s3_version_id,
            "Last-Modified": s3xml.http_date(marker.last_modified),
            "Allow": "DELETE",
        },
    )


def removal_headers(removed: md.Removed) -> dict[str, str]:
    """What DeleteObject answers: the marker it created or the version it removed."""
    h: dict[str, str] = {}
    if removed.s3_version_id is not None:
        h["x-amz-version-id"] = removed.s3_version_id
    if removed.delete_marker:
        h["x-amz-delete-marker"] = "true"
    return h


def require_integrity_header(headers: Mapping[str, str], operation: str) -> None:
    """S3 takes object lock settings only with Content-MD5 or a checksum of the body
    (body.has_integrity_header)."""
    if not has_integrity_header(headers):
        raise S3Error(
            "InvalidRequest",
            f"Content-MD5 OR x-amz-checksum- HTTP header is required for {operation} "
            "requests with Object Lock parameters",
        )


def parse_lock_date(value: str) -> float:
    """A retain-until date, read as a bucket policy's Date conditions read it (a policy may
    cap it: s3:object-lock-retain-until-date); one they would read otherwise is refused."""
    try:
        dt = parse_timestamp(value)
    except ValueError as exc:
        raise S3Error("InvalidArgument", "The retain until date is not valid.") from exc
    return retain_until(dt.timestamp())


def lock_condition_values(mode: str | None, date: str | None, now: datetime) -> dict[str, str]:
    """s3:object-lock-mode, s3:object-lock-retain-until-date and
    s3:object-lock-remaining-retention-days for a requested retention (headers or body): the
    days left, rounded up, as S3 fills them for a bucket policy to cap retention."""
    values: dict[str, str] = {}
    if mode:
        values["s3:object-lock-mode"] = mode
    if date:
        values["s3:object-lock-retain-until-date"] = date
        try:
            until = parse_lock_date(date)
        except S3Error:
            return values  # the operation refuses it itself
        left = until - (now if now.tzinfo is not None else now.replace(tzinfo=UTC)).timestamp()
        values["s3:object-lock-remaining-retention-days"] = str(max(0, math.ceil(left / 86400)))
    return values


LOCK_HEADERS = (
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
)


def requested_lock(
    headers: Mapping[str, str], bucket: md.Bucket, now: float, may: Callable[[str], bool]
) -> RequestedLock:
    """A write's own object lock settings: (mode, retain-until, legal hold). Without them
    the bucket's default retention applies (in the store, at the commit). `may` answers
    whether the writer may also take an action on the key: as S3 does, a retention needs
    s3:PutObjectRetention and a legal hold s3:PutObjectLegalHold (else 403 AccessDenied),
    the permissions PutObjectRetention and PutObjectLegalHold need, so that a writer allowed
    s3:PutObject alone cannot lock what it writes beyond the owner's reach."""
    if not any(h in headers for h in LOCK_HEADERS):
        return NO_LOCK
    if not lock_enabled(bucket):
        raise S3Error("InvalidRequest", MISSING_LOCK)
    mode = headers.get("x-amz-object-lock-mode")
    date = headers.get("x-amz-object-lock-retain-until-date")
    if (mode is None) != (date is None):
        raise S3Error(
            "InvalidArgument",
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied",
        )
    until: float | None = None
    if mode is not None and date is not None:
        if mode not in MODES:
            raise S3Error("InvalidArgument", "Unknown wormMode directive.")
        until = parse_lock_date(date)
        if until <= now:
            raise S3Error("InvalidArgument", "The retain until date must be in the future!")
    hold = headers.get("x-amz-object-lock-legal-hold")
    if hold is not None and hold not in ("ON", "OFF"):
        raise S3Error("InvalidArgument", "Legal Hold must be either of 'ON' or 'OFF'")
    if (mode is not None and not may("s3:PutObjectRetention")) or (
        hold is not None and not may("s3:PutObjectLegalHold")
    ):
        raise S3Error("AccessDenied")
    return mode, until, hold


def lock_fields(lock: RequestedLock) -> dict[str, Any]:
    """A write's lock settings as the new version's fields: a legal hold the write names,
    ON or OFF, is one that was set (reported OFF, not left out)."""
    return {
        "lock_mode": lock[0],
        "lock_until": lock[1],
        "legal_hold": lock[2] == "ON",
        "legal_hold_set": lock[2] is not None,
    }


# An upload in progress keeps its lock settings among its stored headers, under names no
# client header can have (stored headers are lower case), until its completion.
_UPLOAD_LOCK = ("X-Lock-Mode", "X-Lock-Until", "X-Legal-Hold")


def upload_lock_headers(
    headers: Mapping[str, str], bucket: md.Bucket, now: float, may: Callable[[str], bool]
) -> dict[str, str]:
    """CreateMultipartUpload's lock settings (requested_lock), to keep with the upload."""
    mode, until, hold = requested_lock(headers, bucket, now, may)
    out: dict[str, str] = {}
    if mode is not None and until is not None:
        out[_UPLOAD_LOCK[0]] = mode
        out[_UPLOAD_LOCK[1]] = repr(until)
    if hold is not None:
        out[_UPLOAD_LOCK[2]] = hold
    return out


def upload_has_lock(headers: Mapping[str, str]) -> bool:
    """Whether an upload in progress was created with lock settings of its own."""
    return any(name in headers for name in _UPLOAD_LOCK)


def split_upload_lock(headers: Mapping[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
    """An upload's stored headers without its lock settings, and those settings as the
    completed version's fields."""
    rest = {k: v for k, v in headers.items() if k not in _UPLOAD_LOCK}
    until = headers.get(_UPLOAD_LOCK[1])
    # An upload created before OFF was kept has "ON" or nothing: the same answer.
    return rest, lock_fields(
        (
            headers.get(_UPLOAD_LOCK[0]),
            float(until) if until else None,
            headers.get(_UPLOAD_LOCK[2]),
        )
    )
