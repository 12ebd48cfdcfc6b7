"""Per-batch rather than per-block work in the seeder: runs of REQUESTs decoded in one pass,
a plain file's blocks read one pread per run and sent several to one sendmsg (owed.py)."""

from __future__ import annotations

import hashlib
import random
import struct
from collections import deque

import fastbencode
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.peer.messages import HaveRun, RequestRun, decode_request_run, piece_header
from s3torrent.peer.owed import (
    BATCH_BYTES,
    OwedBlock,
    consume,
    gather,
    read_runs,
    release,
    unread,
)
from s3torrent.peer.wire import (
    BLOCK_SIZE,
    Cancel,
    ConnectionClosed,
    Handshake,
    Have,
    Interested,
    KeepAlive,
    Message,
    MessageDecoder,
    PieceRequested,
    ProtocolError,
    RejectRequest,
    Request,
    SeedConnection,
    TorrentView,
    WireLimits,
    encode_message,
)

PIECE_LENGTH = 4 * BLOCK_SIZE
TOTAL = 10 * PIECE_LENGTH - 1000
INFO = fastbencode.bencode(  # type: ignore[attr-defined]
    {b"length": TOTAL, b"name": b"x", b"pieces": bytes(200) * 50}
)
TORRENT = TorrentView(
    info_hash=hashlib.sha1(INFO).digest(),
    piece_count=10,
    piece_length=PIECE_LENGTH,
    total_length=TOTAL,
    metadata=INFO,
)


def frames(*messages: Message) -> bytes:
    return b"".join(encode_message(m) for m in messages)


# ------------------------------------------------------------ decoding runs of REQUESTs


def test_a_run_of_requests_decodes_in_one_pass_and_stops_at_other_bytes() -> None:
    requests = [Request(i % 10, (i % 4) * BLOCK_SIZE, BLOCK_SIZE) for i in range(100)]
    tail = frames(Have(3))
    buffer = frames(*requests) + tail
    blocks, offset = decode_request_run(buffer)
    assert blocks == [(r.index, r.begin, r.length) for r in requests]
    assert offset == 17 * 100 and buffer[offset:] == tail
    # Not at a request, or a request still arriving: nothing taken.
    assert decode_request_run(tail) == ([], 0)
    assert decode_request_run(buffer[:16]) == ([], 0)
    assert decode_request_run(buffer[:50]) == (blocks[:2], 34)
    # A request frame with another length prefix is not a request (the general path
    # judges it).
    bad = struct.pack(">IBIII", 14, 6, 0, 0, 1) + b"\0"
    assert decode_request_run(bad) == ([], 0)


def test_feed_runs_groups_requests_and_feed_expands_them() -> None:
    a, b = Request(0, 0, BLOCK_SIZE), Request(0, BLOCK_SIZE, BLOCK_SIZE)
    wire = frames(a, b, KeepAlive(), Interested(), b, Cancel(0, 0, BLOCK_SIZE))
    got = MessageDecoder().feed_runs(wire)
    assert got == [
        RequestRun([(0, 0, BLOCK_SIZE), (0, BLOCK_SIZE, BLOCK_SIZE)]),
        KeepAlive(),
        Interested(),
        RequestRun([(0, BLOCK_SIZE, BLOCK_SIZE)]),
        Cancel(0, 0, BLOCK_SIZE),
    ]
    assert MessageDecoder().feed(wire) == [a, b, KeepAlive(), Interested(), b, Cancel(0, 0, 16384)]


messages = st.one_of(
    st.builds(
        Request, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)
    ),
    st.builds(Have, st.integers(0, 2**32 - 1)),
    st.just(KeepAlive()),
    st.just(Interested()),
    st.builds(Cancel, st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(messages, max_size=60), st.lists(st.integers(1, 40), max_size=30))
