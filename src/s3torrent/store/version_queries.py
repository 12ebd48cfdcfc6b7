"""Versioning queries: writes and deletes in versioned (or suspended) buckets, reads by
version id. Each takes a Connection; the metadata store owns the transactions.

A key's current version is its `objects` row, exactly as in an unversioned bucket, so GET,
listings, torrents, the tracker and the seeder read one row per key whatever the bucket's
versioning. Every other version lives in `object_versions`, newest first by `seq` (each
new row there takes a smaller seq than any before it for its key, so one ascending index
scan reads a key's history newest first on every engine). When the key's latest version
is a delete marker, it has no `objects` row and its newest `object_versions` row is that
marker.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store.conditions import NO_CONDITION, WriteCondition
from s3torrent.store.errors import ConditionalConflict
from s3torrent.store.queries import _DELETE_TORRENT, _UPDATE_OBJECT, upsert_object
from s3torrent.store.retention import check_removable, with_default_retention
from s3torrent.store.rows import (
    NULL_VERSION,
    Bucket,
    Committed,
    ObjectVersion,
    Removed,
    Replaced,
    new_row_version_id,
)
from s3torrent.store.schema import object_versions, objects
from s3torrent.store.sql import Prepared, insert_if_absent

# The columns both tables share, in one order (INSERT ... SELECT moves rows between them).
SHARED = tuple(c.name for c in objects.c)
_OV = object_versions.c
_O = objects.c


_LOCK_CURRENT = Prepared(
    sa.select(
        _O.version_id,
        _O.inline_data.is_(None).label("has_blob"),
        _O.etag,
        _O.versioned,
        _O.lock_mode,
        _O.lock_until,
        _O.legal_hold,
    )
    .where(_O.bucket == sa.bindparam("w_bucket"), _O.key == sa.bindparam("w_key"))
    .with_for_update()
)
_UPDATE_CURRENT = _UPDATE_OBJECT
_OLDEST_SEQ = Prepared(
    sa.select(sa.func.min(_OV.seq)).where(
        _OV.bucket == sa.bindparam("w_bucket"), _OV.key == sa.bindparam("w_key")
    )
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Current:
    version_id: str
    has_blob: bool
    etag: str
    versioned: bool
    lock_mode: str | None
    lock_until: float | None
    legal_hold: bool


def _serialize_key(conn: Connection, bucket: str, kb: bytes) -> None:
    """On PostgreSQL, versioned changes of one key take turns (a transaction-scoped advisory
    lock): without a current row to lock (a key behind a delete marker, or new), two
    writers would otherwise both take the same history seq. SQLite has one writer anyway."""
    if conn.dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(bucket.encode() + b"/" + kb, digest_size=8).digest()
    conn.execute(
        sa.select(sa.func.pg_advisory_xact_lock(int.from_bytes(digest, "big", signed=True)))
    )


def _lock_current(conn: Connection, at: dict[str, Any]) -> _Current | None:
    _serialize_key(conn, at["w_bucket"], at["w_key"])
    row = _LOCK_CURRENT.run(conn, at).fetchone()
    if row is None:
        return None
    return _Current(
        str(row[0]), bool(row[1]), str(row[2]), bool(row[3]), row[4], row[5], bool(row[6])
    )


def _new_seq(conn: Connection, at: dict[str, Any]) -> int:
    """A seq smaller than every existing one of the key: the newest row sorts first."""
    oldest = _OLDEST_SEQ.run(conn, at).fetchone()
    return (int(oldest[0]) if oldest is not None and oldest[0] is not None else 0) - 1


# The current row, copied into the history as its newest version: one statement, built
# once, that also takes a seq below every other of the key's.
_TO_HISTORY = Prepared(
    object_versions.insert().from_select(
        [*SHARED, "seq", "delete_marker"],
        sa.select(
            *(objects.c[name] for name in SHARED),
            sa.func.coalesce(
                sa.select(sa.func.min(_OV.seq))
                .where(_OV.bucket == sa.bindparam("w_bucket"), _OV.key == sa.bindparam("w_key"))
                .scalar_subquery(),
                0,
            )
            - 1,
            sa.false(),
        ).where(_O.bucket == sa.bindparam("w_bucket"), _O.key == sa.bindparam("w_key")),
    )
)


# The same move that also answers what it moved (store version id, whether the version has
# a blob, ETag): on SQLite, where one writer holds the database, it replaces the locking
# read before it. length(), not IS NULL: see queries.delete_object.
_TO_HISTORY_RETURNING = Prepared(
    _TO_HISTORY.stmt.returning(  # type: ignore[attr-defined]
        _OV.version_id, sa.func.length(_OV.inline_data), _OV.etag
    )
)


def _to_history(conn: Connection, at: dict[str, Any]) -> None:
    """Move the key's current row into its history as the newest noncurrent version."""
    _TO_HISTORY.run(conn, at)


