"""Sans-IO BitTorrent peer wire for a seed-only peer (the origin).

Speaks BEP 3 (core), BEP 6 (fast), BEP 10 (extension protocol), BEP 9 (ut_metadata)
and the BEP 52 hash request/hashes/hash reject messages. Bytes go in through
``SeedConnection.receive_data``; decisions come in through method calls; bytes to
write come out of ``data_to_send``. Nothing here touches a socket or reads a clock:
every method that needs time takes ``now``.

Piece payloads never pass through this module: ``send_piece_header`` queues the
13-byte prefix and the I/O layer writes the block itself (possibly with sendfile).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Final, TypeAlias

import fastbencode

from s3torrent.torrent.merkle import merkle_layers

__all__ = [
    "BLOCK_SIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "HANDSHAKE_LENGTH",
    "METADATA_PIECE_SIZE",
    "UT_METADATA_ID",
    "AllowedFast",
    "Bitfield",
    "Cancel",
    "Choke",
    "ConnectionClosed",
    "Event",
    "Extended",
    "Handshake",
    "HandshakeReceived",
    "HashReject",
    "HashRequest",
    "Hashes",
    "Have",
    "HaveAll",
    "HaveNone",
    "Interested",
    "KeepAlive",
    "Message",
    "MessageDecoder",
    "MetadataRequested",
    "NotInterested",
    "PeerBitfield",
    "PeerHas",
    "PeerHaveAll",
    "PeerInterested",
    "PeerNotInterested",
    "Phase",
    "Piece",
    "PieceRequested",
    "Port",
    "ProtocolError",
    "RejectRequest",
    "Request",
    "RequestCancelled",
    "SeedConnection",
    "Suggest",
    "TorrentView",
    "Unchoke",
    "WireLimits",
    "answer_hash_request",
    "encode_message",
    "merkle_layers",
    "piece_header",
]


class ProtocolError(Exception):
    """The peer broke the wire protocol; drop this connection and nothing else."""


BLOCK_SIZE: Final = 16 * 1024
METADATA_PIECE_SIZE: Final = 16 * 1024
# A seed only ever receives small messages; the largest legitimate ones are an
# extension message or a bitfield. 64 KiB + a piece header leaves room for lenient
# clients without letting a peer make us buffer megabytes.
DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024 + 13
HANDSHAKE_LENGTH: Final = 68
# Our local extension id for ut_metadata, announced in our BEP 10 handshake `m`.
UT_METADATA_ID: Final = 3
# BEP 52 says a hash request SHOULD NOT ask for more than 512 hashes; be lenient
# but bounded so one request cannot make us build a huge reply.
MAX_HASHES_PER_REQUEST: Final = 2048
CLIENT_VERSION: Final = b"s3torrent 0.1"

_PROTOCOL_PREFIX: Final = b"\x13BitTorrent protocol"
_U32: Final = struct.Struct(">I")
_PREFIX_AND_ID: Final = struct.Struct(">IB")
_HASH_HEADER: Final = struct.Struct(">32sIIII")


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class KeepAlive:
    MSG_ID: ClassVar[int | None] = None


@dataclass(frozen=True, slots=True)
class Choke:
    MSG_ID: ClassVar[int] = 0


@dataclass(frozen=True, slots=True)
class Unchoke:
    MSG_ID: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class Interested:
    MSG_ID: ClassVar[int] = 2


@dataclass(frozen=True, slots=True)
class NotInterested:
    MSG_ID: ClassVar[int] = 3


@dataclass(frozen=True, slots=True)
class Have:
    index: int
    MSG_ID: ClassVar[int] = 4


@dataclass(frozen=True, slots=True)
class Bitfield:
    bitfield: bytes
    MSG_ID: ClassVar[int] = 5


@dataclass(frozen=True, slots=True)
class Request:
    index: int
    begin: int
    length: int
    MSG_ID: ClassVar[int] = 6


@dataclass(frozen=True, slots=True)
class Piece:
    """A piece message's header; `length` payload bytes follow it on the wire."""

    index: int
    begin: int
    length: int
    MSG_ID: ClassVar[int] = 7


@dataclass(frozen=True, slots=True)
class Cancel:
    index: int
    begin: int
    length: int
    MSG_ID: ClassVar[int] = 8


@dataclass(frozen=True, slots=True)
class Port:
    port: int
    MSG_ID: ClassVar[int] = 9


@dataclass(frozen=True, slots=True)
class Suggest:
    index: int
    MSG_ID: ClassVar[int] = 13


@dataclass(frozen=True, slots=True)
class HaveAll:
    MSG_ID: ClassVar[int] = 14


@dataclass(frozen=True, slots=True)
class HaveNone:
    MSG_ID: ClassVar[int] = 15


