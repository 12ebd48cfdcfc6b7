"""Metadata store: the key material of encrypted object versions and multipart uploads."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store import queries as q
from s3torrent.store.meta_base import SqlStoreBase
from s3torrent.store.schema import sse_keys, uploads
from s3torrent.store.sealed_format import Segment

SSE_S3 = "AES256"
SSE_C = "SSE-C"


@dataclass(frozen=True, slots=True)
class SealRecord:
    """How one blob (or every part blob of an upload) is sealed; never the key itself for
    SSE-C, and for SSE-S3 only the data key wrapped by master key `key_id`."""

    owner: str
    mode: str
    key_id: str | None = None
    wrapped_key: bytes | None = None
    salt: bytes | None = None
    key_hmac: bytes | None = None
    segments: tuple[Segment, ...] | None = None

    def layout(self, size: int) -> tuple[Segment, ...]:
        """The blob's segments (a single PUT or copy: one, prefix 0, the object's size)."""
        return self.segments if self.segments is not None else (Segment(0, size),)

    def to_row(self) -> dict[str, Any]:
        segs = (
            json.dumps([[s.prefix, s.size] for s in self.segments])
            if self.segments is not None
            else None
        )
        return {
            "owner": self.owner,
            "mode": self.mode,
            "key_id": self.key_id,
            "wrapped_key": self.wrapped_key,
            "salt": self.salt,
            "key_hmac": self.key_hmac,
            "segments": segs,
            "created_at": time.time(),
        }

    @classmethod
    def from_row(cls, m: Any) -> SealRecord:
        segs = m["segments"]
        return cls(
            owner=m["owner"],
            mode=m["mode"],
            key_id=m["key_id"],
            wrapped_key=bytes(m["wrapped_key"]) if m["wrapped_key"] is not None else None,
            salt=bytes(m["salt"]) if m["salt"] is not None else None,
            key_hmac=bytes(m["key_hmac"]) if m["key_hmac"] is not None else None,
            segments=tuple(Segment(int(p), int(n)) for p, n in json.loads(segs)) if segs else None,
        )


class SealMetadata(Protocol):
    async def seal_record(self, owner: str) -> SealRecord | None: ...

    async def put_seal_record(self, record: SealRecord) -> None: ...

    async def seal_records_not_wrapped_by(self, key_id: str, limit: int) -> list[SealRecord]: ...

    async def rewrap_seal_records(self, records: Sequence[SealRecord]) -> None: ...

    async def seal_key_ids(self) -> set[str]: ...

    def seal_key_ids_now(self) -> set[str]: ...

    async def drop_unreferenced_seal_records(self, created_before: float | None = None) -> int: ...


class SqlSeals(SqlStoreBase):
    async def seal_record(self, owner: str) -> SealRecord | None:
        def read(conn: Connection) -> SealRecord | None:
            row = conn.execute(sa.select(sse_keys).where(sse_keys.c.owner == owner)).first()
            return SealRecord.from_row(row._mapping) if row is not None else None

        return await self.db.read(read)

    async def put_seal_record(self, record: SealRecord) -> None:
        """Written (and durable) before the object or upload that needs it is committed."""

        def txn(conn: Connection) -> None:
            conn.execute(sse_keys.delete().where(sse_keys.c.owner == record.owner))
            conn.execute(sse_keys.insert().values(**record.to_row()))

        await self.db.write(txn)

    async def seal_records_not_wrapped_by(self, key_id: str, limit: int) -> list[SealRecord]:
        """SSE-S3 records whose data key another master key wraps (rotation's work list)."""

        def read(conn: Connection) -> list[SealRecord]:
            stmt = (
                sa.select(sse_keys)
                .where(sse_keys.c.key_id.is_not(None), sse_keys.c.key_id != key_id)
                .limit(limit)
            )
            return [SealRecord.from_row(r._mapping) for r in conn.execute(stmt)]

        return await self.db.read(read)

    async def rewrap_seal_records(self, records: Sequence[SealRecord]) -> None:
        def txn(conn: Connection) -> None:
            for r in records:
                conn.execute(
                    sse_keys.update()
                    .where(sse_keys.c.owner == r.owner)
                    .values(key_id=r.key_id, wrapped_key=r.wrapped_key)
                )

        await self.db.write(txn)

    async def seal_key_ids(self) -> set[str]:
        """The master keys some record is wrapped by."""
        return await self.db.read(_key_ids)

    def seal_key_ids_now(self) -> set[str]:
        """As seal_key_ids, blocking (at start, before the loop runs)."""
        return self.db.read_sync(_key_ids)

    async def drop_unreferenced_seal_records(self, created_before: float | None = None) -> int:
        """Records of versions and uploads that are gone (deleted, or a write that lost);
        only those made before `created_before` while writes may be in flight."""

        def txn(conn: Connection) -> int:
            live = q.referenced_blob_ids(conn)
            live |= {r[0] for r in conn.execute(sa.select(uploads.c.upload_id))}
            stmt = sa.select(sse_keys.c.owner)
            if created_before is not None:
                stmt = stmt.where(sse_keys.c.created_at < created_before)
            owners = [r[0] for r in conn.execute(stmt)]
            dead = [o for o in owners if o not in live]
            for i in range(0, len(dead), 500):
                conn.execute(sse_keys.delete().where(sse_keys.c.owner.in_(dead[i : i + 500])))
            return len(dead)

        return await self.db.write(txn)


def _key_ids(conn: Connection) -> set[str]:
    stmt = sa.select(sse_keys.c.key_id).where(sse_keys.c.key_id.is_not(None)).distinct()
    return {str(r[0]) for r in conn.execute(stmt)}
