"""Encryption at rest: which key seals a version, sealing writes, and opening reads.

An object version is sealed when its stored headers say so (`x-amz-server-side-encryption`
for SSE-S3, `x-amz-server-side-encryption-customer-algorithm` for SSE-C): the flag rides
on the object's own row, so a plaintext object costs no extra lookup and keeps sendfile.
The key material is a `SealRecord` keyed by the blob id (or, for multipart uploads, the
upload id), written before the version that needs it is committed.

SSE-S3: a random 256-bit data key per version (per upload for multipart), wrapped by the
master key. SSE-C: the data key is derived (HKDF-SHA256) from the customer's key and a
random salt, so one customer key used for many objects never repeats a (key, nonce) pair;
a salted HMAC of the customer's key tells a wrong key from a right one without storing it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from s3torrent.store import rows as md
from s3torrent.store.blobs import BlobStore
from s3torrent.store.blobs.local import close_when_idle, open_for_reading
from s3torrent.store.master_key import MasterKeyError, MasterKeys, WrappedKey
from s3torrent.store.meta_sealing import SSE_C, SSE_S3, SealRecord
from s3torrent.store.metastore import MetadataStore
from s3torrent.store.sealed_format import (
    AAD,
    CHUNK,
    KEY_SIZE,
    TAG,
    ChunkRef,
    ChunkSealer,
    Segment,
    TamperedBlob,
    chunk_refs,
    clip,
    nonce,
    open_chunk,
)
from s3torrent.store.user_secrets import secret_key_ids

log = logging.getLogger(__name__)
# Per I/O thread: the buffer sealed bytes are read into.
_scratch = threading.local()

SSE_HEADER = "x-amz-server-side-encryption"
SSE_C_ALGORITHM_HEADER = "x-amz-server-side-encryption-customer-algorithm"
SSE_C_MD5_HEADER = "x-amz-server-side-encryption-customer-key-md5"
# One blob read (and one thread hop) per this many plaintext bytes: 32 chunks, 2 MiB.
_READ_SPAN = 32 * CHUNK
# Opened chunks a reader keeps for partial reads (the seeder's blocks): 2 MiB.
_RECENT_CHUNKS = 32
# What a block read opens at once: its chunk and the next three (256 KiB).
_READ_AHEAD = 4 * CHUNK
# How often a sealed record is read again when the master key it names was just dropped.
_REREADS = 3

__all__ = ["SSE_C", "SSE_S3", "TamperedBlob"]


class KeyRequired(Exception):
    """An SSE-C version read without its customer key."""


class KeyMismatch(Exception):
    """An SSE-C version read with another customer key than the one that sealed it."""


@dataclass(frozen=True, slots=True)
class CustomerKey:
    """A customer's SSE-C key, as checked from its request headers (never stored)."""

    key: bytes

    @property
    def md5_b64(self) -> str:
        import base64

        return base64.b64encode(hashlib.md5(self.key).digest()).decode()


@dataclass(frozen=True, slots=True)
class SealSpec:
    """How a write wants its bytes sealed: SSE-S3, or SSE-C with this customer key."""

    mode: str
    customer: CustomerKey | None = None

    def headers(self) -> dict[str, str]:
        """The stored headers that mark (and on GET/HEAD announce) a sealed version."""
        if self.mode == SSE_S3:
            return {SSE_HEADER: "AES256"}
        assert self.customer is not None
        return {SSE_C_ALGORITHM_HEADER: "AES256", SSE_C_MD5_HEADER: self.customer.md5_b64}


def seal_mode(headers: Mapping[str, str]) -> str | None:
    """SSE_S3, SSE_C, or None (plaintext) for a version's (or an upload's) stored headers."""
    if SSE_C_ALGORITHM_HEADER in headers:
        return SSE_C
    if headers.get(SSE_HEADER) == "AES256":
        return SSE_S3
    return None


