"""Multipart uploads: create, upload (and copy) parts, complete, abort, list; stale cleanup.

Each part streams into its own blob. Completion joins the part blobs into the object's one
blob inside the blob store (copy_file_range: no pass through Python, extents shared on
reflink file systems), so every reader (GET and its ranges, web seeds, the seeder, torrent
hashing) keeps addressing one blob per version.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import itertools
import logging
import re
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web
from sqlalchemy.engine import Connection

from s3torrent.access import Owner
from s3torrent.s3 import authz, checksums
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.body import RequestBody
from s3torrent.s3.checksums import ChecksumAlgorithm
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.buckets import owner_xml, xml_response
from s3torrent.s3.ops.copy import check_copy_conditions, readable_source
from s3torrent.s3.ops.objects import requested_acl, stored_headers
from s3torrent.s3.server import S3Request
from s3torrent.store import metadata as md
from s3torrent.store.meta_uploads import scan_uploads

if TYPE_CHECKING:
    from s3torrent.app import Services

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024**2
MAX_PART_SIZE = 5 * 1024**3
MAX_PARTS = 10_000
MAX_LIST = 1000
COMPOSITE = "COMPOSITE"
FULL_OBJECT = "FULL_OBJECT"


# ---- helpers ----


def _part_number(query: Mapping[str, str]) -> int:
    raw = query.get("partNumber", "")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PARTS:
        raise S3Error(
            "InvalidArgument",
            f"Part number must be an integer between 1 and {MAX_PARTS}, inclusive",
            extra={"ArgumentName": "partNumber", "ArgumentValue": raw},
        )
    return int(raw)


def _int_param(query: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise S3Error(
            "InvalidArgument",
            f"Provided {name} not an integer or within integer range",
            extra={"ArgumentName": name, "ArgumentValue": raw},
        )
    return min(int(raw), maximum)


async def _upload(svc: Services, req: S3Request) -> md.Upload:
    upload_id = req.query.get("uploadId", "")
    up = await svc.db.read(lambda c: md.get_upload(c, upload_id)) if upload_id else None
    if up is None or up.bucket != req.bucket_name or up.key != req.key:
        raise S3Error("NoSuchUpload", resource=req.resource, extra={"UploadId": upload_id})
    return up


def _sent_algorithm(headers: Mapping[str, str]) -> ChecksumAlgorithm | None:
    """The checksum a part request carries (header, trailer or SDK hint), as RequestBody sees it."""
    for alg in ChecksumAlgorithm:
        if alg.header in headers:
            return alg
    trailer = headers.get("x-amz-trailer")
    if trailer:
        return ChecksumAlgorithm.from_checksum_header(trailer)
    hint = headers.get("x-amz-sdk-checksum-algorithm")
    return ChecksumAlgorithm.from_header_value(hint) if hint else None


def _checksum_fields(up: md.Upload, value: str | None) -> dict[str, str]:
    if not up.checksum_algorithm or not value:
        return {}
    return {f"Checksum{up.checksum_algorithm}": value}


def _checksum_headers(up: md.Upload, value: str | None) -> dict[str, str]:
    if not up.checksum_algorithm or not value:
        return {}
    return {ChecksumAlgorithm(up.checksum_algorithm).header: value}


async def _delete_blobs(svc: Services, blob_ids: list[str]) -> None:
    loop = asyncio.get_running_loop()
    for blob_id in blob_ids:
        await loop.run_in_executor(svc.store.executor, svc.store.blobs.delete, blob_id)


# ---- create ----


def _requested_checksum(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    raw_alg = headers.get("x-amz-checksum-algorithm")
    raw_type = headers.get("x-amz-checksum-type")
    if raw_alg is None:
        if raw_type is not None:
            raise S3Error(
                "InvalidRequest",
                "The x-amz-checksum-type header can only be used with x-amz-checksum-algorithm",
            )
        return None, None
    alg = ChecksumAlgorithm.from_header_value(raw_alg)
    ctype = (
        raw_type.strip().upper()
        if raw_type
        else (FULL_OBJECT if alg is ChecksumAlgorithm.CRC64NVME else COMPOSITE)
    )
    if ctype not in (COMPOSITE, FULL_OBJECT):
        raise S3Error(
            "InvalidRequest", f"Value for x-amz-checksum-type header is invalid: {raw_type}"
        )
    if ctype == FULL_OBJECT and not alg.is_crc:
        raise S3Error(
            "InvalidRequest",
            f"The {alg.value} checksum algorithm does not support the FULL_OBJECT checksum type",
        )
    if ctype == COMPOSITE and alg is ChecksumAlgorithm.CRC64NVME:
        raise S3Error(
            "InvalidRequest",
            "The CRC64NVME checksum algorithm does not support the COMPOSITE checksum type",
        )
    return alg.value, ctype


async def create_multipart_upload(svc: Services, req: S3Request) -> web.StreamResponse:
    bucket = req.bucket
    assert bucket is not None
    headers = req.http.headers
    owner_id = req.principal.canonical_id or bucket.owner_id
    acl = requested_acl(headers, Owner(owner_id, req.principal.name or ""), bucket)
    alg, ctype = _requested_checksum(headers)
    up = md.Upload(
        upload_id=secrets.token_hex(32),
        bucket=bucket.name,
        key=req.key,
        owner_id=owner_id,
        initiated=time.time(),
        headers=stored_headers(headers, svc.settings.limits.max_user_metadata),
        acl=authz.encode_acl(acl) if acl is not None else None,
        checksum_algorithm=alg,
        checksum_type=ctype,
    )

    def txn(conn: Connection) -> None:
        if md.get_bucket(conn, bucket.name) is None:
            raise S3Error("NoSuchBucket", extra={"BucketName": bucket.name})
        md.insert_upload(conn, up)

    await svc.db.write(txn)
    resp_headers = {}
    if alg and ctype:
        resp_headers = {"x-amz-checksum-algorithm": alg, "x-amz-checksum-type": ctype}
    body = s3xml.render(
        "InitiateMultipartUploadResult",
        {"Bucket": bucket.name, "Key": req.key, "UploadId": up.upload_id},
    )
    return xml_response(body, headers=resp_headers)


# ---- parts ----


async def _record_part(svc: Services, up: md.Upload, part: md.Part) -> None:
    """Commit a part's row (replacing a part with its number), or drop its blob."""

    def txn(conn: Connection) -> str | None:
        if md.get_upload(conn, up.upload_id) is None:
            raise S3Error("NoSuchUpload", extra={"UploadId": up.upload_id})
        return md.put_part(conn, part)

    try:
        replaced = await svc.db.write(txn)
    except BaseException:
        await _delete_blobs(svc, [part.blob_id])
        raise
    if replaced is not None:
        # A CompleteMultipartUpload may be reading it right now: delete it after a delay.
        svc.store.delete_blob_later(replaced)


