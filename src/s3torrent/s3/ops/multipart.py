"""Multipart uploads: create, upload (and copy) parts, complete, abort, list; stale cleanup.

Each part streams into its own blob. Completion joins the part blobs into the object's one
blob inside the blob store (copy_file_range: no pass through Python, extents shared on
reflink file systems), so every reader (GET and its ranges, web seeds, the seeder, torrent
hashing) keeps addressing one blob per version.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import itertools
import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from aiohttp import web

from s3torrent.access import Owner, check_acl_allowed
from s3torrent.access import facts as authz
from s3torrent.access.ownership import acls_disabled
from s3torrent.s3 import checksums, sse, tagging, versioning
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.body import RequestBody, ascii_length, sha256_mismatch
from s3torrent.s3.checksums import DEFAULT_ALGORITHM, ChecksumAlgorithm
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.numbers import ascii_int
from s3torrent.s3.ops.buckets import owner_xml, xml_response
from s3torrent.s3.ops.copy import (
    check_copy_conditions,
    check_copy_size,
    copy_source_version_headers,
    readable_source,
)
from s3torrent.s3.ops.lifecycle import abort_headers, expiration_headers
from s3torrent.s3.ops.objects import (
    check_may_tag,
    may_also,
    precheck_write,
    public_access_block,
    requested_acl,
    stored_headers,
    write_condition,
)
from s3torrent.s3.ops.ownership import write_owner
from s3torrent.s3.params import MAX_PARTS, UploadParams
from s3torrent.s3.server import S3Request
from s3torrent.store import rows as md
from s3torrent.store.errors import NoSuchUpload, PartChanged, StoreError
from s3torrent.store.retention import default_retention

log = logging.getLogger(__name__)

MIN_PART_SIZE = 5 * 1024**2
MAX_PART_SIZE = 5 * 1024**3
COMPOSITE = "COMPOSITE"
FULL_OBJECT = "FULL_OBJECT"


def upload_params(req: S3Request) -> UploadParams:
    params = req.params
    assert isinstance(params, UploadParams)
    return params


async def _upload(svc: S3Context, req: S3Request) -> md.Upload:
    upload_id = upload_params(req).upload_id
    up = await svc.meta.upload(upload_id) if upload_id else None
    if up is None or not up.is_at(req.bucket_name, req.key):
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


async def _delete_blobs(svc: S3Context, blob_ids: list[str]) -> None:
    await svc.store.delete_blobs(blob_ids)


# ---- create ----


def _requested_checksum(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The algorithm and type an upload is created with; S3's refusals in S3's words."""
    raw_alg = headers.get("x-amz-checksum-algorithm")
    raw_type = headers.get("x-amz-checksum-type")
    if raw_alg is None:
        if raw_type is not None:
            raise S3Error(
                "InvalidRequest",
                "The x-amz-checksum-type header can only be used with the "
                "x-amz-checksum-algorithm header.",
            )
        return None, None
    alg = ChecksumAlgorithm.from_header_value(raw_alg)
    ctype = (
        raw_type.strip().upper()
        if raw_type
        else (FULL_OBJECT if alg is ChecksumAlgorithm.CRC64NVME else COMPOSITE)
    )
    if ctype not in (COMPOSITE, FULL_OBJECT):
        raise S3Error("InvalidRequest", "Value for x-amz-checksum-type header is invalid.")
    # SHA-1 and SHA-256 combine only as a checksum of checksums; CRC64NVME only whole.
    if (ctype == FULL_OBJECT and not alg.is_crc) or (
        ctype == COMPOSITE and alg is ChecksumAlgorithm.CRC64NVME
    ):
        raise S3Error(
            "InvalidRequest",
            f"The {ctype} checksum type cannot be used with the {alg.value.lower()} "
            "checksum algorithm.",
        )
    return alg.value, ctype


