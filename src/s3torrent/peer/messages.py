"""The peer wire's messages and their codec (BEP 3, BEP 6, BEP 10 framing, BEP 52).

Pure: values in, bytes out (``encode_message``) and bytes in, values out
(``MessageDecoder``). Nothing here knows which messages are legal when; that is the
state table's job (``state.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias

__all__ = [
    "BLOCK_SIZE",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "HASH_HEADER_SIZE",
    "MAX_EXTENDED_PAYLOAD",
    "PIECE_HEADER_SIZE",
    "AllowedFast",
    "Bitfield",
    "Cancel",
    "Choke",
    "Extended",
    "HashReject",
    "HashRequest",
    "Hashes",
    "Have",
    "HaveAll",
    "HaveNone",
    "HaveRun",
    "Interested",
    "KeepAlive",
    "Message",
    "MessageDecoder",
    "NotInterested",
    "Piece",
    "Port",
    "ProtocolError",
    "RejectRequest",
    "Request",
    "RequestRun",
    "Suggest",
    "Unchoke",
    "decode_have_run",
    "decode_request_run",
    "encode_message",
    "piece_header",
]


class ProtocolError(Exception):
    """The peer broke the wire protocol; drop this connection and nothing else."""


BLOCK_SIZE: Final = 16 * 1024
# A seed only ever receives small messages; the largest legitimate ones are an
# extension message or a bitfield. 64 KiB + a piece header leaves room for lenient
# clients without letting a peer make us buffer megabytes.
DEFAULT_MAX_MESSAGE_SIZE: Final = 64 * 1024 + 13
# The largest extension message a peer has a reason to send a seed: a ut_metadata data
# message (16 KiB + its bencoded header) from a confused peer; handshakes and ut_pex
# (at most 50 peers a message) are far smaller.
MAX_EXTENDED_PAYLOAD: Final = 17 * 1024

_U32: Final = struct.Struct(">I")
_PREFIX_AND_ID: Final = struct.Struct(">IB")
_REQUEST_FRAME: Final = struct.Struct(">5xIII")  # a whole request: (index, begin, length)
_REQUEST_PREFIX: Final = _PREFIX_AND_ID.pack(13, 6)  # length prefix and id of a request
_HAVE_FRAME: Final = struct.Struct(">5xI")  # a whole HAVE: (index,)
_HAVE_PREFIX: Final = _PREFIX_AND_ID.pack(5, 4)  # length prefix and id of a HAVE
_HASH_HEADER: Final = struct.Struct(">32sIIII")
# Payload bytes before a piece's block / a hashes message's hashes.
PIECE_HEADER_SIZE: Final = 8
HASH_HEADER_SIZE: Final = _HASH_HEADER.size


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


@dataclass(slots=True)
class RequestRun:
    """REQUEST messages that came back to back, decoded in one pass: (index, begin,
    length) each, in wire order. Not a message of its own: ``MessageDecoder.feed_runs``
    yields it in place of the REQUESTs, ``feed`` never does."""

    blocks: list[tuple[int, int, int]]


@dataclass(slots=True)
class HaveRun:
    """HAVE messages that came back to back, decoded in one pass: their piece indices in
    wire order. Every peer tells the origin of every piece it gets, so these are the
    messages an origin receives most of after requests. Not a message of its own, as
    ``RequestRun``."""

    indices: list[int]


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
    above the cap, a fixed-size message with the wrong length, or a variable-size one
    above its limit in ``payload_limits`` (by message id) fails as soon as its header
    arrives rather than after its body has been buffered.
    """

    def __init__(
        self,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        payload_limits: Mapping[int, int] | None = None,
    ) -> None:
        self.max_message_size = max_message_size
        self.payload_limits: Mapping[int, int] = payload_limits or {}
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        """Decode every complete message in the buffered bytes plus `data`."""
        messages: list[Message] = []
        for item in self.feed_runs(data):
            if isinstance(item, RequestRun):
                messages.extend(Request(*block) for block in item.blocks)
            elif isinstance(item, HaveRun):
                messages.extend(Have(index) for index in item.indices)
            else:
                messages.append(item)
        return messages

    def feed_runs(self, data: bytes) -> list[Message | RequestRun | HaveRun]:
        """Like `feed`, with each run of back-to-back REQUESTs as one `RequestRun` and of
        back-to-back HAVEs as one `HaveRun`."""
        self._buffer += data
        messages: list[Message | RequestRun | HaveRun] = []
        buffer = self._buffer
        view = memoryview(buffer)
        offset = 0
        try:
            while True:
                # A downloading peer sends long runs of requests, and HAVEs: decode a run
                # in one tight pass, without the general path's per-message lookups.
                if buffer.startswith(_REQUEST_PREFIX, offset):
                    blocks, offset = decode_request_run(buffer, offset)
                    if blocks:
                        messages.append(RequestRun(blocks))
                        continue
                elif buffer.startswith(_HAVE_PREFIX, offset):
                    indices, offset = decode_have_run(buffer, offset)
                    if indices:
                        messages.append(HaveRun(indices))
                        continue
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
            msg_id = view[offset + 4]
            _check_size(msg_id, size - 1)
            limit = self.payload_limits.get(msg_id)
            if limit is not None and size - 1 > limit:
                raise ProtocolError(f"message {msg_id} of {size - 1} bytes exceeds {limit}")
        return size if available >= 4 + size else None


def decode_request_run(
    buffer: bytes | bytearray, offset: int = 0
) -> tuple[list[tuple[int, int, int]], int]:
    """The complete REQUEST messages framed back to back in `buffer` from `offset`, as
    (index, begin, length), and the offset after the last of them. Stops at the first
    bytes that are not a whole request (another message, or one still arriving); the
    values are as sent, for the caller to check."""
    blocks: list[tuple[int, int, int]] = []
    append = blocks.append
    unpack = _REQUEST_FRAME.unpack_from
    size = _REQUEST_FRAME.size
    last = len(buffer) - size
    while offset <= last and buffer.startswith(_REQUEST_PREFIX, offset):
        append(unpack(buffer, offset))
        offset += size
    return blocks, offset


def decode_have_run(buffer: bytes | bytearray, offset: int = 0) -> tuple[list[int], int]:
    """The piece indices of the complete HAVE messages framed back to back in `buffer` from
    `offset`, and the offset after the last of them; as `decode_request_run`, the values
    are as sent, for the caller to check."""
    indices: list[int] = []
    append = indices.append
    unpack = _HAVE_FRAME.unpack_from
    size = _HAVE_FRAME.size
    last = len(buffer) - size
    while offset <= last and buffer.startswith(_HAVE_PREFIX, offset):
        append(unpack(buffer, offset)[0])
        offset += size
    return indices, offset


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
