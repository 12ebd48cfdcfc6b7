"""Blobs in any S3-compatible store (MinIO, Ceph RGW, AWS S3), under s3://bucket/prefix.

Layout: PREFIX/blobs/VERSION_ID. A write streams to the backend in parts of `part_size`
(bounded memory per upload) as a multipart upload straight at its final key when the caller
named the version up front, and becomes visible there at CompleteMultipartUpload (the
equivalent of the local rename); the metadata commit after it is the commit point as on
disk. A write smaller than one part is a single PUT at commit. Crashed writes leave
unfinished multipart uploads, which startup cleanup aborts once they are older than
`orphan_grace` (another node may be writing them right now).

Reads are ranged GETs. Reads smaller than `read_ahead` (the seeder's 16 KiB blocks) fetch an
aligned `read_ahead` block and keep it in a bounded LRU cache, so a peer downloading a piece
costs one backend request per block instead of one per 16 KiB.

boto3 rather than aiobotocore: the BlobStore interface is blocking by design (its callers run
it on worker threads, like local file I/O), so an async client would need a private event
loop per thread to be driven from there; boto3's client is thread-safe and pools
connections, which is what the worker threads need.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MiB = 1024 * 1024
MIN_PART = 5 * MiB  # S3's smallest part but the last
MAX_PART = 5 * 1024 * MiB  # S3's largest part (and largest single copy)


@dataclass(frozen=True, slots=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """s3://bucket/some/prefix -> (bucket, 'some/prefix/')."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
        prefix = parts.path.strip("/")
        return cls(parts.netloc, f"{prefix}/" if prefix else "")


def make_client(
    *,
    endpoint_url: str | None,
    region: str,
    access_key: str | None,
    secret_key: str | None,
    max_connections: int = 32,
    connect_timeout: float = 5.0,
    read_timeout: float = 15.0,
    max_attempts: int = 3,
) -> Any:
    """A client whose every call is bounded: a backend that stops answering fails it within
    about max_attempts * (connect_timeout or read_timeout), never botocore's 60 s per read
    tried five times."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(
            max_pool_connections=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # Path style: MinIO and most self-hosted endpoints have no wildcard DNS.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        ),
    )


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _check_range(content_range: str | None, offset: int, data: bytes) -> None:
    """That a ranged GET's body is the range asked for, whole: a backend (or a proxy) that
    ignored the Range or cut the body under a matching Content-Length would otherwise
    hand back other bytes, or a short block taken for the blob's end (and cached)."""
    from botocore.exceptions import IncompleteReadError

    first, _, last = (content_range or "").removeprefix("bytes ").partition("/")[0].partition("-")
    if not (first.isdigit() and last.isdigit()) or int(first) != offset:
        raise IncompleteReadError(actual_bytes=len(data), expected_bytes=-1)
    expected = int(last) - int(first) + 1
    if len(data) != expected:
        raise IncompleteReadError(actual_bytes=len(data), expected_bytes=expected)


def _multipart_etag(parts: list[dict[str, Any]]) -> str | None:
    """The ETag S3 gives the object these parts complete: the MD5 of their MD5s, and how
    many there are (None if a part's ETag is no MD5)."""
    try:
        digests = b"".join(bytes.fromhex(str(p["ETag"]).strip('"')) for p in parts)
    except ValueError:
        return None
    return f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(parts)}"


