"""Metadata store: multipart uploads and their parts."""

from __future__ import annotations

import dataclasses
import time
from typing import Protocol

from sqlalchemy.engine import Connection

from s3torrent.store import queries as q
from s3torrent.store import version_queries as vq
from s3torrent.store.conditions import NO_CONDITION, WriteCondition
from s3torrent.store.errors import NoSuchUpload, PartChanged
from s3torrent.store.listing import common_prefix, past_all
from s3torrent.store.meta_base import SqlStoreBase
from s3torrent.store.rows import Committed, ObjectVersion, Part, Upload, UploadReceipt

# Rows read per query while scanning uploads.
SCAN_BATCH = 1000


class UploadMetadata(Protocol):
    async def create_upload(self, up: Upload, created_at: float | None = None) -> None: ...

    async def upload(self, upload_id: str) -> Upload | None: ...

    async def put_part(self, part: Part) -> str | None: ...

    async def list_parts(
        self, upload_id: str, after: int = 0, limit: int | None = None
    ) -> list[Part]: ...

    async def abort_upload(self, upload_id: str) -> list[str] | None: ...

    async def complete_upload(
        self,
        obj: ObjectVersion,
        upload_id: str,
        joined: dict[int, str],
        condition: WriteCondition = NO_CONDITION,
        receipt: UploadReceipt | None = None,
    ) -> tuple[Committed, list[str]]: ...

    async def upload_receipt(self, upload_id: str) -> UploadReceipt | None: ...

    async def expire_upload_receipts(self, completed_before: float) -> int: ...

    async def scan_uploads(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        key_marker: str,
        upload_id_marker: str,
        limit: int,
    ) -> tuple[list[Upload | str], bool]: ...

    async def stale_uploads(self, initiated_before: float, limit: int) -> list[str]: ...


class SqlUploads(SqlStoreBase):
    async def create_upload(self, up: Upload, created_at: float | None = None) -> None:
        """Start an upload; NoSuchBucket if its bucket is gone or (`created_at` given: the
        bucket the request was authorized against) is another bucket of its name since."""

        def txn(conn: Connection) -> None:
            WriteCondition(bucket_created=created_at).check_bucket(
                up.bucket, q.get_bucket(conn, up.bucket)
            )
            q.insert_upload(conn, up)

        await self.db.write(txn)

    async def upload(self, upload_id: str) -> Upload | None:
        return await self.db.read(lambda c: q.get_upload(c, upload_id))

    async def put_part(self, part: Part) -> str | None:
        """Record a part (replacing one with its number); returns the replaced blob id."""

        def txn(conn: Connection) -> str | None:
            if q.get_upload(conn, part.upload_id) is None:
                raise NoSuchUpload(part.upload_id)
            return q.put_part(conn, part)

        return await self.db.write(txn)

    async def list_parts(
        self, upload_id: str, after: int = 0, limit: int | None = None
    ) -> list[Part]:
        return await self.db.read(lambda c: q.list_parts(c, upload_id, after, limit))

    async def abort_upload(self, upload_id: str) -> list[str] | None:
        """Drop an upload; returns its part blob ids (None: no such upload)."""
        return await self.db.write(lambda c: q.delete_upload(c, upload_id))

    async def complete_upload(
        self,
        obj: ObjectVersion,
        upload_id: str,
        joined: dict[int, str],
        condition: WriteCondition = NO_CONDITION,
        receipt: UploadReceipt | None = None,
    ) -> tuple[Committed, list[str]]:
        """Make the joined object current and drop its upload, in one transaction; returns
        the version it replaced and the part blobs no longer needed. `joined` maps each part
        number to the blob that was joined: a part uploaded again meanwhile is PartChanged.
        `condition` is checked in the same transaction (see commit_version); when it fails
        the upload stays, so the client may retry. `receipt`, kept in the same transaction,
        is what a retry of this completion is answered."""

        def txn(conn: Connection) -> tuple[Committed, list[str]]:
            if q.get_upload(conn, upload_id) is None:
                raise NoSuchUpload(upload_id)
            now_parts = {p.part_number: p.blob_id for p in q.list_parts(conn, upload_id)}
            for number, blob_id in joined.items():
                if now_parts.get(number) != blob_id:
                    raise PartChanged(number)
            bucket = condition.check_bucket(obj.bucket, q.get_bucket(conn, obj.bucket))
            committed = vq.commit_object(conn, bucket, obj, condition, time.time())
            if receipt is not None:
                # The version id as the answer carries it (versioning.written_version_headers):
                # a version of its own; none for the null version (unversioned or suspended).
                version = committed.version
                vid = version.s3_version_id if version.versioned else None
                q.insert_receipt(conn, dataclasses.replace(receipt, version_id=vid), time.time())
            return committed, q.delete_upload(conn, upload_id) or []

        committed, released = await self.db.write(txn)
        self._written(committed.version, committed.replaced, False)
        return committed, released

    async def upload_receipt(self, upload_id: str) -> UploadReceipt | None:
        return await self.db.read(lambda c: q.get_receipt(c, upload_id))

    async def expire_upload_receipts(self, completed_before: float) -> int:
        return await self.db.write(lambda c: q.delete_receipts(c, completed_before))

    async def scan_uploads(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        key_marker: str,
        upload_id_marker: str,
        limit: int,
    ) -> tuple[list[Upload | str], bool]:
        return await self.db.read(
            lambda c: scan_uploads(
                c, bucket, prefix, delimiter, key_marker, upload_id_marker, limit
            )
        )

    async def stale_uploads(self, initiated_before: float, limit: int) -> list[str]:
        return await self.db.read(lambda c: q.stale_uploads(c, initiated_before, limit))


def scan_uploads(
    conn: Connection,
    bucket: str,
    prefix: str,
    delimiter: str,
    key_marker: str,
    upload_id_marker: str,
    limit: int,
) -> tuple[list[Upload | str], bool]:
    """Up to `limit` entries (an upload, or a common prefix string) and whether there are
    more. A common prefix is one seek past all of its uploads, whatever their number.
    A limit of 0 is an empty last page, as max-keys=0 is: "more" with no entry to page on
    from would have a client ask for the same page again, forever."""
    entries: list[Upload | str] = []
    if limit == 0:
        return entries, False
    km: bytes | None = key_marker.encode() if key_marker else None
    um: str | None = upload_id_marker if key_marker else None
    if key_marker and common_prefix(key_marker, prefix, delimiter) == key_marker:
        # A page ended on this common prefix: the next goes on past all of its uploads (any
        # other marker is behind its own key's only).
        km, um = past_all(key_marker), None
    size = min(SCAN_BATCH, limit + 1)  # one more than a page tells it is truncated
    while True:
        batch = q.list_uploads(conn, bucket, prefix.encode(), km, um, size)
        for up in batch:
            if not up.key.startswith(prefix):
                return entries, False
            if len(entries) == limit:
                return entries, True
            common = common_prefix(up.key, prefix, delimiter)
            if common is not None:
                entries.append(common)
                # The next rows may well be another prefix's: read a few before a seek.
                km, um, size = past_all(common), None, 8
                break
            entries.append(up)
            km, um = up.key.encode(), up.upload_id
        else:
            if len(batch) < size:
                return entries, False
            size = min(SCAN_BATCH, size * 4)
