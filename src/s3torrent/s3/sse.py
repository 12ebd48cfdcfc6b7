"""Server-side encryption at the S3 edge: request headers → what to seal with, S3's errors,
the headers answers carry, and sending a sealed version's bytes.

Which encryption a write gets: SSE-C headers, else `x-amz-server-side-encryption`, else the
bucket's default encryption, else the server's (`encryption.default`), else none.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from s3torrent.s3.errors import S3Error
from s3torrent.store import rows as md
from s3torrent.store.master_key import MasterKeyError
from s3torrent.store.meta_sealing import SealRecord
from s3torrent.store.sealed_format import Segment, seal, sealed_size
from s3torrent.store.sealing import (
    SSE_C,
    SSE_HEADER,
    SSE_S3,
    CustomerKey,
    KeyMismatch,
    KeyRequired,
    Sealing,
    SealingWriter,
    SealSpec,
    TamperedBlob,
    seal_mode,
    without_seal_headers,
)

if TYPE_CHECKING:
    from s3torrent.s3.context import S3Context
    from s3torrent.s3.server import S3Request

log = logging.getLogger(__name__)

_H = TypeVar("_H")

BUCKET_ENCRYPTION = "encryption"
# In the bucket's encryption setting: the encryption types new objects may not use.
BLOCKED_TYPES = "BlockedEncryptionTypes"
CUSTOMER = "x-amz-server-side-encryption-customer-"
COPY_SOURCE_CUSTOMER = "x-amz-copy-source-server-side-encryption-customer-"

_NOT_APPLICABLE = "The encryption parameters are not applicable to this object."
_NEEDS_KEY = (
    "The object was stored using a form of Server Side Encryption. The correct parameters "
    "must be provided to retrieve the object."
)
# A part request (an UploadPart, UploadPartCopy or a completion that needs it) of an SSE-C
# upload without its key, and with another key than the upload's.
_PARTS_NEED_KEY = (
    "The multipart upload initiate requested encryption. Subsequent part requests must "
    "include the appropriate encryption parameters."
)
_KEY_MISMATCH = "The provided encryption parameters did not match the ones used originally."
_INSECURE = (
    "Requests specifying Server Side Encryption with Customer provided keys must be made "
    "over a secure connection."
)
_KMS = "SSE-KMS (aws:kms) is not implemented; SSE-S3 (AES256) and SSE-C are."


def customer_key(svc: S3Context, req: S3Request, prefix: str = CUSTOMER) -> CustomerKey | None:
    """The SSE-C key a request carries under `prefix`, checked as S3 checks it; None if none."""
    return _customer_key_in(svc, req.http.headers, req.secure, prefix)


def _customer_key_in(
    svc: S3Context, h: Mapping[str, str], secure: bool, prefix: str = CUSTOMER
) -> CustomerKey | None:
    """The SSE-C key in a request's headers (or a form's fields), checked as S3 checks it."""
    names = [prefix + "algorithm", prefix + "key", prefix + "key-md5"]
    present = [n for n in names if n in h]
    if not present:
        return None
    if not secure and not svc.settings.encryption.sse_c_over_http:
        raise S3Error("InvalidRequest", _INSECURE)
    algorithm = h.get(names[0])
    if algorithm is None:
        raise S3Error(
            "InvalidArgument",
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide a valid encryption algorithm.",
            extra={"ArgumentName": names[0]},
        )
    if algorithm != "AES256":
        raise S3Error(
            "InvalidEncryptionAlgorithmError",
            "The encryption request you specified is not valid. The valid value is AES256.",
            extra={"ArgumentName": names[0], "ArgumentValue": algorithm[:64]},
        )
    raw_key, md5 = h.get(names[1]), h.get(names[2])
    if raw_key is None:
        raise S3Error(
            "InvalidArgument",
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide an appropriate secret key.",
            extra={"ArgumentName": names[1]},
        )
    try:
        key = base64.b64decode(raw_key, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise S3Error(
            "InvalidArgument",
            "The secret key was invalid for the specified algorithm.",
            extra={"ArgumentName": names[1]},
        )
    if md5 is None:
        raise S3Error(
            "InvalidArgument",
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide the client calculated MD5 of the secret key.",
            extra={"ArgumentName": names[2]},
        )
    if md5.strip() != base64.b64encode(hashlib.md5(key).digest()).decode():
        raise S3Error(
            "InvalidArgument",
            "The calculated MD5 hash of the key did not match the hash that was provided.",
            extra={"ArgumentName": names[2]},
        )
    return CustomerKey(key)


def _requested_mode(headers: Mapping[str, str]) -> str | None:
    value = headers.get(SSE_HEADER)
    if value is None:
        return None
    if value == "AES256":
        return SSE_S3
    if value.startswith("aws:kms"):
        raise S3Error("NotImplemented", _KMS)
    raise S3Error(
        "InvalidArgument",
        "The encryption method specified is not supported",
        extra={"ArgumentName": SSE_HEADER, "ArgumentValue": value[:64]},
    )


def write_spec(svc: S3Context, req: S3Request, bucket: md.Bucket) -> SealSpec | None:
    """How a new object (PutObject, CopyObject, CreateMultipartUpload) is to be sealed."""
    return _spec_of(svc, req.http.headers, req.secure, bucket)


def form_spec(
    svc: S3Context, fields: Mapping[str, str], secure: bool, bucket: md.Bucket
) -> SealSpec | None:
    """How a browser form upload (POST Object) is to be sealed: by its fields as PutObject
    by its headers (`x-amz-server-side-encryption`, or a customer key as SSE-C, over TLS as
    S3 requires), else the bucket's or the server's default. A customer key is a field
    like any other: the form's policy must name it (S3's rule for every field)."""
    return _spec_of(svc, fields, secure, bucket)


def _spec_of(
    svc: S3Context, h: Mapping[str, str], secure: bool, bucket: md.Bucket
) -> SealSpec | None:
    customer = _customer_key_in(svc, h, secure)
    mode = _requested_mode(h)
    if customer is not None:
        if _blocks_sse_c(bucket):
            # S3's answer to an SSE-C write into a bucket whose encryption blocks it.
            raise S3Error("AccessDenied")
        if mode is not None:
            raise S3Error(
                "InvalidArgument",
                "Server Side Encryption with Customer provided key is incompatible with the "
                "encryption method specified",
                extra={"ArgumentName": SSE_HEADER},
            )
        return SealSpec(SSE_C, customer)
    if mode is not None:
        return SealSpec(mode)
    return default_spec(svc, bucket)


def _blocks_sse_c(bucket: md.Bucket) -> bool:
    """Whether the bucket's encryption configuration blocks SSE-C for new objects."""
    rule = bucket.settings.get(BUCKET_ENCRYPTION)
    return isinstance(rule, dict) and "SSE-C" in (rule.get(BLOCKED_TYPES) or ())