def _drop_null_from_history(conn: Connection, at: dict[str, Any], now: float) -> list[str]:
    """Remove the key's noncurrent null version (a new null version replaces it); returns
    its blob id if it had one."""
    where = (_OV.bucket == at["w_bucket"], _OV.key == at["w_key"], _OV.versioned.is_(False))
    row = conn.execute(
        sa.select(
            _OV.version_id,
            sa.func.length(_OV.inline_data),
            _OV.delete_marker,
            _OV.lock_mode,
            _OV.lock_until,
            _OV.legal_hold,
        ).where(*where)
    ).first()
    if row is None:
        return []
    if not row[2]:
        check_removable(row[3], row[4], bool(row[5]), now, bypass_governance=False)
    conn.execute(object_versions.delete().where(*where))
    return [str(row[0])] if row[1] is None and not row[2] else []


def commit_object(
    conn: Connection, bucket: Bucket, obj: ObjectVersion, condition: WriteCondition, now: float
) -> Committed:
    """Make obj the current version of its key, as the bucket's versioning says: in an
    unversioned bucket it replaces the current version; in a versioned one the current
    version becomes noncurrent; in a suspended one obj is the null version and replaces
    the previous null version (current or not). `condition` is checked against the current
    version under its row lock."""
    state = bucket.versioning
    obj = with_default_retention(obj, bucket, now)
    if state is None:
        replaced = upsert_object(conn, obj, condition)
        return Committed(obj, replaced, freed_by(replaced))
    versioned = state == "Enabled"
    if obj.versioned != versioned:
        # The handler guessed from the bucket it read before the body; this transaction's
        # read of the bucket decides.
        obj = dataclasses.replace(obj, versioned=versioned)
    row = obj.to_row()
    at = {"w_bucket": obj.bucket, "w_key": row["key"]}
    if versioned and conn.dialect.name == "sqlite":
        # The common versioned overwrite in three statements, not four: the move into the
        # history tells what was current. A failed condition raises, and the transaction
        # (the writer's savepoint) takes the move back.
        moved = _TO_HISTORY_RETURNING.run(conn, at).fetchall()
        if moved:
            vid, blob_length, etag = moved[0]
            condition.check(obj.bucket, obj.key, str(etag))
            replaced = Replaced(str(vid), blob_length is None, kept=True)
            _UPDATE_CURRENT.run(conn, {**at, **row})
            _DELETE_TORRENT.run(conn, {"w_vid": vid})
            return Committed(obj, replaced, ())
    while True:
        old = _lock_current(conn, at)
        condition.check(obj.bucket, obj.key, old.etag if old is not None else None)
        freed: list[str] = []
        if not versioned:
            freed += _drop_null_from_history(conn, at, now)
        if old is not None:
            kept = versioned or old.versioned
            if kept:
                _to_history(conn, at)
            else:
                # The null version is replaced in place: it is gone for good.
                check_removable(old.lock_mode, old.lock_until, old.legal_hold, now, False)
            replaced = Replaced(old.version_id, old.has_blob, kept=kept)
            _UPDATE_CURRENT.run(conn, {**at, **row})
            _DELETE_TORRENT.run(conn, {"w_vid": old.version_id})
            return Committed(obj, replaced, tuple(freed) + freed_by(replaced))
        if insert_if_absent(conn, objects, row):
            return Committed(obj, None, tuple(freed))
        if condition:
            raise ConditionalConflict(obj.bucket, obj.key)


def freed_by(replaced: Replaced | None) -> tuple[str, ...]:
    """The blob a replaced or removed version leaves unreferenced."""
    if replaced is None or replaced.kept or not replaced.has_blob:
        return ()
    return (replaced.version_id,)


def add_delete_marker(
    conn: Connection, bucket: Bucket, key: str, condition: WriteCondition, now: float, owner: str
) -> Removed:
    """DeleteObject without a version id in a versioned or suspended bucket: the current
    version becomes noncurrent (or, a null one in a suspended bucket, goes) and a delete
    marker becomes the key's latest version."""
    versioned = bucket.versioning == "Enabled"
    kb = key.encode("utf-8")
    at = {"w_bucket": bucket.name, "w_key": kb}
    old = _lock_current(conn, at)
    if old is None:
        condition.check(bucket.name, key, None)
        if condition.if_version is not None:
            # The version to expire is gone already: no delete marker on top of it.
            return Removed(None, False, None)
    else:
        condition.check(bucket.name, key, old.etag, old.version_id)
    freed: list[str] = []
    if not versioned:
        freed += _drop_null_from_history(conn, at, now)
    revoked: Replaced | None = None
    if old is not None:
        kept = versioned or old.versioned
        if kept:
            _to_history(conn, at)
        else:
            check_removable(old.lock_mode, old.lock_until, old.legal_hold, now, False)
            if old.has_blob:
                freed.append(old.version_id)
        conn.execute(objects.delete().where(_O.bucket == bucket.name, _O.key == kb))
        _DELETE_TORRENT.run(conn, {"w_vid": old.version_id})
        revoked = Replaced(old.version_id, old.has_blob, kept=kept)
    marker_id = new_row_version_id()
    marker: dict[str, Any] = {name: None for name in SHARED}
    marker.update(
        bucket=bucket.name,
        key=kb,
        version_id=marker_id,
        size=0,
        etag="",
        last_modified=now,
        owner_id=owner,
        headers="{}",
        versioned=versioned,
        legal_hold=False,
        legal_hold_set=False,
        seq=_new_seq(conn, at),
        delete_marker=True,
    )
    conn.execute(object_versions.insert().values(**marker))
    return Removed(marker_id if versioned else NULL_VERSION, True, revoked, freed=tuple(freed))


