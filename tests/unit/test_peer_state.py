"""The peer wire's state table and the interop rules it carries, in simulated time.

Late piece advertisements (aria2), advisory `reqq` (rtorrent), UNCHOKE answering
INTERESTED (WebTorrent), implied tail padding of hybrid torrents (libtorrent 2.0.x),
and the bound on every buffered message (a hostile peer).
"""

from __future__ import annotations

import hashlib
import struct

import fastbencode
import pytest

from s3torrent.peer.connection import SeedConnection
from s3torrent.peer.events import (
    ConnectionClosed,
    Event,
    HandshakeReceived,
    PeerBitfield,
    PeerHas,
    PeerInterested,
    PieceRequested,
)
from s3torrent.peer.handshake import HANDSHAKE_LENGTH, Handshake
from s3torrent.peer.messages import (
    BLOCK_SIZE,
    MAX_EXTENDED_PAYLOAD,
    Bitfield,
    Extended,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    Message,
    MessageDecoder,
    NotInterested,
    Piece,
    ProtocolError,
    Request,
    Unchoke,
    encode_message,
)
from s3torrent.peer.state import (
    TRANSITIONS,
    Phase,
    Rule,
    Transition,
    late_advert_pieces,
    transition,
)
from s3torrent.peer.torrent_view import TorrentView, WireLimits

SEED_ID = b"-S30001-seedseedseed"
LEECH_ID = b"-LT2000-leechleech00"
PIECE_LENGTH = 4 * BLOCK_SIZE
LENGTH = 10 * PIECE_LENGTH - 1000
INFO = fastbencode.bencode({b"length": LENGTH, b"name": b"x"})  # type: ignore[attr-defined]
V1 = TorrentView(
    info_hash=hashlib.sha1(INFO).digest(),
    piece_count=10,
    piece_length=PIECE_LENGTH,
    total_length=LENGTH,
    metadata=INFO,
)
V2_HASH = hashlib.sha256(INFO).digest()
HYBRID = TorrentView(
    info_hash=V1.info_hash,
    piece_count=10,
    piece_length=PIECE_LENGTH,
    total_length=LENGTH,
    metadata=INFO,
    info_hash_v2=V2_HASH,
)
PURE_V2 = TorrentView(
    info_hash=V2_HASH[:20],
    piece_count=10,
    piece_length=PIECE_LENGTH,
    total_length=LENGTH,
    metadata=INFO,
    info_hash_v2=V2_HASH,
)
LAST_SIZE = LENGTH - 9 * PIECE_LENGTH


def connect(
    torrent: TorrentView = V1, *, fast: bool = True, limits: WireLimits | None = None
) -> SeedConnection:
    seed = SeedConnection(SEED_ID, 0.0, limits)
    hs = Handshake.build(torrent.info_hash, LEECH_ID, fast=fast, extensions=True, v2=False)
    [event] = seed.receive_data(hs.encode(), 0.0)
    assert isinstance(event, HandshakeReceived)
    assert seed.accept(torrent, 0.0) == []
    seed.data_to_send()
    return seed


def send(seed: SeedConnection, *messages: Message) -> list[Event]:
    return seed.receive_data(b"".join(encode_message(m) for m in messages), 0.0)


def sent(seed: SeedConnection) -> list[Message]:
    return MessageDecoder(1 << 20).feed(seed.data_to_send())


# ------------------------------------------------------------------- the table


def test_every_message_a_seed_accepts_has_a_row_in_both_open_phases() -> None:
    types = {t for (_, t) in TRANSITIONS}
    for msg_type in types:
        assert (Phase.AWAIT_ADVERT, msg_type) in TRANSITIONS
        assert (Phase.ESTABLISHED, msg_type) in TRANSITIONS
    assert Piece not in types
    assert not any(phase is Phase.CLOSED for (phase, _) in TRANSITIONS)


def test_a_first_advertisement_establishes_and_a_late_one_is_a_readvert() -> None:
    for advert in (Bitfield, HaveAll, HaveNone):
        assert transition(Phase.AWAIT_ADVERT, advert, fast=True, extensions=True) == Transition(
            Phase.ESTABLISHED
        )
        late = transition(Phase.ESTABLISHED, advert, fast=True, extensions=True)
        assert late == Transition(Phase.ESTABLISHED, Rule.READVERT)
    ordinary = transition(Phase.ESTABLISHED, Have, fast=True, extensions=True)
    assert ordinary.rule is Rule.HANDLE


