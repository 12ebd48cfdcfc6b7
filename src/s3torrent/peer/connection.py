"""Sans-IO BitTorrent peer connection of a seed-only peer (the origin).

Bytes go in through ``SeedConnection.receive_data``; decisions come in through method
calls; bytes to write come out of ``data_to_send``. Which message is legal when is the
state table's (``state.py``); this class keeps the connection's facts (what the peer
has, its pending requests) and answers. Nothing here touches a socket or reads a
clock: every method that needs time takes ``now``.

Piece payloads never pass through this module: ``send_piece_header`` queues the
13-byte prefix and the I/O layer writes the block itself (possibly with sendfile).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, TypeAlias

from s3torrent.peer.events import (
    ConnectionClosed,
    Event,
    HandshakeReceived,
    MetadataRequested,
    PeerBitfield,
    PeerHas,
    PeerHaveAll,
    PeerInterested,
    PeerNotInterested,
    PieceRequested,
    RequestCancelled,
)
from s3torrent.peer.handshake import (
    HANDSHAKE_LENGTH,
    PROTOCOL_PREFIX,
    UT_METADATA_ID,
    Handshake,
    extension_handshake,
    metadata_reply,
    peer_ut_metadata_id,
    ut_metadata_request,
)
from s3torrent.peer.hash_request import answer_hash_request
from s3torrent.peer.messages import (
    HASH_HEADER_SIZE,
    MAX_EXTENDED_PAYLOAD,
    PIECE_HEADER_SIZE,
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    Extended,
    Hashes,
    HashRequest,
    Have,
    HaveAll,
    HaveNone,
    HaveRun,
    Interested,
    KeepAlive,
    Message,
    MessageDecoder,
    NotInterested,
    Piece,
    ProtocolError,
    RejectRequest,
    Request,
    RequestRun,
    Suggest,
    Unchoke,
    encode_message,
    piece_header,
)
from s3torrent.peer.state import (
    Phase,
    Rule,
    check_bitfield,
    full_bitfield,
    get_bit,
    late_advert_pieces,
    set_bit,
    take_haves,
    transition,
)
from s3torrent.peer.torrent_view import TorrentView, WireLimits

__all__ = ["SeedConnection"]

_Block: TypeAlias = tuple[int, int, int]


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
        self._queue_bound = max(
            self.limits.max_queued_requests, self.limits.max_outstanding_requests
        )
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
        return index < len(self._peer_pieces) * 8 and get_bit(self._peer_pieces, index)

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
        for msg in self._decoder.feed_runs(data):
            if isinstance(msg, RequestRun):
                events.extend(self._on_requests(msg.blocks))
            elif isinstance(msg, HaveRun):
                events.extend(self._on_haves(msg.indices))
            else:
                events.extend(self._on_message(msg))
        return events

    def _receive_handshake(self) -> list[Event]:
        if len(self._incoming) < len(PROTOCOL_PREFIX):
            if not PROTOCOL_PREFIX.startswith(bytes(self._incoming)):
                raise ProtocolError("not a BitTorrent handshake")
            return []
        if len(self._incoming) < HANDSHAKE_LENGTH:
            if not self._incoming.startswith(PROTOCOL_PREFIX):
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

    def start_block(self, index: int, begin: int, length: int) -> bytes | None:
        """Like `send_piece_header`, but the header is returned rather than queued: the
        caller sends it, then `length` payload bytes (drain data_to_send() first, so
        control bytes queued earlier keep their place). None if the request is gone."""
        block = (index, begin, length)
        if block not in self._pending or not self._open():
            return None
        del self._pending[block]
        self._in_flight.add(block)
        return piece_header(index, begin, length)

    def piece_sent(self, index: int, begin: int, length: int, now: float) -> None:
        self._in_flight.discard((index, begin, length))
        self._last_sent = now

    def pieces_sent(self, blocks: Iterable[tuple[int, int, int]], now: float) -> None:
        """`piece_sent` for several blocks at once."""
        self._in_flight.difference_update(blocks)
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
        if self._open() and not get_bit(self._advertised, index):
            set_bit(self._advertised, index)
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
        # Every buffered message is bounded by what this torrent can need: a bitfield
        # by its real size, a piece or hashes message (never sent to a seed) by its
        # header, so their bodies are refused before they are buffered.
        self._decoder.payload_limits = {
            Bitfield.MSG_ID: bitfield_size,
            Extended.MSG_ID: MAX_EXTENDED_PAYLOAD,
            Piece.MSG_ID: PIECE_HEADER_SIZE,
            Hashes.MSG_ID: HASH_HEADER_SIZE,
        }
        self._peer_pieces = bytearray(bitfield_size)
        if self.extensions:
            self._send(Extended(0, self._extension_handshake(torrent)))
        self._advertise(torrent)

    def _extension_handshake(self, torrent: TorrentView) -> bytes:
        return extension_handshake(len(torrent.metadata), self.limits.max_outstanding_requests)

    def _advertise(self, torrent: TorrentView) -> None:
        if self._super_seed:
            self._advertised = bytearray((torrent.piece_count + 7) // 8)
            if self.fast:
                self._send(HaveNone())
            return
        self._advertised = bytearray(full_bitfield(torrent.piece_count))
        if self.fast:
            self._send(HaveAll())
        else:
            self._send(Bitfield(bytes(self._advertised)))

    def _on_message(self, msg: Message) -> list[Event]:
        msg_type = type(msg)
        step = transition(self.phase, msg_type, fast=self.fast, extensions=self.extensions)
        self.phase = step.next_phase
        if step.rule is Rule.READVERT:
            return self._on_late_advert(msg)
        handler = _HANDLERS.get(msg_type)
        return handler(self, msg) if handler is not None else []

    def _torrent(self) -> TorrentView:
        assert self.torrent is not None
        return self.torrent

    def _on_interested(self, msg: Message) -> list[Event]:
        if not self.choking:
            # We may have unchoked before the peer said it was interested, and some
            # clients (WebTorrent) only act on an UNCHOKE that follows their
            # INTERESTED: answer it again, as libtorrent does.
            self._send(Unchoke())
        if self.peer_interested:
            return []
        self.peer_interested = True
        return [PeerInterested()]

    def _on_not_interested(self, msg: Message) -> list[Event]:
        if not self.peer_interested:
            return []
        self.peer_interested = False
        return [PeerNotInterested()]

    def _on_haves(self, indices: list[int]) -> list[Event]:
        """A run of HAVEs, each taken as if it came alone: once one leaves the phase as it
        found it, the rest take that same step (the table's entry for a HAVE)."""
        events: list[Event] = []
        for i, index in enumerate(indices):
            step = transition(self.phase, Have, fast=self.fast, extensions=self.extensions)
            if step.rule is Rule.HANDLE and step.next_phase is self.phase:
                return events + self._haves(indices[i:])
            events += self._on_message(Have(index))
        return events

    def _on_have(self, msg: Message) -> list[Event]:
        assert isinstance(msg, Have)
        return self._haves([msg.index])

    def _haves(self, indices: list[int]) -> list[Event]:
        piece_count = self._torrent().piece_count
        self._peer_piece_count += take_haves(self._peer_pieces, indices, piece_count)
        return [PeerHas(index) for index in indices]

    def _on_bitfield(self, msg: Message) -> list[Event]:
        assert isinstance(msg, Bitfield)
        check_bitfield(msg.bitfield, self._torrent().piece_count)
        self._peer_pieces = bytearray(msg.bitfield)
        self._peer_piece_count = sum(byte.bit_count() for byte in msg.bitfield)
        return [PeerBitfield(msg.bitfield)]

    def _on_have_all(self, msg: Message) -> list[Event]:
        piece_count = self._torrent().piece_count
        self._peer_pieces = bytearray(full_bitfield(piece_count))
        self._peer_piece_count = piece_count
        return [PeerHaveAll()]

    def _on_late_advert(self, msg: Message) -> list[Event]:
        added = late_advert_pieces(msg, self._peer_pieces, self._torrent().piece_count)
        for index in added:
            set_bit(self._peer_pieces, index)
        self._peer_piece_count += len(added)
        return [PeerHas(index) for index in added]

    def _on_request(self, msg: Message) -> list[Event]:
        assert isinstance(msg, Request)
        return self._on_requests([(msg.index, msg.begin, msg.length)])

    def _on_requests(self, blocks: list[tuple[int, int, int]]) -> list[Event]:
        """A run of REQUESTs: each checked and answered as if it came alone, in order.

        The phase step is the same for each (the table's entry for a REQUEST), so it is
        taken once; a request that breaks the protocol ends the connection, and with it
        the events of the requests before it."""
        step = transition(self.phase, Request, fast=self.fast, extensions=self.extensions)
        self.phase = step.next_phase
        torrent = self._torrent()
        piece_count = torrent.piece_count
        max_length = self.limits.max_request_length
        max_outstanding = self.limits.max_outstanding_requests
        pending, in_flight = self._pending, self._in_flight
        fast = self.fast
        events: list[Event] = []
        bound_index, bound = -1, 0
        for block in blocks:
            index, begin, length = block
            if index >= piece_count:
                raise ProtocolError(f"piece index {index} out of range")
            if not 0 < length <= max_length:
                raise ProtocolError(f"request length {length} out of bounds")
            if index != bound_index:
                bound_index, bound = index, torrent.request_bound(index)
            if begin + length > bound:
                raise ProtocolError("request runs past the end of its piece")
            if block in pending or block in in_flight:
                continue
            servable = get_bit(self._advertised, index) and (
                not self.choking or index in self._allowed_fast
            )
            outstanding = len(pending) + len(in_flight)
            if servable and outstanding >= max_outstanding:
                # `reqq` is advisory (BEP 10): a fast peer hears a reject; any other peer
                # is queued up to the hard bound, and past it the request is dropped
                # (it re-requests after its timeout) rather than the connection.
                if fast:
                    servable = False
                elif outstanding >= self._queue_bound:
                    continue
            if not servable:
                if fast:
                    self._send(RejectRequest(index, begin, length))
                continue
            pending[block] = None
            events.append(PieceRequested(index, begin, length))
        return events

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
            self._peer_ut_metadata = peer_ut_metadata_id(msg.payload, self._peer_ut_metadata)
            return []
        if msg.ext_id == UT_METADATA_ID:
            piece = ut_metadata_request(msg.payload)
            if piece is None:
                return []  # data and reject answer requests a seed never makes
            if self._peer_ut_metadata:
                reply = metadata_reply(self._torrent().metadata, piece)
                self._send(Extended(self._peer_ut_metadata, reply))
            return [MetadataRequested(piece)]
        return []  # an extension we never announced: BEP 10 says ignore it


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