def _version_where(table: sa.Table, bucket: str, kb: bytes, s3_version_id: str) -> tuple[Any, ...]:
    c = table.c
    if s3_version_id == NULL_VERSION:
        match: Any = c.versioned.is_(False)
    else:
        match = sa.and_(c.version_id == s3_version_id, c.versioned.is_(True))
    return (c.bucket == bucket, c.key == kb, match)


def get_version(
    conn: Connection, bucket: str, key: str, s3_version_id: str
) -> ObjectVersion | None:
    """The version of a key S3 names `s3_version_id` ("null" or an id), current or not,
    delete markers included."""
    kb = key.encode("utf-8")
    row = conn.execute(
        sa.select(objects).where(*_version_where(objects, bucket, kb, s3_version_id))
    ).first()
    if row is None:
        row = conn.execute(
            sa.select(object_versions).where(
                *_version_where(object_versions, bucket, kb, s3_version_id)
            )
        ).first()
    return ObjectVersion.from_row(row) if row is not None else None


def latest_delete_marker(conn: Connection, bucket: str, key: str) -> ObjectVersion | None:
    """The key's delete marker when it is the key's latest version."""
    kb = key.encode("utf-8")
    if conn.execute(sa.select(_O.version_id).where(_O.bucket == bucket, _O.key == kb)).first():
        return None
    row = conn.execute(
        sa.select(object_versions)
        .where(_OV.bucket == bucket, _OV.key == kb)
        .order_by(_OV.seq)
        .limit(1)
    ).first()
    if row is None or not row._mapping["delete_marker"]:
        return None
    return ObjectVersion.from_row(row)


def delete_version(
    conn: Connection,
    bucket: str,
    key: str,
    s3_version_id: str,
    now: float,
    bypass_governance: bool,
    noncurrent: str | None = None,
    condition: WriteCondition = NO_CONDITION,
) -> Removed:
    """Remove one version for good (object lock permitting). When it was the current
    version, or the delete marker that was the latest, the newest remaining version becomes
    current again (unless it is a delete marker).

    `condition` (If-Match on DeleteObject with a version id) is checked against the named
    version under its row lock: its ETag, or none for a delete marker or a missing version
    (so an ETag or "*" there is NoSuchKey, as for a key without an object).

    `noncurrent` (the lifecycle worker's delete) is the store id of the version to remove,
    as it was seen noncurrent: it is removed only if it still is, and a delete marker that
    is the key's latest version only if it is the key's only version (so nothing becomes
    current again); otherwise nothing is removed."""
    kb = key.encode("utf-8")
    _serialize_key(conn, bucket, kb)
    if noncurrent is not None:
        return _delete_noncurrent(conn, bucket, kb, s3_version_id, noncurrent, now)
    current = conn.execute(
        sa.select(objects)
        .where(*_version_where(objects, bucket, kb, s3_version_id))
        .with_for_update()
    ).first()
    revoked: Replaced | None = None
    if current is not None:
        victim = ObjectVersion.from_row(current)
        condition.check(bucket, key, victim.etag)
        check_removable(
            victim.lock_mode, victim.lock_until, victim.legal_hold, now, bypass_governance
        )
        conn.execute(objects.delete().where(_O.bucket == bucket, _O.key == kb))
        _DELETE_TORRENT.run(conn, {"w_vid": victim.version_id})
        revoked = Replaced(victim.version_id, victim.inline is None)
    else:
        row = conn.execute(
            sa.select(object_versions)
            .where(*_version_where(object_versions, bucket, kb, s3_version_id))
            .with_for_update()
        ).first()
        if row is None:
            condition.check(bucket, key, None)
            return Removed(None, False, None)
        victim = ObjectVersion.from_row(row)
        condition.check(bucket, key, None if victim.delete_marker else victim.etag)
        if not victim.delete_marker:
            check_removable(
                victim.lock_mode, victim.lock_until, victim.legal_hold, now, bypass_governance
            )
        conn.execute(object_versions.delete().where(_OV.version_id == victim.version_id))
    promoted = _promote_newest(conn, bucket, kb)
    freed = (victim.version_id,) if victim.inline is None and not victim.delete_marker else ()
    return Removed(victim.s3_version_id, victim.delete_marker, revoked, promoted, freed)