def test_transition_refuses_what_a_seed_never_gets_and_unnegotiated_extensions() -> None:
    with pytest.raises(ProtocolError, match="unsolicited piece"):
        transition(Phase.ESTABLISHED, Piece, fast=True, extensions=True)
    with pytest.raises(ProtocolError, match="fast extension"):
        transition(Phase.ESTABLISHED, HaveAll, fast=False, extensions=True)
    with pytest.raises(ProtocolError, match="BEP 10"):
        transition(Phase.AWAIT_ADVERT, Extended, fast=True, extensions=False)
    with pytest.raises(ProtocolError, match="not allowed"):
        transition(Phase.AWAIT_HANDSHAKE, Request, fast=True, extensions=True)


def test_late_advert_pieces_are_the_new_ones_only() -> None:
    had = bytes([0b1010_0000, 0])
    assert late_advert_pieces(Bitfield(bytes([0b1110_0000, 0b1000_0000])), had, 10) == [1, 8]
    assert late_advert_pieces(HaveAll(), had, 10) == [1, 3, 4, 5, 6, 7, 8, 9]
    assert late_advert_pieces(HaveNone(), had, 10) == []
    assert late_advert_pieces(Bitfield(bytes(2)), had, 10) == []  # nothing is un-had
    with pytest.raises(ProtocolError, match="wrong length"):
        late_advert_pieces(Bitfield(bytes(3)), had, 10)
    with pytest.raises(ProtocolError, match="spare bits"):
        late_advert_pieces(Bitfield(b"\x00\x01"), had, 10)


# ------------------------------------------------------- late advertisements (aria2)


def test_aria2s_repeated_bitfield_becomes_the_haves_it_adds() -> None:
    seed = connect()
    assert send(seed, Bitfield(bytes([0b1100_0000, 0]))) == [PeerBitfield(b"\xc0\x00")]
    assert send(seed, Bitfield(bytes([0b1110_0000, 0b0100_0000]))) == [PeerHas(2), PeerHas(9)]
    assert seed.peer_piece_count == 4 and not seed.closed


def test_a_late_have_all_completes_the_peer_and_a_late_have_none_is_ignored() -> None:
    seed = connect()
    send(seed, HaveNone(), Have(0))
    assert send(seed, HaveNone()) == []
    assert send(seed, HaveAll()) == [PeerHas(i) for i in range(1, 10)]
    assert seed.peer_is_seed and not seed.closed


def test_a_late_bitfield_of_the_wrong_size_still_closes() -> None:
    seed = connect()
    send(seed, Interested())
    [closed] = send(seed, Bitfield(bytes(1)))
    assert isinstance(closed, ConnectionClosed) and "wrong length" in closed.reason


# ------------------------------------------------------- bounded buffering (hostile)


def test_an_oversized_bitfield_is_refused_on_its_header() -> None:
    seed = connect()
    header = struct.pack(">IB", 1 + 1024 * 1024, Bitfield.MSG_ID)
    [closed] = seed.receive_data(header, 0.0)  # no body needed to know it is hostile
    assert isinstance(closed, ConnectionClosed) and seed.closed


def test_a_readvertised_bitfield_larger_than_the_torrent_is_refused_on_its_header() -> None:
    seed = connect()
    send(seed, Bitfield(bytes(2)))
    [closed] = seed.receive_data(struct.pack(">IB", 1 + 3, Bitfield.MSG_ID), 0.0)
    assert isinstance(closed, ConnectionClosed)


@pytest.mark.parametrize(
    ("msg_id", "payload"),
    [(Extended.MSG_ID, MAX_EXTENDED_PAYLOAD + 1), (Piece.MSG_ID, 8 + BLOCK_SIZE)],
)
def test_other_messages_are_bounded_by_their_type(msg_id: int, payload: int) -> None:
    seed = connect()
    [closed] = seed.receive_data(struct.pack(">IB", 1 + payload, msg_id), 0.0)
    assert isinstance(closed, ConnectionClosed)