def default_spec(svc: S3Context, bucket: md.Bucket) -> SealSpec | None:
    """The bucket's default encryption, else the server's."""
    rule = bucket.settings.get(BUCKET_ENCRYPTION)
    if isinstance(rule, dict) and rule.get("SSEAlgorithm") == "AES256":
        return SealSpec(SSE_S3)
    if svc.settings.encryption.default == "AES256":
        return SealSpec(SSE_S3)
    return None


def changes_encryption(req: S3Request) -> bool:
    """A CopyObject that names an encryption (so a copy onto itself is legal)."""
    h = req.http.headers
    return SSE_HEADER in h or CUSTOMER + "algorithm" in h


def refuse_on_read(req: S3Request) -> None:
    """x-amz-server-side-encryption on a read: S3 rejects it (it is a write's header)."""
    if SSE_HEADER in req.http.headers:
        raise S3Error(
            "InvalidArgument",
            "x-amz-server-side-encryption header is not supported for this operation.",
            extra={"ArgumentName": SSE_HEADER},
        )


async def read_key(
    svc: S3Context, req: S3Request, obj: md.ObjectVersion, prefix: str = CUSTOMER
) -> CustomerKey | None:
    """The customer key a read of obj needs (checked), or None for SSE-S3 and plaintext."""
    if prefix == CUSTOMER:
        refuse_on_read(req)
    customer = customer_key(svc, req, prefix)
    if seal_mode(obj.headers) != SSE_C:
        if customer is not None:
            raise S3Error("InvalidRequest", _NOT_APPLICABLE)
        return None
    sealing = svc.store.sealing
    if sealing is None:
        raise S3Error("InternalError")
    try:
        await sealing.check_key(obj, customer)
    except KeyRequired:
        raise S3Error("InvalidRequest", _NEEDS_KEY) from None
    except KeyMismatch:
        raise S3Error("AccessDenied", resource=req.resource) from None
    return customer


