"""The seed's peer wire: codec, handshake and connection state machine, in simulated time."""

from __future__ import annotations

import hashlib
import struct

import fastbencode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.peer.wire import (
    BLOCK_SIZE,
    HANDSHAKE_LENGTH,
    METADATA_PIECE_SIZE,
    UT_METADATA_ID,
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    ConnectionClosed,
    Event,
    Extended,
    Handshake,
    HandshakeReceived,
    Hashes,
    HashReject,
    HashRequest,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    Message,
    MessageDecoder,
    MetadataRequested,
    NotInterested,
    PeerBitfield,
    PeerHas,
    PeerHaveAll,
    PeerInterested,
    PeerNotInterested,
    Phase,
    Piece,
    PieceRequested,
    Port,
    ProtocolError,
    RejectRequest,
    Request,
    RequestCancelled,
    SeedConnection,
    Suggest,
    TorrentView,
    Unchoke,
    WireLimits,
    answer_hash_request,
    encode_message,
    piece_header,
)
from s3torrent.torrent.merkle import merkle_layers

SEED_ID = b"-S30001-seedseedseed"
LEECH_ID = b"-LT2000-leechleech00"
PIECE_LENGTH = 4 * BLOCK_SIZE
INFO = fastbencode.bencode(  # type: ignore[attr-defined]
    {b"length": 10 * PIECE_LENGTH - 1000, b"name": b"x", b"pieces": bytes(200) * 50}
)
TORRENT = TorrentView(
    info_hash=hashlib.sha1(INFO).digest(),
    piece_count=10,
    piece_length=PIECE_LENGTH,
    total_length=10 * PIECE_LENGTH - 1000,
    metadata=INFO,
)


class Leecher:
    """A tiny leecher-side driver: speaks to a SeedConnection through bytes only."""

    def __init__(self, seed: SeedConnection, *, fast: bool = True, extensions: bool = True):
        self.seed = seed
        self.fast = fast
        self.extensions = extensions
        self.decoder = MessageDecoder(1 << 20)
        self.handshake: Handshake | None = None
        self._raw = b""
        self.now = 0.0

    def send(self, *messages: Message) -> list[Event]:
        return self.send_bytes(b"".join(encode_message(m) for m in messages))

    def send_bytes(self, data: bytes) -> list[Event]:
        return self.seed.receive_data(data, self.now)

    def open(self, torrent: TorrentView = TORRENT, **accept: bool) -> list[Event]:
        hs = Handshake.build(
            torrent.info_hash, LEECH_ID, fast=self.fast, extensions=self.extensions, v2=False
        )
        events = self.send_bytes(hs.encode())
        assert events == [
            HandshakeReceived(torrent.info_hash, LEECH_ID, self.fast, self.extensions, False)
        ]
        return self.seed.accept(torrent, self.now, **accept)

    def receive(self) -> list[Message]:
        """Decode what the seed queued (our handshake first, then messages)."""
        data = self._raw + self.seed.data_to_send()
        self._raw = b""
        if self.handshake is None:
            self.handshake = Handshake.parse(data[:HANDSHAKE_LENGTH])
            data = data[HANDSHAKE_LENGTH:]
        return self.decoder.feed(data)


def established(fast: bool = True, extensions: bool = True, **accept: bool) -> Leecher:
    leecher = Leecher(SeedConnection(SEED_ID, 0.0), fast=fast, extensions=extensions)
    assert leecher.open(TORRENT, **accept) == []
    leecher.receive()
    return leecher


# ------------------------------------------------------------------- whole sessions


