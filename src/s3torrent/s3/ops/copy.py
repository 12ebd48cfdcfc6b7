"""CopyObject, and the copy-source rules UploadPartCopy shares with it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from s3torrent.access import Owner
from s3torrent.access import facts as authz
from s3torrent.s3 import checksums, sse, tagging
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.buckets import xml_response
from s3torrent.s3.ops.lifecycle import expiration_headers
from s3torrent.s3.ops.objects import (
    REDIRECT_LOCATION,
    check_may_tag,
    check_redirect_location,
    may_also,
    precheck_write,
    requested_acl,
    stored_headers,
    write_condition,
)
from s3torrent.s3.ops.ownership import write_owner
from s3torrent.s3.params import parse_copy_source
from s3torrent.s3.refusals import check_expected_owner
from s3torrent.s3.server import S3Request
from s3torrent.s3.validators import failed_condition
from s3torrent.s3.versioning import (
    NO_LOCK,
    RequestedLock,
    lock_fields,
    no_such_key,
    parse_version_id,
    requested_lock,
    written_version_headers,
)
from s3torrent.store import rows as md
from s3torrent.store.conditions import NO_CONDITION, WriteCondition
from s3torrent.store.sealing import CustomerKey, SealSpec

MAX_COPY_SIZE = 5 * 1024**3
# The prefix of the copy source's conditions (x-amz-copy-source-if-match, ...).
_COPY_SOURCE = "x-amz-copy-source-"

_ILLEGAL_SELF_COPY = (
    "This copy request is illegal because it is trying to copy an object to itself without "
    "changing the object's metadata, storage class, website redirect location or encryption "
    "attributes."
)


def copy_source_version_headers(src_bucket: md.Bucket, src: md.ObjectVersion) -> dict[str, str]:
    """x-amz-copy-source-version-id, the version a copy (CopyObject, UploadPartCopy) read,
    when the source bucket has versioning (on or suspended) or the source is a version."""
    if src.versioned or src_bucket.versioning is not None:
        return {"x-amz-copy-source-version-id": src.s3_version_id}
    return {}


async def readable_source(svc: S3Context, req: S3Request) -> tuple[md.Bucket, md.ObjectVersion]:
    """The copy source, if it exists and the caller may read it (the one access decision).
    As on S3, every copy (CopyObject, UploadPartCopy) must be signed: an anonymous one is
    refused whatever a policy or ACL grants anyone, since one unsigned request would have
    the server copy up to 5 GiB."""
    if req.principal.is_anonymous:
        raise S3Error("AccessDenied", "Anonymous users cannot copy objects.  Please authenticate.")
    name, key, version_id = parse_copy_source(req.http.headers["x-amz-copy-source"])
    if version_id is not None:
        parse_version_id(version_id, "x-amz-copy-source")
    bucket = await svc.meta.bucket(name)
    if bucket is None:
        raise S3Error("NoSuchBucket", resource=f"/{name}", extra={"BucketName": name})
    expected_owner = req.http.headers.get("x-amz-source-expected-bucket-owner")
    if expected_owner is not None:
        check_expected_owner(expected_owner, bucket.owner_id)
    if version_id is None:
        obj = await svc.meta.object(name, key)
    else:
        obj = await svc.meta.object_version(name, key, version_id)
    ctx = req.access_context()
    resource = f"/{name}/{key}"
    if obj is None:
        if authz.may(req.principal, "s3:ListBucket", bucket, None, None, ctx).allowed:
            if version_id is not None:
                raise S3Error("NoSuchVersion", resource=resource, extra={"Key": key})
            # A delete marker on top is said in headers, as for a GET of the key.
            raise await no_such_key(svc.meta, bucket, key, resource)
        raise S3Error("AccessDenied", resource=resource)
    action = "s3:GetObjectVersion" if version_id is not None else "s3:GetObject"
    if not authz.may(req.principal, action, bucket, key, obj, ctx).allowed:
        raise S3Error("AccessDenied", resource=resource)
    if obj.delete_marker:
        # S3: a delete marker cannot be a copy source (it has no data).
        raise S3Error("InvalidRequest", "The source of a copy request may not specifically "
                      "refer to a delete marker by version id.")  # fmt: skip
    return bucket, obj


def check_may_read_tags(req: S3Request, bucket: md.Bucket, src: md.ObjectVersion) -> None:
    """A copy that keeps its source's tags reads them: as on S3, it needs
    s3:GetObjectTagging on the source (s3:GetObjectVersionTagging when the source names its
    version), else 403, so that a reader allowed s3:GetObject alone cannot learn them by
    copying (the copy's own s3:PutObjectTagging is check_may_tag's)."""
    if not src.tags:
        return
    named = parse_copy_source(req.http.headers["x-amz-copy-source"])[2] is not None
    action = "s3:GetObjectVersionTagging" if named else "s3:GetObjectTagging"
    ctx = req.access_context()
    if not authz.may(req.principal, action, bucket, src.key, src, ctx).allowed:
        raise S3Error("AccessDenied", resource=f"/{bucket.name}/{src.key}")


def check_copy_size(size: int, limit: int = MAX_COPY_SIZE) -> None:
    """What a copy reads (CopyObject: the source; UploadPartCopy: its range) is at most
    5 GiB, else S3's InvalidRequest, before a byte is read."""
    if size > limit:
        raise S3Error(
            "InvalidRequest",
            "The specified copy source is larger than the maximum allowable size for a copy "
            f"source: {limit}",
        )