async def upload_part(svc: Services, req: S3Request) -> web.StreamResponse:
    number = _part_number(req.query)
    up = await _upload(svc, req)
    limits = svc.settings.limits
    http = req.http
    body = RequestBody(
        http, req.auth, max_chunk_size=limits.max_chunk_size, read_timeout=limits.body_read_timeout
    )
    if body.length is None and http.headers.get("Transfer-Encoding", "").lower() != "chunked":
        raise S3Error("MissingContentLength")
    max_size = min(MAX_PART_SIZE, limits.max_put_size)
    if body.length is not None and body.length > max_size:
        raise S3Error(
            "EntityTooLarge",
            extra={"ProposedSize": str(body.length), "MaxSizeAllowed": str(max_size)},
        )
    upload_alg = ChecksumAlgorithm(up.checksum_algorithm) if up.checksum_algorithm else None
    sent_alg = _sent_algorithm(http.headers)
    if upload_alg is not None and sent_alg is not None and sent_alg is not upload_alg:
        raise S3Error(
            "InvalidRequest",
            f"Checksum Type mismatch occurred, expected checksum Type: {upload_alg.value.lower()}, "
            f"actual checksum Type: {sent_alg.value.lower()}",
        )
    observers: list[Any] = body.observers()
    own = checksums.new_checksum(upload_alg) if upload_alg and sent_alg is None else None
    if own is not None:
        observers.append(own)
    store = svc.store
    blob_id, stored, sent = await store.write_blob(
        body.chunks(),
        observers,
        max_size=max_size,
        on_too_large=lambda: S3Error("EntityTooLarge"),
        check=lambda s: body.verify(md5=s.md5),
    )
    value = own.b64() if own is not None else (sent.value if sent and upload_alg else None)
    part = md.Part(
        up.upload_id, number, blob_id, stored.size, f'"{stored.md5.hex()}"', time.time(), value
    )
    await _record_part(svc, up, part)
    headers = {"ETag": part.etag, **_checksum_headers(up, value)}
    if sent is not None and upload_alg is None:
        headers[checksums.ChecksumAlgorithm(sent.algorithm).header] = sent.value
    return web.Response(status=200, headers=headers)