def without_seal_headers(headers: Mapping[str, str]) -> dict[str, str]:
    drop = {SSE_HEADER, SSE_C_ALGORITHM_HEADER, SSE_C_MD5_HEADER}
    return {k: v for k, v in headers.items() if k not in drop}


def _sse_c_data_key(customer: bytes, salt: bytes) -> bytes:
    kdf = HKDF(hashes.SHA256(), KEY_SIZE, salt, b"s3torrent sse-c data key")
    return kdf.derive(customer)


def _sse_c_check(customer: bytes, salt: bytes) -> bytes:
    return hmac.new(customer, b"s3torrent sse-c key check" + salt, hashlib.sha256).digest()


class SealingWriter:
    """A blob writer that seals what it is given in chunks (one segment, `prefix`)."""

    def __init__(self, writer: Any, key: bytes, prefix: int) -> None:
        self._writer = writer
        self._sealer = ChunkSealer(key, prefix)

    def write(self, data: bytes | memoryview) -> None:
        sealed = self._sealer.update(data)
        if sealed:
            self._writer.write(sealed)

    def commit(self, version_id: str) -> None:
        tail = self._sealer.finish()
        if tail:
            self._writer.write(tail)
        self._writer.commit(version_id)

    def abort(self) -> None:
        self._writer.abort()