def test_fast_leecher_downloads_through_handshake_have_all_unchoke_and_piece_headers() -> None:
    seed = SeedConnection(SEED_ID, 0.0)
    leecher = Leecher(seed)
    leecher.open()
    greeting = leecher.receive()
    assert leecher.handshake is not None
    assert leecher.handshake.info_hash == TORRENT.info_hash
    assert leecher.handshake.peer_id == SEED_ID
    assert leecher.handshake.supports_fast and leecher.handshake.supports_extensions
    assert isinstance(greeting[0], Extended) and greeting[0].ext_id == 0
    ext = fastbencode.bdecode(greeting[0].payload)  # type: ignore[attr-defined]
    assert ext[b"m"] == {b"ut_metadata": UT_METADATA_ID}
    assert ext[b"metadata_size"] == len(INFO)
    assert ext[b"reqq"] == 250
    assert greeting[1:] == [HaveAll()]

    assert leecher.send(HaveNone(), Interested()) == [PeerInterested()]
    seed.unchoke()
    assert leecher.receive() == [Unchoke()]
    requests = [Request(0, b * BLOCK_SIZE, BLOCK_SIZE) for b in range(4)]
    events = leecher.send(*requests)
    assert events == [PieceRequested(r.index, r.begin, r.length) for r in requests]
    wire = b""
    for r in requests:
        assert seed.send_piece_header(r.index, r.begin, r.length)
        header = seed.data_to_send()
        assert header == piece_header(r.index, r.begin, r.length)
        wire += header + b"\x01" * r.length  # the payload stands in for sendfile
        seed.piece_sent(r.index, r.begin, r.length, 1.0)
    assert leecher.decoder.feed(wire) == [Piece(r.index, r.begin, r.length) for r in requests]
    assert seed.outstanding_requests == 0
    assert leecher.send(NotInterested()) == [PeerNotInterested()]


def test_plain_leecher_gets_full_bitfield_with_spare_bits_clear() -> None:
    leecher = Leecher(SeedConnection(SEED_ID, 0.0), fast=False, extensions=False)
    leecher.open()
    assert leecher.receive() == [Bitfield(b"\xff\xc0")]


def test_initiated_connection_sends_handshake_first_and_advertises_after_reply() -> None:
    seed = SeedConnection.connect(TORRENT, SEED_ID, 0.0)
    hs = Handshake.parse(seed.data_to_send())
    assert hs.info_hash == TORRENT.info_hash
    reply = Handshake.build(TORRENT.info_hash, LEECH_ID, fast=True, extensions=False, v2=False)
    events = seed.receive_data(reply.encode() + encode_message(Interested()), 0.0)
    assert events[1:] == [PeerInterested()]
    assert MessageDecoder().feed(seed.data_to_send()) == [HaveAll()]


def test_initiated_connection_closes_when_peer_names_another_torrent() -> None:
    seed = SeedConnection.connect(TORRENT, SEED_ID, 0.0)
    reply = Handshake.build(bytes(20), LEECH_ID, fast=True, extensions=False, v2=False)
    events = seed.receive_data(reply.encode(), 0.0)
    assert isinstance(events[-1], ConnectionClosed) and seed.closed


def test_bytes_behind_the_handshake_are_processed_after_accept() -> None:
    seed = SeedConnection(SEED_ID, 0.0)
    hs = Handshake.build(TORRENT.info_hash, LEECH_ID, fast=True, extensions=True, v2=False)
    events = seed.receive_data(hs.encode() + encode_message(HaveAll()), 0.0)
    assert [type(e) for e in events] == [HandshakeReceived]
    assert seed.accept(TORRENT, 0.0) == [PeerHaveAll()]
    assert seed.peer_is_seed


def test_rejected_handshake_sends_nothing() -> None:
    seed = SeedConnection(SEED_ID, 0.0)
    hs = Handshake.build(bytes(20), LEECH_ID, fast=True, extensions=True, v2=False)
    seed.receive_data(hs.encode(), 0.0)
    seed.reject()
    assert seed.data_to_send() == b"" and seed.closed
    assert seed.receive_data(b"\0\0\0\0", 1.0) == []


def test_garbage_instead_of_handshake_closes_early() -> None:
    seed = SeedConnection(SEED_ID, 0.0)
    assert isinstance(seed.receive_data(b"GET / HTTP/1.1\r\n", 0.0)[0], ConnectionClosed)


