"""Metadata queries: each takes a Connection (or point reads); callers own transactions.

Only the metadata store (s3torrent.store) calls these: everything else asks the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store.conditions import NO_CONDITION, WriteCondition
from s3torrent.store.errors import ConditionalConflict
from s3torrent.store.rows import (
    Bucket,
    ObjectVersion,
    Part,
    Replaced,
    Upload,
    UploadReceipt,
    compact_json,
    encode_tags,
    version_reader,
)
from s3torrent.store.schema import (
    OBJECT_INFO_COLUMNS,
    buckets,
    leases,
    object_versions,
    objects,
    parts,
    torrent_marks,
    torrents,
    upload_receipts,
    uploads,
)
from s3torrent.store.sql import Prepared, Rows, _replace_row, insert_if_absent


def hold_lease(conn: Connection, name: str, holder: str, now: float, ttl: float) -> bool:
    """Take or renew the lease `name` for `holder` until now + ttl; False if another node
    holds it. One conditional UPDATE (or the first INSERT) decides, on any engine."""
    taken = conn.execute(
        leases.update()
        .where(
            leases.c.name == name,
            sa.or_(leases.c.holder == holder, leases.c.expires_at < now),
        )
        .values(holder=holder, expires_at=now + ttl)
    ).rowcount
    if taken:
        return True
    if conn.execute(sa.select(leases.c.name).where(leases.c.name == name)).first() is not None:
        return False
    conn.execute(leases.insert().values(name=name, holder=holder, expires_at=now + ttl))
    return True


# The object write path's statements, built once (see _replace_row for the protocol).
_LOCK_OBJECT = Prepared(
    sa.select(
        objects.c.version_id, objects.c.inline_data.is_(None).label("has_blob"), objects.c.etag
    )
    .where(objects.c.bucket == sa.bindparam("w_bucket"), objects.c.key == sa.bindparam("w_key"))
    .with_for_update()
)


def _replace_current() -> Prepared:
    """UPDATE of a key's current row with a new version's columns (w_bucket, w_key name the
    row). The key's own columns are left out of SET: SQLite then leaves the primary-key
    index alone, which took about a sixth of the statement (a 4 KiB inline overwrite, 31
    against 26 us). Every column set comes from the row given: none falls back to NULL."""
    stmt = Prepared(
        objects.update()
        .where(objects.c.bucket == sa.bindparam("w_bucket"), objects.c.key == sa.bindparam("w_key"))
        .values({c.name: None for c in objects.columns if c.name not in ("bucket", "key")})
    )
    stmt.defaults = {}
    return stmt


_UPDATE_OBJECT = _replace_current()
_DELETE_TORRENT = Prepared(torrents.delete().where(torrents.c.version_id == sa.bindparam("w_vid")))


# ---- queries (each takes a Connection; callers own transactions) ----


# The hot lookups of every request, built once: constructing a statement costs several times
# what SQLite takes to answer it.
_BUCKET_BY_NAME = Prepared(sa.select(buckets).where(buckets.c.name == sa.bindparam("name")))
_OBJECT_BY_KEY = Prepared(
    sa.select(objects).where(
        objects.c.bucket == sa.bindparam("bucket"), objects.c.key == sa.bindparam("key")
    )
)
_OBJECT_BY_VERSION = Prepared(sa.select(objects).where(objects.c.version_id == sa.bindparam("vid")))


def get_bucket(rows: Rows, name: str) -> Bucket | None:
    m = _BUCKET_BY_NAME.first(rows, {"name": name})
    return Bucket.from_mapping(m) if m is not None else None


def list_buckets(conn: Connection, owner_id: str | None) -> list[Bucket]:
    """Buckets by name in byte order, as S3 lists them: sorted here, since a database's
    ORDER BY follows its collation (PostgreSQL's en_US skips punctuation: "a1" < "a-b"),
    and ListBuckets pages by comparing names in Python."""
    q = sa.select(buckets)
    if owner_id is not None:
        q = q.where(buckets.c.owner_id == owner_id)
    return sorted((Bucket.from_row(r) for r in conn.execute(q)), key=lambda b: b.name)


def get_object(rows: Rows, bucket: str, key: str) -> ObjectVersion | None:
    m = _OBJECT_BY_KEY.first(rows, {"bucket": bucket, "key": key.encode("utf-8")})
    return ObjectVersion.from_mapping(m) if m is not None else None


# A bucket and the current version of one key, in one statement: every GET and HEAD needs
# both, and on SQLite each statement is a read transaction of its own. The object's columns
# are labelled (both tables have owner_id and acl) and read by position.
_BUCKET_COLUMNS = tuple(c.name for c in buckets.columns)
_OBJECT_COLUMNS = tuple(c.name for c in objects.columns)
_BUCKET_AND_OBJECT = Prepared(
    sa.select(*buckets.columns, *(c.label(f"o_{c.name}") for c in objects.columns))
    .select_from(
        buckets.outerjoin(
            objects,
            sa.and_(objects.c.bucket == buckets.c.name, objects.c.key == sa.bindparam("key")),
        )
    )
    .where(buckets.c.name == sa.bindparam("name"))
)
_NB = len(_BUCKET_COLUMNS)
_OBJECT_VERSION_ID = _NB + _OBJECT_COLUMNS.index("version_id")
_read_bucket_object = version_reader(tuple(("",) * _NB + _OBJECT_COLUMNS))


def get_bucket_and_object(
    rows: Rows, name: str, key: str
) -> tuple[Bucket | None, ObjectVersion | None]:
    """The bucket `name` (None if absent) and its current version of `key` (None if none)."""
    row = _BUCKET_AND_OBJECT.row(rows, {"name": name, "key": key.encode("utf-8")})
    if row is None:
        return None, None
    bucket = Bucket.from_mapping(dict(zip(_BUCKET_COLUMNS, row[:_NB], strict=True)))
    if row[_OBJECT_VERSION_ID] is None:
        return bucket, None
    return bucket, _read_bucket_object(row)


def get_object_by_version(rows: Rows, version_id: str) -> ObjectVersion | None:
    m = _OBJECT_BY_VERSION.first(rows, {"vid": version_id})
    return ObjectVersion.from_mapping(m) if m is not None else None


_TORRENT_MARK = Prepared(
    sa.select(torrent_marks.c.bucket).where(
        torrent_marks.c.bucket == sa.bindparam("bucket"),
        torrent_marks.c.key == sa.bindparam("key"),
    )
)


def torrent_marked(rows: Rows, bucket: str, key: str) -> bool:
    """Whether a torrent of this key was ever published (schema.torrent_marks)."""
    return _TORRENT_MARK.row(rows, {"bucket": bucket, "key": key.encode("utf-8")}) is not None


def mark_torrent(conn: Connection, bucket: str, key: str) -> None:
    insert_if_absent(conn, torrent_marks, {"bucket": bucket, "key": key.encode("utf-8")})


def bucket_has_objects(conn: Connection, bucket: str) -> bool:
    """Any version at all, noncurrent ones and delete markers included (as S3 counts)."""
    return any(
        conn.execute(sa.select(t.c.version_id).where(t.c.bucket == bucket).limit(1)).first()
        is not None
        for t in (objects, object_versions)
    )


def upsert_object(
    conn: Connection, obj: ObjectVersion, condition: WriteCondition = NO_CONDITION
) -> Replaced | None:
    """Make obj the current version of its key; return the version it replaced, if any.

    `condition` is checked against the current version under its row lock (or, for an
    absent key, by the insert that must create it), so it holds at the commit."""
    row = obj.to_row()
    at = {"w_bucket": obj.bucket, "w_key": row["key"]}
    while True:
        old = _LOCK_OBJECT.run(conn, at).fetchone()
        if old is not None:
            condition.check(obj.bucket, obj.key, str(old[2]))
            _UPDATE_OBJECT.run(conn, {**at, **row})
            _DELETE_TORRENT.run(conn, {"w_vid": old[0]})
            return Replaced(str(old[0]), bool(old[1]))
        condition.check(obj.bucket, obj.key, None)
        if insert_if_absent(conn, objects, row):
            return None
        if condition:
            # Another node created the key between our look and our insert: its write won.
            raise ConditionalConflict(obj.bucket, obj.key)


def delete_object(
    conn: Connection, bucket: str, key: str, condition: WriteCondition = NO_CONDITION
) -> Replaced | None:
    """Delete the current version of a key; return it, if there was one."""
    k = key.encode("utf-8")
    where = (objects.c.bucket == bucket, objects.c.key == k)
    if condition:
        # Lock the row, check it, then delete: a racing writer waits for our decision.
        current = conn.execute(
            sa.select(objects.c.etag, objects.c.version_id).where(*where).with_for_update()
        ).first()
        if current is None:
            condition.check(bucket, key, None)
        else:
            condition.check(bucket, key, str(current[0]), str(current[1]))
    # One statement: of two nodes deleting the same key, exactly one learns the version id.
    # length(), not IS NULL: SQLite 3.40 answers `inline_data IS NULL` in a DELETE's
    # RETURNING with 0 for a NULL in this column (added by ALTER TABLE in a migration), so
    # a deleted object's blob was never removed (nor its space freed) until the next start.
    old = conn.execute(
        objects.delete()
        .where(*where)
        .returning(objects.c.version_id, sa.func.length(objects.c.inline_data))
    ).first()
    if old is None:
        return None
    conn.execute(torrents.delete().where(torrents.c.version_id == old[0]))
    return Replaced(str(old[0]), old[1] is None)


def iter_keys_from(
    conn: Connection, bucket: str, after: bytes | None, start: bytes, end: bytes | None, limit: int
) -> Iterator[ObjectVersion]:
    """Up to `limit` objects with start <= key < end and key > after, in key order."""
    # One lower bound only: given both `key >= start` and `key > after`, SQLite may seek on
    # the first and filter on the second, scanning every earlier key on every later page.
    if after is not None and after >= start:
        q = sa.select(*OBJECT_INFO_COLUMNS).where(objects.c.bucket == bucket, objects.c.key > after)
    else:
        q = sa.select(*OBJECT_INFO_COLUMNS).where(
            objects.c.bucket == bucket, objects.c.key >= start
        )
    if end is not None:
        q = q.where(objects.c.key < end)
    q = q.order_by(objects.c.key).limit(limit)
    for row in conn.execute(q):
        yield _listed(row)


# Listing rows by position: a page of 1,000 through Row mappings cost more than its query.
_listed = version_reader(tuple(c.name for c in OBJECT_INFO_COLUMNS))


def _delete_of_bucket(
    conn: Connection, table: sa.Table, key: sa.Column[Any], bucket: str, limit: int
) -> int:
    """Delete up to `limit` of a bucket's rows of `table` (`key` tells them apart within
    the bucket); how many went."""
    some = sa.select(key).where(table.c.bucket == bucket).limit(limit).scalar_subquery()
    return int(conn.execute(table.delete().where(table.c.bucket == bucket, key.in_(some))).rowcount)


def delete_bucket_rows(conn: Connection, bucket: str, limit: int) -> tuple[list[str], bool]:
    """Drop up to `limit` each of a bucket's uploads in progress (with their parts), the
    receipts of its completed ones and its torrent marks; return the part blob ids, and
    whether any such rows may remain (a batch was full)."""
    upload_ids = [
        str(r[0])
        for r in conn.execute(
            sa.select(uploads.c.upload_id).where(uploads.c.bucket == bucket).limit(limit)
        )
    ]
    blob_ids: list[str] = []
    if upload_ids:
        blob_ids = [
            str(r[0])
            for r in conn.execute(
                sa.select(parts.c.blob_id).where(parts.c.upload_id.in_(upload_ids))
            )
        ]
        conn.execute(parts.delete().where(parts.c.upload_id.in_(upload_ids)))
        conn.execute(uploads.delete().where(uploads.c.upload_id.in_(upload_ids)))
    receipts = _delete_of_bucket(conn, upload_receipts, upload_receipts.c.upload_id, bucket, limit)
    marks = _delete_of_bucket(conn, torrent_marks, torrent_marks.c.key, bucket, limit)
    return blob_ids, max(len(upload_ids), receipts, marks) >= limit


def referenced_blob_ids(conn: Connection) -> set[str]:
    """Every blob id some metadata row still points at."""
    ids = {str(r[0]) for r in conn.execute(sa.select(objects.c.version_id))}
    # Noncurrent versions keep their blobs until they are deleted themselves.
    ids |= {str(r[0]) for r in conn.execute(sa.select(object_versions.c.version_id))}
    ids |= {str(r[0]) for r in conn.execute(sa.select(parts.c.blob_id))}
    return ids


def insert_upload(conn: Connection, up: Upload) -> None:
    conn.execute(
        uploads.insert().values(
            upload_id=up.upload_id,
            bucket=up.bucket,
            key=up.key.encode("utf-8"),
            owner_id=up.owner_id,
            initiated=up.initiated,
            headers=compact_json(up.headers),
            acl=up.acl,
            checksum_algorithm=up.checksum_algorithm,
            checksum_type=up.checksum_type,
            tags=encode_tags(up.tags),
        )
    )


def get_upload(conn: Connection, upload_id: str) -> Upload | None:
    row = conn.execute(sa.select(uploads).where(uploads.c.upload_id == upload_id)).first()
    return Upload.from_row(row) if row else None


def put_part(conn: Connection, part: Part) -> str | None:
    """Record a part (replacing one with the same number); return the replaced blob id."""
    where = (parts.c.upload_id == part.upload_id, parts.c.part_number == part.part_number)
    row = {
        "upload_id": part.upload_id,
        "part_number": part.part_number,
        "blob_id": part.blob_id,
        "size": part.size,
        "etag": part.etag,
        "last_modified": part.last_modified,
        "checksum_value": part.checksum_value,
    }
    old = _replace_row(conn, parts, where, row, parts.c.blob_id)
    return str(old) if old is not None else None


def list_parts(
    conn: Connection, upload_id: str, after: int = 0, limit: int | None = None
) -> list[Part]:
    q = (
        sa.select(parts)
        .where(parts.c.upload_id == upload_id, parts.c.part_number > after)
        .order_by(parts.c.part_number)
    )
    if limit is not None:
        q = q.limit(limit)
    return [Part.from_row(r) for r in conn.execute(q)]


def delete_upload(conn: Connection, upload_id: str) -> list[str] | None:
    """Drop an upload and its parts; return the part blob ids (None: no such upload)."""
    if (
        conn.execute(sa.select(uploads.c.upload_id).where(uploads.c.upload_id == upload_id)).first()
        is None
    ):
        return None
    blob_ids = [
        str(r[0])
        for r in conn.execute(sa.select(parts.c.blob_id).where(parts.c.upload_id == upload_id))
    ]
    conn.execute(parts.delete().where(parts.c.upload_id == upload_id))
    conn.execute(uploads.delete().where(uploads.c.upload_id == upload_id))
    return blob_ids


def list_uploads(
    conn: Connection,
    bucket: str,
    prefix: bytes,
    key_marker: bytes | None,
    upload_id_marker: str | None,
    limit: int,
) -> list[Upload]:
    """Uploads in (key, initiated, upload id) order, after the markers as S3 defines them."""
    q = sa.select(uploads).where(uploads.c.bucket == bucket)
    if prefix:
        q = q.where(uploads.c.key >= prefix)
    if key_marker is not None:
        if upload_id_marker:
            marker = conn.execute(
                sa.select(uploads.c.initiated).where(
                    uploads.c.upload_id == upload_id_marker,
                    uploads.c.bucket == bucket,
                    uploads.c.key == key_marker,
                )
            ).first()
            # A marker upload that is gone (completed, or aborted: a client aborting what it
            # lists pages with the last upload it aborted) has no place to resume after: the
            # key's uploads are all listed again rather than all skipped.
            after_same_key = (
                sa.or_(
                    uploads.c.initiated > marker[0],
                    sa.and_(
                        uploads.c.initiated == marker[0], uploads.c.upload_id > upload_id_marker
                    ),
                )
                if marker is not None
                else sa.true()
            )
            q = q.where(
                sa.or_(
                    uploads.c.key > key_marker, sa.and_(uploads.c.key == key_marker, after_same_key)
                )
            )
        else:
            q = q.where(uploads.c.key > key_marker)
    q = q.order_by(uploads.c.key, uploads.c.initiated, uploads.c.upload_id).limit(limit)
    return [Upload.from_row(r) for r in conn.execute(q)]


def stale_uploads(conn: Connection, initiated_before: float, limit: int) -> list[str]:
    q = sa.select(uploads.c.upload_id).where(uploads.c.initiated < initiated_before).limit(limit)
    return [str(r[0]) for r in conn.execute(q)]


def insert_receipt(conn: Connection, r: UploadReceipt, now: float) -> None:
    conn.execute(
        upload_receipts.insert().values(
            upload_id=r.upload_id,
            bucket=r.bucket,
            key=r.key.encode("utf-8"),
            parts_digest=r.parts_digest,
            result=r.result,
            completed_at=now,
            version_id=r.version_id,
        )
    )


def get_receipt(conn: Connection, upload_id: str) -> UploadReceipt | None:
    row = conn.execute(
        sa.select(upload_receipts).where(upload_receipts.c.upload_id == upload_id)
    ).first()
    if row is None:
        return None
    m = row._mapping
    return UploadReceipt(
        upload_id=m["upload_id"],
        bucket=m["bucket"],
        key=bytes(m["key"]).decode("utf-8"),
        parts_digest=m["parts_digest"],
        result=bytes(m["result"]),
        version_id=m["version_id"],
    )


def delete_receipts(conn: Connection, completed_before: float) -> int:
    result = conn.execute(
        upload_receipts.delete().where(upload_receipts.c.completed_at < completed_before)
    )
    return int(result.rowcount or 0)