async def create_multipart_upload(svc: S3Context, req: S3Request) -> web.StreamResponse:
    bucket = req.bucket
    assert bucket is not None
    headers = req.http.headers
    owner_id = write_owner(req, headers)
    may = may_also(req)
    acl = requested_acl(headers, Owner(owner_id, req.principal.name or ""), bucket, may)
    tags = tagging.from_header(headers["x-amz-tagging"]) if "x-amz-tagging" in headers else ()
    check_may_tag(tags, may)
    alg, ctype = _requested_checksum(headers)
    upload_id, sealed = await sse.seal_upload(svc, req, bucket)
    initiator = req.principal.canonical_id
    up = md.Upload(
        upload_id=upload_id,
        bucket=bucket.name,
        key=req.key,
        owner_id=owner_id,
        initiated=time.time(),
        headers={**stored_headers(headers, svc.settings.limits.max_user_metadata), **sealed}
        | versioning.upload_lock_headers(headers, bucket, req.now.timestamp(), may)
        | ({md.INITIATOR_HEADER: initiator} if initiator and initiator != owner_id else {}),
        acl=authz.encode_acl(acl) if acl is not None else None,
        checksum_algorithm=alg,
        checksum_type=ctype,
        tags=tags,
    )
    await svc.meta.create_upload(up, req.bucket_created)
    resp_headers = sse.response_headers(sealed) | abort_headers(svc.settings, bucket, up)
    if alg and ctype:
        resp_headers |= {"x-amz-checksum-algorithm": alg, "x-amz-checksum-type": ctype}
    body = s3xml.render(
        "InitiateMultipartUploadResult",
        {"Bucket": bucket.name, "Key": req.key, "UploadId": up.upload_id},
    )
    return xml_response(body, headers=resp_headers)


# ---- parts ----


async def _record_part(svc: S3Context, up: md.Upload, part: md.Part) -> None:
    """Commit a part's row (replacing a part with its number), or drop its blob."""

    try:
        replaced = await svc.meta.put_part(part)
    except BaseException:
        await _delete_blobs(svc, [part.blob_id])
        raise
    if replaced is not None:
        # A CompleteMultipartUpload may be reading it right now: delete it after a delay.
        svc.store.delete_blob_later(replaced)


async def upload_part(svc: S3Context, req: S3Request) -> web.StreamResponse:
    number = upload_params(req).part_number
    assert number is not None
    up = await _upload(svc, req)
    limits = svc.settings.limits
    http = req.http
    assert req.bucket is not None
    if versioning.upload_has_lock(up.headers) or default_retention(req.bucket) is not None:
        # As S3 and as PutObject: the parts of a version that will be locked come with a
        # proof of their integrity.
        versioning.require_integrity_header(http.headers, "Put Part")
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
    own: checksums.CrcChecksum | checksums.HashChecksum | None = None
    if upload_alg is None:
        # Each part's CRC64NVME is kept, whatever the part was sent with: the object gets
        # S3's default checksum, those CRCs combined (object_checksum).
        own = checksums.new_checksum(DEFAULT_ALGORITHM)
    elif sent_alg is None:
        own = checksums.new_checksum(upload_alg)
    # else: the body checks the value sent, which is the part's (body.verify)
    if own is not None:
        observers.append(own)
    store = svc.store
    sealed = await sse.part_writer(svc, req, up, number)
    blob_id, stored, sent = await store.write_blob(
        body.chunks(),
        observers,
        max_size=max_size,
        on_too_large=lambda: S3Error("EntityTooLarge"),
        check=lambda s: body.verify(md5=s.md5),
        wrap_writer=sealed.wrap if sealed is not None else None,
    )
    value = own.b64() if own is not None else (sent.value if sent and upload_alg else None)
    etag = sse.etag_of(sealed, stored.md5)
    at_rest = sse.checksum_at_rest(sealed, value)
    part = md.Part(up.upload_id, number, blob_id, stored.size, etag, time.time(), at_rest)
    await _record_part(svc, up, part)
    headers = {"ETag": part.etag, **_checksum_headers(up, value)}
    headers |= sse.response_headers(up.headers)
    if sent is not None and upload_alg is None:
        headers[checksums.ChecksumAlgorithm(sent.algorithm).header] = sent.value
    return web.Response(status=200, headers=headers)


_COPY_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$", re.ASCII)
# More digits than any size has (2**64 has 20): past the end, and never given to int(),
# which refuses more than 4,300 digits with a ValueError (a 500).
_MAX_DIGITS = 20


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
    texts = [t.lstrip("0") or "0" for t in m.groups()]
    first, last = (int(t) if len(t) <= _MAX_DIGITS else size for t in texts)
    if first > last or last >= size:
        raise S3Error(
            "InvalidRange",
            extra={"RangeRequested": raw, "ActualObjectSize": str(size)},
        )
    return first, last - first + 1