def response_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The encryption headers a write's answer carries, from the version's stored headers."""
    return {k: v for k, v in headers.items() if k.startswith("x-amz-server-side-encryption")}


def is_sealed(svc: S3Context, obj: md.ObjectVersion) -> bool:
    return svc.store.sealing is not None and svc.store.sealing.is_sealed(obj)


async def send_sealed(
    svc: S3Context,
    req: S3Request,
    obj: md.ObjectVersion,
    answer: tuple[int, dict[str, str], int, int],
    customer: CustomerKey | None,
) -> web.StreamResponse:
    """A sealed version's range (answer: status, headers, offset, count), opened chunk by
    chunk; a chunk that fails its tag ends the answer (500 before the headers went out, a
    cut connection after), never with wrong bytes."""
    status, headers, offset, count = answer
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_length = count
    sealing = svc.store.sealing
    if sealing is None:
        raise S3Error("InternalError")
    try:
        reader = await sealing.reader(obj, customer)
        chunks = reader.chunks(svc.store.executor, offset, count)
        first = await anext(chunks, b"")
    except (TamperedBlob, MasterKeyError) as exc:
        log.error("GET %s: %s", req.resource, exc)
        raise S3Error("InternalError") from None
    except FileNotFoundError:
        raise S3Error("NoSuchKey", resource=req.resource, extra={"Key": req.key}) from None
    await resp.prepare(req.http)
    sent = 0
    try:
        await resp.write(first)
        sent = len(first)
        async for chunk in chunks:
            await resp.write(chunk)
            sent += len(chunk)
    except (TamperedBlob, FileNotFoundError) as exc:
        log.error("GET %s: cut after %d bytes: %s", req.resource, sent, exc)
        transport = req.http.transport
        if transport is not None:
            with contextlib.suppress(OSError):
                transport.abort()
        raise ConnectionResetError("sealed object failed authentication") from None
    finally:
        req.body_sent = sent
    await resp.write_eof()
    return resp


class SealedWrite:
    """A write's blob id and data key; `customer`: the data key is derived from an SSE-C
    customer key. `record`: a new version's key material, stored by `keep_key` right
    before the version is committed (None: a part's, whose upload's record is stored)."""

    def __init__(
        self,
        blob_id: str,
        data_key: bytes,
        prefix: int = 0,
        *,
        customer: bool = False,
        record: SealRecord | None = None,
    ) -> None:
        self.blob_id = blob_id
        self._data_key = data_key
        self._prefix = prefix
        self._customer = customer
        self.record = record

    async def keep_key(self, sealing: Sealing) -> None:
        """The version's key material stored, as the last step before its commit. Not when
        the write begins: the sweep of records no version names (app.py,
        `_sweep_seal_records`) gives writes an hour, and a PUT sending its body for longer
        had its record taken for one of a write that died, then committed a version
        nothing opened."""
        assert self.record is not None
        await sealing.store_record(self.record, self._data_key)

    def wrap(self, writer: Any) -> Any:
        return SealingWriter(writer, self._data_key, self._prefix)

    def seal(self, data: bytes) -> bytes:
        return seal(self._data_key, data, self._prefix)

    def etag(self, md5: bytes) -> str:
        """The ETag of what this write stored, from its plaintext's MD5. SSE-C: not that MD5
        (as in S3), which anyone allowed to list the bucket reads without the key and could
        test a guess of the content against; an HMAC of it under the data key, which only
        the customer's key derives."""
        if not self._customer:
            return plain_etag(md5)
        return plain_etag(hmac.new(self._data_key, _ETAG_LABEL + md5, "sha256").digest()[:16])

    def checksum(self, value: str | None) -> str | None:
        """A checksum of what this write stored, as kept at rest: SSE-C, sealed under the
        data key (seal_checksum); otherwise as it is."""
        return seal_under(self._data_key if self._customer else None, value)