class PlainReader:
    """Plaintext ranges of one sealed version: reads the chunks under them and opens each."""

    def __init__(
        self, blobs: BlobStore, obj: md.ObjectVersion, key: bytes, segments: Sequence[Segment]
    ) -> None:
        self._blobs = blobs
        self._obj = obj
        self._aead = AESGCM(key)
        self._segments = tuple(segments)
        # The seeder reads 16 KiB blocks, four to a chunk: the chunks opened last serve the
        # next blocks without opening (and authenticating) them again.
        self._recent: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._next_block = -1
        self._path = blobs.local_path(obj.version_id) if obj.inline is None else None

    def read(self, offset: int, length: int) -> bytes:
        """Plaintext [offset, offset+length) (blocking); TamperedBlob if any chunk is bad."""
        return bytes(self.read_buffer(offset, length))

    def read_buffer(self, offset: int, length: int, fd: int | None = None) -> bytes | bytearray:
        """As `read`, in a buffer of its own: whole chunks are opened straight into it.
        `fd`: the blob, held open by the caller (else it is opened for this read)."""
        hit = self.cached(offset, length)
        if hit is not None:
            return hit
        refs = list(chunk_refs(self._segments, offset, length))
        if len(refs) == 1 and length < refs[0].plain_size:
            # A block of a chunk (the seeder): open it whole for the chunk's other blocks
            # and, when the blocks come in order, the chunks after it too, in this one read.
            sequential = offset == self._next_block
            self._next_block = offset + length
            span = _READ_AHEAD if sequential else refs[0].plain_size
            ahead = list(chunk_refs(self._segments, refs[0].plain_start, span))
            self._fill([r for r in ahead if r.prefix == refs[0].prefix], fd)
            hit = self.cached(offset, length)
            if hit is not None:
                return hit
        out = bytearray(length)
        into = memoryview(out)
        pos = i = 0
        while i < len(refs):
            # Chunks that lie end to end in the blob: one read for up to _READ_SPAN of them.
            j = i + 1
            while (
                j < len(refs)
                and j - i < _READ_SPAN // CHUNK
                and refs[j].sealed_offset == refs[j - 1].sealed_offset + refs[j - 1].sealed_size
            ):
                j += 1
            run = refs[i:j]
            start = run[0].sealed_offset
            size = run[-1].sealed_offset + run[-1].sealed_size - start
            raw = memoryview(self._raw(start, size, fd))
            for ref in run:
                lo = ref.sealed_offset - start
                sealed = raw[lo : lo + ref.sealed_size]
                whole = (
                    ref.plain_start >= offset
                    and ref.plain_start + ref.plain_size <= offset + length
                )
                if whole and len(sealed) == ref.sealed_size:
                    self._open_into(ref, sealed, into[pos : pos + ref.plain_size])
                    pos += ref.plain_size
                else:
                    part = clip(ref, self._open_cached(ref, sealed), offset, length)
                    into[pos : pos + len(part)] = part
                    pos += len(part)
            i = j
        return out if pos == length else out[:pos]

    def _open_into(self, ref: ChunkRef, sealed: memoryview, into: memoryview) -> None:
        try:
            self._aead.decrypt_into(nonce(ref.prefix, ref.index), sealed, AAD, into)
        except InvalidTag:
            self._open(ref, sealed)  # logs and raises TamperedBlob
            raise

    def cached(self, offset: int, length: int) -> bytes | None:
        """A range inside one chunk opened a moment ago (no I/O: fine on the loop)."""
        refs = list(chunk_refs(self._segments, offset, length))
        if len(refs) != 1:
            return None
        with self._lock:
            hit = self._recent.get((refs[0].prefix, refs[0].index))
        return clip(refs[0], hit, offset, length) if hit is not None else None

    def _fill(self, refs: list[ChunkRef], fd: int | None = None) -> None:
        start = refs[0].sealed_offset
        size = refs[-1].sealed_offset + refs[-1].sealed_size - start
        raw = memoryview(self._raw(start, size, fd))
        for ref in refs:
            lo = ref.sealed_offset - start
            try:
                self._open_cached(ref, raw[lo : lo + ref.sealed_size])
            except TamperedBlob:
                if ref is refs[0]:
                    raise
                return  # a bad chunk ahead fails when it is asked for, not now

    def _open_cached(self, ref: ChunkRef, sealed: memoryview) -> bytes:
        with self._lock:
            plain = self._recent.get((ref.prefix, ref.index))
        if plain is None:
            plain = self._open(ref, sealed)
            with self._lock:
                self._recent[(ref.prefix, ref.index)] = plain
                while len(self._recent) > _RECENT_CHUNKS:
                    self._recent.popitem(last=False)
        return plain

    def _open(self, ref: ChunkRef, sealed: bytes | memoryview) -> bytes:
        try:
            return open_chunk(self._aead, ref, sealed)
        except TamperedBlob:
            log.error(
                "sealed object %s/%s (version %s) fails authentication at chunk %d/%d: "
                "its blob was changed or damaged; the read is refused",
                self._obj.bucket,
                self._obj.key,
                self._obj.version_id,
                ref.prefix,
                ref.index,
            )
            raise

    def _raw(self, offset: int, length: int, held: int | None = None) -> bytes | memoryview:
        """Sealed bytes of the blob; a local blob is read into this thread's scratch buffer
        (valid until this thread's next read), sparing an allocation per read. `held`: the
        local blob's descriptor, kept open by the caller."""
        if self._obj.inline is not None:
            return memoryview(self._obj.inline)[offset : offset + length]
        if self._path is None:
            return self._blobs.read(self._obj.version_id, offset, length)
        buf: bytearray | None = getattr(_scratch, "buf", None)
        if buf is None or len(buf) < length:
            buf = _scratch.buf = bytearray(max(length, _READ_SPAN + 32 * TAG))
        fd = held if held is not None else self._open_blob()
        try:
            n = os.preadv(fd, [memoryview(buf)[:length]], offset)
        finally:
            if held is None:
                os.close(fd)
        return memoryview(buf)[:n]

    def _open_blob(self) -> int:
        assert self._path is not None
        return open_for_reading(self._path)

    def _hold(self) -> int | None:
        """The local blob's descriptor for a read of many spans (None: inline or remote)."""
        return self._open_blob() if self._path is not None else None

    async def chunks(
        self, executor: concurrent.futures.Executor, offset: int, length: int
    ) -> AsyncIterator[bytes | bytearray]:
        """The range in 2 MiB pieces, each read and opened off the loop; the next piece is
        opened while the caller sends this one.

        A local blob is opened once, for the whole range: a version overwritten or deleted
        meanwhile has its blob deleted (ObjectStore.delete_blob_later), and a download
        under way must still get every byte of it, as S3 finishes a GET already begun.
        Until 2026-12-07 each piece opened the blob again, and a slow download of a sealed
        object overwritten meanwhile was cut about 2 s after the overwrite."""
        loop = asyncio.get_running_loop()
        end = offset + length
        held = await loop.run_in_executor(executor, self._hold)

        def start(at: int) -> concurrent.futures.Future[bytes | bytearray] | None:
            if at >= end:
                return None
            n = min(_READ_SPAN, end - at)
            return executor.submit(self.read_buffer, at, n, held)

        pending = start(offset)
        try:
            while pending is not None:
                data = await asyncio.wrap_future(pending)
                n = min(_READ_SPAN, end - offset)
                if len(data) != n:
                    raise TamperedBlob(f"version {self._obj.version_id} is shorter than its size")
                offset += n
                pending = start(offset)
                yield data
        finally:
            # Abandoned (the client went away): the read ahead is cancelled, or finishes
            # before the descriptor it reads is closed.
            if held is not None:
                close_when_idle(held, pending)
            elif pending is not None:
                pending.cancel()