def _delete_noncurrent(
    conn: Connection, bucket: str, kb: bytes, s3_version_id: str, version_id: str, now: float
) -> Removed:
    where = (
        *_version_where(object_versions, bucket, kb, s3_version_id),
        _OV.version_id == version_id,
    )
    row = conn.execute(sa.select(object_versions).where(*where).with_for_update()).first()
    if row is None:
        return Removed(None, False, None)  # current again, or removed meanwhile
    victim = ObjectVersion.from_row(row)
    if victim.delete_marker:
        if _latest_before_others(conn, bucket, kb, int(row._mapping["seq"])):
            # Removing it would make an older version current again: only a lone marker
            # goes (ExpiredObjectDeleteMarker).
            return Removed(None, False, None)
    else:
        check_removable(victim.lock_mode, victim.lock_until, victim.legal_hold, now, False)
    conn.execute(object_versions.delete().where(_OV.version_id == version_id))
    freed = (victim.version_id,) if victim.inline is None and not victim.delete_marker else ()
    return Removed(victim.s3_version_id, victim.delete_marker, None, None, freed)


def _latest_before_others(conn: Connection, bucket: str, kb: bytes, seq: int) -> bool:
    """Whether the history row at `seq` is the key's latest version and others follow it."""
    if conn.execute(sa.select(_O.version_id).where(_O.bucket == bucket, _O.key == kb)).first():
        return False
    neighbours = sa.select(sa.func.min(_OV.seq), sa.func.max(_OV.seq)).where(
        _OV.bucket == bucket, _OV.key == kb
    )
    newest, oldest = conn.execute(neighbours).one()
    return bool(newest == seq and oldest != seq)


def _promote_newest(conn: Connection, bucket: str, kb: bytes) -> ObjectVersion | None:
    """A key without a current row whose newest version is not a delete marker: that
    version becomes current again."""
    if conn.execute(sa.select(_O.version_id).where(_O.bucket == bucket, _O.key == kb)).first():
        return None
    row = conn.execute(
        sa.select(object_versions)
        .where(_OV.bucket == bucket, _OV.key == kb)
        .order_by(_OV.seq)
        .limit(1)
    ).first()
    if row is None or row._mapping["delete_marker"]:
        return None
    newest = ObjectVersion.from_row(row)
    conn.execute(
        objects.insert().from_select(
            list(SHARED),
            sa.select(*(object_versions.c[name] for name in SHARED)).where(
                _OV.version_id == newest.version_id
            ),
        )
    )
    conn.execute(object_versions.delete().where(_OV.version_id == newest.version_id))
    return newest


def bucket_has_versions(conn: Connection, bucket: str) -> bool:
    return (
        conn.execute(sa.select(_OV.version_id).where(_OV.bucket == bucket).limit(1)).first()
        is not None
    )


def update_version(
    conn: Connection,
    bucket: str,
    key: str,
    s3_version_id: str,
    check: Callable[[ObjectVersion], None] | None = None,
    **values: Any,
) -> ObjectVersion | None:
    """Set columns (acl, tags, lock settings) of one version, current or not, if `check`
    (given the version under its row lock) does not raise; returns the version as it was
    (None: no such version; a delete marker is returned unchanged)."""
    kb = key.encode("utf-8")
    for table in (objects, object_versions):
        where = _version_where(table, bucket, kb, s3_version_id)
        row = conn.execute(sa.select(table).where(*where).with_for_update()).first()
        if row is None:
            continue
        found = ObjectVersion.from_row(row)
        if found.delete_marker:
            return found
        if check is not None:
            check(found)
        conn.execute(table.update().where(*where).values(**values))
        return found
    return None


def history_sizes(conn: Connection) -> dict[str, int]:
    """Bytes of noncurrent versions per bucket (delete markers hold none)."""
    q = sa.select(_OV.bucket, sa.func.sum(_OV.size)).group_by(_OV.bucket)
    return {str(b): int(n or 0) for b, n in conn.execute(q)}


def set_by_version_id(conn: Connection, version_id: str, **values: Any) -> int:
    """Set columns of the version with this store id, current or not; rows changed."""
    for table in (objects, object_versions):
        changed = int(
            conn.execute(
                table.update().where(table.c.version_id == version_id).values(**values)
            ).rowcount
            or 0
        )
        if changed:
            return changed
    return 0