class S3BlobWriter:
    """One blob on its way to the backend, in parts of at most `part_size` bytes."""

    def __init__(self, store: S3BlobStore, version_id: str | None) -> None:
        self._store = store
        self._client = store.client
        # Named up front: write at the final key. Otherwise at a temporary key, copied
        # inside the backend at commit.
        self.key = store.key_for(version_id) if version_id else store.tmp_key()
        self._buf = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.size = 0

    # ---- writing ----

    def write(self, data: bytes | memoryview) -> None:
        self._buf += data
        self.size += len(data)
        part = self._store.part_size
        while len(self._buf) >= part:
            self._upload_part(bytes(self._buf[:part]))
            del self._buf[:part]

    def append_blob(self, blob_id: str, offset: int, length: int) -> None:
        """Append a range of another blob; large ranges are copied inside the backend."""
        src = self._store.key_for(blob_id)
        end = offset + length
        while offset < end:
            remaining = end - offset
            if not self._buf and remaining >= MIN_PART:
                n = min(remaining, MAX_PART)
                self._copy_part(src, offset, n)
                self.size += n
            else:
                # Top the buffer up to a legal part from the source, then copy the rest.
                n = min(remaining, self._store.part_size - len(self._buf))
                data = self._store.read_direct(blob_id, offset, n)
                if len(data) != n:
                    raise FileNotFoundError(f"blob {blob_id} is shorter than expected")
                self.write(data)
            offset += n

    def _start(self) -> str:
        if self._upload_id is None:
            resp = self._client.create_multipart_upload(Bucket=self._store.bucket, Key=self.key)
            self._upload_id = str(resp["UploadId"])
        return self._upload_id

    def _upload_part(self, data: bytes) -> None:
        upload_id = self._start()
        number = len(self._parts) + 1
        resp = self._client.upload_part(
            Bucket=self._store.bucket,
            Key=self.key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
        )
        self._parts.append({"ETag": resp["ETag"], "PartNumber": number})

    def _copy_part(self, src_key: str, offset: int, length: int) -> None:
        upload_id = self._start()
        number = len(self._parts) + 1
        try:
            resp = self._client.upload_part_copy(
                Bucket=self._store.bucket,
                Key=self.key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": self._store.bucket, "Key": src_key},
                CopySourceRange=f"bytes={offset}-{offset + length - 1}",
            )
        except Exception as exc:
            if _error_code(exc) in ("NoSuchKey", "404", "InvalidRange"):
                raise FileNotFoundError(f"blob {src_key} is gone or shorter") from exc
            raise
        self._parts.append({"ETag": resp["CopyPartResult"]["ETag"], "PartNumber": number})

    # ---- finishing ----

    def commit(self, version_id: str) -> None:
        store = self._store
        target = store.key_for(version_id)
        if self._upload_id is None:
            # Under one part: a single PUT, straight at the final key.
            store.client.put_object(Bucket=store.bucket, Key=target, Body=bytes(self._buf))
            self._buf.clear()
            return
        if self._buf:
            self._upload_part(bytes(self._buf))
            self._buf.clear()
        try:
            store.client.complete_multipart_upload(
                Bucket=store.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        except Exception:
            if not self._completed_already():
                raise
        self._upload_id = None
        if self.key != target:
            store.copy_within(self.key, target, self.size)
            store.client.delete_object(Bucket=store.bucket, Key=self.key)

    def _completed_already(self) -> bool:
        """Whether the key holds this upload completed: the backend did complete it and its
        answer was lost, so the retry met an upload that is no more (NoSuchUpload). The key
        is this writer's alone (a fresh version id), and the multipart ETag names exactly
        these parts."""
        try:
            head = self._client.head_object(Bucket=self._store.bucket, Key=self.key)
        except Exception:
            return False
        expected = _multipart_etag(self._parts)
        return bool(
            expected is not None
            and head.get("ContentLength") == self.size
            and str(head.get("ETag", "")).strip('"') == expected
        )

    def abort(self) -> None:
        self._buf.clear()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            try:
                self._store.client.abort_multipart_upload(
                    Bucket=self._store.bucket, Key=self.key, UploadId=upload_id
                )
            except Exception as exc:  # left for startup cleanup
                if _error_code(exc) != "NoSuchUpload":
                    raise


class _BlockCache:
    """Bounded LRU of (version id, block number) -> bytes; one fetch per missing block."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._size = 0
        self._inflight: dict[tuple[str, int], Future[bytes]] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, int], fetch: Callable[[], bytes]) -> bytes:
        with self._lock:
            data = self._blocks.get(key)
            if data is not None:
                self._blocks.move_to_end(key)
                self.hits += 1
                return data
            waiting = self._inflight.get(key)
            if waiting is None:
                mine: Future[bytes] = Future()
                self._inflight[key] = mine
                self.misses += 1
        if waiting is not None:
            return waiting.result(timeout=120)
        try:
            data = fetch()
        except BaseException as exc:
            with self._lock:
                self._inflight.pop(key, None)
            mine.set_exception(exc)
            raise
        with self._lock:
            self._inflight.pop(key, None)
            self._blocks[key] = data
            self._size += len(data)
            while self._size > self.capacity and self._blocks:
                _, old = self._blocks.popitem(last=False)
                self._size -= len(old)
        mine.set_result(data)
        return data

    def forget(self, version_id: str) -> None:
        with self._lock:
            for key in [k for k in self._blocks if k[0] == version_id]:
                self._size -= len(self._blocks.pop(key))


class S3BlobStore:
    """BlobStore on an S3-compatible backend; every call blocks (run it on a worker thread)."""

    def __init__(
        self,
        client: Any,
        location: S3Location,
        *,
        part_size: int = 8 * MiB,
        read_ahead: int = 1 * MiB,
        cache_bytes: int = 64 * MiB,
        orphan_grace: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.bucket = location.bucket
        self.prefix = location.prefix
        self.part_size = min(max(part_size, MIN_PART), MAX_PART)
        self.read_ahead = max(read_ahead, 16 * 1024)
        self.cache = _BlockCache(cache_bytes)
        self.orphan_grace = orphan_grace
        self._clock = clock

    def key_for(self, version_id: str) -> str:
        if not version_id.isalnum():
            raise ValueError("bad version id")
        return f"{self.prefix}blobs/{version_id}"

    def tmp_key(self) -> str:
        return f"{self.prefix}tmp/{secrets.token_hex(12)}"

    def prepare(self) -> None:
        self.ensure_bucket()

    def ensure_bucket(self) -> None:
        """Create the backend bucket if it does not exist (convenient for MinIO/tests)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
            self.client.create_bucket(Bucket=self.bucket)

    # ---- BlobStore ----

    def new_writer(self, version_id: str | None = None) -> S3BlobWriter:
        return S3BlobWriter(self, version_id)

    def local_path(self, version_id: str) -> Path | None:
        return None

    def read(self, version_id: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        if length >= self.read_ahead:
            return self.read_direct(version_id, offset, length)
        block = self.read_ahead
        first, last = offset // block, (offset + length - 1) // block
        out = bytearray()
        for number in range(first, last + 1):
            data = self.cache.get(
                (version_id, number),
                lambda n=number: self.read_direct(version_id, n * block, block),  # type: ignore[misc]
            )
            out += data
            if len(data) < block:
                break  # the end of the blob
        start = offset - first * block
        return bytes(out[start : start + length])

    def read_direct(self, version_id: str, offset: int, length: int) -> bytes:
        """One ranged GET, no cache (short at the end of the blob; b'' past it)."""
        if length <= 0:
            return b""
        try:
            resp = self.client.get_object(
                Bucket=self.bucket,
                Key=self.key_for(version_id),
                Range=f"bytes={offset}-{offset + length - 1}",
            )
        except Exception as exc:
            code = _error_code(exc)
            if code in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"blob {version_id} not found") from exc
            if code == "InvalidRange":
                return b""
            raise
        body = resp["Body"]
        try:
            data = bytes(body.read())
        finally:
            body.close()
        _check_range(resp.get("ContentRange"), offset, data)
        return data

    def copy_within(self, src_key: str, dst_key: str, size: int) -> None:
        """Copy inside the backend (CopyObject; multipart copy above 5 GiB)."""
        if size <= MAX_PART:
            self.client.copy_object(
                Bucket=self.bucket, Key=dst_key, CopySource={"Bucket": self.bucket, "Key": src_key}
            )
            return
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=dst_key)["UploadId"]
        parts = []
        for number, offset in enumerate(range(0, size, MAX_PART), start=1):
            end = min(size, offset + MAX_PART) - 1
            resp = self.client.upload_part_copy(
                Bucket=self.bucket,
                Key=dst_key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": src_key},
                CopySourceRange=f"bytes={offset}-{end}",
            )
            parts.append({"ETag": resp["CopyPartResult"]["ETag"], "PartNumber": number})
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=dst_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )

    def delete(self, version_id: str) -> None:
        self.cache.forget(version_id)
        self.client.delete_object(Bucket=self.bucket, Key=self.key_for(version_id))

    def _listing(self, prefix: str) -> Any:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def list_ids(self, older_than: float | None = None) -> list[str]:
        """Blob ids older than the grace period (younger ones may be another node's write
        between its blob commit and its metadata commit), and than `older_than`."""
        cutoff = self._clock() - self.orphan_grace
        if older_than is not None:
            cutoff = min(cutoff, older_than)
        base = f"{self.prefix}blobs/"
        return [
            item["Key"][len(base) :]
            for item in self._listing(base)
            if item["LastModified"].timestamp() < cutoff
        ]

    def clean_abandoned(self) -> int:
        """As at any start: the grace period (orphan_grace) already spares the writes in
        progress of other processes, of this node and of every other node."""
        return self.clean_temporary()

    def clean_failed(self) -> int:
        """A failed write whose abort met the same failure left an unfinished multipart
        upload: the grace period spares every write in flight, so this runs while serving."""
        return self.clean_temporary()

    def _idle_since(self, upload: dict[str, Any]) -> float:
        """When an unfinished multipart upload last received a part (its start if none): a
        write in flight sends one every part_size bytes, however long it has been going."""
        last: float = upload["Initiated"].timestamp()
        paginator = self.client.get_paginator("list_parts")
        pages = paginator.paginate(
            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )
        try:
            for page in pages:
                for part in page.get("Parts", []):
                    last = max(last, part["LastModified"].timestamp())
        except Exception as exc:
            if _error_code(exc) != "NoSuchUpload":
                raise
            return math.inf  # completed or aborted meanwhile: nothing to abort
        return last

    def clean_temporary(self) -> int:
        """Abort unfinished multipart uploads and drop temporary blobs past the grace period:
        uploads started before it that received no part since (another node's upload
        taking longer than the grace is still in flight)."""
        cutoff = self._clock() - self.orphan_grace
        removed = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for up in page.get("Uploads", []):
                if up["Initiated"].timestamp() < cutoff and self._idle_since(up) < cutoff:
                    try:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                        )
                        removed += 1
                    except Exception as exc:
                        if _error_code(exc) != "NoSuchUpload":
                            raise
        for item in self._listing(f"{self.prefix}tmp/"):
            if item["LastModified"].timestamp() < cutoff:
                self.client.delete_object(Bucket=self.bucket, Key=item["Key"])
                removed += 1
        return removed