_COPY_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


def _copy_range(headers: Mapping[str, str], size: int) -> tuple[int, int]:
    raw = headers.get("x-amz-copy-source-range")
    if raw is None:
        return 0, size
    m = _COPY_RANGE.match(raw.strip())
    if m is None:
        raise S3Error(
            "InvalidArgument",
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first "
            "and last are the zero-based offsets of the first and last bytes to copy",
            extra={"ArgumentName": "x-amz-copy-source-range", "ArgumentValue": raw},
        )
    first, last = int(m.group(1)), int(m.group(2))
    if first > last or last >= size:
        raise S3Error(
            "InvalidRange",
            extra={"RangeRequested": raw, "ActualObjectSize": str(size)},
        )
    return first, last - first + 1


async def upload_part_copy(svc: Services, req: S3Request) -> web.StreamResponse:
    number = _part_number(req.query)
    up = await _upload(svc, req)
    _src_bucket, src = await readable_source(svc, req)
    check_copy_conditions(req.http.headers, src)
    offset, length = _copy_range(req.http.headers, src.size)
    if length > MAX_PART_SIZE:
        raise S3Error(
            "InvalidRequest",
            f"The specified copy source is larger than the maximum allowable size for a "
            f"copy source: {MAX_PART_SIZE}",
        )
    upload_alg = ChecksumAlgorithm(up.checksum_algorithm) if up.checksum_algorithm else None
    own = checksums.new_checksum(upload_alg) if upload_alg is not None else None
    store = svc.store
    try:
        blob_id, stored, _ = await store.write_blob(
            store.object_chunks(src, offset, length),
            [own] if own is not None else [],
            max_size=MAX_PART_SIZE,
            on_too_large=lambda: S3Error("EntityTooLarge"),
        )
    except FileNotFoundError as exc:
        raise S3Error("NoSuchKey", extra={"Key": src.key}) from exc
    value = own.b64() if own is not None else None
    part = md.Part(
        up.upload_id, number, blob_id, stored.size, f'"{stored.md5.hex()}"', time.time(), value
    )
    await _record_part(svc, up, part)
    result = {
        "ETag": part.etag,
        "LastModified": s3xml.iso8601(part.last_modified),
        **_checksum_fields(up, value),
    }
    return xml_response(s3xml.render("CopyPartResult", result))


# ---- complete ----


def _requested_parts(root: Any, up: md.Upload) -> list[tuple[int, str, str | None]]:
    """(number, etag, checksum) from a CompleteMultipartUpload body, in ascending order."""
    if s3xml.local(root.tag) != "CompleteMultipartUpload":
        raise S3Error("MalformedXML")
    out: list[tuple[int, str, str | None]] = []
    for el in s3xml.children(root, "Part"):
        num = (s3xml.text(el, "PartNumber") or "").strip()
        etag = (s3xml.text(el, "ETag") or "").strip()
        if not num.isdigit() or not etag:
            raise S3Error("MalformedXML")
        checksum = (
            s3xml.text(el, f"Checksum{up.checksum_algorithm}") if up.checksum_algorithm else None
        )
        out.append((int(num), etag, checksum.strip() if checksum else None))
    if not out:
        raise S3Error(
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our "
            "published schema: you must specify at least one part.",
        )
    if len(out) > MAX_PARTS:
        raise S3Error("MalformedXML")
    for (a, _, _), (b, _, _) in itertools.pairwise(out):
        if b <= a:
            raise S3Error("InvalidPartOrder")
    return out