async def upload_part_copy(svc: S3Context, req: S3Request) -> web.StreamResponse:
    number = upload_params(req).part_number
    assert number is not None
    up = await _upload(svc, req)
    src_bucket, src = await readable_source(svc, req)
    source_key = await sse.read_key(svc, req, src, sse.COPY_SOURCE_CUSTOMER)
    check_copy_conditions(req.http.headers, src)
    offset, length = _copy_range(req.http.headers, src.size)
    check_copy_size(length, MAX_PART_SIZE)
    upload_alg = ChecksumAlgorithm(up.checksum_algorithm) if up.checksum_algorithm else None
    own = checksums.new_checksum(upload_alg or DEFAULT_ALGORITHM)  # as upload_part's
    store = svc.store
    sealed = await sse.part_writer(svc, req, up, number)
    try:
        blob_id, stored, _ = await store.write_blob(
            store.object_chunks(src, offset, length, source_key),
            [own],
            max_size=MAX_PART_SIZE,
            on_too_large=lambda: S3Error("EntityTooLarge"),
            wrap_writer=sealed.wrap if sealed is not None else None,
        )
    except FileNotFoundError as exc:
        raise S3Error("NoSuchKey", extra={"Key": src.key}) from exc
    value = own.b64()
    etag = sse.etag_of(sealed, stored.md5)
    at_rest = sse.checksum_at_rest(sealed, value)
    part = md.Part(up.upload_id, number, blob_id, stored.size, etag, time.time(), at_rest)
    await _record_part(svc, up, part)
    result = {
        "ETag": part.etag,
        "LastModified": s3xml.iso8601(part.last_modified),
        **_checksum_fields(up, value),
    }
    answer = s3xml.render("CopyPartResult", result)
    headers = sse.response_headers(up.headers) | copy_source_version_headers(src_bucket, src)
    return xml_response(answer, headers=headers)


# ---- complete ----


# What a CompleteMultipartUpload body may hold (S3's API model, 2026-12): a part may name a
# checksum of any algorithm S3 knows.
_PART_CHECKSUMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256", "SHA512", "MD5",
                   "XXHASH64", "XXHASH3", "XXHASH128")  # fmt: skip
COMPLETE_SCHEMA: s3xml.Schema = {
    "Part": dict.fromkeys(("PartNumber", "ETag", *(f"Checksum{a}" for a in _PART_CHECKSUMS)))
}


def _requested_parts(root: Any, up: md.Upload) -> list[tuple[int, str, str | None]]:
    """(number, etag, checksum) from a CompleteMultipartUpload body, in ascending order."""
    s3xml.check_document(root, "CompleteMultipartUpload", COMPLETE_SCHEMA)
    own = f"Checksum{up.checksum_algorithm}" if up.checksum_algorithm else None
    out: list[tuple[int, str, str | None]] = []
    for el in s3xml.children(root, "Part"):
        num = ascii_int((s3xml.text(el, "PartNumber") or "").strip())
        etag = (s3xml.text(el, "ETag") or "").strip()
        if num is None or not etag:
            raise S3Error("MalformedXML")
        if any(s3xml.local(c.tag) not in ("PartNumber", "ETag", own) for c in el):
            # A checksum of another algorithm than the upload's (of any, for an upload
            # created without one) is checked against nothing: InvalidPart, as on S3.
            raise S3Error(
                "InvalidPart",
                extra={"UploadId": up.upload_id, "PartNumber": str(num), "ETag": etag},
            )
        checksum = (
            s3xml.text(el, f"Checksum{up.checksum_algorithm}") if up.checksum_algorithm else None
        )
        out.append((num, etag, checksum.strip() if checksum else None))
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
    if up.checksum_algorithm and out[-1][0] != len(out):
        # Ascending, so numbered 1..N exactly when the last is N. S3 (CompletedPart): with a
        # checksum on each part, the numbers must start at 1 and be consecutive.
        raise S3Error(
            "InvalidPartOrder",
            "The upload was created using a checksum algorithm: the part numbers must start "
            "at 1 and be consecutive.",
        )
    return out


def _bare_etag(etag: str) -> str:
    return etag.strip().strip('"').lower()