def check_copy_conditions(headers: Mapping[str, str], obj: md.ObjectVersion) -> None:
    """x-amz-copy-source-if-*: any that fails is 412 (a match beats a stale date, as in S3)."""
    failed = failed_condition(headers, obj.etag, obj.last_modified, prefix=_COPY_SOURCE)
    if failed is not None:
        raise S3Error("PreconditionFailed", extra={"Condition": _COPY_SOURCE + failed})


def _directive(headers: Mapping[str, str], what: str) -> str:
    """x-amz-metadata-directive or x-amz-tagging-directive (`what`): COPY (the default) or
    REPLACE, in S3's case: S3 refuses `copy` as an unknown directive, as this does."""
    name = f"x-amz-{what}-directive"
    value = headers.get(name, "COPY")
    if value not in ("COPY", "REPLACE"):
        raise S3Error(
            "InvalidArgument",
            f"Unknown {what} directive.",
            extra={"ArgumentName": name, "ArgumentValue": value},
        )
    return value


async def copy_object(svc: S3Context, req: S3Request) -> web.StreamResponse:
    bucket = req.bucket
    assert bucket is not None
    http = req.http
    condition = req.bound(write_condition(http.headers))
    src_bucket, src = await readable_source(svc, req)
    source_key = await sse.read_key(svc, req, src, sse.COPY_SOURCE_CUSTOMER)
    spec = sse.write_spec(svc, req, bucket)
    check_copy_conditions(http.headers, src)
    directive = _directive(http.headers, "metadata")
    tagging_directive = _directive(http.headers, "tagging")
    may = may_also(req)
    if tagging_directive == "REPLACE":
        tags = tagging.from_header(http.headers.get("x-amz-tagging", ""))
    else:
        tags = src.tags
        check_may_read_tags(req, src_bucket, src)
    check_may_tag(tags, may)
    requested_alg = http.headers.get("x-amz-checksum-algorithm")
    changes_something = (
        directive == "REPLACE"
        or tagging_directive == "REPLACE"
        or "x-amz-storage-class" in http.headers
        or "x-amz-website-redirect-location" in http.headers
        or requested_alg is not None
        or sse.changes_encryption(req)
    )
    if src_bucket.name == bucket.name and src.key == req.key and not changes_something:
        # A previous version copied onto its key is S3's way to restore it: legal.
        current = await svc.meta.object(bucket.name, req.key)
        if current is not None and current.version_id == src.version_id:
            raise S3Error("InvalidRequest", _ILLEGAL_SELF_COPY)
    check_copy_size(src.size)
    limits = svc.settings.limits
    if directive == "REPLACE":
        headers = stored_headers(http.headers, limits.max_user_metadata)
    else:
        headers = dict(src.headers)
        # The website redirect and the storage class are the source's own: S3 copies
        # neither (a copy is STANDARD unless x-amz-storage-class is sent).
        headers.pop(REDIRECT_LOCATION, None)
        headers.pop("x-amz-storage-class", None)
        if "x-amz-storage-class" in http.headers:
            headers["x-amz-storage-class"] = http.headers["x-amz-storage-class"]
        if REDIRECT_LOCATION in http.headers:
            headers[REDIRECT_LOCATION] = check_redirect_location(http.headers[REDIRECT_LOCATION])
    owner_id = write_owner(req, http.headers)
    acl = requested_acl(http.headers, Owner(owner_id, req.principal.name or ""), bucket, may)
    # The requested algorithm, else the source's, else S3's default: a copy always has one.
    alg_name = requested_alg or src.checksum_algorithm
    algorithm = (
        checksums.ChecksumAlgorithm.from_header_value(alg_name)
        if alg_name
        else checksums.DEFAULT_ALGORITHM
    )
    lock = requested_lock(http.headers, bucket, req.now.timestamp(), may)
    await precheck_write(svc, req, condition)
    sealing = (source_key, spec)
    obj, checksum = await copy_bytes(
        svc, req, src, headers, owner_id, acl, algorithm, condition, tags, sealing, lock
    )
    result: dict[str, Any] = {
        "ETag": obj.etag,
        "LastModified": s3xml.iso8601(obj.last_modified),
    }
    if obj.checksum_algorithm and checksum:
        result["ChecksumType"] = obj.checksum_type
        result[f"Checksum{obj.checksum_algorithm}"] = checksum
    resp_headers = {
        **written_version_headers(bucket, obj),
        **sse.response_headers(obj.headers),
        **expiration_headers(svc.settings, bucket, obj),
    }
    resp_headers |= copy_source_version_headers(src_bucket, src)
    return xml_response(s3xml.render("CopyObjectResult", result), headers=resp_headers)