@dataclass(frozen=True, slots=True)
class RejectRequest:
    index: int
    begin: int
    length: int
    MSG_ID: ClassVar[int] = 16


@dataclass(frozen=True, slots=True)
class AllowedFast:
    index: int
    MSG_ID: ClassVar[int] = 17


@dataclass(frozen=True, slots=True)
class Extended:
    ext_id: int
    payload: bytes
    MSG_ID: ClassVar[int] = 20


@dataclass(frozen=True, slots=True)
class HashRequest:
    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int
    MSG_ID: ClassVar[int] = 21


@dataclass(frozen=True, slots=True)
class Hashes:
    """BEP 52 hashes: base-layer hashes then uncle hashes, concatenated (32 bytes each)."""

    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int
    hashes: bytes
    MSG_ID: ClassVar[int] = 22


@dataclass(frozen=True, slots=True)
class HashReject:
    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int
    MSG_ID: ClassVar[int] = 23


Message: TypeAlias = (
    KeepAlive
    | Choke
    | Unchoke
    | Interested
    | NotInterested
    | Have
    | Bitfield
    | Request
    | Piece
    | Cancel
    | Port
    | Suggest
    | HaveAll
    | HaveNone
    | RejectRequest
    | AllowedFast
    | Extended
    | HashRequest
    | Hashes
    | HashReject
)


def _framed(msg_id: int, payload: bytes = b"") -> bytes:
    return _PREFIX_AND_ID.pack(len(payload) + 1, msg_id) + payload


def piece_header(index: int, begin: int, length: int) -> bytes:
    """The 13-byte prefix of a piece message; the caller writes `length` bytes after it."""
    return struct.pack(">IBII", 9 + length, Piece.MSG_ID, index, begin)


def encode_message(msg: Message) -> bytes:
    """Encode one message with its length prefix (for Piece: the header only)."""
    match msg:
        case KeepAlive():
            return bytes(4)
        case Choke() | Unchoke() | Interested() | NotInterested() | HaveAll() | HaveNone():
            return _framed(msg.MSG_ID)
        case Have(index) | Suggest(index) | AllowedFast(index):
            return _framed(msg.MSG_ID, _U32.pack(index))
        case Request(i, b, n) | Cancel(i, b, n) | RejectRequest(i, b, n):
            return _framed(msg.MSG_ID, struct.pack(">III", i, b, n))
        case Piece(index, begin, length):
            return piece_header(index, begin, length)
        case Bitfield(bits):
            return _framed(msg.MSG_ID, bits)
        case Port(port):
            return _framed(msg.MSG_ID, struct.pack(">H", port))
        case Extended(ext_id, payload):
            return _framed(msg.MSG_ID, bytes((ext_id,)) + payload)
        case HashRequest(root, base, index, length, proof) | HashReject(
            root, base, index, length, proof
        ):
            return _framed(msg.MSG_ID, _HASH_HEADER.pack(root, base, index, length, proof))
        case Hashes(root, base, index, length, proof, hashes):
            header = _HASH_HEADER.pack(root, base, index, length, proof)
            return _framed(msg.MSG_ID, header + hashes)
    raise TypeError(f"not a peer wire message: {msg!r}")


# Payload decoders by message id. Fixed-size messages list their exact payload
# size so a wrong length is caught from the 5-byte header, before buffering.
_PayloadDecoder: TypeAlias = Callable[[memoryview], Message]


def _ints(view: memoryview, count: int) -> tuple[int, ...]:
    return struct.unpack_from(f">{count}I", view)


def _hash_fields(view: memoryview) -> tuple[bytes, int, int, int, int]:
    root, base, index, length, proof = _HASH_HEADER.unpack_from(view)
    return bytes(root), base, index, length, proof


def _decode_hashes(view: memoryview) -> Message:
    if (len(view) - _HASH_HEADER.size) % 32:
        raise ProtocolError("hashes payload is not a whole number of hashes")
    return Hashes(*_hash_fields(view), bytes(view[_HASH_HEADER.size :]))


def _decode_extended(view: memoryview) -> Message:
    if not view:
        raise ProtocolError("extended message without an extension id")
    return Extended(view[0], bytes(view[1:]))


def _decode_piece(view: memoryview) -> Message:
    if len(view) < 8:
        raise ProtocolError("piece message shorter than its header")
    index, begin = _ints(view, 2)
    return Piece(index, begin, len(view) - 8)


