"""Object operations: PUT, GET (ranges, conditions, sendfile), HEAD, DELETE, DeleteObjects."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from aiohttp import web

from s3torrent.access import (
    ANONYMOUS,
    AccessControlList,
    CanonicalUser,
    Owner,
    Principal,
    PublicAccessBlock,
    RequestContext,
    canned_acl,
    check_acl_allowed,
    grants_from_headers,
)
from s3torrent.access import facts as authz
from s3torrent.anonymous_reads import cut_transport, reset_transport
from s3torrent.corking import corked
from s3torrent.s3 import checksums, sse, tagging, user_metadata
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.body import RequestBody, StoredChecksum
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.lifecycle import expiration_headers
from s3torrent.s3.ops.ownership import write_owner
from s3torrent.s3.params import ObjectReadParams
from s3torrent.s3.quick import QuickHandOver, is_quick
from s3torrent.s3.ranges import ByteRange, parse_range
from s3torrent.s3.routing import Endpoint
from s3torrent.s3.server import S3Request
from s3torrent.s3.validators import raise_failed_condition, requested_range
from s3torrent.s3.versioning import (
    NO_LOCK,
    RequestedLock,
    lock_fields,
    lock_headers,
    requested_lock,
    require_integrity_header,
    version_headers,
    written_version_headers,
)
from s3torrent.store import rows as md
from s3torrent.store.conditions import NO_CONDITION, WriteCondition
from s3torrent.store.retention import default_retention
from s3torrent.torrent.hasher import PieceHashes, hash_fd
from s3torrent.torrent.pieces import PieceLayout

# Headers stored with an object and returned on GET/HEAD, as S3 does.
STORED_HEADERS = (
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
    "x-amz-website-redirect-location",
    "x-amz-storage-class",
)
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
REDIRECT_LOCATION = "x-amz-website-redirect-location"


def stored_headers(headers: Mapping[str, str], max_user_metadata: int) -> dict[str, str]:
    """The headers to keep with a new object: content-* and x-amz-meta-* (size-limited).

    A name sent in several fields is kept as S3 keeps it, its values joined by commas: the
    one value a signature covers (sigv4.refuse_repeated_headers), not the last field."""
    out: dict[str, str] = {}
    meta_size = 0
    for lname, value in _joined_fields(headers).items():
        if lname.startswith("x-amz-meta-"):
            text = user_metadata.stored_value(value)
            meta_size += len(lname) - len("x-amz-meta-") + len(text.encode("utf-8"))
            out[lname] = text
        elif lname == "content-encoding":
            # aws-chunked describes this request's framing, not the object: S3 drops it.
            codings = [c.strip() for c in value.split(",")]
            kept = ", ".join(c for c in codings if c and c.lower() != "aws-chunked")
            if kept:
                out[lname] = kept
        elif lname == REDIRECT_LOCATION:
            out[lname] = check_redirect_location(value)
        elif lname in STORED_HEADERS:
            out[lname] = value
    if meta_size > max_user_metadata:
        raise S3Error(
            "MetadataTooLarge",
            extra={"Size": str(meta_size), "MaxSizeAllowed": str(max_user_metadata)},
        )
    return out


def _joined_fields(headers: Mapping[str, str]) -> dict[str, str]:
    """Each header name, lower case, with its value; a repeated one's values joined by
    commas in the order they came."""
    joined: dict[str, str] = {}
    for name, value in headers.items():
        lname = name.lower()
        joined[lname] = f"{joined[lname]},{value}" if lname in joined else value
    return joined


def check_redirect_location(value: str) -> str:
    """x-amz-website-redirect-location as S3 takes it: a path in the bucket or an http(s)
    URL; anything else is 400 InvalidRedirectLocation (it was stored as sent)."""
    if not value.startswith(("/", "http://", "https://")):
        raise S3Error("InvalidRedirectLocation", extra={"ArgumentValue": value[:64]})
    return value


def requested_acl(
    headers: Mapping[str, str], owner: Owner, bucket: md.Bucket, may: Callable[[str], bool]
) -> AccessControlList | None:
    """The ACL a write asks for via x-amz-acl or x-amz-grant-* (None: the default, private).

    `may` answers whether the writer may also take an action on the key (may_also): as S3's
    PutObject reference has it, an ACL that grants anyone but the object's owner and the
    bucket's owner anything needs s3:PutObjectAcl besides the write's own permission (else
    403), so that a writer allowed s3:PutObject alone cannot make what it writes public (and
    so served by the torrent channels). One that grants only those two (private,
    bucket-owner-read, bucket-owner-full-control) widens nothing: AWS's example policy for
    uploads with bucket-owner-full-control allows s3:PutObject alone."""
    bucket_owner = authz.owner_of(bucket)
    acl = grants_from_headers(headers, owner)
    if "x-amz-acl" in headers:
        if acl is not None:
            raise S3Error(
                "InvalidRequest", "Specifying both Canned ACLs and Header Grants is not allowed"
            )
        acl = canned_acl(headers["x-amz-acl"], owner=owner, bucket_owner=bucket_owner)
    if acl is not None:
        check_acl_allowed(acl, public_access_block(bucket))
        if _grants_beyond(acl, {acl.owner.id, bucket_owner.id}) and not may("s3:PutObjectAcl"):
            raise S3Error("AccessDenied")
    return acl


def public_access_block(bucket: md.Bucket) -> PublicAccessBlock | None:
    """The bucket's Block Public Access switches (None: none set)."""
    if not bucket.public_access_block:
        return None
    return authz.decode_public_access_block(bucket.public_access_block)


