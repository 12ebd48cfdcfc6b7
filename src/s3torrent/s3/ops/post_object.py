"""POST Object: browser form uploads (multipart/form-data, what `generate_presigned_post`
makes), streamed into the same write path as PutObject.

The fields before the file are read (bounded by `limits.max_post_form_size`), the policy's
signature, expiration and conditions checked, and the one access decision asked for
s3:PutObject with the signer as principal; only then is the file part streamed, through MD5,
the requested checksum and the torrent hasher, into a blob, its size checked against the
policy as it arrives. Fields after the file are ignored, as in S3.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, cast
from urllib.parse import quote, urlencode

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

from s3torrent.access import Owner, Principal, RequestContext
from s3torrent.access import facts as authz
from s3torrent.s3 import checksums, sse, tagging
from s3torrent.s3 import post_policy as pp
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.auth import refuse_session_token
from s3torrent.s3.body import (
    READ_SIZE,
    StoredChecksum,
    check_md5,
    decode_content_md5,
    payload_hash_of,
    sha256_mismatch,
)
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ops.lifecycle import expiration_headers
from s3torrent.s3.ops.objects import check_may_tag, requested_acl, stored_headers, write_extras
from s3torrent.s3.ops.ownership import write_owner
from s3torrent.s3.refusals import refuse_acls, refuse_unsupported
from s3torrent.s3.routing import Endpoint, Target, check_key
from s3torrent.s3.server import OBJECT_CREATION, S3Request, auth_values, signature_values
from s3torrent.s3.sigv4 import is_sha256_hex
from s3torrent.s3.versioning import (
    RequestedLock,
    lock_condition_values,
    lock_fields,
    requested_lock,
    written_version_headers,
)
from s3torrent.store import rows as md
from s3torrent.store.objects import StoredStream
from s3torrent.store.sealing import SealSpec
from s3torrent.torrent.pieces import piece_length_for

# Counted against the form budget per field besides its value and part headers: a flood
# of empty fields must exhaust it too.
_FIELD_OVERHEAD = 64
_MALFORMED = "The body of your POST request is not well-formed multipart/form-data."


class _AsHeaders(Mapping[str, str]):
    """The form's fields (names lower case) looked up as headers are: in any case."""

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields

    def __getitem__(self, name: str) -> str:
        return self._fields[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


class _FormRead:
    """The fields before the file, and the file part itself."""

    def __init__(self, body: _HashedBody | None) -> None:
        self.fields: dict[str, str] = {}
        self.file: BodyPartReader | None = None
        self.filename = ""
        # The body's SHA-256 as the form is read, when the request names one.
        self.body = body


class _HashedBody:
    """The request's body as the form reader reads it, each byte hashed once: the reader
    gives bytes back (`unread_data`) and reads them again, so only those beyond the
    furthest point read are new. `check` reads what follows the file and compares the
    whole body's SHA-256 with the one the request names (x-amz-content-sha256)."""

    def __init__(self, content: StreamReader, claimed: str) -> None:
        self._content = content
        self._claimed = claimed
        self._sha256 = hashlib.sha256()
        self._position = 0  # bytes read, less those given back
        self._hashed = 0  # bytes hashed: the furthest position read

    def _read(self, data: bytes) -> bytes:
        end = self._position + len(data)
        if end > self._hashed:
            self._sha256.update(memoryview(data)[self._hashed - self._position :])
            self._hashed = end
        self._position = end
        return data

    async def read(self, n: int = -1) -> bytes:
        return self._read(await self._content.read(n))

    async def readline(self, *, max_line_length: int | None = None) -> bytes:
        return self._read(await self._content.readline(max_line_length=max_line_length))

    def at_eof(self) -> bool:
        return self._content.at_eof()

    def unread_data(self, data: bytes) -> None:
        self._content.unread_data(data)
        self._position -= len(data)

    async def check(self, read_timeout: float) -> None:
        """The rest of the body read (the fields after the file, which are ignored) and
        the whole body's SHA-256 compared with the claimed one."""
        while True:
            async with _deadline(read_timeout):
                if not await self.read(READ_SIZE):
                    break
        computed = self._sha256.hexdigest()
        if computed != self._claimed:
            raise sha256_mismatch(self._claimed, computed)


async def post_object(svc: S3Context, req: S3Request) -> web.StreamResponse:
    bucket = req.bucket
    assert bucket is not None
    content_type = req.http.headers.get("Content-Type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise S3Error(
            "PreconditionFailed",
            extra={"Condition": "Bucket POST must be of the enclosure-type multipart/form-data"},
        )
    _refuse_condition_headers(req.http.headers)
    limits = svc.settings.limits
    form = await _read_form(req, limits.max_post_form_size, limits.body_read_timeout)
    fields = form.fields
    principal, policy = await _signer(svc, req, fields)
    if "key" not in fields:
        raise pp.missing_field("key")
    if form.file is None:
        raise S3Error(
            "InvalidArgument",
            "POST requires exactly one file upload per request.",
            extra={"ArgumentName": "file", "ArgumentValue": "0"},
        )
    # ${filename} is the file's name (S3 replaces it in the key before the policy's key
    # conditions are checked: a form keyed "uploads/${filename}" meets "starts-with uploads/").
    key = fields["key"].replace("${filename}", form.filename)
    fields = {**fields, "key": key}
    if policy is not None:
        pp.check_expiration(policy, req.now)
        pp.check_conditions(policy, fields, bucket.name)
    if not key:
        raise S3Error("InvalidArgument", "User key must have a length greater than 0.")
    check_key(key)
    req.target = Target(bucket=req.target.bucket, key=key, virtual_host=req.target.virtual_host)
    req.principal = principal
    ctx = _context(req, fields)

    write = authz.may(principal, "s3:PutObject", bucket, key, None, ctx)
    if not write.allowed:
        raise S3Error("AccessDenied", resource=req.resource)
    may = write_extras(principal, bucket, key, None, ctx, write.by_acl)
    # The form's fields are this upload's headers: refused as a PutObject's would be.
    refuse_unsupported(Endpoint.PutObject, _AsHeaders(fields), {}, bucket.owner_id)
    _refuse_fields_not_taken(fields)
    # The `acl` field is PutObject's x-amz-acl, under the bucket's Object Ownership alike:
    # refused where ACLs are disabled, and naming who owns what the form writes.
    acl_headers = {"x-amz-acl": fields["acl"]} if "acl" in fields else {}
    refuse_acls(Endpoint.PutObject, acl_headers, bucket.settings)
    owner = Owner(write_owner(req, acl_headers), principal.name or "")
    acl = requested_acl(acl_headers, owner, bucket, may)
    headers = stored_headers(fields, limits.max_user_metadata)
    _refuse_control_characters(fields, headers)
    tags = (
        tagging.from_xml(fields["tagging"].encode("utf-8"), tagging.MAX_OBJECT_TAGS)
        if "tagging" in fields
        else ()
    )
    check_may_tag(tags, may)
    checksum = _requested_checksum(fields)
    # As PutObject's header: the file's MD5 is checked against it (S3 documents the field).
    md5 = decode_content_md5(fields["content-md5"]) if "content-md5" in fields else None
    seal = sse.form_spec(svc, _AsHeaders(fields), req.secure, bucket)
    # Object lock fields act as PutObject's headers do (the bucket's default retention, if
    # any, is applied by the store at the commit).
    lock = requested_lock(_AsHeaders(fields), bucket, req.now.timestamp(), may)
    obj, stored_checksum = await _store_file(
        svc, req, form, key, owner.id, headers, acl, tags, (checksum, md5), policy, (seal, lock)
    )
    return _answer(svc, req, fields, obj, stored_checksum)


# ---- the form

# What no header value may hold (HTTP's field-value: tab, but no other control character).
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_ANSWER_FIELDS = ("success_action_redirect", "redirect")


def _refuse_control_characters(fields: Mapping[str, str], headers: Mapping[str, str]) -> None:
    """A form field is any text, where a header (what PutObject's come as) never holds a
    line break or another control character: refused in the fields that become the
    object's headers or the answer's Location (x-amz-meta-* values are returned as RFC 2047
    words, so theirs are kept)."""
    named = [n for n in headers if not n.startswith("x-amz-meta-")] + list(_ANSWER_FIELDS)
    for name in named:
        value = fields.get(name)
        if value is not None and _CONTROL.search(value):
            raise S3Error(
                "InvalidArgument",
                f"POST form field {name} holds a control character.",
                extra={"ArgumentName": name},
            )


# A form does not take PutObject's conditions (If-None-Match: *, If-Match), as fields or as
# the POST request's own headers (whose target would be the bucket's URL, not the key the
# form names): refused, never ignored (the date conditions are refused on PutObject too).
_CONDITION_HEADERS = ("If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since")
# Other PutObject headers a form does not act on as fields (S3 documents none of them for
# POST Object, and a signed policy may name any field): each asks for something the upload
# would not do (a grant, tags in the header's form), so it is refused, never ignored.
_TAGGING_HEADER = "x-amz-tagging"
_GRANT_PREFIX = "x-amz-grant-"


def _refuse_condition_headers(headers: Mapping[str, str]) -> None:
    for name in _CONDITION_HEADERS:
        if name in headers:
            raise S3Error(
                "NotImplemented",
                f"POST Object takes no {name} condition; use PutObject.",
                extra={"ArgumentName": name, "ArgumentValue": headers[name][:64]},
            )


def _refuse_fields_not_taken(fields: dict[str, str]) -> None:
    _refuse_condition_headers(_AsHeaders(fields))
    for name in fields:
        if name == _TAGGING_HEADER:
            message = "POST Object takes its tags in the tagging field, as XML."
        elif name.startswith(_GRANT_PREFIX):
            message = "POST Object takes no x-amz-grant-* field; use the acl field."
        else:
            continue
        raise S3Error(
            "NotImplemented",
            message,
            extra={"ArgumentName": name[:64], "ArgumentValue": fields[name][:64]},
        )


async def _read_form(req: S3Request, budget: int, read_timeout: float) -> _FormRead:
    """Fields up to the file part (names lower case), within budget bytes."""
    claimed = payload_hash_of(req.http, req.auth)
    if claimed.startswith("STREAMING-"):
        # Its chunks' signatures would go unchecked: a form is read as sent, never decoded.
        raise S3Error("InvalidRequest", "POST Object does not take an aws-chunked body.")
    body = _HashedBody(req.http.content, claimed) if is_sha256_hex(claimed) else None
    form = _FormRead(body)
    limit = budget
    # aiohttp's part reader asserts a chunk longer than its delimiter ("--" + boundary +
    # CRLF); the boundary is inside Content-Type, so a chunk of that length always is.
    # Asked for less near the budget's end, it failed a form within the budget as malformed.
    floor = len(req.http.headers.get("Content-Type", "")) + 4
    try:
        # The form is read through the hashing view when the request names its body's
        # SHA-256: the signature covers that digest, so the body must be the one signed.
        content = cast(StreamReader, body) if body is not None else req.http.content
        reader = MultipartReader(req.http.headers, content)
        while True:
            async with _deadline(read_timeout):
                part = await reader.next()
            if part is None:
                return form
            if not isinstance(part, BodyPartReader):
                raise S3Error("MalformedPOSTRequest", _MALFORMED)
            name = (part.name or "").lower()
            if name == "file":
                form.file = part
                form.filename = part.filename or ""
                return form
            budget -= _FIELD_OVERHEAD + sum(len(k) + len(v) for k, v in part.headers.items())
            value = bytearray()
            while True:
                async with _deadline(read_timeout):
                    chunk = await part.read_chunk(max(min(READ_SIZE, budget + 1), floor))
                if not chunk:
                    break
                value += chunk
                budget -= len(chunk)
                if budget < 0:
                    break
            if budget < 0:
                raise S3Error(
                    "MaxPostPreDataLengthExceeded",
                    "Your POST request fields preceeding the upload file was too large.",
                    extra={"MaxPostPreDataLength": str(limit)},
                )
            if name in form.fields:
                raise S3Error(
                    "InvalidArgument",
                    f"POST form field {name} appears more than once.",
                    extra={"ArgumentName": name[:64], "ArgumentValue": ""},
                )
            try:
                form.fields[name] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise S3Error("MalformedPOSTRequest", _MALFORMED) from None
    except (ValueError, AssertionError, HttpProcessingError, web.RequestPayloadError) as exc:
        # aiohttp's parser refuses a bad boundary, part headers or framing in these ways.
        raise S3Error("MalformedPOSTRequest", _MALFORMED) from exc


@contextlib.asynccontextmanager
async def _deadline(seconds: float) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise S3Error("RequestTimeout") from None


async def _signer(
    svc: S3Context, req: S3Request, fields: dict[str, str]
) -> tuple[Principal, pp.PostPolicy | None]:
    """Who signed the form's policy, and the policy (anonymous and none if unsigned)."""
    refuse_session_token(fields)
    if not pp.is_signed(fields):
        if "policy" in fields:
            raise pp.missing_field("x-amz-signature")
        # An unsigned form is anonymous, unless the request itself was signed.
        return req.principal, None
    policy = pp.decode_policy(fields.get("policy", "")) if "policy" in fields else None
    hint = fields.get("awsaccesskeyid") or fields.get("x-amz-credential", "").split("/", 1)[0]
    if hint:
        await svc.users.refresh_if_unknown(hint)

    def lookup_secret(access_key: str) -> str | None:
        # As for a signed request (s3/auth.py): a disabled user's key signs nothing, so a
        # form it signed before is refused as an inactive key, InvalidAccessKeyId.
        user = svc.users.active_by_access_key(access_key)
        return user.secret_key if user else None

    access_key = pp.verify_signature(fields, lookup_secret, svc.settings.region)
    assert policy is not None  # verify_signature insists on the policy field
    user = svc.users.active_by_access_key(access_key)
    assert user is not None
    return Principal.user(user.canonical_id, user.name, is_root=user.is_root), policy


_FIELD_CONDITION_KEYS = (
    ("acl", "s3:x-amz-acl"),
    ("x-amz-storage-class", "s3:x-amz-storage-class"),
    ("x-amz-server-side-encryption", "s3:x-amz-server-side-encryption"),
    (
        "x-amz-server-side-encryption-customer-algorithm",
        "s3:x-amz-server-side-encryption-customer-algorithm",
    ),
)


def _context(req: S3Request, fields: dict[str, str]) -> RequestContext:
    """The decision's context: as a PutObject's, with the form's fields as its headers."""
    values: dict[str, str | list[str]] = {
        "s3:ObjectCreationOperation": OBJECT_CREATION[Endpoint.PostObject]
    }
    for field, key in _FIELD_CONDITION_KEYS:
        if fields.get(field):
            values[key] = fields[field]
    values.update(
        lock_condition_values(
            fields.get("x-amz-object-lock-mode"),
            fields.get("x-amz-object-lock-retain-until-date"),
            req.now,
        )
    )
    if fields.get("x-amz-object-lock-legal-hold"):
        values["s3:object-lock-legal-hold"] = fields["x-amz-object-lock-legal-hold"]
    if pp.is_signed(fields):
        v4 = "x-amz-algorithm" in fields
        values.update(
            signature_values(
                v4=v4, auth_type="POST", signed_at=fields.get("x-amz-date", ""), now=req.now
            )
        )
    elif req.auth is not None:
        # An unsigned form uploads as the request's signer (_signer): judged by how the
        # request was signed, as any request is.
        values.update(auth_values(req.auth, req.now))
    payload = req.http.headers.get("x-amz-content-sha256")
    if payload:
        values["s3:x-amz-content-sha256"] = payload
    for header, key in (("User-Agent", "aws:UserAgent"), ("Referer", "aws:Referer")):
        value = req.http.headers.get(header)
        if value:
            values[key] = value
    if "tagging" in fields:
        with contextlib.suppress(S3Error):
            tags = tagging.from_xml(fields["tagging"].encode("utf-8"), tagging.MAX_OBJECT_TAGS)
            values.update(tagging.request_tag_values(tags))
    return authz.context(req.now, req.source_ip, req.secure, **values)


def _requested_checksum(
    fields: dict[str, str],
) -> tuple[checksums.ChecksumAlgorithm, str | None]:
    """x-amz-checksum-algorithm and/or one x-amz-checksum-<alg> value; with neither, S3's
    default (the object's CRC64NVME, computed and stored)."""
    sent = [(alg, fields[alg.header]) for alg in checksums.checksum_headers(fields)]
    if len(sent) > 1:
        raise S3Error(
            "InvalidRequest",
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        )
    named = fields.get("x-amz-checksum-algorithm")
    algorithm = checksums.ChecksumAlgorithm.from_header_value(named) if named else None
    if sent:
        if algorithm is not None and algorithm is not sent[0][0]:
            raise S3Error(
                "InvalidRequest",
                "Value for x-amz-checksum-algorithm does not match the checksum field sent.",
            )
        checksums.decode_checksum(sent[0][0], sent[0][1])
        return sent[0]
    return (algorithm or checksums.DEFAULT_ALGORITHM), None


# ---- the file


async def _file_chunks(form: _FormRead, read_timeout: float) -> AsyncIterator[bytes]:
    """The file's bytes; after the last, the body's SHA-256 is checked when the request
    names one (so a body that is not the one signed is refused before it is stored)."""
    part = form.file
    assert part is not None
    try:
        while True:
            async with _deadline(read_timeout):
                chunk = await part.read_chunk(READ_SIZE)
            if not chunk:
                break
            yield chunk
        if form.body is not None:
            await form.body.check(read_timeout)
    except (ValueError, AssertionError, HttpProcessingError, web.RequestPayloadError) as exc:
        raise S3Error("IncompleteBody", _MALFORMED) from exc


async def _store_file(
    svc: S3Context,
    req: S3Request,
    form: _FormRead,
    key: str,
    owner_id: str,
    headers: dict[str, str],
    acl: Any,
    tags: md.Tags,
    digests: tuple[tuple[checksums.ChecksumAlgorithm, str | None] | None, bytes | None],
    policy: pp.PostPolicy | None,
    sealing_and_lock: tuple[SealSpec | None, RequestedLock],
) -> tuple[md.ObjectVersion, StoredChecksum | None]:
    """Stream the file part into a new current version of key, as PutObject's store_body."""
    store = svc.store
    limits = svc.settings.limits
    max_size = limits.max_put_size
    if policy is not None and policy.length_range is not None:
        max_size = min(max_size, policy.length_range[1])
    # The whole request bounds the file: its piece length is known in advance whenever the
    # file's own size falls in the same piece-length step (checked below), as is usual.
    bound = req.http.content_length
    hasher = svc.torrents.hasher_for(bound) if bound is not None else None
    seal, lock = sealing_and_lock
    checksum, md5 = digests
    headers, hasher, sealed = await sse.prepare_sealed(svc, seal, headers, hasher)
    summer = checksums.new_checksum(checksum[0]) if checksum is not None else None
    observers: list[Any] = [o for o in (hasher, summer) if o is not None]
    chunks = _file_chunks(form, limits.body_read_timeout)

    def on_too_large() -> Exception:
        return pp.too_large(max_size)

    def verified(stored: StoredStream) -> StoredChecksum | None:
        pp.check_length(policy, stored.size)
        if md5 is not None:
            check_md5(md5, stored.md5)
        if summer is None or checksum is None:
            return None
        computed = summer.b64()
        if checksum[1] is not None and checksum[1] != computed:
            raise S3Error(
                "BadDigest",
                f"The {checksum[0].value} you specified did not match the calculated checksum.",
            )
        return StoredChecksum(algorithm=checksum[0].value, value=computed)

    inline: bytes | None = None
    if bound is not None and bound <= svc.settings.storage.inline_max_size:
        version_id = sealed.blob_id if sealed is not None else store.new_inline_version_id()
        stored, inline = await store.stream_to_memory(
            chunks, observers, max_size=max_size, on_too_large=on_too_large
        )
        stored_checksum = verified(stored)
        inline = sealed.seal(inline) if sealed is not None else inline
    else:
        version_id, stored, stored_checksum = await store.write_blob(
            chunks,
            observers,
            max_size=max_size,
            on_too_large=on_too_large,
            check=verified,
            blob_id=sealed.blob_id if sealed is not None else None,
            wrap_writer=sealed.wrap if sealed is not None else None,
        )
    obj = md.ObjectVersion(
        bucket=req.bucket_name,
        key=key,
        version_id=version_id,
        size=stored.size,
        etag=sse.etag_of(sealed, stored.md5),
        last_modified=time.time(),
        owner_id=owner_id,
        headers=headers,
        acl=authz.encode_acl(acl) if acl is not None else None,
        checksum_algorithm=stored_checksum.algorithm if stored_checksum else None,
        checksum_value=(
            sse.checksum_at_rest(sealed, stored_checksum.value) if stored_checksum else None
        ),
        checksum_type="FULL_OBJECT" if stored_checksum else None,
        inline=inline,
        tags=tags,
        **lock_fields(lock),
        versioned=req.bucket is not None and req.bucket.versioning == "Enabled",
    )
    hashes = None
    if (
        hasher is not None
        and bound is not None
        and piece_length_for(stored.size) == piece_length_for(bound)
        and inline is None  # a small object is hashed when its torrent is first asked for
    ):
        hashes = svc.torrents.record_hashes(obj, hasher)
    await sse.keep_key(svc, sealed)
    committed = await store.publish_version(obj, hashes, req.bound())
    return committed.version, stored_checksum


# ---- the answer


def _answer(
    svc: S3Context,
    req: S3Request,
    fields: dict[str, str],
    obj: md.ObjectVersion,
    checksum: StoredChecksum | None,
) -> web.StreamResponse:
    location = f"{svc.settings.base_url}/{quote(obj.bucket)}/{quote(obj.key)}"
    headers = {
        "ETag": obj.etag,
        "Location": location,
        **written_version_headers(req.bucket, obj),
        **sse.response_headers(obj.headers),
        # As PutObject: the date a lifecycle rule of the bucket will expire the upload.
        **expiration_headers(svc.settings, req.bucket, obj),
    }
    if checksum is not None:
        headers[f"x-amz-checksum-{checksum.algorithm.lower()}"] = checksum.value
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect and redirect.startswith(("http://", "https://")):
        query = urlencode({"bucket": obj.bucket, "key": obj.key, "etag": obj.etag})
        headers["Location"] = redirect + ("&" if "?" in redirect else "?") + query
        return web.Response(status=303, headers=headers)
    status = fields.get("success_action_status")
    if status == "201":
        body = s3xml.render(
            "PostResponse",
            {"Location": location, "Bucket": obj.bucket, "Key": obj.key, "ETag": obj.etag},
            ns=False,
        )
        return web.Response(status=201, body=body, content_type="application/xml", headers=headers)
    if status == "200":
        return web.Response(status=200, headers=headers)
    return web.Response(status=204, headers=headers)
