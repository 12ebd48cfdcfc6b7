"""The peer wire's connection states and the table of legal transitions (pure).

``transition`` answers, for a message arriving in a phase, whether it is legal, which
phase follows and which rule applies; a pair missing from the table is a protocol
violation. Modelled on h11: the legal states are data, not scattered ``if``s.

One rule is not "handle it as usual": a piece advertisement (BITFIELD, HAVE ALL,
HAVE NONE) after the first one. BEP 3 allows a bitfield only as the first message,
but aria2 re-sends its bitfield after every 20 new pieces and HAVE ALL when it
completes; such a late advertisement is applied as the HAVEs it amounts to.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from s3torrent.peer.messages import (
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    Extended,
    Hashes,
    HashReject,
    HashRequest,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    Message,
    NotInterested,
    Piece,
    Port,
    ProtocolError,
    RejectRequest,
    Request,
    Suggest,
    Unchoke,
)

__all__ = [
    "TRANSITIONS",
    "Phase",
    "Rule",
    "Transition",
    "check_bitfield",
    "full_bitfield",
    "get_bit",
    "late_advert_pieces",
    "set_bit",
    "take_haves",
    "transition",
]


class Phase(enum.Enum):
    AWAIT_HANDSHAKE = "await_handshake"
    AWAIT_DECISION = "await_decision"  # HandshakeReceived emitted; accept() or reject()
    AWAIT_ADVERT = "await_advert"  # peer may still send bitfield / have_all / have_none
    ESTABLISHED = "established"
    CLOSED = "closed"


class Rule(enum.Enum):
    HANDLE = "handle"  # the message's own handler
    READVERT = "readvert"  # a late advertisement: the HAVEs it adds (late_advert_pieces)


@dataclass(frozen=True, slots=True)
class Transition:
    next_phase: Phase
    rule: Rule = Rule.HANDLE


_ADVERTS: Final = frozenset({Bitfield, HaveAll, HaveNone})
# Messages that neither announce the peer's pieces nor start a data exchange, so
# they may precede its bitfield (BEP 10 clients send their extension handshake first).
_NEUTRAL: Final = frozenset({KeepAlive, Extended, Port, Choke, Unchoke, HashRequest})
_FAST_ONLY: Final = frozenset({HaveAll, HaveNone, Suggest, RejectRequest, AllowedFast})
# A seed requests nothing, so these can only be a broken or hostile peer.
_NEVER_TO_A_SEED: Final[dict[type, str]] = {
    Piece: "unsolicited piece",
    RejectRequest: "reject for a request we never made",
    Hashes: "unsolicited hashes",
    HashReject: "hash reject for a request we never made",
}
_TO_A_SEED: Final = (
    KeepAlive, Choke, Unchoke, Interested, NotInterested, Have, Bitfield, Request,
    Cancel, Port, Suggest, HaveAll, HaveNone, AllowedFast, Extended, HashRequest,
)  # fmt: skip


def _transitions() -> dict[tuple[Phase, type], Transition]:
    table: dict[tuple[Phase, type], Transition] = {}
    for msg_type in _TO_A_SEED:
        after_advert = Phase.AWAIT_ADVERT if msg_type in _NEUTRAL else Phase.ESTABLISHED
        table[Phase.AWAIT_ADVERT, msg_type] = Transition(after_advert)
        rule = Rule.READVERT if msg_type in _ADVERTS else Rule.HANDLE
        table[Phase.ESTABLISHED, msg_type] = Transition(Phase.ESTABLISHED, rule)
    return table


# (phase, incoming message type) -> transition; a pair missing here is a violation.
TRANSITIONS: Final = _transitions()


def transition(phase: Phase, msg_type: type, *, fast: bool, extensions: bool) -> Transition:
    """The transition for `msg_type` arriving in `phase`; ProtocolError if it is illegal."""
    if msg_type in _NEVER_TO_A_SEED:
        raise ProtocolError(_NEVER_TO_A_SEED[msg_type])
    if msg_type in _FAST_ONLY and not fast:
        raise ProtocolError(f"{msg_type.__name__} without the fast extension")
    if msg_type is Extended and not extensions:
        raise ProtocolError("extension message without BEP 10 negotiated")
    step = TRANSITIONS.get((phase, msg_type))
    if step is None:
        raise ProtocolError(f"{msg_type.__name__} not allowed in phase {phase.value}")
    return step


# ------------------------------------------------------------------ bitfields


def full_bitfield(piece_count: int) -> bytes:
    bits = bytearray(b"\xff" * ((piece_count + 7) // 8))
    if piece_count % 8:
        bits[-1] = (0xFF << (8 - piece_count % 8)) & 0xFF
    return bytes(bits)


def get_bit(bits: bytearray | bytes, index: int) -> bool:
    byte = index >> 3
    return byte < len(bits) and bool(bits[byte] & (0x80 >> (index & 7)))


def take_haves(bits: bytearray, indices: list[int], piece_count: int) -> int:
    """Set the peer's bits of the pieces HAVEs name: how many were new. ProtocolError at an
    index out of range (the HAVEs before it taken, as if each had come alone)."""
    added = 0
    for index in indices:
        if index >= piece_count:
            raise ProtocolError(f"piece index {index} out of range")
        mask = 0x80 >> (index & 7)
        if not bits[index >> 3] & mask:
            bits[index >> 3] |= mask
            added += 1
    return added


def set_bit(bits: bytearray, index: int) -> None:
    bits[index >> 3] |= 0x80 >> (index & 7)


def check_bitfield(bitfield: bytes, piece_count: int) -> None:
    """ProtocolError unless `bitfield` is exactly the torrent's size with no spare bit set."""
    if len(bitfield) != (piece_count + 7) // 8:
        raise ProtocolError("bitfield has the wrong length")
    if piece_count % 8 and bitfield[-1] & (0xFF >> (piece_count % 8)):
        raise ProtocolError("bitfield sets spare bits")


def late_advert_pieces(msg: Message, peer_pieces: bytes | bytearray, piece_count: int) -> list[int]:
    """The pieces a late advertisement adds to what the peer announced before.

    A late HAVE NONE, or bits cleared in a late bitfield, tell a seed nothing: pieces
    are never un-had, so they add nothing.
    """
    if isinstance(msg, Bitfield):
        check_bitfield(msg.bitfield, piece_count)
        bits = msg.bitfield
    elif isinstance(msg, HaveAll):
        bits = full_bitfield(piece_count)
    elif isinstance(msg, HaveNone):
        return []
    else:
        raise TypeError(f"not a piece advertisement: {msg!r}")
    # The new bits found in C: a walk over every piece per 5-byte HAVE ALL let a peer
    # repeating it hold the loop for seconds per read; only bytes with new bits are walked.
    new = int.from_bytes(bits, "big") & ~int.from_bytes(peer_pieces, "big")
    if not new:
        return []
    news = new.to_bytes(len(bits), "big")
    return [i << 3 | j for i, byte in enumerate(news) if byte for j in range(8) if byte << j & 0x80]