def _chosen_parts(
    upload_id: str, requested: list[tuple[int, str, str | None]], stored: dict[int, md.Part]
) -> list[md.Part]:
    chosen: list[md.Part] = []
    for number, etag, checksum in requested:
        part = stored.get(number)
        if (
            part is None
            or _bare_etag(part.etag) != _bare_etag(etag)
            or (
                checksum is not None
                and part.checksum_value is not None
                and checksum != part.checksum_value
            )
        ):
            raise S3Error(
                "InvalidPart",
                extra={"UploadId": upload_id, "PartNumber": str(number), "ETag": etag},
            )
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


def _kept_part(part: md.Part, data_key: bytes | None) -> dict[str, Any]:
    """A part as its version keeps it: its size and checksum (an SSE-C upload's sealed under
    `data_key`, check_completion_key's)."""
    checksum = sse.seal_under(data_key, part.checksum_value)
    return {"size": part.size, **({"checksum": checksum} if checksum else {})}


def multipart_etag(parts: list[md.Part]) -> str:
    """S3's multipart ETag: MD5 of the parts' binary MD5s, then -N."""
    digest = hashlib.md5(b"".join(bytes.fromhex(_bare_etag(p.etag)) for p in parts))
    return f'"{digest.hexdigest()}-{len(parts)}"'


def object_checksum(up: md.Upload, parts: list[md.Part]) -> str | None:
    """COMPOSITE: the checksum of the parts' checksums, -N; FULL_OBJECT (and an upload created
    without an algorithm: its parts' CRC64NVMEs, S3's default): CRCs combined. None when a
    part has no checksum (a part of a default upload written before parts kept one)."""
    alg, kind = object_checksum_kind(up)
    values = [p.checksum_value for p in parts]
    if any(v is None for v in values):
        return None
    raw = [checksums.decode_checksum(alg, v) for v in values if v is not None]
    if kind == FULL_OBJECT:
        crc = int.from_bytes(raw[0], "big")
        for part, value in zip(parts[1:], raw[1:], strict=True):
            crc = checksums.combine_crc(alg, crc, int.from_bytes(value, "big"), part.size)
        return base64.b64encode(crc.to_bytes(alg.digest_size, "big")).decode()
    combined = checksums.new_checksum(alg)
    for value in raw:
        combined.update(value)
    return f"{combined.b64()}-{len(parts)}"


def object_checksum_kind(up: md.Upload) -> tuple[ChecksumAlgorithm, str]:
    """The algorithm and type of the checksum an upload's object gets."""
    if up.checksum_algorithm:
        return ChecksumAlgorithm(up.checksum_algorithm), up.checksum_type or COMPOSITE
    return DEFAULT_ALGORITHM, FULL_OBJECT


def _check_sent_checksum(headers: Mapping[str, str], up: md.Upload, checksum: str | None) -> None:
    """A completion's x-amz-checksum-<algorithm> (the object's checksum: the combined CRC of a
    FULL_OBJECT upload; a COMPOSITE upload's checksum of its parts' checksums, with or without
    its -N) and x-amz-checksum-type are checks of what the upload became: acted on, never
    ignored. Another algorithm or type than the upload's is InvalidRequest; another value is
    BadDigest."""
    sent_type = headers.get("x-amz-checksum-type")
    if sent_type is not None and sent_type.upper() != (up.checksum_type or ""):
        raise S3Error(
            "InvalidRequest",
            f"The upload was created using the {up.checksum_type or 'null'} checksum type. "
            "The complete request must use the same checksum type.",
        )
    for name, value in headers.items():
        alg = ChecksumAlgorithm.from_checksum_header(name)
        if alg is None:
            continue
        if alg.value != up.checksum_algorithm:
            raise S3Error(
                "InvalidRequest",
                f"The upload was created using the {up.checksum_algorithm or 'null'} checksum "
                f"mode. The complete request must use the same checksum mode.",
            )
        if checksum is None or value not in (checksum, checksums.without_part_count(checksum)):
            raise S3Error(
                "BadDigest",
                f"The {alg.value} you specified did not match the calculated checksum.",
            )