def _grants_beyond(acl: AccessControlList, ids: set[str]) -> bool:
    """Whether the ACL grants anything to a grantee other than the canonical users `ids`."""
    return any(
        not isinstance(grant.grantee, CanonicalUser) or grant.grantee.id not in ids
        for grant in acl.grants
    )


def check_may_tag(tags: md.Tags, may: Callable[[str], bool]) -> None:
    """A write's own tags (x-amz-tagging, a copy's or a form's) need s3:PutObjectTagging
    besides the write's own permission, as S3's PutObject reference has it (else 403)."""
    if tags and not may("s3:PutObjectTagging"):
        raise S3Error("AccessDenied")


def object_headers(
    svc: S3Context, req: S3Request, obj: md.ObjectVersion, *, whole: bool = True
) -> dict[str, str]:
    h: dict[str, str] = {
        "ETag": obj.etag,
        "Last-Modified": s3xml.http_date(obj.last_modified),
        "Accept-Ranges": "bytes",
        "Content-Type": obj.headers.get("content-type", DEFAULT_CONTENT_TYPE),
    }
    for name, value in obj.headers.items():
        if name == "content-type":
            continue
        if name == "x-amz-storage-class" and value == "STANDARD":
            continue
        if name.startswith("x-amz-meta-"):
            value = user_metadata.response_value(value)
        h[_canonical_header(name)] = value
    if obj.parts and read_params(req).part_number is not None:
        # S3 names the part count only to a request for one part.
        h["x-amz-mp-parts-count"] = str(len(obj.parts))
    if obj.tags and may_also(req, obj)(Endpoint.GetObjectTagging.action_for(req.query)):
        # As S3: told only to a reader that may read the tags (s3:GetObjectTagging, or
        # s3:GetObjectVersionTagging for a named version), never to a reader of the bytes alone.
        h["x-amz-tagging-count"] = str(len(obj.tags))
    h.update(version_headers(req.bucket, obj))
    h.update(_readable_lock_headers(req, obj))
    if "versionId" not in req.query:
        # As S3: the current version's expiry, announced only to a read that names no
        # version (a noncurrent version is never expired by the Expiration action).
        h.update(expiration_headers(svc.settings, req.bucket, obj))
    if obj.checksum_algorithm and _wants_checksum(req):
        h.update(_checksum_of_answer(req, obj, whole))
    h.update(read_params(req).overrides)
    return h


def _readable_lock_headers(req: S3Request, obj: md.ObjectVersion) -> dict[str, str]:
    """The version's lock settings as S3 tells them to a GET or HEAD: the retention only to
    a requester with s3:GetObjectRetention, the legal hold only with s3:GetObjectLegalHold
    (a reader with s3:GetObject alone learns neither)."""
    hold = obj.legal_hold_status
    if obj.lock_mode is None and hold is None:
        return {}
    may = may_also(req, obj)
    return lock_headers(
        obj,
        retention=obj.lock_mode is not None and may("s3:GetObjectRetention"),
        legal_hold=hold is not None and may("s3:GetObjectLegalHold"),
    )


