"""What the sans-IO peer wire knows about a torrent it serves, and its bounds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from s3torrent.peer.messages import DEFAULT_MAX_MESSAGE_SIZE

__all__ = ["TorrentView", "WireLimits"]


@dataclass(frozen=True, slots=True)
class TorrentView:
    """What the wire needs to know about one torrent the seed serves."""

    info_hash: bytes  # 20 bytes: v1 SHA-1, or a pure v2 torrent's truncated SHA-256
    piece_count: int
    piece_length: int
    total_length: int
    metadata: bytes  # the bencoded info dict, served over ut_metadata
    info_hash_v2: bytes | None = None  # full 32-byte SHA-256 for v2 / hybrid torrents
    # BEP 52 piece layers: pieces root -> concatenated 32-byte piece hashes.
    piece_layers: Mapping[bytes, bytes] = field(default_factory=dict)
    # v2 multi-file torrents end every file on a short piece; list those here.
    piece_size_overrides: Mapping[int, int] = field(default_factory=dict)

    def piece_size(self, index: int) -> int:
        override = self.piece_size_overrides.get(index)
        if override is not None:
            return override
        if index == self.piece_count - 1:
            return self.total_length - self.piece_length * (self.piece_count - 1)
        return self.piece_length

    @property
    def pads_last_piece(self) -> bool:
        """A hybrid or v2 torrent: libtorrent 2.0.x pads its last piece to a whole piece.

        A hybrid's v1 side implies that padding; libtorrent 2.0.x adds a tail pad file to a
        v2-only file too (qBittorrent 4.5 never finished a v2 download without this). It
        asks for the padding in a block request; BEP 47 makes the bytes zeros, so such a
        request is valid and its tail is served as zeros.
        """
        return self.info_hash_v2 is not None

    def request_bound(self, index: int) -> int:
        """How far into piece ``index`` a block request may reach."""
        if self.pads_last_piece and index == self.piece_count - 1:
            return self.piece_length
        return self.piece_size(index)

    def data_length(self, index: int, begin: int, length: int) -> int:
        """Bytes of a block that lie in the object; the rest (implied padding) is zeros."""
        return max(0, min(length, self.piece_size(index) - begin))

    def wire_hashes(self) -> frozenset[bytes]:
        """Info-hashes a peer may name in its handshake for this torrent."""
        hashes = {self.info_hash}
        if self.info_hash_v2 is not None:
            hashes.add(self.info_hash_v2[:20])
        return frozenset(hashes)


@dataclass(frozen=True, slots=True)
class WireLimits:
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    # Advertised as `reqq` (BEP 10), which is advisory: a peer without the Fast
    # extension that goes past it is queued, not dropped (rtorrent pipelines deeper).
    max_outstanding_requests: int = 250
    # The hard bound on requests a peer may have queued with us (~100 B each); past
    # it, requests are refused (fast peers) or dropped (others re-request them).
    max_queued_requests: int = 2048
    # Every current client asks for 16 KiB; accept up to 128 KiB for old ones.
    max_request_length: int = 128 * 1024
    handshake_timeout: float = 30.0
    idle_timeout: float = 180.0
    keepalive_interval: float = 120.0
    # While the I/O layer decides on a handshake, bytes after it wait unparsed.
    max_early_bytes: int = DEFAULT_MAX_MESSAGE_SIZE + 4