def _check_part_checksums_named(
    up: md.Upload, requested: list[tuple[int, str, str | None]]
) -> None:
    """A COMPOSITE upload's object checksum is built from its parts' checksums: S3 wants the
    completion to name each of them (the client's confirmation of what it sent), and refuses
    it with InvalidRequest when one is left out. A FULL_OBJECT upload's CRC is the whole
    object's; its part checksums are optional there."""
    if not up.checksum_algorithm or object_checksum_kind(up)[1] != COMPOSITE:
        return
    for number, _, checksum in requested:
        if checksum is None:
            raise S3Error(
                "InvalidRequest",
                f"The upload was created using a {up.checksum_algorithm.lower()} checksum. "
                "The complete request must include the checksum for each part. "
                f"It was missing for part {number} in the request.",
            )


def _verify_xml_digests(headers: Mapping[str, str], payload_hash: str, raw: bytes) -> None:
    if re.fullmatch(r"[0-9a-f]{64}", payload_hash):
        computed = hashlib.sha256(raw).hexdigest()
        if computed != payload_hash:
            raise sha256_mismatch(payload_hash, computed)
    sent_md5 = headers.get("Content-MD5")
    if sent_md5 is not None and sent_md5 != base64.b64encode(hashlib.md5(raw).digest()).decode():
        raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.")


def _parts_digest(root: Any) -> str:
    """Which part list a CompleteMultipartUpload body names (numbers and ETags)."""
    h = hashlib.sha256()
    for el in s3xml.children(root, "Part"):
        number = (s3xml.text(el, "PartNumber") or "").strip()
        etag = (s3xml.text(el, "ETag") or "").strip().strip('"')
        h.update(f"{number}:{etag}\n".encode())
    return h.hexdigest()


def _object_owner_and_acl(up: md.Upload, bucket: md.Bucket | None) -> tuple[str, str | None]:
    """The owner and ACL of the object a completion makes, under the bucket's controls as
    they are now (the object is made now, not when its upload began).

    With ACLs disabled (BucketOwnerEnforced) the bucket owner owns it, with no ACL of its
    own (private): as every write made while ACLs are off, so that enabling them again
    never hands it back to its writer with the ACL the upload was started with. Otherwise
    the upload's owner and ACL, the ACL checked against Block Public Access: a public one
    set since the upload began is AccessDenied, as PutObject with it would be (the upload
    stays, to be aborted or completed once the block is lifted)."""
    assert bucket is not None
    if acls_disabled(bucket.settings):
        return bucket.owner_id, None
    if up.acl is not None:
        check_acl_allowed(authz.decode_acl(up.acl), public_access_block(bucket))
    return up.owner_id, up.acl