def _wants_checksum(req: S3Request) -> bool:
    """A GET or HEAD with ChecksumMode ENABLED: the answer tells the stored checksum."""
    return req.http.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"


def _checksum_of_answer(req: S3Request, obj: md.ObjectVersion, whole: bool) -> dict[str, str]:
    """The checksum of what a GET or HEAD answers, as S3 sends it: the object's for the whole
    object; for one part of a multipart object (?partNumber=N) that part's own checksum when
    the upload was COMPOSITE (a FULL_OBJECT one has a checksum of its parts only when there
    is one part, and then it is the object's); none for any other range, which no stored
    checksum describes."""
    assert obj.checksum_algorithm is not None
    header = f"x-amz-checksum-{obj.checksum_algorithm.lower()}"
    number = read_params(req).part_number
    value: str | None = None
    if whole:
        value = obj.checksum_value
    elif number is not None and obj.parts:
        if obj.checksum_type == "FULL_OBJECT":
            value = obj.checksum_value if len(obj.parts) == 1 else None
        else:
            part = obj.parts[number - 1]
            value = part.get("checksum") if isinstance(part.get("checksum"), str) else None
    if not value:
        return {}
    return {header: value, "x-amz-checksum-type": obj.checksum_type or "FULL_OBJECT"}


def _canonical_header(name: str) -> str:
    if name.startswith("x-amz-"):
        return name
    return "-".join(p.capitalize() for p in name.split("-"))


# What a 304 carries of what its 200 would (RFC 9110 15.4.5: a cache revalidating takes
# these from it), besides the validators.
_CACHE_HEADERS = ("Cache-Control", "Expires")
_NO_OVERRIDES: Mapping[str, str] = MappingProxyType({})


def not_modified_headers(
    obj: md.ObjectVersion, overrides: Mapping[str, str] = _NO_OVERRIDES
) -> dict[str, str]:
    """The headers of a 304 for `obj`: its validators, and its Cache-Control and Expires as
    the 200 would send them (response-cache-control and response-expires included)."""
    out = {"ETag": obj.etag, "Last-Modified": s3xml.http_date(obj.last_modified)}
    for name in _CACHE_HEADERS:
        value = overrides.get(name, obj.headers.get(name.lower()))
        if value is not None:
            out[name] = value
    return out


def check_conditions(
    headers: Mapping[str, str],
    obj: md.ObjectVersion,
    overrides: Mapping[str, str] = _NO_OVERRIDES,
) -> None:
    """If-Match / If-Unmodified-Since → 412; If-None-Match / If-Modified-Since → 304 (RFC 9110)
    with `not_modified_headers` (`overrides`: the request's response-* headers)."""
    raise_failed_condition(
        headers, obj.etag, obj.last_modified, lambda: not_modified_headers(obj, overrides)
    )


# ---- conditional writes ----


def write_condition(headers: Mapping[str, str]) -> WriteCondition:
    """The condition a write (PutObject, CopyObject, CompleteMultipartUpload) puts on the
    key's current version: If-None-Match (only "*") and If-Match (an ETag, or "*")."""
    if_none = headers.get("If-None-Match")
    if if_none is not None and if_none.strip() != "*":
        # Only "create if absent" is a write condition in S3; an ETag list here is not.
        raise S3Error("NotImplemented", "If-None-Match on a write accepts only the value '*'.")
    if_match = headers.get("If-Match")
    if if_match is not None and not if_match.strip():
        raise S3Error("InvalidArgument", "If-Match must not be empty.")
    return WriteCondition(
        if_none_match=if_none is not None,
        if_match=if_match.strip() if if_match is not None else None,
    )


def may_also(req: S3Request, obj: md.ObjectVersion | None = None) -> Callable[[str], bool]:
    """Whether req's principal may also take an action on req's key (its version `obj`,
    when the request has one): a write's object lock headers, ACL and tags need their own
    permissions besides the write's (versioning.requested_lock, requested_acl,
    check_may_tag), and a read is told a version's lock settings only with theirs."""
    bucket = req.bucket
    assert bucket is not None
    return write_extras(
        req.principal, bucket, req.key, obj, req.access_context(), req.allowed_by_acl
    )


