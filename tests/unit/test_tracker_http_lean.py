"""The lean tracker HTTP transport: the pure request parser, then the listener on real sockets."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar
from urllib.parse import quote_from_bytes

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.tracker.http_lean import (
    HttpRequestError,
    HttpRequestHead,
    LeanHttpLimits,
    LeanHttpTracker,
    RequestHeadReader,
    encode_response,
    parse_request_head,
)
from s3torrent.tracker.protocol import AnnounceRequest
from s3torrent.tracker.registry import (
    AnnounceFailure,
    AnnounceResult,
    MemoryRegistry,
    RegistryLimits,
    TorrentRef,
)
from s3torrent.tracker.service import TrackerService

T = TypeVar("T")
HASH = bytes(range(100, 120))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# --- the parser (pure) ---------------------------------------------------------------------


def request(target: str = "/announce?a=1", *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {target} HTTP/{version}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_one(data: bytes, max_request_bytes: int = 8192) -> HttpRequestHead:
    reader = RequestHeadReader(max_request_bytes)
    reader.feed(data)
    head = reader.next_request()
    assert head is not None
    return head


def test_parses_target_and_forwarded_for() -> None:
    head = parse_one(
        request(
            "/announce?info_hash=%00%01&x",
            "Host: tracker",
            "X-Forwarded-For: 192.0.2.1",
            "x-forwarded-for:  10.0.0.1 ",
        )
    )
    assert head == HttpRequestHead(
        target=b"/announce?info_hash=%00%01&x",
        keep_alive=True,
        forwarded_for="192.0.2.1,10.0.0.1",
    )


@pytest.mark.parametrize(
    ("version", "headers", "keep_alive"),
    [
        ("1.1", ("Host: a",), True),
        ("1.1", ("Host: a", "Connection: close"), False),
        ("1.1", ("Host: a", "Connection: Keep-Alive, CLOSE"), False),
        ("1.0", (), False),
        ("1.0", ("Connection: keep-alive",), True),
    ],
)
def test_keep_alive_follows_version_and_connection_header(
    version: str, headers: tuple[str, ...], keep_alive: bool
) -> None:
    assert parse_one(request("/announce", *headers, version=version)).keep_alive is keep_alive


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"POST /announce HTTP/1.1\r\nHost: a\r\n\r\n", 405),
        (b"get /announce HTTP/1.1\r\nHost: a\r\n\r\n", 405),
        (b"GET /announce HTTP/2.0\r\nHost: a\r\n\r\n", 400),
        (b"GET /announce HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
        (b"GET  /announce HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET http://a/announce HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /ann\x7founce HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /announce\r\n\r\n", 400),
        (b"\r\nGET /announce HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET /announce HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET /announce HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET /announce HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        (b"GET /announce HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
        (b"GET /announce HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),
        (b"GET /announce HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
        (b"GET /announce HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
        (b"GET /announce HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", 400),
        (b"GET /announce HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS to a plain port
    ],
)
def test_malformed_requests_are_refused_with_a_status(raw: bytes, status: int) -> None:
    reader = RequestHeadReader()
    reader.feed(raw)
    with pytest.raises(HttpRequestError) as caught:
        reader.next_request()
    assert caught.value.status == status
    # The stream has no boundary to resume from: the error sticks.
    with pytest.raises(HttpRequestError):
        reader.next_request()


def test_content_length_zero_is_accepted() -> None:
    assert parse_one(request("/a", "Host: a", "Content-Length: 0")).target == b"/a"


def test_request_head_size_is_bounded() -> None:
    fits = request("/announce?" + "a" * 100, "Host: a")
    assert parse_one(fits, max_request_bytes=len(fits)).target.startswith(b"/announce")
    reader = RequestHeadReader(len(fits) - 1)
    reader.feed(fits)
    with pytest.raises(HttpRequestError) as caught:
        reader.next_request()
    assert caught.value.status == 431
    # Without the terminator the reader gives up as soon as the bound is reached.
    endless = RequestHeadReader(100)
    endless.feed(b"GET /" + b"a" * 95)
    with pytest.raises(HttpRequestError):
        endless.next_request()


def test_responses_are_framed_by_content_length() -> None:
    assert encode_response(200, b"d1:ai1ee", keep_alive=True) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\nd1:ai1ee"
    )
    closing = encode_response(404, b"", keep_alive=False)
    assert closing.startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert closing.endswith(b"Content-Length: 0\r\nConnection: close\r\n\r\n")


_TOKEN = st.text(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!#$%&'*+^`|~",
    min_size=1,
    max_size=12,
)
_TARGET = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=200).map(
    lambda text: "/" + text
)
_VALUE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=30)
_RESERVED = {"connection", "host", "content-length", "transfer-encoding", "x-forwarded-for"}


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[bytes, HttpRequestHead]:
    target = draw(_TARGET)
    extra = draw(
        st.lists(st.tuples(_TOKEN, _VALUE), max_size=5).map(
            lambda pairs: [(n, v) for n, v in pairs if n.lower() not in _RESERVED]
        )
    )
    close = draw(st.booleans())
    forwarded = draw(st.none() | _VALUE)
    headers = ["Host: tracker", *(f"{n}: {v}" for n, v in extra)]
    if forwarded is not None:
        headers.append(f"X-Forwarded-For: {forwarded}")
    if close:
        headers.append("Connection: close")
    draw(st.randoms()).shuffle(headers)
    expected = HttpRequestHead(target.encode(), keep_alive=not close, forwarded_for=forwarded)
    return request(target, *headers), expected


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(st.lists(valid_requests(), min_size=1, max_size=6), st.lists(st.integers(0, 10**6)))
def test_pipelined_requests_come_out_whole_and_in_order_whatever_the_split(
    requests: list[tuple[bytes, HttpRequestHead]], cuts: list[int]
) -> None:
    stream = b"".join(raw for raw, _ in requests)
    reader = RequestHeadReader()
    heads: list[HttpRequestHead] = []
    for chunk in split_at(stream, cuts):
        reader.feed(chunk)
        while (head := reader.next_request()) is not None:
            heads.append(head)
    assert heads == [expected for _, expected in requests]
    assert reader.buffered == 0


@settings(max_examples=300)
@given(
    st.lists(
        st.binary(max_size=300)
        | st.sampled_from([b"\r\n", b"\r\n\r\n", b"GET / HTTP/1.1\r\n", b"Host: a\r\n", b":"]),
        max_size=20,
    ),
    st.integers(16, 1024),
)
def test_garbage_never_raises_anything_but_the_parsers_error(
    chunks: list[bytes], max_request_bytes: int
) -> None:
    reader = RequestHeadReader(max_request_bytes)
    for chunk in chunks:
        reader.feed(chunk)
        try:
            while reader.next_request() is not None:
                pass
        except HttpRequestError as error:
            assert error.status in {400, 405, 431}
            return
        # Waiting for more means less than one request's bound is held.
        assert reader.buffered < max_request_bytes


@given(st.binary(max_size=600))
def test_parse_request_head_only_raises_its_own_error(head: bytes) -> None:
    with suppress(HttpRequestError):
        parse_request_head(head)


# --- the listener on 127.0.0.1 -------------------------------------------------------------


def announce_target(n: int, *, left: int = 10, event: str = "") -> str:
    peer_id = n.to_bytes(20, "big")
    query = (
        f"info_hash={quote_from_bytes(HASH, safe='')}&peer_id={quote_from_bytes(peer_id, safe='')}"
        f"&port={6000 + n}&uploaded=0&downloaded=0&left={left}&compact=1"
    )
    return f"/announce?{query}" + (f"&event={event}" if event else "")


class SlowRegistry(MemoryRegistry):
    """Suspends inside every call, as a networked registry does."""

    async def announce(self, req: AnnounceRequest, now: float) -> AnnounceResult | AnnounceFailure:
        await asyncio.sleep(0.01)
        # After the first suspension, code runs in a task: what `asyncio.timeout` needs.
        async with asyncio.timeout(5):
            return await super().announce(req, now)


@asynccontextmanager
async def lean_tracker(
    limits: LeanHttpLimits | None = None,
    registry: MemoryRegistry | None = None,
    clock: Callable[[], float] = lambda: 0.0,
    *,
    eager: bool = True,
) -> AsyncIterator[tuple[LeanHttpTracker, int]]:
    registry = registry or MemoryRegistry(
        RegistryLimits(rate_burst=1e9, rate_per_ip=1e9), random.Random(5)
    )
    await registry.register(HASH, TorrentRef("b", "k", "v"))
    tracker = LeanHttpTracker(TrackerService(registry), clock, limits, eager=eager)
    server = await tracker.start("127.0.0.1", 0)
    try:
        yield tracker, int(server.sockets[0].getsockname()[1])
    finally:
        await tracker.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in lines)}
    body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


async def closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 5) == b""
    except ConnectionError:  # a write of ours hit the closed socket first
        return True


def test_announce_and_scrape_over_one_keep_alive_connection() -> None:
    async def scenario() -> None:
        async with lean_tracker() as (_, port):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            for n in (1, 2):
                w.write(request(announce_target(n), "Host: t"))
                status, headers, body = await read_response(r)
                assert (status, headers["content-type"]) == (200, "text/plain")
                assert "connection" not in headers
            answer = bdecode(body)
            assert answer[b"incomplete"] == 2
            assert answer[b"peers"] == bytes([127, 0, 0, 1]) + (6001).to_bytes(2, "big")
            w.write(request(f"/scrape?info_hash={quote_from_bytes(HASH, safe='')}", "Host: t"))
            status, _, body = await read_response(r)
            assert bdecode(body)[b"files"][HASH][b"incomplete"] == 2
            assert not r.at_eof()
            w.close()

    run(scenario())


def test_pipelined_requests_are_answered_in_order_and_close_is_honoured() -> None:
    async def scenario(registry: MemoryRegistry | None, *, eager: bool = True) -> None:
        async with lean_tracker(registry=registry, eager=eager) as (_, port):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(
                request(announce_target(1), "Host: t")
                + request("/elsewhere", "Host: t")
                + request(announce_target(2), "Host: t")
                + request(announce_target(3), "Host: t", "Connection: close")
                + request(announce_target(4), "Host: t")  # after close: never answered
            )
            answers = [await read_response(r) for _ in range(4)]
            assert [status for status, _, _ in answers] == [200, 404, 200, 200]
            assert [bdecode(body)[b"incomplete"] for _, _, body in answers[2:]] == [2, 3]
            assert answers[3][1]["connection"] == "close"
            assert await closed(r)
            w.close()

    run(scenario(None))
    run(scenario(None, eager=False))  # a task per answer
    # A registry that suspends: answers still go out whole and in order.
    run(scenario(SlowRegistry(RegistryLimits(rate_burst=1e9, rate_per_ip=1e9))))


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"\x00\xff garbage \r\n\r\n", 400),
        (b"POST /announce HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", 405),
        (request("/announce?" + "a" * 9000, "Host: t"), 431),
        (b"GET /" + b"a" * 9000, 431),  # no end in sight
    ],
)
def test_bad_input_gets_an_error_status_and_the_connection_closes(raw: bytes, status: int) -> None:
    async def scenario() -> None:
        async with lean_tracker() as (tracker, port):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            # A good request first: the error comes after its answer.
            w.write(request(announce_target(1), "Host: t") + raw)
            assert (await read_response(r))[0] == 200
            got, headers, _ = await read_response(r)
            assert (got, headers["connection"]) == (status, "close")
            assert await closed(r)
            w.close()
            await asyncio.sleep(0.05)
            assert not tracker.connections

    run(scenario())


def test_http_1_0_closes_after_the_answer() -> None:
    async def scenario() -> None:
        async with lean_tracker() as (_, port):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(request(announce_target(1), version="1.0"))
            assert (await read_response(r))[0] == 200
            assert await closed(r)
            w.close()

    run(scenario())


def test_half_closed_client_still_gets_its_answers() -> None:
    async def scenario() -> None:
        async with lean_tracker() as (_, port):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(request(announce_target(1), "Host: t") + request(announce_target(2), "Host: t"))
            w.write_eof()
            assert [(await read_response(r))[0] for _ in range(2)] == [200, 200]
            assert await closed(r)
            w.close()

    run(scenario())


def test_connections_beyond_the_cap_get_503() -> None:
    async def scenario() -> None:
        async with lean_tracker(LeanHttpLimits(max_connections=1)) as (_, port):
            r1, w1 = await asyncio.open_connection("127.0.0.1", port)
            w1.write(request(announce_target(1), "Host: t"))
            assert (await read_response(r1))[0] == 200
            r2, w2 = await asyncio.open_connection("127.0.0.1", port)
            assert (await read_response(r2))[0] == 503
            assert await closed(r2)
            w1.close()
            w2.close()

    run(scenario())


def test_idle_and_slow_connections_are_closed() -> None:
    async def scenario() -> None:
        async with lean_tracker(LeanHttpLimits(idle_timeout=0.2)) as (tracker, port):
            idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
            idle_w.write(request(announce_target(1), "Host: t"))
            assert (await read_response(idle_r))[0] == 200
            slow_r, slow_w = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(4):  # trickling bytes does not keep a connection alive
                with suppress(ConnectionError):  # the server may have closed it already
                    slow_w.write(b"G")
                await asyncio.sleep(0.1)
            assert await closed(idle_r)
            assert await closed(slow_r)
            assert not tracker.connections
            idle_w.close()
            slow_w.close()

    run(scenario())


def test_close_ends_open_connections() -> None:
    async def scenario() -> None:
        async with lean_tracker() as (tracker, port):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(request(announce_target(1), "Host: t"))
            assert (await read_response(r))[0] == 200
            await tracker.close()
            assert await closed(r)
            w.close()

    run(scenario())


def test_peers_expire_on_the_injected_clock() -> None:
    now = [0.0]

    async def scenario() -> None:
        async with lean_tracker(clock=lambda: now[0]) as (_, port):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(request(announce_target(1), "Host: t"))
            await read_response(r)
            now[0] = 10_000.0  # past the registry's peer TTL
            w.write(request(announce_target(2), "Host: t"))
            _, _, body = await read_response(r)
            assert bdecode(body)[b"peers"] == b""
            w.close()

    run(scenario())


def test_a_reader_that_skips_heads_holds_only_the_last_one_and_can_undo_it() -> None:
    reader = RequestHeadReader(1024)
    heads = [request(f"/b/k{i}", "Host: h") for i in range(200)]
    for data in heads:
        reader.feed(data)
        head = reader.pending_head()
        assert head is not None and head + b"\r\n\r\n" == data
        reader.skip(head)
        assert reader.buffered == 0
    reader.feed(heads[0][:10])  # the start of another request
    assert len(reader._buffer) == len(heads[-1]) + 10  # the last head and what follows
    reader.unskip()  # handed over: the last head is pending again, then the rest
    assert reader.take() == heads[-1] + heads[0][:10]


def test_a_reader_gives_the_body_after_a_head_and_skips_or_unskips_it_with_the_head() -> None:
    reader = RequestHeadReader(1024)
    put = b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n"
    reader.feed(put + b"hel")
    head = reader.pending_head()
    assert head is not None
    assert reader.body_after(head, 5) is None  # not all of it yet
    reader.feed(b"loGET /b/next HTTP/1.1\r\n")
    assert reader.body_after(head, 5) == b"hello"
    assert reader.body_after(head, 0) == b""
    reader.skip(head, 5)
    assert reader.buffered == len(b"GET /b/next HTTP/1.1\r\n")
    reader.unskip()  # handed over: the whole PUT is pending again, then the rest
    assert reader.take() == put + b"helloGET /b/next HTTP/1.1\r\n"


def test_a_reader_fed_while_a_head_is_always_complete_holds_only_the_unread() -> None:
    """A pipelining client whose next request is always complete when the last answer is
    written (every answer a task: a Redis registry, a worker's relay) never lets the reader
    find no head; what the answered requests took must still go."""
    reader = RequestHeadReader(8192)
    heads = [request(announce_target(i), "Host: t") for i in range(2000)]
    reader.feed(heads[0] + heads[1])
    for i in range(2, len(heads)):
        assert reader.next_request() is not None
        reader.feed(heads[i])
        assert len(reader._buffer) <= 3 * max(len(h) for h in heads)
    assert reader.buffered == len(heads[-2]) + len(heads[-1])