# What the data key of an SSE-C write authenticates to make its ETag (domain separation).
_ETAG_LABEL = b"s3torrent sse-c etag\x00"

# ---- checksums of SSE-C plaintext, kept sealed ----

# A sealed checksum at rest: this prefix (which no plain value, base64 with perhaps "-N",
# has), then base64 of a random nonce and the AES-GCM ciphertext and tag of the value.
_SEALED_CHECKSUM = "sealed:"
_CHECKSUM_LABEL = b"s3torrent sse-c checksum"
_NONCE = 12


def _checksum_cipher(data_key: bytes) -> AESGCM:
    # Its own key, derived from the data key: the data key's nonces are the chunks'.
    return AESGCM(hmac.new(data_key, _CHECKSUM_LABEL, "sha256").digest())


def seal_checksum(data_key: bytes, value: str) -> str:
    """`value` (a checksum of SSE-C plaintext) as kept at rest: encrypted under a key only
    the customer's key derives, so that the database tells nothing of the content. At most
    111 characters for the longest value (a COMPOSITE SHA-256 of 10,000 parts)."""
    nonce = secrets.token_bytes(_NONCE)
    box = _checksum_cipher(data_key).encrypt(nonce, value.encode(), _CHECKSUM_LABEL)
    return _SEALED_CHECKSUM + base64.b64encode(nonce + box).decode()


def open_checksum(data_key: bytes | None, value: str | None) -> str | None:
    """A stored checksum as the customer reads it: a sealed one opened with `data_key`
    (None without it), a plain one (any version's but SSE-C's, and an SSE-C version's
    written before checksums were sealed) as it is."""
    if value is None or not value.startswith(_SEALED_CHECKSUM):
        return value
    if data_key is None:
        return None
    raw = base64.b64decode(value[len(_SEALED_CHECKSUM) :])
    try:
        plain = _checksum_cipher(data_key).decrypt(raw[:_NONCE], raw[_NONCE:], _CHECKSUM_LABEL)
    except InvalidTag:
        log.error("a sealed checksum failed authentication")
        raise S3Error("InternalError") from None
    return plain.decode()


def _is_sealed_checksum(value: object) -> bool:
    return isinstance(value, str) and value.startswith(_SEALED_CHECKSUM)


async def open_checksums(
    svc: S3Context, obj: md.ObjectVersion, customer: CustomerKey | None
) -> md.ObjectVersion:
    """`obj` with its checksums (the object's and its parts') opened with the customer's
    key (as read_key checked it); obj itself when none is sealed."""
    parts = obj.parts or []
    if not _is_sealed_checksum(obj.checksum_value) and not any(
        _is_sealed_checksum(p.get("checksum")) for p in parts
    ):
        return obj
    sealing = svc.store.sealing
    data_key = None
    if customer is not None and sealing is not None:
        data_key = sealing.data_key(await sealing.record_of(obj.version_id), customer)
    return dataclasses.replace(
        obj,
        checksum_value=open_checksum(data_key, obj.checksum_value),
        parts=[_opened_part(p, data_key) for p in parts] if obj.parts is not None else None,
    )


def _opened_part(part: dict[str, Any], data_key: bytes | None) -> dict[str, Any]:
    if not _is_sealed_checksum(part.get("checksum")):
        return part
    opened = {k: v for k, v in part.items() if k != "checksum"}
    value = open_checksum(data_key, part["checksum"])
    return opened if value is None else {**opened, "checksum": value}


