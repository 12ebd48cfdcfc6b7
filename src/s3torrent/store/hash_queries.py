"""Queries of the torrents table: a version's stored piece hashes and its swarm ids."""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store.queries import get_object_by_version
from s3torrent.store.rows import ObjectVersion, TorrentHashes
from s3torrent.store.schema import objects, torrents
from s3torrent.store.sql import Prepared, Rows

READY = "ready"

# Built once: these run in the commit of every PUT and on every ?torrent.
_DELETE_HASHES = Prepared(torrents.delete().where(torrents.c.version_id == sa.bindparam("vid")))
_INSERT_HASHES = Prepared(torrents.insert())
_READY_HASHES = Prepared(
    sa.select(torrents).where(
        torrents.c.version_id == sa.bindparam("vid"), torrents.c.state == READY
    )
)


def record_hashes(conn: Connection, rec: TorrentHashes, *, new_version: bool = False) -> None:
    """Store (or replace) a version's hashes and swarm ids. `new_version`: in the
    transaction that creates the version, under an id never used before, so there is
    nothing to replace (one statement less on every PUT)."""
    if not new_version:
        _DELETE_HASHES.run(conn, {"vid": rec.version_id})
    _INSERT_HASHES.run(
        conn,
        {
            "version_id": rec.version_id,
            "state": READY,
            "piece_length": rec.piece_length,
            "pieces_v1": rec.pieces_v1,
            "pieces_root": rec.pieces_root,
            "piece_layer": rec.piece_layer,
            "updated_at": time.time(),
            "format": rec.fmt,
            "swarm_v1": rec.swarm_v1,
            "swarm_v2": rec.swarm_v2,
        },
    )


def load_hashes(rows: Rows, version_id: str) -> TorrentHashes | None:
    m = _READY_HASHES.first(rows, {"vid": version_id})
    if m is None:
        return None
    return TorrentHashes(
        version_id=version_id,
        piece_length=m["piece_length"],
        pieces_v1=m["pieces_v1"],
        pieces_root=m["pieces_root"],
        piece_layer=m["piece_layer"],
        fmt=m["format"],
        swarm_v1=m["swarm_v1"],
        swarm_v2=m["swarm_v2"],
    )


def find_by_swarm_id(conn: Connection, swarm_id: bytes) -> ObjectVersion | None:
    """The current object version whose torrent has this 20-byte swarm id, if any."""
    row = conn.execute(
        sa.select(torrents.c.version_id).where(
            sa.or_(torrents.c.swarm_v1 == swarm_id, torrents.c.swarm_v2 == swarm_id)
        )
    ).first()
    if row is None:
        return None
    return get_object_by_version(conn, str(row[0]))


def versions_without_hashes(conn: Connection, max_size: int, limit: int) -> list[ObjectVersion]:
    """Current versions that have no stored hashes (their hashing job did not finish); not
    the inline ones, which are hashed from their row when first asked for."""
    q = (
        sa.select(objects)
        .outerjoin(torrents, torrents.c.version_id == objects.c.version_id)
        .where(
            torrents.c.version_id.is_(None),
            objects.c.size <= max_size,
            objects.c.inline_data.is_(None),
        )
        .limit(limit)
    )
    return [ObjectVersion.from_row(r) for r in conn.execute(q)]


def versions_and_hashes(
    conn: Connection, bucket: str | None
) -> list[tuple[ObjectVersion, TorrentHashes | None]]:
    """Every current version (of one bucket, or all) with its stored hashes, in key order."""
    q = sa.select(objects).order_by(objects.c.bucket, objects.c.key)
    if bucket is not None:
        q = q.where(objects.c.bucket == bucket)
    found = [ObjectVersion.from_row(r) for r in conn.execute(q)]
    return [(obj, load_hashes(conn, obj.version_id)) for obj in found]