_FIXED_SIZE: Final[dict[int, tuple[int, _PayloadDecoder]]] = {
    Choke.MSG_ID: (0, lambda v: Choke()),
    Unchoke.MSG_ID: (0, lambda v: Unchoke()),
    Interested.MSG_ID: (0, lambda v: Interested()),
    NotInterested.MSG_ID: (0, lambda v: NotInterested()),
    Have.MSG_ID: (4, lambda v: Have(*_ints(v, 1))),
    Request.MSG_ID: (12, lambda v: Request(*_ints(v, 3))),
    Cancel.MSG_ID: (12, lambda v: Cancel(*_ints(v, 3))),
    Port.MSG_ID: (2, lambda v: Port(*struct.unpack_from(">H", v))),
    Suggest.MSG_ID: (4, lambda v: Suggest(*_ints(v, 1))),
    HaveAll.MSG_ID: (0, lambda v: HaveAll()),
    HaveNone.MSG_ID: (0, lambda v: HaveNone()),
    RejectRequest.MSG_ID: (12, lambda v: RejectRequest(*_ints(v, 3))),
    AllowedFast.MSG_ID: (4, lambda v: AllowedFast(*_ints(v, 1))),
    HashRequest.MSG_ID: (_HASH_HEADER.size, lambda v: HashRequest(*_hash_fields(v))),
    HashReject.MSG_ID: (_HASH_HEADER.size, lambda v: HashReject(*_hash_fields(v))),
}
_VARIABLE_SIZE: Final[dict[int, _PayloadDecoder]] = {
    Bitfield.MSG_ID: lambda v: Bitfield(bytes(v)),
    Piece.MSG_ID: _decode_piece,
    Extended.MSG_ID: _decode_extended,
    Hashes.MSG_ID: _decode_hashes,
}


class MessageDecoder:
    """Incremental decoder of length-prefixed messages, split at any byte boundary.

    Between calls it holds at most ``max_message_size + 4`` bytes: a length prefix
    above the cap, or a fixed-size message with the wrong length, fails as soon as
    its header arrives rather than after its body has been buffered.
    """

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        """Decode every complete message in the buffered bytes plus `data`."""
        self._buffer += data
        messages: list[Message] = []
        view = memoryview(self._buffer)
        offset = 0
        try:
            while True:
                size = self._complete_message_size(view, offset)
                if size is None:
                    break
                messages.append(_decode_body(view[offset + 4 : offset + 4 + size]))
                offset += 4 + size
        finally:
            view.release()
        del self._buffer[:offset]
        return messages

    def _complete_message_size(self, view: memoryview, offset: int) -> int | None:
        available = len(view) - offset
        if available < 4:
            return None
        (size,) = _U32.unpack_from(view, offset)
        if size > self.max_message_size:
            raise ProtocolError(f"message length {size} exceeds cap {self.max_message_size}")
        if size and available >= 5:
            _check_size(view[offset + 4], size - 1)
        return size if available >= 4 + size else None


def _check_size(msg_id: int, payload_size: int) -> None:
    fixed = _FIXED_SIZE.get(msg_id)
    if fixed is not None:
        if payload_size != fixed[0]:
            raise ProtocolError(f"message {msg_id} has payload {payload_size}, not {fixed[0]}")
    elif msg_id not in _VARIABLE_SIZE:
        raise ProtocolError(f"unknown message id {msg_id}")


def _decode_body(body: memoryview) -> Message:
    if not body:
        return KeepAlive()
    msg_id, payload = body[0], body[1:]
    fixed = _FIXED_SIZE.get(msg_id)
    if fixed is not None:
        return fixed[1](payload)
    return _VARIABLE_SIZE[msg_id](payload)


# -------------------------------------------------------------------------- handshake

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
        if not data.startswith(_PROTOCOL_PREFIX):
            raise ProtocolError("not a BitTorrent handshake")
        return cls(bytes(data[28:48]), bytes(data[48:68]), bytes(data[20:28]))

    def encode(self) -> bytes:
        if len(self.info_hash) != 20 or len(self.peer_id) != 20 or len(self.reserved) != 8:
            raise ValueError("handshake fields have wrong sizes")
        return _PROTOCOL_PREFIX + self.reserved + self.info_hash + self.peer_id

    @property
    def supports_fast(self) -> bool:
        return _has_bit(self.reserved, _RESERVED_FAST)

    @property
    def supports_extensions(self) -> bool:
        return _has_bit(self.reserved, _RESERVED_EXTENSIONS)

    @property
    def supports_v2(self) -> bool:
        return _has_bit(self.reserved, _RESERVED_V2)


# -------------------------------------------------------------------- torrent, limits


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

    def wire_hashes(self) -> frozenset[bytes]:
        """Info-hashes a peer may name in its handshake for this torrent."""
        hashes = {self.info_hash}
        if self.info_hash_v2 is not None:
            hashes.add(self.info_hash_v2[:20])
        return frozenset(hashes)