def write_extras(
    principal: Principal,
    bucket: md.Bucket,
    key: str,
    obj: md.ObjectVersion | None,
    ctx: RequestContext,
    write_by_acl: bool,
) -> Callable[[str], bool]:
    """`may_also` for a principal whose write was decided already (`write_by_acl`: by an
    ACL grant).

    A bucket ACL's WRITE grant is S3's older model, which knows no finer permission: the
    grantee's upload may set the ACL and tags of the object it creates (and so owns), as
    S3 and ceph's s3-tests (anonymous form uploads into a public-read-write bucket) have
    it; a policy's explicit Deny of the action still refuses them. A write a policy allowed
    needs the policy to allow s3:PutObjectAcl and s3:PutObjectTagging too. Which extras
    the grant brings is the one decision's (`RequestContext.write_by_acl`)."""
    if write_by_acl:
        ctx = dataclasses.replace(ctx, write_by_acl=True)

    def may(action: str) -> bool:
        return authz.may(principal, action, bucket, key, obj, ctx).allowed

    return may


def check_may_compare(req: S3Request, key: str, condition: WriteCondition) -> None:
    """An ETag condition tells its sender whether it guessed the current ETag: as in S3, it
    needs s3:GetObject on the key besides the write's own permission."""
    if condition.if_match is None or condition.if_match == "*" or req.bucket is None:
        return
    ctx = req.access_context()
    if not authz.may(req.principal, "s3:GetObject", req.bucket, key, None, ctx).allowed:
        raise S3Error("AccessDenied", resource=f"/{req.bucket_name}/{key}")


async def precheck_write(svc: S3Context, req: S3Request, condition: WriteCondition) -> None:
    """Fail a conditional write to req's key before its bytes are read or copied when it
    already cannot hold; the commit checks the condition again, atomically, and decides."""
    if condition:
        check_may_compare(req, req.key, condition)
        current = await svc.meta.object(req.bucket_name, req.key)
        condition.check(req.bucket_name, req.key, current.etag if current is not None else None)


# ---- PUT ----


async def put_object(svc: S3Context, req: S3Request) -> web.StreamResponse:
    assert req.bucket is not None
    limits = svc.settings.limits
    http = req.http
    body = RequestBody(
        http,
        req.auth,
        max_chunk_size=limits.max_chunk_size,
        read_timeout=limits.body_read_timeout,
        default_checksum=checksums.DEFAULT_ALGORITHM,
    )
    if body.length is None and http.headers.get("Transfer-Encoding", "").lower() != "chunked":
        raise S3Error("MissingContentLength")
    if body.length is not None and body.length > limits.max_put_size:
        raise S3Error(
            "EntityTooLarge",
            extra={"ProposedSize": str(body.length), "MaxSizeAllowed": str(limits.max_put_size)},
        )
    may = may_also(req)
    owner = Owner(write_owner(req, http.headers), req.principal.name or "")
    acl = requested_acl(http.headers, owner, req.bucket, may)
    headers = stored_headers(http.headers, limits.max_user_metadata)
    condition = req.bound(write_condition(http.headers))
    tags = (
        tagging.from_header(http.headers["x-amz-tagging"])
        if "x-amz-tagging" in http.headers
        else ()
    )
    check_may_tag(tags, may)
    lock = requested_lock(http.headers, req.bucket, req.now.timestamp(), may)
    if lock != NO_LOCK or default_retention(req.bucket) is not None:
        # As S3: a version that will be locked, by its headers or the bucket's default
        # retention, is taken only with a proof of its bytes' integrity.
        require_integrity_header(http.headers, "Put Object")
    await precheck_write(svc, req, condition)
    obj, checksum = await store_body(svc, req, body, owner.id, headers, acl, condition, tags, lock)
    resp_headers = {"ETag": obj.etag, **written_version_headers(req.bucket, obj)}
    resp_headers.update(sse.response_headers(obj.headers))
    resp_headers.update(expiration_headers(svc.settings, req.bucket, obj))
    if checksum is not None:
        resp_headers[f"x-amz-checksum-{checksum.algorithm.lower()}"] = checksum.value
        resp_headers["x-amz-checksum-type"] = "FULL_OBJECT"
    return web.Response(status=200, headers=resp_headers)


