"""The torrents of stored object versions: piece hashes in the metadata DB, metainfo on demand.

Hashes are recorded in the same transaction that makes a version current (when they were
computed during the upload), or by a background job later (multipart, copies, rehash).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.config import TorrentSettings
from s3torrent.store import metadata as md
from s3torrent.torrent.hasher import PieceHashes, TorrentHasher
from s3torrent.torrent.pieces import piece_length_for

READY = "ready"


@dataclass(frozen=True, slots=True)
class StoredHashes:
    version_id: str
    hashes: PieceHashes


class TorrentCatalog:
    """Piece hashes per object version, and the policy for computing them."""

    def __init__(self, settings: TorrentSettings) -> None:
        self.settings = settings

    @property
    def wants_v1(self) -> bool:
        return self.settings.format in ("v1", "hybrid")

    @property
    def wants_v2(self) -> bool:
        return self.settings.format in ("v2", "hybrid")

    def hasher_for(self, size: int) -> TorrentHasher | None:
        """A hasher to run inside the upload stream, when this upload can have a torrent."""
        if not self.settings.enabled or size > self.settings.max_object_size:
            return None
        return TorrentHasher(piece_length_for(size), v1=self.wants_v1, v2=self.wants_v2)

    @staticmethod
    def record_hashes(version_id: str, hasher: TorrentHasher) -> Callable[[Connection], None]:
        """The insert that stores a finished upload's hashes, to run in its commit."""
        hashes = hasher.finish()

        def insert(conn: Connection) -> None:
            store_hashes(conn, version_id, hashes)

        return insert


def store_hashes(conn: Connection, version_id: str, hashes: PieceHashes) -> None:
    conn.execute(md.torrents.delete().where(md.torrents.c.version_id == version_id))
    conn.execute(
        md.torrents.insert().values(
            version_id=version_id,
            state=READY,
            piece_length=hashes.piece_length,
            pieces_v1=hashes.pieces_v1,
            pieces_root=hashes.pieces_root,
            piece_layer=hashes.piece_layer,
            updated_at=time.time(),
        )
    )


def load_hashes(conn: Connection, obj: md.ObjectVersion) -> PieceHashes | None:
    row = conn.execute(
        sa.select(md.torrents).where(
            md.torrents.c.version_id == obj.version_id, md.torrents.c.state == READY
        )
    ).first()
    if row is None:
        return None
    m = row._mapping
    return PieceHashes(
        length=obj.size,
        piece_length=m["piece_length"],
        pieces_v1=m["pieces_v1"],
        pieces_root=m["pieces_root"],
        piece_layer=m["piece_layer"],
    )