def _bare_etag(etag: str) -> str:
    return etag.strip().strip('"').lower()


def _chosen_parts(
    requested: list[tuple[int, str, str | None]], stored: dict[int, md.Part]
) -> list[md.Part]:
    chosen: list[md.Part] = []
    for number, etag, checksum in requested:
        part = stored.get(number)
        if part is None or _bare_etag(part.etag) != _bare_etag(etag):
            raise S3Error(
                "InvalidPart", extra={"UploadId": "", "PartNumber": str(number), "ETag": etag}
            )
        if (
            checksum is not None
            and part.checksum_value is not None
            and checksum != part.checksum_value
        ):
            raise S3Error("InvalidPart", extra={"PartNumber": str(number), "ETag": etag})
        chosen.append(part)
    for part in chosen[:-1]:
        if part.size < MIN_PART_SIZE:
            raise S3Error(
                "EntityTooSmall",
                extra={
                    "ProposedSize": str(part.size),
                    "MinSizeAllowed": str(MIN_PART_SIZE),
                    "PartNumber": str(part.part_number),
                    "ETag": part.etag,
                },
            )
    return chosen


def multipart_etag(parts: list[md.Part]) -> str:
    """S3's multipart ETag: MD5 of the parts' binary MD5s, then -N."""
    digest = hashlib.md5(b"".join(bytes.fromhex(_bare_etag(p.etag)) for p in parts))
    return f'"{digest.hexdigest()}-{len(parts)}"'


def object_checksum(up: md.Upload, parts: list[md.Part]) -> str | None:
    """COMPOSITE: the checksum of the parts' checksums, -N; FULL_OBJECT: CRCs combined."""
    if not up.checksum_algorithm:
        return None
    alg = ChecksumAlgorithm(up.checksum_algorithm)
    values = [p.checksum_value for p in parts]
    if any(v is None for v in values):
        return None
    raw = [checksums.decode_checksum(alg, v) for v in values if v is not None]
    if up.checksum_type == FULL_OBJECT:
        crc = int.from_bytes(raw[0], "big")
        for part, value in zip(parts[1:], raw[1:], strict=True):
            crc = checksums.combine_crc(alg, crc, int.from_bytes(value, "big"), part.size)
        return base64.b64encode(crc.to_bytes(alg.digest_size, "big")).decode()
    combined = checksums.new_checksum(alg)
    for value in raw:
        combined.update(value)
    return f"{combined.b64()}-{len(parts)}"


def _verify_xml_digests(headers: Mapping[str, str], payload_hash: str, raw: bytes) -> None:
    if re.fullmatch(r"[0-9a-f]{64}", payload_hash):
        computed = hashlib.sha256(raw).hexdigest()
        if computed != payload_hash:
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                extra={
                    "ClientComputedContentSHA256": payload_hash,
                    "S3ComputedContentSHA256": computed,
                },
            )
    sent_md5 = headers.get("Content-MD5")
    if sent_md5 is not None and sent_md5 != base64.b64encode(hashlib.md5(raw).digest()).decode():
        raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.")