def seal_under(data_key: bytes | None, value: str | None) -> str | None:
    """`value` sealed under an SSE-C `data_key` (check_completion_key's), or as it is."""
    if data_key is None or value is None:
        return value
    return seal_checksum(data_key, value)


def checksum_at_rest(sealed: SealedWrite | None, value: str | None) -> str | None:
    """How a new object's or part's checksum `value` is kept, sealed as `sealed`."""
    return sealed.checksum(value) if sealed is not None else value


def plain_etag(md5: bytes) -> str:
    """S3's ETag of a plaintext (or SSE-S3) object or part: its MD5 in hex, quoted."""
    return f'"{md5.hex()}"'


def etag_of(sealed: SealedWrite | None, md5: bytes) -> str:
    """The ETag of a new object or part whose plaintext has MD5 `md5`, sealed as `sealed`."""
    return sealed.etag(md5) if sealed is not None else plain_etag(md5)


async def prepare_write(
    svc: S3Context, req: S3Request, headers: dict[str, str], hasher: _H
) -> tuple[dict[str, str], _H | None, SealedWrite | None]:
    """PutObject: the stored headers, torrent hasher and sealing of a new version, as its
    request (or bucket, or the server) asks for encryption."""
    assert req.bucket is not None
    return await prepare_sealed(svc, write_spec(svc, req, req.bucket), headers, hasher)


async def prepare_sealed(
    svc: S3Context, spec: SealSpec | None, headers: dict[str, str], hasher: _H
) -> tuple[dict[str, str], _H | None, SealedWrite | None]:
    """A new version's stored headers, torrent hasher and sealing for `spec`."""
    headers = without_seal_headers(headers)
    if spec is None:
        return headers, hasher, None
    sealing = svc.store.sealing
    if sealing is None:
        raise S3Error("InternalError")
    blob_id = svc.store.new_version_id()
    record, data_key = sealing.new_record(blob_id, spec)
    # An SSE-C object never has a torrent: its piece hashes could only leak its content.
    kept = None if spec.mode == SSE_C else hasher
    sealed = SealedWrite(blob_id, data_key, customer=spec.mode == SSE_C, record=record)
    return {**headers, **spec.headers()}, kept, sealed


async def keep_key(svc: S3Context, sealed: SealedWrite | None) -> None:
    """A new version's key material stored (SealedWrite.keep_key), if it is sealed: the
    writes of prepare_sealed call it right before they commit the version."""
    if sealed is not None:
        sealing = svc.store.sealing
        if sealing is None:
            raise S3Error("InternalError")
        await sealed.keep_key(sealing)


# ---- multipart uploads: every part sealed with the upload's data key ----


async def seal_upload(
    svc: S3Context, req: S3Request, bucket: md.Bucket
) -> tuple[str, dict[str, str]]:
    """CreateMultipartUpload: a new upload id, its key material (stored now) and the stored
    headers that mark the upload, and later its object, as sealed."""
    upload_id = secrets.token_hex(32)
    spec = write_spec(svc, req, bucket)
    if spec is None:
        return upload_id, {}
    sealing = svc.store.sealing
    if sealing is None:
        raise S3Error("InternalError")
    await sealing.seal_writer_for(upload_id, spec)
    return upload_id, spec.headers()


async def part_writer(
    svc: S3Context, req: S3Request, up: md.Upload, number: int
) -> SealedWrite | None:
    """UploadPart / UploadPartCopy: what seals part `number` of a sealed upload (SSE-C: the
    request must carry the upload's customer key) and makes its ETag; None for a plaintext
    upload."""
    customer = customer_key(svc, req)
    mode = seal_mode(up.headers)
    if mode != SSE_C and customer is not None:
        # A plaintext or SSE-S3 upload: the key would seal nothing (never ignored).
        raise S3Error("InvalidRequest", _NOT_APPLICABLE)
    if mode is None:
        return None
    sealing = svc.store.sealing
    if sealing is None:
        raise S3Error("InternalError")
    if mode == SSE_C and customer is None:
        raise S3Error("InvalidRequest", _PARTS_NEED_KEY)
    try:
        data_key, _record = await sealing.upload_key(up.upload_id, customer)
    except KeyMismatch:
        raise S3Error("InvalidArgument", _KEY_MISMATCH) from None
    return SealedWrite("", data_key, prefix=number, customer=mode == SSE_C)


