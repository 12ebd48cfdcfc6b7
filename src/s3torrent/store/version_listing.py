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
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store.listing import common_prefix
from s3torrent.store.rows import NULL_VERSION, ObjectVersion, version_reader
from s3torrent.store.schema import OBJECT_INFO_COLUMNS, object_versions, objects
from s3torrent.store.sql import Prepared

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
        mid_key = self.after_seq is not None and self.after_key is not None
        if mid_key:
            shape = "mid"
            at: dict[str, Any] = {"b": self.bucket, "k": self.after_key, "s": self.after_seq}
        elif self.after_key is not None and self.after_key >= self.start:
            shape = "after"
            at = {"b": self.bucket, "k": self.after_key}
        else:
            shape = "start"
            at = {"b": self.bucket, "k": self.start}
        if self.end is not None and not mid_key:
            at["e"] = self.end
        stmt = _statement(self.history, shape, self.end is not None and not mid_key)
        rows = stmt.run(self.conn, at).fetchall()
        make = _history_version if self.history else _current_version
        for row in rows:
            # Both tables' columns start bucket, key (then seq in the history's).
            kb = bytes(row[1])
            seq = int(row[2]) if self.history else _CURRENT
            self.buf.append((kb, seq, make(row)))
            self.after_key, self.after_seq = kb, (seq if self.history else None)
        if len(rows) < _BATCH:
            if mid_key:
                self.after_seq = None  # that key's history is done: on to the next keys
            else:
                self.done = True
        elif not self.history:
            self.after_seq = None


# Filled on first use; two threads building the same entry build equal statements.
_STATEMENTS: dict[tuple[bool, str, bool], Prepared] = {}


def _statement(history: bool, shape: str, bounded: bool) -> Prepared:
    """One batch of a stream, per shape: built and compiled once, run as plain DBAPI
    statements on SQLite (a page is a few of these; SQLAlchemy's per-row work was most of
    the read)."""
    found = _STATEMENTS.get((history, shape, bounded))
    if found is not None:
        return found
    table = object_versions if history else objects
    c = table.c
    cols = _HISTORY_INFO if history else OBJECT_INFO_COLUMNS
    q = sa.select(*cols).where(c.bucket == sa.bindparam("b"))
    if shape == "mid":
        q = q.where(c.key == sa.bindparam("k"), c.seq > sa.bindparam("s")).order_by(c.seq)
    else:
        q = q.where(c.key > sa.bindparam("k") if shape == "after" else c.key >= sa.bindparam("k"))
        if bounded:
            q = q.where(c.key < sa.bindparam("e"))
        q = q.order_by(c.key, c.seq) if history else q.order_by(c.key)
    stmt = Prepared(q.limit(_BATCH))
    _STATEMENTS[(history, shape, bounded)] = stmt
    return stmt


_history_version = version_reader(tuple(c.name for c in _HISTORY_INFO))
_current_version = version_reader(tuple(c.name for c in OBJECT_INFO_COLUMNS))


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
    # A page goes on mid-key only inside the prefix: the rest of a key outside it is no
    # part of this listing (nor of what a policy on s3:prefix allowed).
    if km is not None and version_id_marker and km.startswith(pfx):
        position = _marker_position(conn, bucket, km, version_id_marker)
        if position is None:
            # The marker's version is gone, deleted since the page that named it (a client
            # emptying a bucket deletes each page's versions before asking for the next):
            # its place is unknown, so the key is listed again from its newest version. A
            # page that repeats versions loses none; going on after the whole key left the
            # rest of its versions out of the listing.
            current.seek(km, None)
            history.seek(pfx, km, _CURRENT)
        else:
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
