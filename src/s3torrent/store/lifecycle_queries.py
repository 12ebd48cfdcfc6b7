"""Lifecycle reads: every version of a key, and pages of keys that have any version.

A lifecycle pass over a versioned bucket must visit keys whose latest version is a delete
marker (they have no `objects` row, so ListObjects never shows them): ExpiredObjectDeleteMarker
and NoncurrentVersionExpiration act on exactly those. A page is the next `limit` distinct
keys of both tables (each read by its primary key index from the cursor on), then those
keys' versions in two range reads, never a query per key, at most MAX_PAGE_VERSIONS of them.
Inline bytes are not read.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store.rows import ObjectVersion
from s3torrent.store.schema import OBJECT_INFO_COLUMNS, object_versions, objects

# After every UTF-8 key that starts with a prefix (0xff never occurs in UTF-8).
_AFTER_ALL = b"\xff"
_HISTORY_INFO = tuple(c for c in object_versions.c if c.name != "inline_data")

KeyHistory = tuple[str, list[ObjectVersion]]
"""A key and its versions, newest first: the current one (if any), then the others."""


def _bounds(
    table: sa.Table, bucket: str, start: bytes, after: bytes | None
) -> list[sa.ColumnElement[bool]]:
    c = table.c
    where: list[sa.ColumnElement[bool]] = [c.bucket == bucket]
    # One lower bound only (see queries.iter_keys_from: SQLite would seek on one and filter
    # on the other).
    where.append(c.key > after if after is not None and after >= start else c.key >= start)
    if start:
        where.append(c.key < start + _AFTER_ALL)
    return where


def _first_keys(
    conn: Connection, table: sa.Table, bucket: str, start: bytes, after: bytes | None, n: int
) -> list[bytes]:
    c = table.c
    q = sa.select(c.key).where(*_bounds(table, bucket, start, after)).distinct()
    return [bytes(r[0]) for r in conn.execute(q.order_by(c.key).limit(n))]


MAX_PAGE_VERSIONS = 10_000
"""The most noncurrent versions and delete markers one page reads. A page ends before the
key where it is reached; a key that has more on its own is read newest first up to it (so
its current version, the newest noncurrent ones and their ages are exact, and its older
versions are reached once the newer are gone). Memory stays bounded whatever a key holds."""


def _histories(
    conn: Connection, bucket: str, lo: bytes, hi: bytes, max_versions: int | None = None
) -> tuple[list[KeyHistory], bool]:
    """Every version of the keys lo..hi (inclusive), keys in byte order, newest first; with
    `max_versions`, at most that many of `object_versions` (see MAX_PAGE_VERSIONS), and
    whether that cut the range short."""
    h = object_versions.c
    q = (
        sa.select(*_HISTORY_INFO)
        .where(h.bucket == bucket, h.key >= lo, h.key <= hi)
        .order_by(h.key, h.seq)  # seq ascending: newest first
    )
    if max_versions is not None:
        q = q.limit(max_versions + 1)
    history: dict[bytes, list[ObjectVersion]] = {}
    for r in conn.execute(q):
        history.setdefault(bytes(r._mapping["key"]), []).append(ObjectVersion.from_row(r))
    cur = objects.c
    upper = cur.key <= hi
    cut = max_versions is not None and sum(map(len, history.values())) > max_versions
    if cut:
        # The last key read may have more versions than were read: unless it is the only
        # key read (then it is read newest first, as far as the bound), the page ends
        # before it.
        last = max(history)
        if len(history) > 1:
            del history[last]
            upper = cur.key < last
        else:
            history[last] = history[last][:max_versions]
            upper = cur.key <= last
    current = {
        bytes(r._mapping["key"]): ObjectVersion.from_row(r)
        for r in conn.execute(
            sa.select(*OBJECT_INFO_COLUMNS).where(cur.bucket == bucket, cur.key >= lo, upper)
        )
    }
    out: list[KeyHistory] = []
    for kb in sorted(current.keys() | history.keys()):
        now_current = current.get(kb)
        versions = ([now_current] if now_current is not None else []) + history.get(kb, [])
        out.append((kb.decode("utf-8"), versions))
    return out, cut


def key_history(conn: Connection, bucket: str, key: str) -> list[ObjectVersion]:
    """A key's versions, newest first (empty: the key has none)."""
    kb = key.encode("utf-8")
    found, _ = _histories(conn, bucket, kb, kb)
    return found[0][1] if found else []


def history_page(
    conn: Connection, bucket: str, prefix: str, after: str | None, limit: int
) -> tuple[list[KeyHistory], bool]:
    """The next `limit` keys under `prefix` after `after` that have any version (current,
    noncurrent or delete marker), each with all its versions; and whether more follow."""
    start = prefix.encode("utf-8")
    ak = after.encode("utf-8") if after is not None else None
    keys = sorted(
        set(_first_keys(conn, objects, bucket, start, ak, limit + 1))
        | set(_first_keys(conn, object_versions, bucket, start, ak, limit + 1))
    )
    truncated = len(keys) > limit
    keys = keys[:limit]
    if not keys:
        return [], False
    # Every key of either table between the first and the last is one of these keys.
    found, cut = _histories(conn, bucket, keys[0], keys[-1], MAX_PAGE_VERSIONS)
    return found, truncated or cut