async def check_completion_key(svc: S3Context, req: S3Request, up: md.Upload) -> bytes | None:
    """CompleteMultipartUpload's and ListParts' SSE-C headers. S3 asks for them only when the
    upload has a checksum algorithm (its checksums are sealed with the key); when sent they
    must be the upload's own key, and for an upload that is not SSE-C they are refused,
    never ignored. Returns the SSE-C upload's data key when its key was sent (what its
    parts' checksums are sealed under: open_checksum, seal_checksum), else None."""
    return await _completion_key(
        svc, req, up.headers, up.upload_id, needs_key=bool(up.checksum_algorithm)
    )


async def check_retry_key(
    svc: S3Context, req: S3Request, version: md.ObjectVersion
) -> bytes | None:
    """A retried completion's SSE-C headers, checked as the completion checked them, against
    the version it made (which has its upload's data key): the data key when the key was
    sent, else None (the retry is then answered without the sealed checksum)."""
    return await _completion_key(svc, req, version.headers, version.version_id, needs_key=False)


async def _completion_key(
    svc: S3Context, req: S3Request, headers: Mapping[str, str], owner: str, *, needs_key: bool
) -> bytes | None:
    customer = customer_key(svc, req)
    if seal_mode(headers) != SSE_C:
        if customer is not None:
            raise S3Error("InvalidRequest", _NOT_APPLICABLE)
        return None
    if customer is None:
        if needs_key:
            raise S3Error("InvalidRequest", _PARTS_NEED_KEY)
        return None
    sealing = svc.store.sealing
    if sealing is None:
        raise S3Error("InternalError")
    try:
        data_key, _record = await sealing.upload_key(owner, customer)
    except KeyMismatch:
        raise S3Error("InvalidArgument", _KEY_MISMATCH) from None
    return data_key


# A completion's answer as kept for its retry: an SSE-C object's checksum element sealed.
_SEALED_ELEMENT = re.compile(rb"<(Checksum[A-Z0-9]+)>(sealed:[A-Za-z0-9+/=]+)</\1>")
_CHECKSUM_TYPE = re.compile(rb"<ChecksumType>[A-Z_]+</ChecksumType>")


def open_answer(data_key: bytes | None, answer: bytes) -> bytes:
    """A completion's kept answer (XML) as its retry gets it: the sealed checksum opened with
    `data_key` (check_retry_key's); without it, the checksum and its type left out."""
    if not _SEALED_ELEMENT.search(answer):
        return answer
    if data_key is None:
        return _CHECKSUM_TYPE.sub(b"", _SEALED_ELEMENT.sub(b"", answer))

    def opened(match: re.Match[bytes]) -> bytes:
        name, value = match.group(1), open_checksum(data_key, match.group(2).decode())
        assert value is not None
        return b"<%s>%s</%s>" % (name, value.encode(), name)

    return _SEALED_ELEMENT.sub(opened, answer)


def join_parts(up: md.Upload, parts: Sequence[md.Part]) -> list[tuple[str, int]]:
    """CompleteMultipartUpload: the part blobs to join, with their sizes at rest."""
    if seal_mode(up.headers) is None:
        return [(p.blob_id, p.size) for p in parts]
    return [(p.blob_id, sealed_size(p.size)) for p in parts]


async def keep_joined_key(
    svc: S3Context, up: md.Upload, version_id: str, parts: Sequence[md.Part]
) -> None:
    """CompleteMultipartUpload of a sealed upload: the new version's key material, stored
    once its parts are joined, right before its commit (as SealedWrite.keep_key: a join
    that copies a large object may outlast the sweep's hour)."""
    if seal_mode(up.headers) is None or svc.store.sealing is None:
        return
    segments = [Segment(p.part_number, p.size) for p in parts]
    await svc.store.sealing.record_joined(up.upload_id, version_id, segments)