async def complete_multipart_upload(svc: Services, req: S3Request) -> web.StreamResponse:
    up = await _upload(svc, req)
    limits = svc.settings.limits
    body = RequestBody(
        req.http,
        req.auth,
        max_chunk_size=limits.max_chunk_size,
        read_timeout=limits.body_read_timeout,
    )
    raw = await body.read_all(limits.max_xml_body)
    # Not body.verify(): here x-amz-checksum-* describes the object, not this XML body.
    _verify_xml_digests(req.http.headers, body.payload_hash, raw)
    requested = _requested_parts(s3xml.parse(raw), up)
    stored = {p.part_number: p for p in await svc.db.read(lambda c: md.list_parts(c, up.upload_id))}
    parts = _chosen_parts(requested, stored)
    checksum = object_checksum(up, parts)
    if checksum is not None and up.checksum_type == FULL_OBJECT:
        sent = req.http.headers.get(ChecksumAlgorithm(up.checksum_algorithm or "").header)
        if sent is not None and sent != checksum:
            raise S3Error(
                "BadDigest",
                f"The {up.checksum_algorithm} you specified did not match the calculated checksum.",
            )
    store = svc.store
    version_id = store.new_version_id()
    try:
        await store.concat_blobs([(p.blob_id, p.size) for p in parts], version_id)
    except FileNotFoundError as exc:
        # Aborted (or a part replaced) while we joined the parts.
        raise S3Error("NoSuchUpload", extra={"UploadId": up.upload_id}) from exc
    obj = md.ObjectVersion(
        bucket=up.bucket,
        key=up.key,
        version_id=version_id,
        size=sum(p.size for p in parts),
        etag=multipart_etag(parts),
        last_modified=time.time(),
        owner_id=up.owner_id,
        headers=up.headers,
        acl=up.acl,
        checksum_algorithm=up.checksum_algorithm if checksum else None,
        checksum_value=checksum,
        checksum_type=up.checksum_type if checksum else None,
        parts=[
            {"size": p.size, **({"checksum": p.checksum_value} if p.checksum_value else {})}
            for p in parts
        ],
    )
    released: list[str] = []
    joined = {p.part_number: p.blob_id for p in parts}

    def finish(conn: Connection) -> None:
        if md.get_upload(conn, up.upload_id) is None:
            raise S3Error("NoSuchUpload", extra={"UploadId": up.upload_id})
        now_parts = {p.part_number: p.blob_id for p in md.list_parts(conn, up.upload_id)}
        for number, blob_id in joined.items():
            if now_parts.get(number) != blob_id:
                # Uploaded again while we joined the parts: the ETag asked for is gone.
                raise S3Error("InvalidPart", extra={"PartNumber": str(number)})
        released.extend(md.delete_upload(conn, up.upload_id) or [])

    try:
        await store.publish_version(obj, extra=finish)
    except S3Error:
        await _delete_blobs(svc, [version_id])
        raise
    await _delete_blobs(svc, released)
    result: dict[str, Any] = {
        "Location": f"{svc.settings.base_url}/{quote(up.bucket)}/{quote(up.key)}",
        "Bucket": up.bucket,
        "Key": up.key,
        "ETag": obj.etag,
        **_checksum_fields(up, checksum),
    }
    if checksum:
        result["ChecksumType"] = up.checksum_type
    return xml_response(s3xml.render("CompleteMultipartUploadResult", result))


# ---- abort, list ----


async def abort_multipart_upload(svc: Services, req: S3Request) -> web.StreamResponse:
    up = await _upload(svc, req)
    blob_ids = await svc.db.write(lambda c: md.delete_upload(c, up.upload_id))
    if blob_ids is None:
        raise S3Error("NoSuchUpload", resource=req.resource, extra={"UploadId": up.upload_id})
    await _delete_blobs(svc, blob_ids)
    return web.Response(status=204)


def _initiator(svc: Services, up: md.Upload) -> dict[str, str]:
    return owner_xml(svc, up.owner_id)


async def list_parts(svc: Services, req: S3Request) -> web.StreamResponse:
    up = await _upload(svc, req)
    marker = _int_param(req.query, "part-number-marker", 0, MAX_PARTS)
    max_parts = _int_param(req.query, "max-parts", MAX_LIST, MAX_LIST)
    rows = await svc.db.read(lambda c: md.list_parts(c, up.upload_id, marker, max_parts + 1))
    truncated = len(rows) > max_parts
    rows = rows[:max_parts]
    result: dict[str, Any] = {
        "Bucket": up.bucket,
        "Key": up.key,
        "UploadId": up.upload_id,
        "PartNumberMarker": marker,
        "NextPartNumberMarker": rows[-1].part_number if rows else marker,
        "MaxParts": max_parts,
        "IsTruncated": truncated,
        "Part": [
            {
                "PartNumber": p.part_number,
                "LastModified": s3xml.iso8601(p.last_modified),
                "ETag": p.etag,
                "Size": p.size,
                **_checksum_fields(up, p.checksum_value),
            }
            for p in rows
        ],
        "Initiator": _initiator(svc, up),
        "Owner": owner_xml(svc, up.owner_id),
        "StorageClass": up.headers.get("x-amz-storage-class", "STANDARD"),
        "ChecksumAlgorithm": up.checksum_algorithm,
        "ChecksumType": up.checksum_type,
    }
    return xml_response(s3xml.render("ListPartsResult", result))


