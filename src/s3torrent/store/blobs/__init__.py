"""Blob stores: where object bytes live, named by object-version id, never by key."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class BlobWriter(Protocol):
    """A blob being written: appended to, then committed under a version id or aborted."""

    def write(self, data: bytes | memoryview) -> None: ...

    def commit(self, version_id: str) -> None:
        """Make the bytes durable and visible under version_id (blocking)."""
        ...

    def abort(self) -> None: ...


class BlobStore(Protocol):
    """The blob interface every backend implements; calls block and run off the event loop."""

    def new_writer(self) -> BlobWriter: ...

    def local_path(self, version_id: str) -> Path | None:
        """A file path for zero-copy reads (sendfile), when the backend is local."""
        ...

    def read(self, version_id: str, offset: int, length: int) -> bytes: ...

    def delete(self, version_id: str) -> None: ...

    def list_ids(self) -> list[str]: ...

    def clean_temporary(self) -> int:
        """Remove blobs of writes that never committed (after a crash); return how many."""
        ...