async def store_body(
    svc: S3Context,
    req: S3Request,
    body: RequestBody,
    owner_id: str,
    headers: dict[str, str],
    acl: AccessControlList | None,
    condition: WriteCondition = NO_CONDITION,
    tags: md.Tags = (),
    lock: RequestedLock = NO_LOCK,
) -> tuple[md.ObjectVersion, StoredChecksum | None]:
    """Stream a request body into a new current version of req's key (if `condition`
    holds at the commit), encrypted as the request or its bucket asks; returns the version
    as stored."""
    store = svc.store
    limits = svc.settings.limits
    inline_max = svc.settings.storage.inline_max_size
    small = body.length is not None and body.length <= inline_max
    acl_text = authz.encode_acl(acl) if acl is not None else None
    # A small object's torrent is made when first asked for, from its row (HashJobs.ensure):
    # its write is not hashed.
    torrent_hasher = svc.torrents.hasher_for(body.length) if body.length and not small else None
    headers, torrent_hasher, sealed = await sse.prepare_write(svc, req, headers, torrent_hasher)
    observers: list[Any] = body.observers()
    # A local blob's pieces are hashed from the written file while its commit makes it
    # durable, not in the stream, where they slowed the upload itself (the fsync leaves
    # the cores idle); sealed bytes and remote blobs are hashed in the stream.
    read_back = torrent_hasher is not None and not small and sealed is None and store.reads_back
    read_hashes: list[PieceHashes] = []
    if torrent_hasher is not None and not read_back:
        # A hybrid torrent's SHA-1 and SHA-256 halves hash on two threads at once.
        observers.extend(torrent_hasher.parts())

    def hash_written(fd: int, size: int) -> None:
        assert torrent_hasher is not None
        layout = PieceLayout(size, torrent_hasher.piece_length)
        read_hashes.append(
            hash_fd(
                fd,
                layout,
                v1=torrent_hasher.v1,
                v2=torrent_hasher.v2,
                executor=svc.hash_jobs.pool,
            )
        )

    inline: bytes | None = None
    if small:
        version_id = sealed.blob_id if sealed is not None else store.new_inline_version_id()
        stored, inline = await store.stream_to_memory(
            body.chunks(),
            observers,
            max_size=inline_max,
            on_too_large=lambda: S3Error("IncompleteBody"),
        )
        checksum = body.verify(md5=stored.md5)
        inline = sealed.seal(inline) if sealed is not None else inline
    else:
        version_id, stored, checksum = await store.write_blob(
            body.chunks(),
            observers,
            max_size=limits.max_put_size,
            on_too_large=lambda: S3Error("EntityTooLarge"),
            check=lambda s: body.verify(md5=s.md5),
            blob_id=sealed.blob_id if sealed is not None else None,
            wrap_writer=sealed.wrap if sealed is not None else None,
            read_back=hash_written if read_back else None,
        )
    obj = md.ObjectVersion(
        bucket=req.bucket_name,
        key=req.key,
        version_id=version_id,
        size=stored.size,
        etag=sse.etag_of(sealed, stored.md5),
        last_modified=time.time(),
        owner_id=owner_id,
        headers=headers,
        acl=acl_text,
        checksum_algorithm=checksum.algorithm if checksum else None,
        checksum_value=sse.checksum_at_rest(sealed, checksum.value) if checksum else None,
        checksum_type="FULL_OBJECT" if checksum else None,
        inline=inline,
        tags=tags,
        **lock_fields(lock),
        versioned=req.bucket is not None and req.bucket.versioning == "Enabled",
    )
    hashes = None
    if read_hashes:
        hashes = svc.torrents.hashes_to_store(obj, read_hashes[0])
    elif torrent_hasher is not None:
        hashes = svc.torrents.record_hashes(obj, torrent_hasher)
    await sse.keep_key(svc, sealed)
    committed = await store.publish_version(obj, hashes, condition)
    return committed.version, checksum


# ---- GET / HEAD ----


async def get_object(svc: S3Context, req: S3Request) -> web.StreamResponse:
    return await serve_object(svc, req, head=False)


async def head_object(svc: S3Context, req: S3Request) -> web.StreamResponse:
    return await serve_object(svc, req, head=True)


def read_params(req: S3Request) -> ObjectReadParams:
    params = req.params
    assert isinstance(params, ObjectReadParams)
    return params


