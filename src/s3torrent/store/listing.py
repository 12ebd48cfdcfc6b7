"""One page of a bucket's keys and common prefixes: keyset pagination on (bucket, key).

Each page is a few index range scans, whatever page it is: a page never re-reads the keys of
the pages before it, and a common prefix is skipped with one seek past all its keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from s3torrent.store import queries as md
from s3torrent.store.rows import ObjectVersion

# UTF-8 never contains 0xFF, so prefix + 0xFF sorts after every key that starts with prefix.
_AFTER_ALL = b"\xff"
BATCH = 256


@dataclass(slots=True)
class Page:
    objects: list[ObjectVersion] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    last: str | None = None  # the last key or common prefix returned


def list_page(
    conn: Connection, bucket: str, prefix: str, delimiter: str, after: str | None, max_keys: int
) -> Page:
    """One page of keys and common prefixes after `after`, in UTF-8 byte order."""
    page = Page()
    if max_keys == 0:
        return page
    pfx = prefix.encode("utf-8")
    end = pfx + _AFTER_ALL if pfx else None
    cursor: bytes | None = after.encode("utf-8") if after is not None else None
    if cursor is not None and pfx and cursor < pfx:
        cursor = None
    if after is not None:
        returned = common_prefix(after, prefix, delimiter)
        if returned == after:
            # The previous page ended on this common prefix: skip all of its keys.
            cursor = after.encode("utf-8") + _AFTER_ALL
    count = 0
    batch = BATCH
    while True:
        # +1: one row past max_keys tells whether the page is truncated.
        limit = min(batch, max_keys - count + 1)
        rows = list(md.iter_keys_from(conn, bucket, cursor, pfx, end, limit))
        if not rows:
            return page
        for obj in rows:
            key = obj.key
            cp = common_prefix(key, prefix, delimiter)
            if count == max_keys:
                page.truncated = True
                return page
            if cp is not None:
                page.prefixes.append(cp)
                page.last = cp
                count += 1
                # Seek past every key under this common prefix; the next rows may well be
                # another prefix's, so read only a few before the next seek.
                cursor = cp.encode("utf-8") + _AFTER_ALL
                batch = 8
                break
            page.objects.append(obj)
            page.last = key
            count += 1
            cursor = key.encode("utf-8")
        else:
            if len(rows) < limit:
                return page
            batch = min(BATCH, batch * 4)


def past_all(prefix: str) -> bytes:
    """The smallest bytes after every key that starts with `prefix` (a seek past them)."""
    return prefix.encode("utf-8") + _AFTER_ALL


def common_prefix(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    idx = key.find(delimiter, len(prefix))
    if idx < 0:
        return None
    return key[: idx + len(delimiter)]