@dataclass(frozen=True, slots=True)
class WireLimits:
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_outstanding_requests: int = 250
    # Every current client asks for 16 KiB; accept up to 128 KiB for old ones.
    max_request_length: int = 128 * 1024
    handshake_timeout: float = 30.0
    idle_timeout: float = 180.0
    keepalive_interval: float = 120.0
    # While the I/O layer decides on a handshake, bytes after it wait unparsed.
    max_early_bytes: int = DEFAULT_MAX_MESSAGE_SIZE + 4


# ------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class HandshakeReceived:
    info_hash: bytes
    peer_id: bytes
    supports_fast: bool
    supports_extensions: bool
    supports_v2: bool = False


@dataclass(frozen=True, slots=True)
class PieceRequested:
    """A validated block request; serve it with send_piece_header + payload + piece_sent."""

    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True)
class RequestCancelled:
    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True)
class PeerHas:
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


# ---------------------------------------------------------------------- bencode, BEP 9


def bencode(value: object) -> bytes:
    """Bencode a value (dict keys must be bytes)."""
    # fastbencode re-exports its Rust functions without declaring them for mypy.
    encoded: bytes = fastbencode.bencode(value)  # type: ignore[attr-defined]
    return encoded


def _bdecode_dict(data: bytes) -> dict[bytes, object]:
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


def _metadata_reply(metadata: bytes, piece: int) -> bytes:
    if not 0 <= piece < _metadata_piece_count(len(metadata)):
        return bencode({b"msg_type": 2, b"piece": piece})
    chunk = metadata[piece * METADATA_PIECE_SIZE : (piece + 1) * METADATA_PIECE_SIZE]
    header = bencode({b"msg_type": 1, b"piece": piece, b"total_size": len(metadata)})
    return header + chunk


# ---------------------------------------------------------------------- BEP 52 merkle


def answer_hash_request(request: HashRequest, torrent: TorrentView) -> Hashes | HashReject:
    """Serve a BEP 52 hash request from the piece layers, or reject it."""
    reject = HashReject(
        request.pieces_root,
        request.base_layer,
        request.index,
        request.length,
        request.proof_layers,
    )
    hashes = _hashes_for(request, torrent)
    if hashes is None:
        return reject
    return Hashes(
        request.pieces_root,
        request.base_layer,
        request.index,
        request.length,
        request.proof_layers,
        hashes,
    )