def check_read_request(req: S3Request) -> None:
    """What makes a GET or HEAD invalid whatever its object (400 InvalidRequest), refused
    before its conditions are evaluated: RFC 9110 13.2.1 has a server ignore preconditions
    when the request without them would fail, and a 304 or 412 here had hidden the refusal
    (an anonymous request's response-* overrides got a 304 carrying them)."""
    params = read_params(req)
    if params.overrides and req.principal.is_anonymous:
        raise S3Error(
            "InvalidRequest",
            "Request specific response headers cannot be used for anonymous GET requests.",
        )
    if params.part_number is not None and "Range" in req.http.headers:
        raise S3Error("InvalidRequest", "Cannot specify both Range header and partNumber query")


def part_range(number: int, obj: md.ObjectVersion) -> ByteRange | None:
    """The bytes of one part of an object (?partNumber=N); None: the whole object, 200.

    An object uploaded whole has one part, itself, which S3 answers as a range: 206 with
    `Content-Range: bytes 0-<size - 1>/<size>` (it was a 200 without one here; a client
    reading by parts takes the size from that header). An empty object has no range."""
    sizes = [int(p["size"]) for p in obj.parts] if obj.parts else [obj.size]
    if not 1 <= number <= len(sizes):
        raise S3Error(
            "InvalidPartNumber", "The requested partnumber is not satisfiable", status=416
        )
    if obj.parts is None:
        return ByteRange(0, obj.size - 1) if obj.size else None
    start = sum(sizes[: number - 1])
    return ByteRange(start, start + sizes[number - 1] - 1)


async def serve_object(svc: S3Context, req: S3Request, *, head: bool) -> web.StreamResponse:
    obj = req.obj
    assert obj is not None
    check_read_request(req)
    customer = await sse.read_key(svc, req, obj)
    if obj.checksum_algorithm and _wants_checksum(req):
        obj = await sse.open_checksums(svc, obj, customer)
    check_conditions(req.http.headers, obj, read_params(req).overrides)
    rng: ByteRange | None
    part_number = read_params(req).part_number
    if part_number is not None:
        rng = part_range(part_number, obj)
    else:
        rng = parse_range(requested_range(req.http.headers, obj), obj.size)
    # Part 1 of an object uploaded whole is all of it: its checksum describes that part.
    whole = rng is None or (part_number is not None and obj.parts is None)
    headers = object_headers(svc, req, obj, whole=whole)
    status = 200
    offset, count = 0, obj.size
    if rng is not None:
        status = 206
        offset, count = rng.start, rng.length
        headers["Content-Range"] = f"bytes {rng.start}-{rng.end}/{obj.size}"
    if head:
        # A StreamResponse: web.Response refuses an explicit Content-Length without a body.
        head_resp = web.StreamResponse(status=status, headers=headers)
        head_resp.content_length = count
        return head_resp
    sealed = sse.is_sealed(svc, obj)
    if (sealed or obj.inline is None) and is_quick(req.http):
        # A streamed body is aiohttp's to send (s3/quick.py): nothing is opened or sent yet.
        raise QuickHandOver
    if sealed:
        with _revocable(svc, req, obj):
            return await sse.send_sealed(svc, req, obj, (status, headers, offset, count), customer)
    if obj.inline is not None:
        body = obj.inline[offset : offset + count]
        small = web.Response(status=status, headers=headers, body=body)
        req.body_sent = count
        return small
    fobj = None
    for _attempt in range(2):
        path = svc.store.blobs.local_path(obj.version_id)
        try:
            fobj = open(path, "rb") if path is not None else None  # noqa: SIM115
            break
        except FileNotFoundError:
            if "versionId" in req.query:
                # That very version was deleted meanwhile: no other one will do.
                raise S3Error("NoSuchVersion", resource=req.resource) from None
            # Overwritten or deleted since we looked it up: look again, once.
            fresh = await svc.meta.object(req.bucket_name, req.key)
            if fresh is None:
                raise S3Error("NoSuchKey", resource=req.resource, extra={"Key": req.key}) from None
            return await _reserve(svc, req, fresh, head)
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = count
    with _revocable(svc, req, obj):
        return await _send_body(svc, req, obj, resp, fobj, offset, count, head)


# Re-decide a little after a policy's time boundary, so the clock is surely past it.
_BOUNDARY_SLACK = 0.05