def test_an_extension_message_up_to_its_bound_is_still_read() -> None:
    seed = connect()
    payload = fastbencode.bencode({b"m": {}, b"pad": bytes(MAX_EXTENDED_PAYLOAD - 40)})  # type: ignore[attr-defined]
    assert len(payload) < MAX_EXTENDED_PAYLOAD
    assert send(seed, Extended(0, payload)) == [] and not seed.closed


# ------------------------------------------------------- advisory reqq (rtorrent)


def test_a_plain_peer_past_reqq_is_queued_then_dropped_at_the_hard_bound() -> None:
    limits = WireLimits(max_outstanding_requests=8, max_queued_requests=20)
    seed = connect(fast=False, limits=limits)
    seed.unchoke()
    sent(seed)
    requests = [Request(i % 10, (i // 10) * BLOCK_SIZE, BLOCK_SIZE) for i in range(30)]
    events = send(seed, *requests)
    assert events == [PieceRequested(r.index, r.begin, r.length) for r in requests[:20]]
    assert seed.outstanding_requests == 20 and not seed.closed
    assert sent(seed) == []  # a plain peer cannot be told; it re-requests after a timeout
    first = requests[0]
    assert seed.send_piece_header(first.index, first.begin, first.length)
    seed.piece_sent(first.index, first.begin, first.length, 1.0)
    assert send(seed, requests[25]) == [PieceRequested(*_fields(requests[25]))]


def _fields(r: Request) -> tuple[int, int, int]:
    return r.index, r.begin, r.length


# ------------------------------------------------------- UNCHOKE after INTERESTED


def test_interested_after_an_early_unchoke_is_answered_with_unchoke() -> None:
    seed = connect()
    seed.unchoke()
    assert sent(seed) == [Unchoke()]
    assert send(seed, Interested()) == [PeerInterested()]
    assert sent(seed) == [Unchoke()]


def test_interested_while_choked_gets_no_unchoke() -> None:
    seed = connect()
    assert send(seed, Interested()) == [PeerInterested()]
    assert sent(seed) == []
    seed.unchoke()
    send(seed, NotInterested())
    send(seed, Interested())
    assert sent(seed) == [Unchoke(), Unchoke()]


# ------------------------------------------------------- hybrid tail padding


@pytest.mark.parametrize("torrent", [HYBRID, PURE_V2])
def test_hybrid_and_v2_last_piece_request_into_the_implied_padding_is_served(
    torrent: TorrentView,
) -> None:
    # libtorrent 2.0.x (qBittorrent 4.5) pads a v2-only file's last piece too.
    seed = connect(torrent)
    seed.unchoke()
    tail = Request(9, PIECE_LENGTH - BLOCK_SIZE, BLOCK_SIZE)  # past the object's end
    assert send(seed, tail) == [PieceRequested(*_fields(tail))]
    assert torrent.data_length(9, tail.begin, tail.length) == LAST_SIZE - tail.begin
    assert torrent.data_length(9, 0, BLOCK_SIZE) == BLOCK_SIZE
    assert torrent.data_length(9, LAST_SIZE + 10, 100) == 0
    [closed] = send(seed, Request(9, PIECE_LENGTH - 10, 20))  # past the padded piece
    assert isinstance(closed, ConnectionClosed)


def test_without_implied_padding_a_request_past_the_end_still_closes() -> None:
    assert not V1.pads_last_piece
    seed = connect(V1)
    seed.unchoke()
    [closed] = send(seed, Request(9, PIECE_LENGTH - BLOCK_SIZE, BLOCK_SIZE))
    assert isinstance(closed, ConnectionClosed) and "past the end" in closed.reason


def test_handshake_length_constant_matches_an_encoded_handshake() -> None:
    hs = Handshake.build(V1.info_hash, LEECH_ID, fast=True, extensions=True, v2=False)
    assert len(hs.encode()) == HANDSHAKE_LENGTH


def test_a_run_of_requests_decodes_in_one_pass_like_one_at_a_time() -> None:
    messages: list[Message] = [Request(i, i * BLOCK_SIZE, BLOCK_SIZE) for i in range(50)]
    messages[10:10] = [Have(3), Interested()]
    data = b"".join(encode_message(m) for m in messages)
    whole = MessageDecoder().feed(data)
    byte_by_byte: list[Message] = []
    decoder = MessageDecoder()
    for i in range(len(data)):
        byte_by_byte += decoder.feed(data[i : i + 1])
    assert whole == byte_by_byte == messages and decoder.buffered == 0