def _hashes_for(request: HashRequest, torrent: TorrentView) -> bytes | None:
    piece_layer = torrent.piece_layers.get(request.pieces_root)
    blocks_per_piece, remainder = divmod(torrent.piece_length, BLOCK_SIZE)
    if piece_layer is None or not piece_layer or len(piece_layer) % 32 or remainder:
        return None
    if blocks_per_piece & (blocks_per_piece - 1):
        return None
    layers = merkle_layers(piece_layer, torrent.piece_length)
    if layers[-1][0] != request.pieces_root:
        return None  # corrupt piece layer: never serve hashes that cannot verify
    piece_layer_number = blocks_per_piece.bit_length() - 1  # layers counted from leaves
    relative = request.base_layer - piece_layer_number
    if not 0 <= relative < len(layers):
        return None  # we hold no block hashes, only the piece layer and above
    layer = layers[relative]
    root_layer = len(layers) - 1
    live = -(-(len(piece_layer) // 32) // (1 << relative))  # hashes before padding
    length, index = request.length, request.index
    if not 1 <= length <= MAX_HASHES_PER_REQUEST:
        return None
    span = 1 << (length - 1).bit_length()
    if index % span or index + span > len(layer):
        return None
    # Lengths below two or off a power of two are legal only when cut short by
    # the end of the layer.
    if (span != length or length < 2) and index + length < live and len(layer) > 1:
        return None
    if span < 2 and len(layer) > 1:
        return None
    covered = span.bit_length() - 1  # layers above the base computable from the hashes
    first_uncle = max(covered, 1)
    if request.proof_layers >= first_uncle and relative + request.proof_layers >= root_layer:
        return None  # the root has no sibling to send
    out = bytearray(b"".join(layer[index : index + length]))
    node = index
    for step in range(1, request.proof_layers + 1):
        node >>= 1
        if step >= first_uncle:
            out += layers[relative + step][node ^ 1]
    return bytes(out)


# ------------------------------------------------------------------- the state machine


class Phase(enum.Enum):
    AWAIT_HANDSHAKE = "await_handshake"
    AWAIT_DECISION = "await_decision"  # HandshakeReceived emitted; accept() or reject()
    AWAIT_ADVERT = "await_advert"  # peer may still send bitfield / have_all / have_none
    ESTABLISHED = "established"
    CLOSED = "closed"


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


def _transitions() -> dict[tuple[Phase, type], Phase]:
    table: dict[tuple[Phase, type], Phase] = {}
    for msg_type in (
        KeepAlive, Choke, Unchoke, Interested, NotInterested, Have, Bitfield, Request,
        Cancel, Port, Suggest, HaveAll, HaveNone, AllowedFast, Extended, HashRequest,
    ):  # fmt: skip
        if msg_type in _NEUTRAL:
            table[Phase.AWAIT_ADVERT, msg_type] = Phase.AWAIT_ADVERT
        else:
            table[Phase.AWAIT_ADVERT, msg_type] = Phase.ESTABLISHED
        if msg_type not in _ADVERTS:
            table[Phase.ESTABLISHED, msg_type] = Phase.ESTABLISHED
    return table


# (phase, incoming message type) -> next phase; a pair missing here is a violation.
_TRANSITIONS: Final = _transitions()

_Block: TypeAlias = tuple[int, int, int]


def _full_bitfield(piece_count: int) -> bytes:
    bits = bytearray(b"\xff" * ((piece_count + 7) // 8))
    if piece_count % 8:
        bits[-1] = (0xFF << (8 - piece_count % 8)) & 0xFF
    return bytes(bits)


class SeedConnection:
    """One peer connection of a seed that has every piece of one torrent."""

    def __init__(
        self,
        our_peer_id: bytes,
        now: float,
        limits: WireLimits | None = None,
    ) -> None:
        self.limits = limits or WireLimits()
        self.our_peer_id = our_peer_id
        self.phase = Phase.AWAIT_HANDSHAKE
        self.torrent: TorrentView | None = None
        self.peer_handshake: Handshake | None = None
        self.fast = False
        self.extensions = False
        self.choking = True
        self.peer_interested = False
        self.peer_client: bytes | None = None
        self._peer_ut_metadata = 0
        self._initiator_torrent: TorrentView | None = None
        self._super_seed = False
        self._incoming = bytearray()  # handshake and early bytes, before the decoder
        self._decoder = MessageDecoder(self.limits.max_message_size)
        self._outgoing = bytearray()
        self._pending: dict[_Block, None] = {}  # insertion-ordered set
        self._in_flight: set[_Block] = set()
        self._allowed_fast: set[int] = set()
        self._advertised = bytearray()
        self._peer_pieces = bytearray()
        self._peer_piece_count = 0
        self._created_at = now
        self._last_received = now
        self._last_sent = now

    @classmethod
    def connect(
        cls,
        torrent: TorrentView,
        our_peer_id: bytes,
        now: float,
        limits: WireLimits | None = None,
        *,
        super_seed: bool = False,
    ) -> SeedConnection:
        """A connection we open to a peer: our handshake goes first."""
        conn = cls(our_peer_id, now, limits)
        conn._initiator_torrent = torrent
        conn._super_seed = super_seed
        conn._send_raw(conn._our_handshake(torrent, torrent.info_hash).encode())
        return conn

    # ------------------------------------------------------------------ queries

    @property
    def closed(self) -> bool:
        return self.phase is Phase.CLOSED

    @property
    def outstanding_requests(self) -> int:
        return len(self._pending) + len(self._in_flight)

    @property
    def peer_piece_count(self) -> int:
        return self._peer_piece_count

    @property
    def peer_is_seed(self) -> bool:
        return self.torrent is not None and self._peer_piece_count == self.torrent.piece_count

    def peer_has(self, index: int) -> bool:
        return index < len(self._peer_pieces) * 8 and _get_bit(self._peer_pieces, index)

    def is_pending(self, index: int, begin: int, length: int) -> bool:
        return (index, begin, length) in self._pending

    def keepalive_due(self, now: float) -> bool:
        return (
            self.phase in (Phase.AWAIT_ADVERT, Phase.ESTABLISHED)
            and now - self._last_sent >= self.limits.keepalive_interval
        )

    def timed_out(self, now: float) -> bool:
        if self.phase in (Phase.AWAIT_HANDSHAKE, Phase.AWAIT_DECISION):
            return now - self._created_at >= self.limits.handshake_timeout
        if self.phase is Phase.CLOSED:
            return False
        return now - self._last_received >= self.limits.idle_timeout

    def data_to_send(self) -> bytes:
        """Drain the bytes queued for the peer (piece payloads excluded)."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        if self.phase is Phase.CLOSED:
            return []
        self._last_received = now
        sent_before = len(self._outgoing)
        try:
            events = self._receive(data)
        except ProtocolError as exc:
            return [self._close(str(exc))]
        if len(self._outgoing) > sent_before:
            self._last_sent = now
        return events

    def _receive(self, data: bytes) -> list[Event]:
        if self.phase in (Phase.AWAIT_HANDSHAKE, Phase.AWAIT_DECISION):
            self._incoming += data
            if len(self._incoming) > HANDSHAKE_LENGTH + self.limits.max_early_bytes:
                raise ProtocolError("too much data before the handshake was answered")
            if self.phase is Phase.AWAIT_DECISION:
                return []
            return self._receive_handshake()
        events: list[Event] = []
        for msg in self._decoder.feed(data):
            events.extend(self._on_message(msg))
        return events

    def _receive_handshake(self) -> list[Event]:
        if len(self._incoming) < len(_PROTOCOL_PREFIX):
            if not _PROTOCOL_PREFIX.startswith(bytes(self._incoming)):
                raise ProtocolError("not a BitTorrent handshake")
            return []
        if len(self._incoming) < HANDSHAKE_LENGTH:
            if not self._incoming.startswith(_PROTOCOL_PREFIX):
                raise ProtocolError("not a BitTorrent handshake")
            return []
        hs = Handshake.parse(bytes(self._incoming[:HANDSHAKE_LENGTH]))
        del self._incoming[:HANDSHAKE_LENGTH]
        self.peer_handshake = hs
        event = HandshakeReceived(
            hs.info_hash, hs.peer_id, hs.supports_fast, hs.supports_extensions, hs.supports_v2
        )
        if self._initiator_torrent is None:
            self.phase = Phase.AWAIT_DECISION
            return [event]
        torrent = self._initiator_torrent
        if hs.info_hash not in torrent.wire_hashes():
            raise ProtocolError("peer answered with another info-hash")
        self._establish(torrent)
        early = bytes(self._incoming)
        self._incoming.clear()
        return [event, *self._receive(early)]

    # ------------------------------------------------------------------ decisions

    def accept(
        self,
        torrent: TorrentView,
        now: float,
        *,
        super_seed: bool = False,
        upgrade_to_v2: bool = False,
    ) -> list[Event]:
        """Serve `torrent` to the peer whose handshake was received.

        Returns events from bytes that arrived behind the handshake. With
        `super_seed` the peer is told we have nothing and pieces are revealed with
        `have`. With `upgrade_to_v2` a hybrid torrent's v1 handshake that offers v2
        is answered with the v2 info-hash (BEP 52 upgrade path).
        """
        if self.phase is not Phase.AWAIT_DECISION or self.peer_handshake is None:
            raise RuntimeError(f"accept() in phase {self.phase}")
        peer = self.peer_handshake
        if peer.info_hash not in torrent.wire_hashes():
            raise ValueError("torrent does not match the peer's info-hash")
        wire_hash = peer.info_hash
        if upgrade_to_v2 and peer.supports_v2 and torrent.info_hash_v2 is not None:
            wire_hash = torrent.info_hash_v2[:20]
        self._super_seed = super_seed
        self._send_raw(self._our_handshake(torrent, wire_hash).encode())
        self._last_sent = now
        early = bytes(self._incoming)
        self._incoming.clear()
        self._establish(torrent)
        return self.receive_data(early, now) if early else []

    def reject(self) -> None:
        """Refuse the handshake (unknown or unpublished torrent): nothing is sent."""
        self.phase = Phase.CLOSED
        self._outgoing.clear()

    def choke(self) -> None:
        if self.choking or not self._open():
            return
        self.choking = True
        self._send(Choke())
        # BEP 6: a choke no longer implies the peer's requests are void, so each
        # one is rejected explicitly; without fast, the choke itself drops them.
        for block in [b for b in self._pending if b[0] not in self._allowed_fast]:
            del self._pending[block]
            if self.fast:
                self._send(RejectRequest(*block))

    def unchoke(self) -> None:
        if self.choking and self._open():
            self.choking = False
            self._send(Unchoke())

    def send_piece_header(self, index: int, begin: int, length: int) -> bool:
        """Queue a piece header for a pending request; False if it was cancelled meanwhile.

        On True, drain data_to_send() and write exactly `length` payload bytes next,
        then call piece_sent().
        """
        block = (index, begin, length)
        if not self._open() or block not in self._pending:
            return False
        del self._pending[block]
        self._in_flight.add(block)
        self._outgoing += piece_header(index, begin, length)
        return True

    def piece_sent(self, index: int, begin: int, length: int, now: float) -> None:
        self._in_flight.discard((index, begin, length))
        self._last_sent = now

    def reject_request(self, index: int, begin: int, length: int) -> None:
        """Refuse a pending request (fast peers hear a reject; others hear nothing)."""
        block = (index, begin, length)
        if block not in self._pending:
            return
        del self._pending[block]
        if self.fast and self._open():
            self._send(RejectRequest(*block))

    def suggest(self, index: int) -> None:
        if self.fast and self._open():
            self._send(Suggest(index))

    def allowed_fast(self, index: int) -> None:
        if self.fast and self._open() and index not in self._allowed_fast:
            self._allowed_fast.add(index)
            self._send(AllowedFast(index))

    def have(self, index: int) -> None:
        """Reveal one piece (super-seeding); a no-op for pieces already advertised."""
        if not 0 <= index < len(self._advertised) * 8:
            raise ValueError(f"piece index {index} out of range")
        if self._open() and not _get_bit(self._advertised, index):
            _set_bit(self._advertised, index)
            self._send(Have(index))

    def send_keepalive(self, now: float) -> None:
        if self._open():
            self._send(KeepAlive())
            self._last_sent = now

    # ------------------------------------------------------------------ internals

    def _open(self) -> bool:
        return self.phase in (Phase.AWAIT_ADVERT, Phase.ESTABLISHED)

    def _send(self, msg: Message) -> None:
        self._outgoing += encode_message(msg)

    def _send_raw(self, data: bytes) -> None:
        self._outgoing += data

    def _close(self, reason: str) -> ConnectionClosed:
        self.phase = Phase.CLOSED
        self._outgoing.clear()
        self._pending.clear()
        return ConnectionClosed(reason)

    def _our_handshake(self, torrent: TorrentView, wire_hash: bytes) -> Handshake:
        return Handshake.build(
            wire_hash,
            self.our_peer_id,
            fast=True,
            extensions=True,
            v2=torrent.info_hash_v2 is not None,
        )

    def _establish(self, torrent: TorrentView) -> None:
        peer = self.peer_handshake
        assert peer is not None
        self.torrent = torrent
        self.fast = peer.supports_fast
        self.extensions = peer.supports_extensions
        self.phase = Phase.AWAIT_ADVERT
        bitfield_size = (torrent.piece_count + 7) // 8
        # A bitfield for a torrent with very many pieces may exceed the default cap.
        self._decoder.max_message_size = max(self.limits.max_message_size, bitfield_size + 1)
        self._peer_pieces = bytearray(bitfield_size)
        if self.extensions:
            self._send(Extended(0, self._extension_handshake(torrent)))
        self._advertise(torrent)

    def _extension_handshake(self, torrent: TorrentView) -> bytes:
        return bencode(
            {
                b"m": {b"ut_metadata": UT_METADATA_ID},
                b"metadata_size": len(torrent.metadata),
                b"reqq": self.limits.max_outstanding_requests,
                b"v": CLIENT_VERSION,
            }
        )

    def _advertise(self, torrent: TorrentView) -> None:
        if self._super_seed:
            self._advertised = bytearray((torrent.piece_count + 7) // 8)
            if self.fast:
                self._send(HaveNone())
            return
        self._advertised = bytearray(_full_bitfield(torrent.piece_count))
        if self.fast:
            self._send(HaveAll())
        else:
            self._send(Bitfield(bytes(self._advertised)))

    def _on_message(self, msg: Message) -> list[Event]:
        msg_type = type(msg)
        if msg_type in _NEVER_TO_A_SEED:
            raise ProtocolError(_NEVER_TO_A_SEED[msg_type])
        if msg_type in _FAST_ONLY and not self.fast:
            raise ProtocolError(f"{msg_type.__name__} without the fast extension")
        if msg_type is Extended and not self.extensions:
            raise ProtocolError("extension message without BEP 10 negotiated")
        next_phase = _TRANSITIONS.get((self.phase, msg_type))
        if next_phase is None:
            raise ProtocolError(f"{msg_type.__name__} not allowed in phase {self.phase.value}")
        self.phase = next_phase
        handler = _HANDLERS.get(msg_type)
        return handler(self, msg) if handler is not None else []

    def _torrent(self) -> TorrentView:
        assert self.torrent is not None
        return self.torrent

    def _check_index(self, index: int) -> None:
        if index >= self._torrent().piece_count:
            raise ProtocolError(f"piece index {index} out of range")

    def _on_interested(self, msg: Message) -> list[Event]:
        if self.peer_interested:
            return []
        self.peer_interested = True
        return [PeerInterested()]

    def _on_not_interested(self, msg: Message) -> list[Event]:
        if not self.peer_interested:
            return []
        self.peer_interested = False
        return [PeerNotInterested()]

    def _on_have(self, msg: Message) -> list[Event]:
        assert isinstance(msg, Have)
        self._check_index(msg.index)
        if not _get_bit(self._peer_pieces, msg.index):
            _set_bit(self._peer_pieces, msg.index)
            self._peer_piece_count += 1
        return [PeerHas(msg.index)]

    def _on_bitfield(self, msg: Message) -> list[Event]:
        assert isinstance(msg, Bitfield)
        piece_count = self._torrent().piece_count
        if len(msg.bitfield) != (piece_count + 7) // 8:
            raise ProtocolError("bitfield has the wrong length")
        if piece_count % 8 and msg.bitfield[-1] & (0xFF >> (piece_count % 8)):
            raise ProtocolError("bitfield sets spare bits")
        self._peer_pieces = bytearray(msg.bitfield)
        self._peer_piece_count = sum(byte.bit_count() for byte in msg.bitfield)
        return [PeerBitfield(msg.bitfield)]

    def _on_have_all(self, msg: Message) -> list[Event]:
        piece_count = self._torrent().piece_count
        self._peer_pieces = bytearray(_full_bitfield(piece_count))
        self._peer_piece_count = piece_count
        return [PeerHaveAll()]

    def _on_request(self, msg: Message) -> list[Event]:
        assert isinstance(msg, Request)
        torrent = self._torrent()
        block = (msg.index, msg.begin, msg.length)
        self._check_index(msg.index)
        if not 0 < msg.length <= self.limits.max_request_length:
            raise ProtocolError(f"request length {msg.length} out of bounds")
        if msg.begin + msg.length > torrent.piece_size(msg.index):
            raise ProtocolError("request runs past the end of its piece")
        if block in self._pending or block in self._in_flight:
            return []
        servable = _get_bit(self._advertised, msg.index) and (
            not self.choking or msg.index in self._allowed_fast
        )
        if servable and self.outstanding_requests >= self.limits.max_outstanding_requests:
            if not self.fast:
                raise ProtocolError("too many outstanding requests")
            servable = False
        if not servable:
            if self.fast:
                self._send(RejectRequest(*block))
            return []
        self._pending[block] = None
        return [PieceRequested(*block)]

    def _on_cancel(self, msg: Message) -> list[Event]:
        assert isinstance(msg, Cancel)
        block = (msg.index, msg.begin, msg.length)
        if block not in self._pending:
            return []  # already served, in flight, or never asked: nothing to undo
        del self._pending[block]
        # BEP 6: a cancelled request still gets an answer, and a reject is cheapest.
        if self.fast:
            self._send(RejectRequest(*block))
        return [RequestCancelled(*block)]

    def _on_hash_request(self, msg: Message) -> list[Event]:
        assert isinstance(msg, HashRequest)
        self._send(answer_hash_request(msg, self._torrent()))
        return []

    def _on_extended(self, msg: Message) -> list[Event]:
        assert isinstance(msg, Extended)
        if msg.ext_id == 0:
            self._on_extension_handshake(_bdecode_dict(msg.payload))
            return []
        if msg.ext_id == UT_METADATA_ID:
            return self._on_ut_metadata(_bdecode_dict(msg.payload))
        return []  # an extension we never announced: BEP 10 says ignore it

    def _on_extension_handshake(self, handshake: dict[bytes, object]) -> None:
        names = handshake.get(b"m", {})
        if not isinstance(names, dict):
            raise ProtocolError("extension handshake 'm' is not a dictionary")
        ut_metadata = names.get(b"ut_metadata", self._peer_ut_metadata)
        if not isinstance(ut_metadata, int) or not 0 <= ut_metadata <= 255:
            raise ProtocolError("bad ut_metadata extension id")
        self._peer_ut_metadata = ut_metadata
        client = handshake.get(b"v")
        if isinstance(client, bytes):
            self.peer_client = client

    def _on_ut_metadata(self, message: dict[bytes, object]) -> list[Event]:
        msg_type, piece = message.get(b"msg_type"), message.get(b"piece")
        if not isinstance(msg_type, int) or not isinstance(piece, int):
            raise ProtocolError("ut_metadata message without msg_type and piece")
        if msg_type != 0:
            return []  # data and reject answer requests a seed never makes
        if self._peer_ut_metadata:
            reply = _metadata_reply(self._torrent().metadata, piece)
            self._send(Extended(self._peer_ut_metadata, reply))
        return [MetadataRequested(piece)]


def _get_bit(bits: bytearray | bytes, index: int) -> bool:
    byte = index >> 3
    return byte < len(bits) and bool(bits[byte] & (0x80 >> (index & 7)))


def _set_bit(bits: bytearray, index: int) -> None:
    bits[index >> 3] |= 0x80 >> (index & 7)


_Handler: TypeAlias = Callable[[SeedConnection, Message], list[Event]]

# Messages absent here are legal and need no action (keep-alive, port, suggest...).
_HANDLERS: Final[dict[type, _Handler]] = {
    Interested: SeedConnection._on_interested,
    NotInterested: SeedConnection._on_not_interested,
    Have: SeedConnection._on_have,
    Bitfield: SeedConnection._on_bitfield,
    HaveAll: SeedConnection._on_have_all,
    Request: SeedConnection._on_request,
    Cancel: SeedConnection._on_cancel,
    HashRequest: SeedConnection._on_hash_request,
    Extended: SeedConnection._on_extended,
}