def test_hybrid_handshake_can_be_upgraded_to_v2() -> None:
    v2 = hashlib.sha256(INFO).digest()
    hybrid = TorrentView(
        TORRENT.info_hash, 10, PIECE_LENGTH, TORRENT.total_length, INFO, info_hash_v2=v2
    )
    seed = SeedConnection(SEED_ID, 0.0)
    hs = Handshake.build(hybrid.info_hash, LEECH_ID, fast=True, extensions=False, v2=True)
    seed.receive_data(hs.encode(), 0.0)
    seed.accept(hybrid, 0.0, upgrade_to_v2=True)
    ours = Handshake.parse(seed.data_to_send()[:HANDSHAKE_LENGTH])
    assert ours.info_hash == v2[:20] and ours.supports_v2


# ------------------------------------------------------------------- peer state


def test_peer_bitfield_and_haves_are_tracked() -> None:
    leecher = established()
    assert leecher.send(Bitfield(b"\x80\x40")) == [PeerBitfield(b"\x80\x40")]
    assert leecher.seed.peer_has(0) and leecher.seed.peer_has(9)
    assert leecher.send(Have(3), Have(3)) == [PeerHas(3), PeerHas(3)]
    assert leecher.seed.peer_piece_count == 3


@pytest.mark.parametrize(
    ("messages", "reason_part"),
    [
        ([Bitfield(b"\xff\xff")], "spare bits"),
        ([Bitfield(b"\xff")], "wrong length"),
        ([Have(10)], "out of range"),
        ([Piece(0, 0, 0)], "unsolicited piece"),
        ([RejectRequest(0, 0, BLOCK_SIZE)], "never made"),
    ],
)
def test_protocol_violations_close_the_connection(
    messages: list[Message], reason_part: str
) -> None:
    leecher = established()
    events = leecher.send(*messages)
    assert isinstance(events[-1], ConnectionClosed)
    assert reason_part in events[-1].reason
    assert leecher.seed.closed and leecher.seed.data_to_send() == b""


def test_fast_messages_without_fast_extension_close() -> None:
    leecher = established(fast=False)
    assert isinstance(leecher.send(HaveAll())[-1], ConnectionClosed)


# ------------------------------------------------------------------- requests


def test_request_past_piece_end_or_past_total_length_closes() -> None:
    last_size = TORRENT.total_length - 9 * PIECE_LENGTH
    leecher = established()
    leecher.seed.unchoke()
    assert leecher.send(Request(9, last_size - 100, 100)) == [
        PieceRequested(9, last_size - 100, 100)
    ]
    assert isinstance(leecher.send(Request(9, last_size - 100, 200))[-1], ConnectionClosed)
    for bad in (Request(0, PIECE_LENGTH - 10, 20), Request(10, 0, 10), Request(0, 0, 0)):
        other = established()
        other.seed.unchoke()
        assert isinstance(other.send(bad)[-1], ConnectionClosed)


def test_oversized_request_closes_but_lenient_size_is_served() -> None:
    leecher = established()
    leecher.seed.unchoke()
    assert leecher.send(Request(0, 0, 2 * BLOCK_SIZE)) == [PieceRequested(0, 0, 2 * BLOCK_SIZE)]
    strict = Leecher(SeedConnection(SEED_ID, 0.0, WireLimits(max_request_length=BLOCK_SIZE)))
    strict.open()
    strict.seed.unchoke()
    assert isinstance(strict.send(Request(0, 0, 2 * BLOCK_SIZE))[-1], ConnectionClosed)


