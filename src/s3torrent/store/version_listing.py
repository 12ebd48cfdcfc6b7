"""One page of ListObjectVersions: every version of every key, keys in UTF-8 byte order and
each key's versions newest first, with common prefixes and key/version-id markers.

Two keyset-paginated streams are merged: current versions (`objects`, by key) and the
others (`object_versions`, by key then seq, newest first). A page reads only what it
returns (plus a batch ahead), whatever page it is: 10,000 versions of one key are read in
index order from the marker on, never from the start.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store.listing import common_prefix
from s3torrent.store.rows import NULL_VERSION, ObjectVersion
from s3torrent.store.schema import OBJECT_INFO_COLUMNS, object_versions, objects

_AFTER_ALL = b"\xff"
_BATCH = 256
_HISTORY_INFO = tuple(c for c in object_versions.c if c.name != "inline_data")


@dataclass(slots=True)
class VersionPage:
    versions: list[tuple[ObjectVersion, bool]] = field(default_factory=list)
    """(version, is it its key's latest) in listing order."""
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    next_key: str | None = None
    next_version_id: str | None = None


class _Stream:
    """Rows of one table in listing order from a position on, fetched in batches."""

    def __init__(self, conn: Connection, bucket: str, history: bool, end: bytes | None) -> None:
        self.conn = conn
        self.bucket = bucket
        self.history = history
        self.end = end
        self.buf: list[tuple[bytes, int, ObjectVersion]] = []
        self.done = False
        self.after_key: bytes | None = None
        self.start: bytes = b""
        self.after_seq: int | None = None  # mid-key: the rest of after_key's history

    def seek(self, start: bytes, after_key: bytes | None, after_seq: int | None = None) -> None:
        self.start, self.after_key, self.after_seq = start, after_key, after_seq
        self.buf, self.done = [], False

    def peek(self) -> tuple[bytes, int, ObjectVersion] | None:
        while not self.buf and not self.done:
            self._fetch()
        return self.buf[0] if self.buf else None

    def pop(self) -> None:
        self.buf.pop(0)

    def _fetch(self) -> None:
        table = object_versions if self.history else objects
        c = table.c
        cols = _HISTORY_INFO if self.history else OBJECT_INFO_COLUMNS
        q = sa.select(*cols).where(c.bucket == self.bucket)
        if self.after_seq is not None and self.after_key is not None:
            q = q.where(c.key == self.after_key, c.seq > self.after_seq).order_by(c.seq)
        else:
            if self.after_key is not None and self.after_key >= self.start:
                q = q.where(c.key > self.after_key)
            else:
                q = q.where(c.key >= self.start)
            if self.end is not None:
                q = q.where(c.key < self.end)
            q = q.order_by(c.key, c.seq) if self.history else q.order_by(c.key)
        rows = list(self.conn.execute(q.limit(_BATCH)))
        mid_key = self.after_seq is not None
        for row in rows:
            m = row._mapping
            kb = bytes(m["key"])
            seq = int(m["seq"]) if self.history else _CURRENT
            self.buf.append((kb, seq, ObjectVersion.from_row(row)))
            self.after_key, self.after_seq = kb, (seq if self.history else None)
        if len(rows) < _BATCH:
            if mid_key:
                self.after_seq = None  # that key's history is done: on to the next keys
            else:
                self.done = True
        elif not self.history:
            self.after_seq = None


# A current version sorts before every other version of its key.
_CURRENT = -(2**63)


def _merged(a: _Stream, b: _Stream) -> Iterator[tuple[bytes, int, ObjectVersion]]:
    while True:
        x, y = a.peek(), b.peek()
        if x is None and y is None:
            return
        if y is None or (x is not None and (x[0], x[1]) <= (y[0], y[1])):
            assert x is not None
            a.pop()
            yield x
        else:
            b.pop()
            yield y


def list_versions_page(
    conn: Connection,
    bucket: str,
    prefix: str,
    delimiter: str,
    key_marker: str,
    version_id_marker: str | None,
    max_keys: int,
) -> VersionPage:
    page = VersionPage()
    if max_keys == 0:
        return page
    pfx = prefix.encode("utf-8")
    end = pfx + _AFTER_ALL if pfx else None
    current = _Stream(conn, bucket, False, end)
    history = _Stream(conn, bucket, True, end)
    km = key_marker.encode("utf-8") if key_marker else None
    mid_key: bytes | None = None
    if km is not None and key_marker and common_prefix(key_marker, prefix, delimiter) == key_marker:
        # The previous page ended on this common prefix: skip all of its keys.
        km = km + _AFTER_ALL
    current.seek(pfx, km)
    history.seek(pfx, km)
    if km is not None and version_id_marker:
        position = _marker_position(conn, bucket, km, version_id_marker)
        if position is not None:
            mid_key = km
            history.seek(pfx, km, position)
    count = 0
    last_key: bytes | None = mid_key
    last: tuple[str, str | None] | None = None
    for kb, _seq, version in _merged(current, history):
        key = version.key
        if count == max_keys:
            page.truncated = True
            break
        cp = common_prefix(key, prefix, delimiter)
        if cp is not None:
            page.prefixes.append(cp)
            count += 1
            last = (cp, None)
            skip = cp.encode("utf-8") + _AFTER_ALL
            current.seek(pfx, skip)
            history.seek(pfx, skip)
            last_key = None
            continue
        # A key's first version in listing order is its latest: the current one, or (none)
        # the newest delete marker. A page that starts mid-key starts after it.
        page.versions.append((version, kb != last_key))
        last_key = kb
        count += 1
        last = (key, version.s3_version_id)
    if page.truncated and last is not None:
        page.next_key, page.next_version_id = last
    return page


def _marker_position(conn: Connection, bucket: str, kb: bytes, s3_vid: str) -> int | None:
    """Where in a key's history a page that ended on version `s3_vid` goes on: after that
    version's seq, or (the marker was the current version) from the newest."""
    c = objects.c
    match_current = c.versioned.is_(False) if s3_vid == NULL_VERSION else c.version_id == s3_vid
    if conn.execute(
        sa.select(c.version_id).where(c.bucket == bucket, c.key == kb, match_current)
    ).first():
        return _CURRENT
    h = object_versions.c
    match = h.versioned.is_(False) if s3_vid == NULL_VERSION else h.version_id == s3_vid
    row = conn.execute(sa.select(h.seq).where(h.bucket == bucket, h.key == kb, match)).first()
    return int(row[0]) if row is not None else None
