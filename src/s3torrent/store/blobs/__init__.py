"""Blob stores: where object bytes live, named by object-version id, never by key."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from s3torrent.config import Settings


class BlobWriter(Protocol):
    """A blob being written: appended to, then committed under a version id or aborted."""

    def write(self, data: bytes | memoryview) -> None: ...

    def commit(self, version_id: str) -> None:
        """Make the bytes durable and visible under version_id (blocking)."""
        ...

    def abort(self) -> None: ...

    def append_blob(self, blob_id: str, offset: int, length: int) -> None:
        """Append a range of a committed blob, copied inside the backend (no bytes through
        Python: copy_file_range locally, UploadPartCopy on S3)."""
        ...


class BlobStore(Protocol):
    """The blob interface every backend implements; calls block and run off the event loop."""

    def new_writer(self, version_id: str | None = None) -> BlobWriter:
        """A writer; version_id, when known, is the id it will most likely be committed
        under (a backend that cannot rename cheaply writes there directly)."""
        ...

    def local_path(self, version_id: str) -> Path | None:
        """A file path for zero-copy reads (sendfile), when the backend is local."""
        ...

    def read(self, version_id: str, offset: int, length: int) -> bytes: ...

    def delete(self, version_id: str) -> None: ...

    def list_ids(self, older_than: float | None = None) -> list[str]:
        """The committed blobs' ids; with `older_than` (epoch seconds), only of blobs put
        in place before then (a backend may leave out younger ones of its own accord)."""
        ...

    def clean_temporary(self) -> int:
        """Remove blobs of writes that never committed (after a crash); return how many.
        Only where no other process of the node writes (a fresh start)."""
        ...

    def clean_abandoned(self) -> int:
        """Remove blobs of writes that never committed whose writer is gone (a worker that
        died), while the node's other processes write; return how many."""
        ...

    def clean_failed(self) -> int:
        """Remove what writes that failed left (their abort failed too) once they are past
        the grace period, while every process of every node writes; return how many."""
        ...

    def prepare(self) -> None:
        """Create what the backend needs before the first write (an S3 bucket); blocking."""
        ...


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings name: blobs_url s3://bucket/prefix, else data_dir."""
    if settings.blobs_url:
        from s3torrent.store.blobs.s3 import S3BlobStore, S3Location, make_client

        b = settings.blobs
        return S3BlobStore(
            make_client(
                endpoint_url=b.endpoint_url,
                region=b.region,
                access_key=b.access_key,
                secret_key=b.secret_key,
                max_connections=b.max_connections,
                connect_timeout=b.connect_timeout,
                read_timeout=b.read_timeout,
                max_attempts=b.max_attempts,
            ),
            S3Location.parse(settings.blobs_url),
            part_size=b.part_size,
            read_ahead=b.read_ahead,
            cache_bytes=b.cache_bytes,
            orphan_grace=b.orphan_grace,
        )
    from s3torrent.store.blobs.local import LocalBlobStore

    return LocalBlobStore(settings.data_dir, fsync=settings.storage.fsync)