class Sealing:
    """Data keys: made for new versions and uploads, found again (and checked) for reads."""

    def __init__(self, meta: MetadataStore, blobs: BlobStore, keys: MasterKeys) -> None:
        self.meta = meta
        self.blobs = blobs
        self.keys = keys

    # ---- writes ----

    def new_record(self, owner: str, spec: SealSpec) -> tuple[SealRecord, bytes]:
        """Key material for a new version or upload, and its data key."""
        if spec.mode == SSE_S3:
            data_key = secrets.token_bytes(KEY_SIZE)
            wrapped = self.keys.wrap(data_key)
            return (
                SealRecord(owner, SSE_S3, key_id=wrapped.key_id, wrapped_key=wrapped.blob),
                data_key,
            )
        assert spec.customer is not None
        salt = secrets.token_bytes(32)
        check = _sse_c_check(spec.customer.key, salt)
        record = SealRecord(owner, SSE_C, salt=salt, key_hmac=check)
        return record, _sse_c_data_key(spec.customer.key, salt)

    async def seal_writer_for(self, blob_id: str, spec: SealSpec) -> tuple[bytes, Any]:
        """A data key for blob (or upload) `blob_id`, its record stored now."""
        record, data_key = self.new_record(blob_id, spec)
        return data_key, await self.store_record(record, data_key)

    async def record_joined(
        self, upload_id: str, version_id: str, segments: Sequence[Segment]
    ) -> None:
        """The record of a version joined from upload `upload_id`'s parts (same data key)."""
        record, data_key = await self._opened(upload_id, None, need_key=False)
        joined = dataclasses.replace(record, owner=version_id, segments=tuple(segments))
        await self.store_record(joined, data_key)

    async def store_record(self, record: SealRecord, data_key: bytes | None) -> SealRecord:
        """Store `record`; an SSE-S3 one whose master key was retired before it was stored
        is wrapped again by the current key and stored again (MasterKeys.is_current), so
        no rotation can drop a key it is stored under. Returns the record as stored."""
        while True:
            await self.meta.put_seal_record(record)
            if record.key_id is None or self.keys.is_current(record.key_id):
                return record
            assert data_key is not None
            wrapped = self.keys.wrap(data_key)
            record = dataclasses.replace(record, key_id=wrapped.key_id, wrapped_key=wrapped.blob)

    # ---- reads ----

    @staticmethod
    def is_sealed(obj: md.ObjectVersion) -> bool:
        return seal_mode(obj.headers) is not None

    async def record_of(self, owner: str) -> SealRecord:
        record = await self.meta.seal_record(owner)
        if record is None:
            raise TamperedBlob(f"no key material for sealed {owner}")
        return record

    def data_key(self, record: SealRecord, customer: CustomerKey | None) -> bytes:
        """The data key of a record: unwrapped (SSE-S3) or derived from the checked key."""
        if record.mode == SSE_S3:
            assert record.key_id is not None and record.wrapped_key is not None
            return self.keys.unwrap(WrappedKey(record.key_id, record.wrapped_key))
        if customer is None:
            raise KeyRequired()
        assert record.salt is not None and record.key_hmac is not None
        if not hmac.compare_digest(_sse_c_check(customer.key, record.salt), record.key_hmac):
            raise KeyMismatch()
        return _sse_c_data_key(customer.key, record.salt)

    async def check_key(self, obj: md.ObjectVersion, customer: CustomerKey | None) -> None:
        """KeyRequired / KeyMismatch unless `customer` opens SSE-C version obj."""
        if seal_mode(obj.headers) == SSE_C:
            self.data_key(await self.record_of(obj.version_id), customer)

    async def reader(self, obj: md.ObjectVersion, customer: CustomerKey | None) -> PlainReader:
        record, key = await self._opened(obj.version_id, customer)
        assert key is not None
        return PlainReader(self.blobs, obj, key, record.layout(obj.size))

    async def upload_key(
        self, upload_id: str, customer: CustomerKey | None
    ) -> tuple[bytes, SealRecord]:
        """The data key every part of a sealed upload is sealed with."""
        record, key = await self._opened(upload_id, customer)
        assert key is not None
        return key, record

    async def _opened(
        self, owner: str, customer: CustomerKey | None, *, need_key: bool = True
    ) -> tuple[SealRecord, bytes | None]:
        """`owner`'s record and data key (None: an SSE-C record, when not `need_key`). A
        record read just before rotations re-wrapped it and dropped the key it named is
        read again (bounded), rather than failing a read or a write that is in order."""
        record = await self.record_of(owner)
        if record.mode != SSE_S3 and not need_key:
            return record, None
        for _ in range(_REREADS):
            try:
                return record, self.data_key(record, customer)
            except MasterKeyError:
                again = await self.record_of(owner)
                if again == record:
                    raise
                record = again
        return record, self.data_key(record, customer)

    # ---- rotation and cleanup ----

    async def rotate(self, batch: int = 500) -> tuple[int, int, int]:
        """A new master key, every SSE-S3 data key re-wrapped by it and every user's secret
        key sealed again under it (meta.user_secrets); retired keys that nothing is wrapped
        by (the previous rotations') leave the file. Returns (re-wrapped, re-sealed, keys
        dropped). One at a time, with the key file as it is then (MasterKeys.rotating)."""
        with self.keys.rotating():
            return await self._rotate(batch)

    async def _rotate(self, batch: int) -> tuple[int, int, int]:
        retired = set(self.keys.key_ids) - {self.keys.current}
        in_use = await self.meta.seal_key_ids()
        in_use |= secret_key_ids(await self.meta.stored_user_secrets())
        unused = retired - in_use
        self.keys.drop(unused)
        current = self.keys.add_new()
        done = 0
        while True:
            records = await self.meta.seal_records_not_wrapped_by(current, batch)
            if not records:
                break
            rewrapped = []
            for r in records:
                assert r.key_id is not None and r.wrapped_key is not None
                w = self.keys.rewrap(WrappedKey(r.key_id, r.wrapped_key))
                rewrapped.append(dataclasses.replace(r, key_id=w.key_id, wrapped_key=w.blob))
            await self.meta.rewrap_seal_records(rewrapped)
            done += len(rewrapped)
        return done, await self._reseal_user_secrets(), len(unused)

    async def _reseal_user_secrets(self) -> int:
        """Every user's secret key sealed under the current master key (one that does not
        open stays as it is, and keeps its master key in the file)."""
        user_secrets = self.meta.user_secrets
        if user_secrets is None:
            raise RuntimeError("rotation needs the users' secret keys opened first")
        stored = await self.meta.stored_user_secrets()
        resealed = 0
        for canonical_id, old, new in user_secrets.resealed(stored, clear_only=False):
            resealed += await self.meta.replace_user_secret(canonical_id, old, new)
        return resealed