def test_runs_split_at_any_byte_decode_as_the_messages_sent(
    sent: list[Message], cuts: list[int]
) -> None:
    wire = frames(*sent)
    decoder = MessageDecoder()
    got: list[Message] = []
    pos = 0
    for cut in [*cuts, len(wire)]:
        for item in decoder.feed_runs(wire[pos : pos + cut]):
            if isinstance(item, RequestRun):
                got.extend(Request(*block) for block in item.blocks)
            elif isinstance(item, HaveRun):
                got.extend(Have(index) for index in item.indices)
            else:
                got.append(item)
        pos += cut
    got.extend(m for m in decoder.feed(wire[pos:]))
    assert got == sent and decoder.buffered == 0


def test_garbage_between_requests_closes_the_connection() -> None:
    seed = established()
    seed.unchoke()
    garbage = struct.pack(">IB", 5, 99) + b"\0" * 4  # an unknown message id
    run = frames(*(Request(0, b * BLOCK_SIZE, BLOCK_SIZE) for b in range(4)))
    events = seed.receive_data(run + garbage + run, 1.0)
    assert events == [ConnectionClosed("unknown message id 99")]
    assert seed.closed


# ------------------------------------------------------------ a run at the connection


def established(fast: bool = True, limits: WireLimits | None = None) -> SeedConnection:
    seed = SeedConnection(b"-S30001-seedseedseed", 0.0, limits)
    hs = Handshake.build(
        TORRENT.info_hash, b"-LT2000-leechleech00", fast=fast, extensions=False, v2=False
    )
    seed.receive_data(hs.encode(), 0.0)
    seed.accept(TORRENT, 0.0)
    seed.data_to_send()
    return seed


def test_a_run_answers_each_request_as_if_it_came_alone() -> None:
    seed = established()
    seed.unchoke()
    seed.data_to_send()
    run = [Request(1, 0, BLOCK_SIZE), Request(1, 0, BLOCK_SIZE), Request(1, BLOCK_SIZE, 100)]
    assert seed.receive_data(frames(*run), 1.0) == [
        PieceRequested(1, 0, BLOCK_SIZE),
        PieceRequested(1, BLOCK_SIZE, 100),
    ]
    seed.choke()
    seed.data_to_send()
    assert seed.receive_data(frames(Request(2, 0, BLOCK_SIZE)), 1.0) == []
    assert MessageDecoder().feed(seed.data_to_send()) == [RejectRequest(2, 0, BLOCK_SIZE)]


@pytest.mark.parametrize(
    "bad",
    [
        Request(0, PIECE_LENGTH - 10, 20),  # past its piece
        Request(9, PIECE_LENGTH - 1000 - 100, 200),  # past the object's end
        Request(10, 0, BLOCK_SIZE),  # no such piece
        Request(2**32 - 1, 0, BLOCK_SIZE),
        Request(0, 0, 0),
        Request(0, 2**32 - 1, 2**32 - 1),
        Request(0, 0, 2**20),  # above max_request_length
    ],
)
def test_a_bad_request_inside_a_run_closes_and_voids_the_run(bad: Request) -> None:
    seed = established()
    seed.unchoke()
    good = [Request(0, 0, BLOCK_SIZE), Request(0, BLOCK_SIZE, BLOCK_SIZE)]
    events = seed.receive_data(frames(*good, bad, *good), 1.0)
    assert len(events) == 1 and isinstance(events[0], ConnectionClosed)
    assert seed.closed and seed.outstanding_requests == 0