async def complete_multipart_upload(svc: S3Context, req: S3Request) -> web.StreamResponse:
    condition = req.bound(write_condition(req.http.headers))
    upload_id = upload_params(req).upload_id
    up = await svc.meta.upload(upload_id) if upload_id else None
    limits = svc.settings.limits
    body = RequestBody(
        req.http,
        req.auth,
        max_chunk_size=limits.max_chunk_size,
        read_timeout=limits.body_read_timeout,
    )
    if up is None or not up.is_at(req.bucket_name, req.key):
        return await _answer_retry(svc, req, body, upload_id)
    raw = await body.read_all(limits.max_xml_body)
    owner_id, acl = _object_owner_and_acl(up, req.bucket)
    # Not body.verify(): here x-amz-checksum-* describes the object, not this XML body.
    _verify_xml_digests(req.http.headers, body.payload_hash, raw)
    root = s3xml.parse(raw)
    requested = _requested_parts(root, up)
    # An SSE-C upload's part checksums are sealed: opened with its key, when sent (without
    # it, they are not known, and the object gets no checksum of its default algorithm).
    data_key = await sse.check_completion_key(svc, req, up)
    stored = {
        p.part_number: dataclasses.replace(
            p, checksum_value=sse.open_checksum(data_key, p.checksum_value)
        )
        for p in await svc.meta.list_parts(up.upload_id)
    }
    try:
        parts = _chosen_parts(up.upload_id, requested, stored)
    except S3Error as exc:
        if await svc.meta.upload(up.upload_id) is None:
            # Completed or aborted between the two reads: not a part list's fault.
            return await _lost_race(svc, req, up.upload_id, raw, exc)
        raise
    _check_expected_size(req.http.headers.get("x-amz-mp-object-size"), parts)
    checksum = object_checksum(up, parts)
    algorithm, checksum_type = object_checksum_kind(up)
    _check_sent_checksum(req.http.headers, up, checksum)
    _check_part_checksums_named(up, requested)
    await precheck_write(svc, req, condition)
    store = svc.store
    version_id = store.new_version_id()
    try:
        await store.concat_blobs(sse.join_parts(up, parts), version_id)
        await sse.keep_joined_key(svc, up, version_id, parts)
    except FileNotFoundError as exc:
        # Completed, aborted (or a part replaced) while we joined the parts.
        return await _lost_race(svc, req, up.upload_id, raw, exc)
    headers, lock = versioning.split_upload_lock(up.headers)
    headers.pop(md.INITIATOR_HEADER, None)
    obj = md.ObjectVersion(
        bucket=up.bucket,
        key=up.key,
        version_id=version_id,
        size=sum(p.size for p in parts),
        etag=multipart_etag(parts),
        last_modified=time.time(),
        owner_id=owner_id,
        headers=headers,
        **lock,
        acl=acl,
        tags=up.tags,
        checksum_algorithm=algorithm.value if checksum else None,
        checksum_value=sse.seal_under(data_key, checksum),
        checksum_type=checksum_type if checksum else None,
        parts=[_kept_part(p, data_key) for p in parts],
    )
    joined = {p.part_number: p.blob_id for p in parts}
    result: dict[str, Any] = {
        "Location": f"{svc.settings.base_url}/{quote(up.bucket)}/{quote(up.key)}",
        "Bucket": up.bucket,
        "Key": up.key,
        "ETag": obj.etag,
    }
    if checksum:
        result[f"Checksum{algorithm.value}"] = checksum
        result["ChecksumType"] = checksum_type
    answer = s3xml.render("CompleteMultipartUploadResult", result)
    # The answer a retry gets is kept in the database: an SSE-C object's checksum sealed, as
    # the object's is (sse.open_answer opens it for a retry with the key).
    kept = answer
    if data_key and checksum:
        sealed = {**result, f"Checksum{algorithm.value}": sse.seal_checksum(data_key, checksum)}
        kept = s3xml.render("CompleteMultipartUploadResult", sealed)
    receipt = md.UploadReceipt(up.upload_id, up.bucket, up.key, _parts_digest(root), kept)
    try:
        committed, released = await svc.meta.complete_upload(
            obj, up.upload_id, joined, condition, receipt
        )
    except StoreError as exc:
        await _delete_blobs(svc, [version_id])
        if isinstance(exc, NoSuchUpload):
            return await _lost_race(svc, req, up.upload_id, raw, exc)
        if isinstance(exc, PartChanged) and await svc.meta.upload(up.upload_id) is None:
            # Another node's completion committed while this one's transaction read the
            # upload (no row lock on PostgreSQL) and then its parts: they are gone with the
            # upload, not replaced. A lost race, as above (it had been InvalidPart).
            return await _lost_race(svc, req, up.upload_id, raw, exc)
        raise
    svc.store.release(committed.freed)
    await _delete_blobs(svc, released)
    resp_headers = {
        **versioning.written_version_headers(req.bucket, committed.version),
        **sse.response_headers(up.headers),
        **expiration_headers(svc.settings, req.bucket, committed.version),
    }
    return xml_response(answer, headers=resp_headers)


async def _answer_retry(
    svc: S3Context, req: S3Request, body: RequestBody, upload_id: str
) -> web.StreamResponse:
    """A completion of an upload that is gone: if it was completed with the same part list,
    the client is retrying (its first answer was lost): answer what was answered then."""
    receipt = await _receipt(svc, req, upload_id)
    if receipt is not None:
        raw = await body.read_all(svc.settings.limits.max_xml_body)
        answer = await _receipt_answer(svc, req, receipt, raw)
        if answer is not None:
            return answer
    raise S3Error("NoSuchUpload", resource=req.resource, extra={"UploadId": upload_id})


async def _lost_race(
    svc: S3Context, req: S3Request, upload_id: str, raw: bytes, exc: Exception
) -> web.StreamResponse:
    """The upload went while this completion joined its parts: if a racing completion
    (another worker's, or the client's own retry) completed it with the same part list,
    answer what it answered, as S3 answers a repeated completion; else NoSuchUpload."""
    receipt = await _receipt(svc, req, upload_id)
    answer = await _receipt_answer(svc, req, receipt, raw) if receipt is not None else None
    if answer is None:
        raise S3Error("NoSuchUpload", resource=req.resource, extra={"UploadId": upload_id}) from exc
    return answer