async def list_multipart_uploads(svc: Services, req: S3Request) -> web.StreamResponse:
    q = req.query
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter", "")
    key_marker = q.get("key-marker", "")
    upload_id_marker = q.get("upload-id-marker", "")
    max_uploads = _int_param(q, "max-uploads", MAX_LIST, MAX_LIST)
    url = q.get("encoding-type") == "url"
    if "encoding-type" in q and not url:
        raise S3Error(
            "InvalidArgument",
            "Invalid Encoding Method specified in Request",
            extra={"ArgumentName": "encoding-type", "ArgumentValue": q["encoding-type"]},
        )

    def enc(value: str) -> str:
        return quote(value, safe="/") if url else value

    def scan(conn: Connection) -> tuple[list[md.Upload | str], bool]:
        return scan_uploads(
            conn, req.bucket_name, prefix, delimiter, key_marker, upload_id_marker, max_uploads
        )

    entries, truncated = await svc.db.read(scan)
    uploads = [e for e in entries if isinstance(e, md.Upload)]
    prefixes = [e for e in entries if isinstance(e, str)]
    next_key = next_uid = None
    if truncated and entries:
        last = entries[-1]
        next_key = last.key if isinstance(last, md.Upload) else last
        next_uid = last.upload_id if isinstance(last, md.Upload) else ""
    result: dict[str, Any] = {
        "Bucket": req.bucket_name,
        "KeyMarker": enc(key_marker),
        "UploadIdMarker": upload_id_marker,
        "NextKeyMarker": enc(next_key) if next_key is not None else None,
        "NextUploadIdMarker": next_uid,
        "Delimiter": enc(delimiter) if delimiter else None,
        "Prefix": enc(prefix),
        "MaxUploads": max_uploads,
        "IsTruncated": truncated,
        "Upload": [
            {
                "Key": enc(up.key),
                "UploadId": up.upload_id,
                "Initiator": _initiator(svc, up),
                "Owner": owner_xml(svc, up.owner_id),
                "StorageClass": up.headers.get("x-amz-storage-class", "STANDARD"),
                "Initiated": s3xml.iso8601(up.initiated),
                "ChecksumAlgorithm": up.checksum_algorithm,
                "ChecksumType": up.checksum_type,
            }
            for up in uploads
        ],
        "CommonPrefixes": [{"Prefix": enc(p)} for p in prefixes],
        "EncodingType": "url" if url else None,
    }
    return xml_response(s3xml.render("ListMultipartUploadsResult", result))


# ---- abandoned uploads ----


def _delete_upload(conn: Connection, upload_id: str) -> list[str] | None:
    return md.delete_upload(conn, upload_id)


async def abort_stale_uploads(svc: Services, older_than: float) -> int:
    """Abort uploads initiated more than `older_than` seconds ago; return how many."""
    cutoff = time.time() - older_than
    total = 0
    while True:
        ids = await svc.db.read(lambda c: md.stale_uploads(c, cutoff, 100))
        if not ids:
            return total
        for upload_id in ids:
            blob_ids = await svc.db.write(functools.partial(_delete_upload, upload_id=upload_id))
            if blob_ids is not None:
                await _delete_blobs(svc, blob_ids)
                total += 1


async def expire_uploads_forever(svc: Services) -> None:
    """The periodic cleanup of abandoned uploads (storage.abandoned_upload_days)."""
    storage = svc.settings.storage
    while True:
        try:
            n = await abort_stale_uploads(svc, storage.abandoned_upload_days * 86400)
        except Exception:
            log.exception("abandoned upload cleanup failed")
        else:
            if n:
                log.info("aborted %d abandoned multipart uploads", n)
        await asyncio.sleep(storage.upload_cleanup_interval)