async def copy_bytes(
    svc: S3Context,
    req: S3Request,
    src: md.ObjectVersion,
    headers: dict[str, str],
    owner_id: str,
    acl: Any,
    algorithm: checksums.ChecksumAlgorithm | None,
    condition: WriteCondition = NO_CONDITION,
    tags: md.Tags = (),
    sealing: tuple[CustomerKey | None, SealSpec | None] = (None, None),
    lock: RequestedLock = NO_LOCK,
) -> tuple[md.ObjectVersion, str | None]:
    """One pass over the source: the new blob, its MD5, checksum and torrent pieces together;
    committed if `condition` holds for the destination key. `sealing`: the source's SSE-C
    key, and how the copy is to be encrypted. Returns the version and its checksum (as the
    answer tells it: an SSE-C copy keeps it sealed)."""
    store = svc.store
    source_key, spec = sealing
    checksum = checksums.new_checksum(algorithm) if algorithm is not None else None
    headers, torrent_hasher, sealed = await sse.prepare_sealed(
        svc, spec, headers, svc.torrents.hasher_for(src.size)
    )
    observers: list[Any] = [o for o in (checksum, torrent_hasher) if o is not None]
    try:
        version_id, stored, _ = await store.write_blob(
            store.object_chunks(src, 0, src.size, source_key),
            observers,
            max_size=MAX_COPY_SIZE,
            on_too_large=lambda: S3Error("EntityTooLarge"),
            blob_id=sealed.blob_id if sealed is not None else None,
            wrap_writer=sealed.wrap if sealed is not None else None,
        )
    except FileNotFoundError as exc:
        # The source was overwritten or deleted while we copied it.
        raise S3Error("NoSuchKey", extra={"Key": src.key}) from exc
    value = checksum.b64() if checksum is not None else None
    obj = md.ObjectVersion(
        bucket=req.bucket_name,
        key=req.key,
        version_id=version_id,
        size=stored.size,
        etag=sse.etag_of(sealed, stored.md5),
        last_modified=time.time(),
        owner_id=owner_id,
        headers=headers,
        acl=authz.encode_acl(acl) if acl is not None else None,
        checksum_algorithm=algorithm.value if algorithm is not None else None,
        checksum_value=sse.checksum_at_rest(sealed, value),
        checksum_type="FULL_OBJECT" if checksum is not None else None,
        tags=tags,
        **lock_fields(lock),
        versioned=req.bucket is not None and req.bucket.versioning == "Enabled",
    )
    hashes = svc.torrents.record_hashes(obj, torrent_hasher) if torrent_hasher else None
    await sse.keep_key(svc, sealed)
    committed = await store.publish_version(obj, hashes, condition)
    return committed.version, value