async def _receipt(svc: S3Context, req: S3Request, upload_id: str) -> md.UploadReceipt | None:
    """The receipt of this upload's completion, if it was completed at this bucket and key."""
    receipt = await svc.meta.upload_receipt(upload_id) if upload_id else None
    if receipt is not None and receipt.bucket == req.bucket_name and receipt.key == req.key:
        return receipt
    return None


async def _receipt_answer(
    svc: S3Context, req: S3Request, receipt: md.UploadReceipt, raw: bytes
) -> web.StreamResponse | None:
    """The completion's answer again, if `raw` asks for the part list it was given: its
    body (an SSE-C object's checksum opened with the key the retry sends, checked as the
    completion checked it), version id and encryption headers, as the first answer had
    them. A version gone since (deleted, or the null version written over) has taken its
    encryption headers and data key with it: then the answer is given without them."""
    if _parts_digest(s3xml.parse(raw)) != receipt.parts_digest:
        return None
    headers = {}
    if receipt.version_id is not None:
        headers["x-amz-version-id"] = receipt.version_id
    version = await _receipt_version(svc, receipt)
    data_key = None
    if version is not None:
        data_key = await sse.check_retry_key(svc, req, version)
        headers.update(sse.response_headers(version.headers))
    return xml_response(sse.open_answer(data_key, receipt.result), headers=headers)


async def _receipt_version(svc: S3Context, receipt: md.UploadReceipt) -> md.ObjectVersion | None:
    """The version a completion made, while it is there (its ETag is the receipt's)."""
    s3_version_id = receipt.version_id or md.NULL_VERSION
    version = await svc.meta.object_version(receipt.bucket, receipt.key, s3_version_id)
    etag = s3xml.text(s3xml.parse(receipt.result), "ETag")
    if version is None or version.delete_marker or version.etag != etag:
        return None
    return version


# ---- abort, list ----


async def abort_multipart_upload(svc: S3Context, req: S3Request) -> web.StreamResponse:
    up = await _upload(svc, req)
    blob_ids = await svc.meta.abort_upload(up.upload_id)
    if blob_ids is None:
        raise S3Error("NoSuchUpload", resource=req.resource, extra={"UploadId": up.upload_id})
    await _delete_blobs(svc, blob_ids)
    return web.Response(status=204)


def _initiator(svc: S3Context, up: md.Upload) -> dict[str, str]:
    """Who created the upload, as ListParts and ListMultipartUploads name its Initiator."""
    return owner_xml(svc, up.initiator_id)


async def list_parts(svc: S3Context, req: S3Request) -> web.StreamResponse:
    up = await _upload(svc, req)
    # The SSE-C headers S3 takes here, checked as a completion's (they were ignored).
    data_key = await sse.check_completion_key(svc, req, up)
    marker = upload_params(req).part_number_marker
    max_parts = upload_params(req).max_parts
    # max-parts=0 is an empty last page, as max-keys=0 is: "truncated" with the marker it
    # was sent as the next one would have a client ask for the same page again, forever.
    rows = await svc.meta.list_parts(up.upload_id, marker, max_parts + 1) if max_parts else []
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
                **_checksum_fields(up, sse.open_checksum(data_key, p.checksum_value)),
            }
            for p in rows
        ],
        "Initiator": _initiator(svc, up),
        "Owner": owner_xml(svc, up.owner_id),
        "StorageClass": up.headers.get("x-amz-storage-class", "STANDARD"),
        "ChecksumAlgorithm": up.checksum_algorithm,
        "ChecksumType": up.checksum_type,
    }
    return xml_response(
        s3xml.render("ListPartsResult", result), headers=abort_headers(svc.settings, req.bucket, up)
    )


def _check_expected_size(raw: str | None, parts: Sequence[md.Part]) -> None:
    """x-amz-mp-object-size: the size the client expects the object to have; another size
    is refused with 400 InvalidRequest, as S3 does, before anything is joined."""
    if raw is None:
        return
    total = sum(p.size for p in parts)
    expected = ascii_length(raw)
    if expected is None:
        raise S3Error("InvalidRequest", "Value for x-amz-mp-object-size header is invalid.")
    if expected != total:
        raise S3Error(
            "InvalidRequest",
            f"The provided x-amz-mp-object-size ({expected}) does not match the size of the "
            f"parts ({total}).",
        )
