"""The handshake and the extensions negotiated with it: BEP 3/6/52 reserved bits, BEP 10
extension handshakes and BEP 9 ut_metadata replies. Pure: bytes and values only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import fastbencode

from s3torrent.peer.messages import ProtocolError

__all__ = [
    "CLIENT_VERSION",
    "HANDSHAKE_LENGTH",
    "METADATA_PIECE_SIZE",
    "PROTOCOL_PREFIX",
    "UT_METADATA_ID",
    "Handshake",
    "bdecode_dict",
    "bencode",
    "extension_handshake",
    "metadata_reply",
    "peer_ut_metadata_id",
    "ut_metadata_request",
]

HANDSHAKE_LENGTH: Final = 68
PROTOCOL_PREFIX: Final = b"\x13BitTorrent protocol"
METADATA_PIECE_SIZE: Final = 16 * 1024
# Our local extension id for ut_metadata, announced in our BEP 10 handshake `m`.
UT_METADATA_ID: Final = 3
CLIENT_VERSION: Final = b"s3torrent 0.1"

_RESERVED_EXTENSIONS: Final = (5, 0x10)  # BEP 10
_RESERVED_FAST: Final = (7, 0x04)  # BEP 6
_RESERVED_V2: Final = (7, 0x10)  # BEP 52 upgrade from a hybrid torrent's v1 hash


def _has_bit(reserved: bytes, bit: tuple[int, int]) -> bool:
    return bool(reserved[bit[0]] & bit[1])


@dataclass(frozen=True, slots=True)
class Handshake:
    """The 68-byte opening of a connection; v2 torrents use their truncated info-hash."""

    info_hash: bytes
    peer_id: bytes
    reserved: bytes = bytes(8)

    @classmethod
    def build(
        cls, info_hash: bytes, peer_id: bytes, *, fast: bool, extensions: bool, v2: bool
    ) -> Handshake:
        reserved = bytearray(8)
        for enabled, (byte, mask) in (
            (fast, _RESERVED_FAST),
            (extensions, _RESERVED_EXTENSIONS),
            (v2, _RESERVED_V2),
        ):
            if enabled:
                reserved[byte] |= mask
        return cls(info_hash, peer_id, bytes(reserved))

    @classmethod
    def parse(cls, data: bytes) -> Handshake:
        if len(data) != HANDSHAKE_LENGTH:
            raise ProtocolError("handshake must be 68 bytes")
        if not data.startswith(PROTOCOL_PREFIX):
            raise ProtocolError("not a BitTorrent handshake")
        return cls(bytes(data[28:48]), bytes(data[48:68]), bytes(data[20:28]))

    def encode(self) -> bytes:
        if len(self.info_hash) != 20 or len(self.peer_id) != 20 or len(self.reserved) != 8:
            raise ValueError("handshake fields have wrong sizes")
        return PROTOCOL_PREFIX + self.reserved + self.info_hash + self.peer_id

    @property
    def supports_fast(self) -> bool:
        return _has_bit(self.reserved, _RESERVED_FAST)

    @property
    def supports_extensions(self) -> bool:
        return _has_bit(self.reserved, _RESERVED_EXTENSIONS)

    @property
    def supports_v2(self) -> bool:
        return _has_bit(self.reserved, _RESERVED_V2)


def bencode(value: object) -> bytes:
    """Bencode a value (dict keys must be bytes)."""
    # fastbencode re-exports its Rust functions without declaring them for mypy.
    encoded: bytes = fastbencode.bencode(value)  # type: ignore[attr-defined]
    return encoded


def bdecode_dict(data: bytes) -> dict[bytes, object]:
    # fastbencode raises ValueError/TypeError (and could hit RecursionError on deep
    # nesting); a peer's garbage must only ever surface as our ProtocolError.
    try:
        value: object = fastbencode.bdecode(data)  # type: ignore[attr-defined]
    except Exception as exc:
        raise ProtocolError(f"bad bencode: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("bencoded value is not a dictionary")
    return value


def _metadata_piece_count(size: int) -> int:
    return (size + METADATA_PIECE_SIZE - 1) // METADATA_PIECE_SIZE


def metadata_reply(metadata: bytes, piece: int) -> bytes:
    if not 0 <= piece < _metadata_piece_count(len(metadata)):
        return bencode({b"msg_type": 2, b"piece": piece})
    chunk = metadata[piece * METADATA_PIECE_SIZE : (piece + 1) * METADATA_PIECE_SIZE]
    header = bencode({b"msg_type": 1, b"piece": piece, b"total_size": len(metadata)})
    return header + chunk


def extension_handshake(metadata_size: int, reqq: int) -> bytes:
    """Our BEP 10 handshake payload: ut_metadata, the metadata size, our request queue."""
    return bencode(
        {
            b"m": {b"ut_metadata": UT_METADATA_ID},
            b"metadata_size": metadata_size,
            b"reqq": reqq,
            b"v": CLIENT_VERSION,
        }
    )


def peer_ut_metadata_id(payload: bytes, current: int) -> int:
    """The peer's ut_metadata id from its extension handshake (``current`` if unnamed)."""
    names = bdecode_dict(payload).get(b"m", {})
    if not isinstance(names, dict):
        raise ProtocolError("extension handshake 'm' is not a dictionary")
    ut_metadata = names.get(b"ut_metadata", current)
    if not isinstance(ut_metadata, int) or not 0 <= ut_metadata <= 255:
        raise ProtocolError("bad ut_metadata extension id")
    return ut_metadata


def ut_metadata_request(payload: bytes) -> int | None:
    """The metadata piece a ut_metadata message asks for; None for data and rejects."""
    message = bdecode_dict(payload)
    msg_type, piece = message.get(b"msg_type"), message.get(b"piece")
    if not isinstance(msg_type, int) or not isinstance(piece, int):
        raise ProtocolError("ut_metadata message without msg_type and piece")
    return piece if msg_type == 0 else None