def test_ten_thousand_pipelined_requests_are_capped() -> None:
    leecher = established()
    leecher.seed.unchoke()
    leecher.receive()
    requests = [Request(i % 10, (i // 10) % 4 * BLOCK_SIZE, 1 + i // 40) for i in range(10_000)]
    events = leecher.send(*requests)
    assert len(events) == 250 and leecher.seed.outstanding_requests == 250
    rejects = leecher.receive()
    assert len(rejects) == 10_000 - 250
    assert all(isinstance(m, RejectRequest) for m in rejects)


def test_requests_past_reqq_from_a_plain_peer_are_queued_not_fatal() -> None:
    leecher = established(fast=False)
    leecher.seed.unchoke()
    requests = [Request(0, 0, n) for n in range(1, 300)]
    events = leecher.send(*requests)
    assert events == [PieceRequested(0, 0, n) for n in range(1, 300)]
    assert not leecher.seed.closed and leecher.seed.outstanding_requests == 299


def test_duplicate_requests_are_ignored() -> None:
    leecher = established()
    leecher.seed.unchoke()
    assert len(leecher.send(Request(1, 0, BLOCK_SIZE), Request(1, 0, BLOCK_SIZE))) == 1
    assert leecher.seed.outstanding_requests == 1


def test_requests_while_choked_are_rejected_except_allowed_fast() -> None:
    leecher = established()
    leecher.seed.allowed_fast(2)
    assert leecher.receive() == [AllowedFast(2)]
    assert leecher.send(Request(1, 0, BLOCK_SIZE), Request(2, 0, BLOCK_SIZE)) == [
        PieceRequested(2, 0, BLOCK_SIZE)
    ]
    assert leecher.receive() == [RejectRequest(1, 0, BLOCK_SIZE)]


def test_requests_while_choked_are_ignored_without_fast() -> None:
    leecher = established(fast=False)
    assert leecher.send(Request(1, 0, BLOCK_SIZE)) == []
    assert leecher.receive() == []


def test_cancel_drops_pending_request_and_answers_with_reject() -> None:
    leecher = established()
    leecher.seed.unchoke()
    leecher.receive()
    leecher.send(Request(1, 0, BLOCK_SIZE))
    assert leecher.send(Cancel(1, 0, BLOCK_SIZE)) == [RequestCancelled(1, 0, BLOCK_SIZE)]
    assert leecher.receive() == [RejectRequest(1, 0, BLOCK_SIZE)]
    assert not leecher.seed.send_piece_header(1, 0, BLOCK_SIZE)
    assert leecher.send(Cancel(1, 0, BLOCK_SIZE)) == []


def test_choke_rejects_pending_requests_but_keeps_allowed_fast() -> None:
    leecher = established()
    seed = leecher.seed
    seed.allowed_fast(3)
    seed.unchoke()
    leecher.send(Request(1, 0, BLOCK_SIZE), Request(3, 0, BLOCK_SIZE))
    leecher.receive()
    seed.choke()
    assert leecher.receive() == [Choke(), RejectRequest(1, 0, BLOCK_SIZE)]
    assert seed.is_pending(3, 0, BLOCK_SIZE) and not seed.is_pending(1, 0, BLOCK_SIZE)


def test_io_layer_rejection_is_sent_to_fast_peers() -> None:
    leecher = established()
    leecher.seed.unchoke()
    leecher.receive()
    leecher.send(Request(1, 0, BLOCK_SIZE))
    leecher.seed.reject_request(1, 0, BLOCK_SIZE)
    assert leecher.receive() == [RejectRequest(1, 0, BLOCK_SIZE)]
    assert leecher.seed.outstanding_requests == 0


def test_super_seed_reveals_pieces_one_by_one() -> None:
    leecher = Leecher(SeedConnection(SEED_ID, 0.0))
    leecher.open(super_seed=True)
    assert leecher.receive()[1:] == [HaveNone()]
    seed = leecher.seed
    seed.unchoke()
    seed.have(4)
    seed.have(4)
    assert leecher.receive() == [Unchoke(), Have(4)]
    assert leecher.send(Request(4, 0, BLOCK_SIZE), Request(5, 0, BLOCK_SIZE)) == [
        PieceRequested(4, 0, BLOCK_SIZE)
    ]
    assert leecher.receive() == [RejectRequest(5, 0, BLOCK_SIZE)]


def test_suggest_is_sent_only_to_fast_peers() -> None:
    fast, plain = established(), established(fast=False)
    fast.seed.suggest(1)
    plain.seed.suggest(1)
    assert fast.receive() == [Suggest(1)] and plain.receive() == []


# ------------------------------------------------------------------- ut_metadata


def _metadata_reply(payload: bytes, piece: int, total: int) -> tuple[dict[bytes, int], bytes]:
    size = max(0, min(METADATA_PIECE_SIZE, total - piece * METADATA_PIECE_SIZE))
    head = payload[: len(payload) - size] if size else payload
    return fastbencode.bdecode(head), payload[len(head) :]  # type: ignore[attr-defined]


def test_ut_metadata_pieces_reassemble_to_the_info_dict() -> None:
    big_info = fastbencode.bencode(  # type: ignore[attr-defined]
        {b"length": 1, b"name": b"big", b"pieces": bytes(40_000)}
    )
    torrent = TorrentView(hashlib.sha1(big_info).digest(), 1, PIECE_LENGTH, 1, big_info)
    leecher = Leecher(SeedConnection(SEED_ID, 0.0))
    leecher.open(torrent)
    leecher.receive()
    leecher.send(Extended(0, fastbencode.bencode({b"m": {b"ut_metadata": 7}})))  # type: ignore[attr-defined]
    count = -(-len(big_info) // METADATA_PIECE_SIZE)
    requests = [
        Extended(UT_METADATA_ID, fastbencode.bencode({b"msg_type": 0, b"piece": p}))  # type: ignore[attr-defined]
        for p in range(count + 1)
    ]
    assert leecher.send(*requests) == [MetadataRequested(p) for p in range(count + 1)]
    replies = leecher.receive()
    assembled = b""
    for piece, reply in enumerate(replies[:count]):
        assert isinstance(reply, Extended) and reply.ext_id == 7
        header, data = _metadata_reply(reply.payload, piece, len(big_info))
        assert header == {b"msg_type": 1, b"piece": piece, b"total_size": len(big_info)}
        assembled += data
    assert assembled == big_info
    last = replies[count]
    assert isinstance(last, Extended)
    assert fastbencode.bdecode(last.payload) == {b"msg_type": 2, b"piece": count}  # type: ignore[attr-defined]


def test_garbage_extension_payload_closes() -> None:
    leecher = established()
    assert isinstance(leecher.send(Extended(0, b"d1:m"))[-1], ConnectionClosed)
    other = established()
    assert isinstance(other.send(Extended(UT_METADATA_ID, b"le"))[-1], ConnectionClosed)


def test_unknown_extension_ids_are_ignored() -> None:
    assert established().send(Extended(99, b"whatever")) == []


# ------------------------------------------------------------------- BEP 52 hashes


def _v2_torrent(piece_count: int, blocks_per_piece: int = 4) -> tuple[TorrentView, bytes, bytes]:
    layer = b"".join(hashlib.sha256(bytes([i, 1])).digest() for i in range(piece_count))
    piece_length = blocks_per_piece * BLOCK_SIZE
    root = merkle_layers(layer, piece_length)[-1][0]
    torrent = TorrentView(
        info_hash=root[:20],
        piece_count=piece_count,
        piece_length=piece_length,
        total_length=piece_count * piece_length,
        metadata=b"de",
        info_hash_v2=root,
        piece_layers={root: layer},
    )
    return torrent, root, layer


def _verify(reply: Hashes, root: bytes) -> bool:
    hashes = [reply.hashes[i : i + 32] for i in range(0, len(reply.hashes), 32)]
    base, uncles = hashes[: reply.length], hashes[reply.length :]
    node_index = reply.index
    while len(base) > 1:
        base = [hashlib.sha256(base[i] + base[i + 1]).digest() for i in range(0, len(base), 2)]
        node_index //= 2
    node = base[0]
    for uncle in uncles:
        pair = uncle + node if node_index & 1 else node + uncle
        node = hashlib.sha256(pair).digest()
        node_index //= 2
    return node == root


@pytest.mark.parametrize("piece_count", [2, 3, 5, 8, 13])
def test_hash_requests_are_answered_with_proofs_that_verify(piece_count: int) -> None:
    torrent, root, layer = _v2_torrent(piece_count)
    layers = merkle_layers(layer, torrent.piece_length)
    height = len(layers) - 1
    for length in (2, 4, 8):
        if length > len(layers[0]):
            continue
        for index in range(0, len(layers[0]), length):
            proof = height - 1  # omitted layers still count toward proof_layers
            # base layer 2: the piece layer for 4-block pieces
            reply = answer_hash_request(HashRequest(root, 2, index, length, proof), torrent)
            assert isinstance(reply, Hashes), (length, index)
            assert reply.hashes[:32] == layers[0][index]
            assert _verify(reply, root)


def test_hash_request_with_a_proof_past_the_root_or_bad_shape_is_rejected() -> None:
    torrent, root, _ = _v2_torrent(8)
    for request in (
        HashRequest(root, 2, 0, 2, 3),  # the root has no uncle
        HashRequest(root, 2, 1, 2, 0),  # index not a multiple of length
        HashRequest(root, 2, 0, 3, 0),  # not a power of two and not at the layer's end
        HashRequest(root, 0, 0, 2, 0),  # block layer: we hold no block hashes
        HashRequest(bytes(32), 2, 0, 2, 0),  # unknown file
        HashRequest(root, 2, 8, 2, 0),  # past the layer
    ):
        assert isinstance(answer_hash_request(request, torrent), HashReject), request


def test_hash_request_over_the_wire_gets_hashes() -> None:
    torrent, root, _ = _v2_torrent(4)
    leecher = Leecher(SeedConnection(SEED_ID, 0.0))
    leecher.open(torrent)
    leecher.receive()
    leecher.send(HashRequest(root, 2, 0, 4, 0))
    [reply] = leecher.receive()
    assert isinstance(reply, Hashes) and _verify(reply, root)


# ------------------------------------------------------------------- timers


def test_handshake_timeout() -> None:
    seed = SeedConnection(SEED_ID, 100.0, WireLimits(handshake_timeout=10.0))
    assert not seed.timed_out(109.0)
    assert seed.timed_out(110.0)


def test_idle_timeout_is_reset_by_any_received_bytes() -> None:
    leecher = established()
    seed = leecher.seed
    assert not seed.timed_out(179.0)
    leecher.now = 170.0
    leecher.send(KeepAlive())
    assert not seed.timed_out(300.0)
    assert seed.timed_out(350.0)


def test_keepalive_becomes_due_after_quiet_interval() -> None:
    leecher = established()
    seed = leecher.seed
    assert not seed.keepalive_due(119.0)
    assert seed.keepalive_due(120.0)
    seed.send_keepalive(120.0)
    assert leecher.receive() == [KeepAlive()]
    assert not seed.keepalive_due(200.0)


# ------------------------------------------------------------------- codec


u32 = st.integers(0, 2**32 - 1)
hash32 = st.binary(min_size=32, max_size=32)
messages: st.SearchStrategy[Message] = st.one_of(
    st.sampled_from(
        [KeepAlive(), Choke(), Unchoke(), Interested(), NotInterested(), HaveAll(), HaveNone()]
    ),
    st.builds(Have, u32),
    st.builds(Suggest, u32),
    st.builds(AllowedFast, u32),
    st.builds(Bitfield, st.binary(max_size=64)),
    st.builds(Request, u32, u32, u32),
    st.builds(Cancel, u32, u32, u32),
    st.builds(RejectRequest, u32, u32, u32),
    st.builds(Piece, u32, u32, st.integers(0, 300)),
    st.builds(Port, st.integers(0, 65535)),
    st.builds(Extended, st.integers(0, 255), st.binary(max_size=64)),
    st.builds(HashRequest, hash32, u32, u32, u32, u32),
    st.builds(HashReject, hash32, u32, u32, u32, u32),
    st.builds(
        Hashes,
        hash32,
        u32,
        u32,
        u32,
        u32,
        st.integers(0, 4).map(lambda n: bytes(range(32)) * n),
    ),
)


def _wire(msg: Message) -> bytes:
    # A piece header is followed on the wire by its payload.
    return encode_message(msg) + (bytes(msg.length) if isinstance(msg, Piece) else b"")


@settings(max_examples=200)
@given(messages)
def test_every_message_round_trips(msg: Message) -> None:
    assert MessageDecoder().feed(_wire(msg)) == [msg]


@settings(max_examples=150)
@given(st.lists(messages, max_size=20), st.data())
def test_decoder_accepts_any_split_of_a_valid_stream(
    stream: list[Message], data: st.DataObject
) -> None:
    wire = b"".join(_wire(m) for m in stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=12)))
    decoder = MessageDecoder()
    decoded: list[Message] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        decoded += decoder.feed(wire[start:end])
    assert decoded == stream
    assert decoder.buffered == 0


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_decoder_fuzz_raises_only_protocol_error(data: bytes) -> None:
    decoder = MessageDecoder(200)
    try:
        for i in range(0, len(data), 7):
            decoder.feed(data[i : i + 7])
            assert decoder.buffered <= 200 + 4
    except ProtocolError:
        pass


@settings(max_examples=200)
@given(st.lists(st.one_of(messages.map(_wire), st.binary(max_size=20)), max_size=12))
def test_connection_fuzz_never_raises(chunks: list[bytes]) -> None:
    leecher = established()
    leecher.seed.unchoke()
    for chunk in chunks:
        events = leecher.send_bytes(chunk)
        if events and isinstance(events[-1], ConnectionClosed):
            assert leecher.seed.phase is Phase.CLOSED
            assert leecher.seed.data_to_send() == b""
            return


def test_huge_length_prefix_is_rejected_before_buffering() -> None:
    decoder = MessageDecoder()
    with pytest.raises(ProtocolError):
        decoder.feed(struct.pack(">I", 2**32 - 1))
    leecher = established()
    assert isinstance(leecher.send_bytes(b"\xff\xff\xff\xff")[-1], ConnectionClosed)


@pytest.mark.parametrize(
    "wire",
    [
        b"\x00\x00\x00\x02\x04\x00",  # have with a 1-byte payload
        b"\x00\x00\x00\x01\x63",  # unknown id 99
        b"\x00\x00\x00\x05\x06\x00\x00\x00\x00",  # request with a short payload
        b"\x00\x00\x00\x01\x14",  # extended without an extension id
    ],
)
def test_malformed_messages_raise_protocol_error(wire: bytes) -> None:
    with pytest.raises(ProtocolError):
        MessageDecoder().feed(wire)


def test_wrong_fixed_size_fails_on_header_before_the_body_arrives() -> None:
    with pytest.raises(ProtocolError):
        MessageDecoder().feed(b"\x00\x00\x10\x00\x04")  # a 4 KiB "have"


def test_handshake_round_trip_and_reserved_bits() -> None:
    hs = Handshake.build(bytes(range(20)), LEECH_ID, fast=True, extensions=True, v2=True)
    assert hs.reserved == bytes([0, 0, 0, 0, 0, 0x10, 0, 0x14])
    parsed = Handshake.parse(hs.encode())
    assert parsed == hs and parsed.supports_fast and parsed.supports_extensions
    assert parsed.supports_v2
    with pytest.raises(ProtocolError):
        Handshake.parse(b"\x13BitTorrent protocoX" + bytes(48))
