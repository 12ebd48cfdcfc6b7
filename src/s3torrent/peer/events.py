"""What the peer wire's state machine reports to the I/O layer around it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "ConnectionClosed",
    "Event",
    "HandshakeReceived",
    "MetadataRequested",
    "PeerBitfield",
    "PeerHas",
    "PeerHaveAll",
    "PeerInterested",
    "PeerNotInterested",
    "PieceRequested",
    "RequestCancelled",
]


@dataclass(frozen=True, slots=True)
class HandshakeReceived:
    info_hash: bytes
    peer_id: bytes
    supports_fast: bool
    supports_extensions: bool
    supports_v2: bool = False


@dataclass(slots=True)
class PieceRequested:
    """A validated block request; serve it with send_piece_header + payload + piece_sent.

    Not frozen, unlike the other events: a downloading peer makes one per block, and a
    frozen dataclass costs twice as much to make. Treat it as read-only all the same."""

    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True)
class RequestCancelled:
    index: int
    begin: int
    length: int


@dataclass(slots=True)
class PeerHas:
    """The peer has this piece (a HAVE, or one a late advertisement added). Not frozen:
    every peer sends one per piece, and the origin hears them all. Treat it as read-only
    all the same."""

    index: int


@dataclass(frozen=True, slots=True)
class PeerBitfield:
    bitfield: bytes


@dataclass(frozen=True, slots=True)
class PeerHaveAll:
    pass


@dataclass(frozen=True, slots=True)
class PeerInterested:
    pass


@dataclass(frozen=True, slots=True)
class PeerNotInterested:
    pass


@dataclass(frozen=True, slots=True)
class MetadataRequested:
    """A ut_metadata request; already answered, reported for metering."""

    piece: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer broke the protocol: drop the connection, send nothing more."""

    reason: str


Event: TypeAlias = (
    HandshakeReceived
    | PieceRequested
    | RequestCancelled
    | PeerHas
    | PeerBitfield
    | PeerHaveAll
    | PeerInterested
    | PeerNotInterested
    | MetadataRequested
    | ConnectionClosed
)
