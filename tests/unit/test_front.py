"""The main listener's front: tracker requests answered by the lean protocol, the rest (and
everything after the first of the rest) by aiohttp, on the same connection and in order."""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from fastbencode import bdecode  # type: ignore[attr-defined]

from s3torrent.front import TrackerFront, is_tracker_target
from s3torrent.http_site import aiohttp_phase
from s3torrent.s3.quick import QuickHandOver, QuickReads
from s3torrent.tracker.http_lean import LeanHttpTracker
from s3torrent.tracker.registry import MemoryRegistry, RegistryLimits, TorrentRef
from s3torrent.tracker.service import TrackerService
from tests.unit.test_tracker_http_lean import HASH, announce_target, read_response, request


async def s3_stand_in(request: web.BaseRequest) -> web.Response:
    """What the S3 application would answer: says it was aiohttp, and what it got."""
    body = await request.read()
    return web.Response(
        text=f"aiohttp {request.method} {request.path_qs} {len(body)}",
        headers={"Server": "s3torrent"},
    )


@asynccontextmanager
async def front_server() -> AsyncIterator[int]:
    registry = MemoryRegistry(RegistryLimits(rate_burst=1e9, rate_per_ip=1e9), random.Random(5))
    await registry.register(HASH, TorrentRef("b", "k", "v"))
    tracker = LeanHttpTracker(TrackerService(registry), lambda: 0.0, eager=True)
    fallback = web.Server(s3_stand_in)
    front = TrackerFront(tracker)
    make, _ = front(fallback, aiohttp_phase)
    server = await asyncio.get_running_loop().create_server(make, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await front.close()
        await fallback.shutdown(1)


async def exchange(port: int, data: bytes, answers: int) -> list[tuple[int, dict[str, str], bytes]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        return [await read_response(reader) for _ in range(answers)]
    finally:
        writer.close()


def tracker_path(n: int) -> str:
    return announce_target(n).replace("/announce?", "/_tracker/announce?", 1)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.mark.parametrize(
    ("target", "tracker"),
    [
        (b"/_tracker/announce?info_hash=x", True),
        (b"/_tracker/scrape", True),
        (b"/announce?info_hash=a&peer_id=b&port=1", True),
        (b"/announce?info_hash=a&port=1", False),  # the bucket "announce"
        (b"/announce", False),
        (b"/scrape?info_hash=a", True),
        (b"/scrape?prefix=a", False),
        (b"/_tracker/ws", False),  # WebSocket tracker: aiohttp's
        (b"/_tracker/announce/x", False),
        (b"/bucket/announce?info_hash=a&peer_id=b", False),
    ],
)
def test_tracker_targets_are_those_the_s3_application_routes_to_the_tracker(
    target: bytes, tracker: bool
) -> None:
    assert is_tracker_target(target) is tracker


def test_announce_then_s3_request_then_announce_on_one_connection() -> None:
    async def scenario() -> None:
        async with front_server() as port:
            data = (
                request(tracker_path(1), "Host: h")
                + request("/bucket/key?x=1", "Host: h")
                + request(tracker_path(2), "Host: h")
            )
            first, second, third = await exchange(port, data, 3)
            assert first[0] == 200 and b"interval" in bdecode(first[2])
            assert "server" not in first[1]  # the lean protocol's answer
            assert (second[0], second[2]) == (200, b"aiohttp GET /bucket/key?x=1 0")
            # The connection is aiohttp's for good: the next announce is its too.
            assert third[2].startswith(b"aiohttp GET /_tracker/announce?")

    run(scenario())


def test_a_request_with_a_body_reaches_aiohttp_whole() -> None:
    async def scenario() -> None:
        async with front_server() as port:
            body = b"x" * 100_000
            head = f"PUT /bucket/key HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n\r\n"
            (answer,) = await exchange(port, head.encode() + body, 1)
            assert answer[2] == b"aiohttp PUT /bucket/key 100000"

    run(scenario())


@pytest.mark.parametrize(
    "extra",
    [
        "Origin: https://example.org",  # a browser's: CORS headers come from the S3 app
        "Content-Length: 3",  # a body the lean parser refuses
        "Transfer-Encoding: chunked",
    ],
)
def test_tracker_requests_the_lean_parser_does_not_take_go_to_aiohttp(extra: str) -> None:
    async def scenario() -> None:
        async with front_server() as port:
            data = request(tracker_path(3), "Host: h", extra)
            if "Content-Length" in extra:
                data += b"abc"
            elif "chunked" in extra:
                data += b"0\r\n\r\n"
            (answer,) = await exchange(port, data, 1)
            assert answer[2].startswith(b"aiohttp GET /_tracker/announce?")

    run(scenario())


def test_hostile_tracker_requests_get_answers_not_hangs() -> None:
    async def scenario() -> None:
        async with front_server() as port:
            # Malformed percent-encoding: a bencoded refusal from the tracker itself.
            (bad,) = await exchange(port, request("/_tracker/announce?info_hash=%zz", "Host: h"), 1)
            assert bad[0] == 200
            assert b"malformed percent-encoding" in bdecode(bad[2])[b"failure reason"]
            # A head past the lean bound: aiohttp's, which refuses an over-long line itself.
            huge = request("/_tracker/announce?" + "a" * 20_000, "Host: h")
            (refused,) = await exchange(port, huge, 1)
            assert refused[0] in (400, 414, 431)

    run(scenario())


# ---- the S3 application's quick answers (s3/quick.py) on the same connections ----


class StandIn:
    """The S3 application's entry as the quick path sees it: answers "quick <method>
    <target>", hands /big over, fails on /boom, waits on /slow until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen: list[str] = []

    async def entry(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request.raw_path)
        if request.path.startswith("/big"):
            raise QuickHandOver
        if request.path.startswith("/boom"):
            raise RuntimeError("boom")
        if request.path.startswith("/slow"):
            await self.release.wait()
        text = f"quick {request.method} {request.raw_path} {request.remote}"
        if request.method == "PUT":
            text += " " + (await request.read()).decode()
        return web.Response(text=text)

    @staticmethod
    def stamp(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = "s3torrent"


@asynccontextmanager
async def quick_server(
    stand_in: StandIn, max_body: int = 0
) -> AsyncIterator[tuple[int, TrackerFront]]:
    registry = MemoryRegistry(RegistryLimits(rate_burst=1e9, rate_per_ip=1e9), random.Random(5))
    tracker = LeanHttpTracker(TrackerService(registry), lambda: 0.0, eager=True)
    fallback = web.Server(s3_stand_in)
    front = TrackerFront(tracker)
    front.quick = QuickReads(stand_in.entry, stand_in.stamp, 1024, max_body=max_body)
    make, _ = front(fallback, aiohttp_phase)
    server = await asyncio.get_running_loop().create_server(make, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1]), front
    finally:
        server.close()
        await front.close()
        await fallback.shutdown(1)


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: h\r\n\r\n".encode()


def test_gets_are_answered_quick_until_a_request_aiohttp_must_answer() -> None:
    async def go() -> list[bytes]:
        stand_in = StandIn()
        async with quick_server(stand_in) as (port, _):
            data = get("/b/k1") + get("/b/k2?x=1") + get("/b/k3", "PUT") + get("/b/k4")
            return [body for _, _, body in await exchange(port, data, 4)]

    bodies = run(go())
    assert bodies[0] == b"quick GET /b/k1 127.0.0.1"
    assert bodies[1] == b"quick GET /b/k2?x=1 127.0.0.1"
    # From the PUT on, the connection is aiohttp's: the GET after it too, in order.
    assert bodies[2:] == [b"aiohttp PUT /b/k3 0", b"aiohttp GET /b/k4 0"]


def put(path: str, body: bytes) -> bytes:
    return f"PUT {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def test_a_small_put_that_came_whole_is_answered_quick_with_its_body() -> None:
    async def go() -> list[bytes]:
        async with quick_server(StandIn(), max_body=16) as (port, _):
            # Pipelined: the body's bytes never pass for the next request's head.
            data = put("/b/k1", b"GET /x HTTP/1.1") + get("/b/k2") + put("/b/k3", b"")
            return [body for _, _, body in await exchange(port, data, 3)]

    assert run(go()) == [
        b"quick PUT /b/k1 127.0.0.1 GET /x HTTP/1.1",
        b"quick GET /b/k2 127.0.0.1",
        b"quick PUT /b/k3 127.0.0.1 ",
    ]


def test_puts_the_quick_path_does_not_take_reach_aiohttp_whole() -> None:
    async def go() -> list[list[bytes]]:
        out = []
        async with quick_server(StandIn(), max_body=16) as (port, _):
            # Longer than the quick path's bound.
            out.append(await exchange(port, put("/b/long", b"x" * 17) + get("/b/k"), 2))
            # Handed back by the application: its body goes back with its head.
            out.append(await exchange(port, put("/big/one", b"hello") + get("/b/k"), 2))
            # Its body not all there with its head: never waited for here.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            whole = put("/b/late", b"0123456789")
            writer.write(whole[:-4])
            await asyncio.sleep(0.2)
            writer.write(whole[-4:] + get("/b/k"))
            out.append([await read_response(reader) for _ in range(2)])
            writer.close()
        return [[body for _, _, body in answers] for answers in out]

    long, handed, late = run(go())
    assert long == [b"aiohttp PUT /b/long 17", b"aiohttp GET /b/k 0"]
    assert handed == [b"aiohttp PUT /big/one 5", b"aiohttp GET /b/k 0"]
    assert late == [b"aiohttp PUT /b/late 10", b"aiohttp GET /b/k 0"]


def test_no_put_is_quick_unless_the_front_is_given_a_body_bound() -> None:
    async def go() -> list[bytes]:
        async with quick_server(StandIn()) as (port, _):
            return [body for _, _, body in await exchange(port, put("/b/k", b"ab"), 1)]

    assert run(go()) == [b"aiohttp PUT /b/k 2"]


def test_a_request_handed_over_is_answered_once_by_aiohttp_in_its_place() -> None:
    async def go() -> tuple[list[bytes], list[str]]:
        stand_in = StandIn()
        async with quick_server(stand_in) as (port, _):
            data = get("/b/small") + get("/big/object") + get("/b/after")
            answers = await exchange(port, data, 3)
            return [body for _, _, body in answers], stand_in.seen

    bodies, seen = run(go())
    assert bodies == [
        b"quick GET /b/small 127.0.0.1",
        b"aiohttp GET /big/object 0",
        b"aiohttp GET /b/after 0",
    ]
    assert seen == ["/b/small", "/big/object"]  # nothing after the hand-over came here


def test_a_failing_quick_answer_is_a_500_and_a_close() -> None:
    async def go() -> tuple[int, bytes]:
        async with quick_server(StandIn()) as (port, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(get("/boom") + get("/b/k"))
            status, _, _ = await read_response(reader)
            rest = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return status, rest

    status, rest = run(go())
    assert status == 500
    assert rest == b""  # closed: the pipelined request is not answered


def test_closing_the_front_writes_the_quick_answers_under_way_first() -> None:
    async def go() -> tuple[int, bytes]:
        stand_in = StandIn()
        async with quick_server(stand_in) as (port, front):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(get("/slow/one"))
            while not stand_in.seen:
                await asyncio.sleep(0.01)
            closing = asyncio.create_task(front.close())
            await asyncio.sleep(0.1)
            assert not closing.done()  # waiting for the answer under way
            stand_in.release.set()
            status, _, body = await read_response(reader)
            await asyncio.wait_for(closing, 5)
            writer.close()
            return status, body

    status, body = run(go())
    assert status == 200 and body.startswith(b"quick GET /slow/one")


def test_slow_and_huge_heads_never_reach_the_quick_path() -> None:
    async def go() -> list[int]:
        stand_in = StandIn()
        async with quick_server(stand_in) as (port, _):
            huge = b"GET /b/k HTTP/1.1\r\nHost: h\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n"
            answers = await exchange(port, huge, 1)
            assert stand_in.seen == []
            return [status for status, _, _ in answers]

    # aiohttp's own bound answers it (the stand-in app never sees a head this large).
    assert run(go())[0] in (400, 431)


def test_a_long_keep_alive_connection_keeps_only_the_request_under_way() -> None:
    """Bytes of answered requests are dropped as the connection goes on: a client that
    keeps one connection for a million requests must not make the front hold them all."""

    async def go() -> tuple[list[int], list[int], int]:
        stand_in = StandIn()
        async with quick_server(stand_in) as (port, front):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            (connection,) = front.tracker.connections
            held: list[int] = []
            for round_ in range(3):
                # Quick GETs, announces and GETs again, pipelined in batches.
                for batch in range(20):
                    data = b"".join(
                        request(tracker_path(i), "Host: h")
                        if i % 3 == 0
                        else get(f"/b/key-{round_}-{batch}-{i}")
                        for i in range(10)
                    )
                    writer.write(data)
                    for _ in range(10):
                        await read_response(reader)
                held.append(connection._reader._buffer.__len__())
            buffered = [connection._reader.buffered]
            writer.close()
            return held, buffered, len(stand_in.seen)

    held, buffered, seen = run(go())
    assert seen == 3 * 20 * 10 - 3 * 20 * 4  # the announces went to the tracker
    assert buffered == [0]
    # 600 requests of about 40-300 bytes went through; what is held is at most the last.
    assert max(held) <= 400, held


_ASKED_BY: contextvars.ContextVar[str] = contextvars.ContextVar("asked_by", default="")


class ContextStandIn(StandIn):
    """Tells what a request found in a context variable it then sets (a request before it
    in the same batch must not have left its own there), and whether it ran in a task
    (as an asyncio.timeout would need) before and after waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def entry(self, request: web.Request) -> web.StreamResponse:
        found = _ASKED_BY.get()
        _ASKED_BY.set(request.path)
        in_task = asyncio.current_task() is not None
        if request.path.startswith("/slow"):
            await self.release.wait()
        after = f"{_ASKED_BY.get()} {asyncio.current_task() is not None}"
        return web.Response(text=f"found={found!r} task={in_task} after={after}")


def test_heads_that_arrive_together_are_answered_in_one_batch_each_in_its_own_context() -> None:
    """The quick heads of one loop turn are answered by one callback (no task each), one
    after another, each in a context of its own; one that must wait finishes in a task of
    its own, in its context, and does not hold up the others."""

    async def go() -> tuple[list[bytes], list[int]]:
        stand_in = ContextStandIn()
        batches: list[int] = []
        async with quick_server(stand_in) as (port, front):
            assert front.quick is not None
            answer_queued = front.quick._answer_queued

            def counted() -> None:
                batches.append(len(front.quick._queue))  # type: ignore[union-attr]
                answer_queued()

            front.quick._answer_queued = counted  # type: ignore[method-assign]
            streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
            await asyncio.sleep(0.05)  # every connection accepted
            paths = ["/slow/a", "/b/one", "/b/two", "/b/three"]
            for (_, writer), path in zip(streams, paths, strict=True):
                writer.write(get(path))  # all four arrive before the server's next turn
            quick = [await read_response(reader) for reader, _ in streams[1:]]
            stand_in.release.set()
            slow = await read_response(streams[0][0])
            for _, writer in streams:
                writer.close()
            return [slow[2]] + [body for _, _, body in quick], batches

    bodies, batches = run(go())
    assert batches == [4]  # one callback for the four heads
    # Nothing leaked from one request of the batch into the next; no task while inline.
    assert bodies[1:] == [
        f"found='' task=False after={path} False".encode()
        for path in ("/b/one", "/b/two", "/b/three")
    ]
    # The one that waited went on in a task, with its own context.
    assert bodies[0] == b"found='' task=False after=/slow/a True"