@contextlib.contextmanager
def _revocable(svc: S3Context, req: S3Request, obj: md.ObjectVersion) -> Iterator[None]:
    """An anonymous GET in flight is cut when a revocation takes its access away."""
    reads = svc.anonymous_reads
    if reads is None or not req.principal.is_anonymous:
        yield
        return
    # Its bucket policy's next time boundary re-decides it too (this process may have no
    # publication, and so no timer, for that bucket).
    boundary = authz.next_time_boundary(req.bucket, req.now) if req.bucket is not None else None
    cut = [False]

    def cut_now() -> None:
        cut[0] = True
        cut_transport(req.http.transport)

    token = reads.track(
        obj.version_id,
        cut_now,
        lambda: _still_readable(svc, req, obj),
        bucket=req.bucket_name,
        key=req.key,
        recheck_in=(
            (boundary - datetime.now(UTC)).total_seconds() + _BOUNDARY_SLACK
            if boundary is not None
            else None
        ),
        next_boundary_in=lambda: _next_boundary_in(svc, req),
    )
    try:
        yield
    finally:
        reads.done(obj.version_id, token)
        if cut[0]:
            # Revoked: what the kernel still held for the client is dropped, never sent.
            dropped = reset_transport(req.http.transport)
            if req.body_sent is not None:
                req.body_sent = max(0, req.body_sent - dropped)


async def _next_boundary_in(svc: S3Context, req: S3Request) -> float | None:
    """Seconds to the next time boundary of the bucket's policy as it is now (None: none)."""
    bucket = await svc.meta.bucket(req.bucket_name)
    now = datetime.now(UTC)
    boundary = authz.next_time_boundary(bucket, now) if bucket is not None else None
    return (boundary - now).total_seconds() + _BOUNDARY_SLACK if boundary is not None else None


async def _still_readable(svc: S3Context, req: S3Request, obj: md.ObjectVersion) -> bool:
    """The one decision again, on fresh rows and the current time."""
    bucket = await svc.meta.bucket(req.bucket_name)
    if bucket is None:
        return False
    current = await svc.meta.object_by_version(obj.version_id)
    if current is None:
        # Overwritten or deleted: S3 finishes a GET already under way.
        return True
    ctx = dataclasses.replace(req.access_context(), now=datetime.now(UTC))
    return authz.may(ANONYMOUS, req.endpoint.action, bucket, req.key, current, ctx).allowed


async def _send_body(
    svc: S3Context,
    req: S3Request,
    obj: md.ObjectVersion,
    resp: web.StreamResponse,
    fobj: Any,
    offset: int,
    count: int,
    head: bool,
) -> web.StreamResponse:
    if fobj is None:
        # A remote blob store: stream in bounded chunks (memory per GET stays ~1 MiB).
        chunks = svc.store.blob_chunks(obj.version_id, offset, count)
        try:
            first = await anext(chunks, b"")
        except FileNotFoundError:
            fresh = await svc.meta.object(req.bucket_name, req.key)
            if fresh is None or fresh.version_id == obj.version_id:
                raise S3Error("NoSuchKey", resource=req.resource, extra={"Key": req.key}) from None
            return await _reserve(svc, req, fresh, head)
        await resp.prepare(req.http)
        sent = 0
        try:
            await resp.write(first)
            sent = len(first)
            async for chunk in chunks:
                await resp.write(chunk)
                sent += len(chunk)
        finally:
            req.body_sent = sent
        await resp.write_eof()
        return resp
    transport = req.http.transport
    with fobj:
        # Corked: the head rides with the first body bytes, and sendfile sends whole segments.
        with corked(transport):
            await resp.prepare(req.http)
            if count:
                if transport is None:
                    raise ConnectionResetError("client went away")
                sent = 0
                try:
                    sent = await asyncio.get_running_loop().sendfile(transport, fobj, offset, count)
                finally:
                    # On failure sendfile leaves the file at offset + what it sent: meter that.
                    req.body_sent = sent or max(0, fobj.tell() - offset)
        await resp.write_eof()
    return resp


async def _reserve(
    svc: S3Context, req: S3Request, obj: md.ObjectVersion, head: bool
) -> web.StreamResponse:
    req.obj = obj
    decision = (
        authz.may(
            req.principal, req.endpoint.action, req.bucket, req.key, obj, req.access_context()
        )
        if req.bucket is not None
        else None
    )
    if decision is None or not decision.allowed:
        raise S3Error("AccessDenied", resource=req.resource)
    return await serve_object(svc, req, head=head)