def test_a_huge_run_keeps_reqq_outstanding_and_rejects_the_rest() -> None:
    seed = established(limits=WireLimits(max_outstanding_requests=250))
    seed.unchoke()
    seed.data_to_send()
    n = 50_000
    requests = [Request(i % 10, (i // 10) % 3 * BLOCK_SIZE, 1 + i // 30) for i in range(n)]
    events = seed.receive_data(frames(*requests), 1.0)
    assert len(events) == 250 and seed.outstanding_requests == 250
    rejects = MessageDecoder(1 << 20).feed(seed.data_to_send())
    assert len(rejects) == n - 250 and all(isinstance(m, RejectRequest) for m in rejects)


def test_a_huge_run_from_a_plain_peer_stops_at_the_hard_bound() -> None:
    seed = established(
        fast=False, limits=WireLimits(max_outstanding_requests=8, max_queued_requests=40)
    )
    seed.unchoke()
    seed.data_to_send()
    requests = [Request(i % 10, (i // 10) % 3 * BLOCK_SIZE, 1 + i // 30) for i in range(5000)]
    assert len(seed.receive_data(frames(*requests), 1.0)) == 40
    assert seed.outstanding_requests == 40 and seed.data_to_send() == b""


def test_start_block_returns_the_header_once_and_pieces_sent_clears_in_flight() -> None:
    seed = established()
    seed.unchoke()
    seed.receive_data(frames(Request(3, 0, BLOCK_SIZE), Request(3, BLOCK_SIZE, BLOCK_SIZE)), 1.0)
    assert seed.start_block(3, 0, BLOCK_SIZE) == piece_header(3, 0, BLOCK_SIZE)
    assert seed.start_block(3, 0, BLOCK_SIZE) is None  # in flight, no longer pending
    assert seed.start_block(4, 0, BLOCK_SIZE) is None  # never asked
    assert seed.start_block(3, BLOCK_SIZE, BLOCK_SIZE) is not None
    assert seed.outstanding_requests == 2
    seed.pieces_sent([(3, 0, BLOCK_SIZE), (3, BLOCK_SIZE, BLOCK_SIZE)], 2.0)
    assert seed.outstanding_requests == 0


# ------------------------------------------------------------ batched sends (owed.py)

FILE = bytes(random.Random(7).randbytes(TOTAL))


def owed(blocks: list[tuple[int, int, int]]) -> deque[memoryview | OwedBlock]:
    """The link's queue for these requests: each header, then its block."""
    out: deque[memoryview | OwedBlock] = deque()
    for index, begin, length in blocks:
        out.append(memoryview(piece_header(index, begin, length)))
        valid = TORRENT.data_length(index, begin, length)
        out.append(OwedBlock(index, begin, length, index * PIECE_LENGTH + begin, valid))
    return out


def expected_wire(blocks: list[tuple[int, int, int]]) -> bytes:
    wire = b""
    for index, begin, length in blocks:
        offset = index * PIECE_LENGTH + begin
        data = FILE[offset : offset + TORRENT.data_length(index, begin, length)]
        wire += piece_header(index, begin, length) + data + bytes(length - len(data))
    return wire


class File:
    def __init__(self, data: bytes = FILE) -> None:
        self.data = data
        self.reads: list[tuple[int, int]] = []

    def pread(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.data[offset : offset + length]


def test_adjacent_blocks_are_read_in_one_pread_per_run() -> None:
    blocks = [(0, b * BLOCK_SIZE, BLOCK_SIZE) for b in range(4)]
    blocks += [(1, 0, BLOCK_SIZE), (5, 0, BLOCK_SIZE), (5, BLOCK_SIZE, BLOCK_SIZE)]
    out, file = owed(blocks), File()
    assert read_runs(out, file.pread, 100) == 7 * BLOCK_SIZE
    # Piece 0's four blocks and piece 1's first are adjacent in the file: one run.
    assert file.reads == [(0, 5 * BLOCK_SIZE), (5 * PIECE_LENGTH, 2 * BLOCK_SIZE)]
    parts = gather(out, unread, 100)
    assert b"".join(parts) == expected_wire(blocks)
    assert read_runs(out, file.pread, 100) == 0  # all in memory already


def test_read_runs_reads_only_what_gather_will_send() -> None:
    blocks = [(i, b * BLOCK_SIZE, BLOCK_SIZE) for i in range(9) for b in range(4)]
    out, file = owed(blocks), File()
    read = read_runs(out, file.pread, 3)
    assert read == 3 * BLOCK_SIZE and len(gather(out, unread, 3)) == 6
    out, file = owed(blocks), File()
    assert read_runs(out, file.pread, 1000) <= BATCH_BYTES + BLOCK_SIZE


def test_a_short_file_leaves_the_blocks_it_does_not_cover_unread() -> None:
    blocks = [(0, b * BLOCK_SIZE, BLOCK_SIZE) for b in range(4)]
    out = owed(blocks)
    read_runs(out, File(FILE[: 2 * BLOCK_SIZE + 10]).pread, 100)
    datas = [item.data for item in out if isinstance(item, OwedBlock)]
    assert [d is not None for d in datas] == [True, True, False, False]
    assert len(gather(out, unread, 100)) == 5  # up to the first unread block


def test_implied_padding_is_sent_as_zeros_and_never_read() -> None:
    last = TORRENT.piece_size(9)
    blocks = [(9, 2 * BLOCK_SIZE, BLOCK_SIZE), (9, 3 * BLOCK_SIZE, BLOCK_SIZE)]
    assert TORRENT.data_length(9, 3 * BLOCK_SIZE, BLOCK_SIZE) == last - 3 * BLOCK_SIZE
    out, file = owed(blocks), File()
    read_runs(out, file.pread, 100)
    assert file.reads == [(9 * PIECE_LENGTH + 2 * BLOCK_SIZE, last - 2 * BLOCK_SIZE)]
    assert b"".join(gather(out, unread, 100)) == expected_wire(blocks)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 9), st.integers(0, 3)), min_size=1, max_size=80),
    st.lists(st.integers(1, 3 * BLOCK_SIZE), min_size=1, max_size=50),
    st.integers(1, 40),
)
def test_sends_of_any_size_put_every_byte_on_the_wire_once_in_order(
    picks: list[tuple[int, int]], takes: list[int], budget: int
) -> None:
    """The link's batch loop against a socket that takes any number of bytes: what
    reaches the wire is exactly the headers and blocks, and every block is accounted once."""
    blocks = list(dict.fromkeys((i, b * BLOCK_SIZE, BLOCK_SIZE) for i, b in picks))
    out, file = owed(blocks), File()
    wire = bytearray()
    finished: list[OwedBlock] = []
    control = 0
    step = 0
    while out:
        read_runs(out, file.pread, budget)
        parts = gather(out, unread, budget)
        assert parts
        total = sum(len(p) for p in parts)
        n = min(total, takes[step % len(takes)])
        step += 1
        wire += b"".join(bytes(p) for p in parts)[:n]
        sent, took = consume(out, n)
        finished += sent
        control += took
        if n < total:
            release(out)  # the socket is full: hold at most one block's bytes
            held = [i for i in out if isinstance(i, OwedBlock) and i.data is not None]
            assert len(held) <= 1 and all(len(i.data.obj) == len(i.data) for i in held)  # type: ignore[arg-type, union-attr]
    assert bytes(wire) == expected_wire(blocks)
    assert [(b.index, b.begin, b.length) for b in finished] == blocks
    assert control == 13 * len(blocks)
    assert all(b.data is None for b in finished)


def test_consume_keeps_a_part_sent_in_part_at_the_head() -> None:
    out = owed([(0, 0, BLOCK_SIZE), (0, BLOCK_SIZE, BLOCK_SIZE)])
    read_runs(out, File().pread, 10)
    assert consume(out, 5) == ([], 5)
    head = out[0]
    assert isinstance(head, memoryview) and len(head) == 8
    sent, control = consume(out, 8 + BLOCK_SIZE + 13 + 1)
    assert [(b.index, b.begin) for b in sent] == [(0, 0)] and control == 8 + 13
    block = out[0]
    assert isinstance(block, OwedBlock) and block.done == 1
    release(out)  # a block sent in part keeps its own bytes, not its run's
    assert block.data is not None and bytes(block.data) == FILE[BLOCK_SIZE : 2 * BLOCK_SIZE]
    assert len(block.data.obj) == BLOCK_SIZE  # type: ignore[arg-type]


def test_protocol_error_type_is_raised_by_the_decoder_for_a_bad_request_length() -> None:
    wire = struct.pack(">IBIIIB", 14, 6, 0, 0, 1, 0)
    with pytest.raises(ProtocolError):
        MessageDecoder().feed_runs(wire)
