"""The quick path's sans-IO parts: which heads it takes, and how it frames an answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

import s3torrent.s3.quick as quick_module
from s3torrent.s3.quick import MAX_FIELDS, QuickHead, encode_response

PLAIN = b"GET /bkt/key?X-Amz-Signature=ab HTTP/1.1\r\nHost: s3.example\r\nUser-Agent: wrk"


def test_a_plain_get_is_taken_with_its_fields_as_sent() -> None:
    head = QuickHead.parse(PLAIN)
    assert head is not None
    assert head.method == "GET"
    assert head.target == "/bkt/key?X-Amz-Signature=ab"
    assert head.fields == (("Host", "s3.example"), ("User-Agent", "wrk"))
    assert head.keep_alive and head.minor == 1


def test_head_and_keep_alive_rules() -> None:
    head = QuickHead.parse(b"HEAD /b/k HTTP/1.0\r\nConnection: keep-alive")
    assert head is not None and head.method == "HEAD" and head.keep_alive and head.minor == 0
    closing = QuickHead.parse(b"GET /b/k HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, close")
    assert closing is not None and not closing.keep_alive
    assert QuickHead.parse(b"GET /b/k HTTP/1.0") is not None  # 1.0 needs no Host
    ten = QuickHead.parse(b"GET /b/k HTTP/1.0")
    assert ten is not None and not ten.keep_alive
    empty_body = QuickHead.parse(b"GET /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 0")
    assert empty_body is not None


@pytest.mark.parametrize(
    "head",
    [
        b"PUT /b/k HTTP/1.1\r\nHost: h",  # a PUT without its length
        b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5",
        b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: +5",
        b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5 5",
        b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5",
        b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 1234567890123456789",
        b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue",
        b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
        b"POST /b/k HTTP/1.1\r\nHost: h",
        b"OPTIONS /b/k HTTP/1.1\r\nHost: h",
        b"get /b/k HTTP/1.1\r\nHost: h",
        b"GET /b/k HTTP/2.0\r\nHost: h",
        b"GET b/k HTTP/1.1\r\nHost: h",  # not origin-form
        b"GET http://h/b/k HTTP/1.1\r\nHost: h",
        b"GET /b/k HTTP/1.1",  # HTTP/1.1 without Host
        b"GET /b/k HTTP/1.1\r\nHost: h\r\nHost: i",
        # a field aiohttp refuses twice (its 400): SigV2 signs the first Content-Type
        b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n"
        + b"Content-Type: text/plain\r\ncontent-type: text/html",
        b"GET /b/k HTTP/1.1\r\nHost: h\r\nUser-Agent: a\r\nUser-Agent: b",
        b"GET /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5",  # a body to frame
        b"GET /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 0x0",
        b"GET /b/k HTTP/1.1\r\nHost: h\r\nContent-Length:",
        b"GET /b/k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked",
        b"GET /b/k HTTP/1.1\r\nHost: h\r\nExpect: 100-continue",
        b"GET /b/k HTTP/1.1\r\nHost: h\r\nUpgrade: websocket",
        b"GET /b/k HTTP/1.1\r\nHost: h\r\nOrigin: https://evil.example",  # CORS: aiohttp
        b"GET /b/k HTTP/1.1\r\nHost: h\r\norigin: null",
        b"GET /b/k HTTP/1.1\r\nHost : h",  # space before the colon
        b"GET /b/k HTTP/1.1\r\nHost: h\r\n folded",  # obsolete line folding
        b"GET /b/k HTTP/1.1\r\nHost: h\r\nX-A: a\x00b",  # a control byte
        b"GET /b/k HTTP/1.1\r\nHost: h\r\nX-A: a\rb",  # a bare CR
        b"GET /b/k HTTP/1.1\r\nHost: h\nX-A: b",  # a bare LF
        b"GET /b/k\x7f HTTP/1.1\r\nHost: h",
        b"GET /b/k#frag HTTP/1.1\r\nHost: h",
        b"GET /b/k HTTP/1.1\r\nHost: h\r\n"
        + b"\r\n".join(b"X-%d: v" % i for i in range(MAX_FIELDS)),
    ],
)
def test_heads_left_to_aiohttp(head: bytes) -> None:
    assert QuickHead.parse(head) is None


def test_a_put_is_taken_with_its_body_length() -> None:
    head = QuickHead.parse(b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 4096")
    assert head is not None and head.method == "PUT" and head.body_length == 4096
    empty = QuickHead.parse(b"PUT /b/k HTTP/1.0\r\ncontent-length: 0")
    assert empty is not None and empty.body_length == 0
    get = QuickHead.parse(b"GET /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 0")
    assert get is not None and get.body_length == 0


def test_non_ascii_values_decode_as_aiohttp_does() -> None:
    head = QuickHead.parse("GET /b/k HTTP/1.1\r\nHost: h\r\nX-N: é".encode())
    assert head is not None
    assert dict(head.fields)["X-N"] == "é"
    assert head.raw_fields[-1] == (b"X-N", "é".encode())


def quick(raw: bytes) -> QuickHead:
    head = QuickHead.parse(raw)
    assert head is not None
    return head


def split(out: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0], fields, body


def test_a_body_is_framed_with_length_type_and_date() -> None:
    out, keep = encode_response(quick(PLAIN), web.Response(body=b"abc", headers={"ETag": '"x"'}))
    status, fields, body = split(out)
    assert status == "HTTP/1.1 200 OK" and keep
    assert body == b"abc"
    assert fields["Content-Length"] == "3"
    assert fields["Content-Type"] == "application/octet-stream"
    assert fields["ETag"] == '"x"' and fields["Date"].endswith(" GMT")
    assert "Connection" not in fields


def test_head_answers_carry_the_length_and_no_body() -> None:
    head = quick(b"HEAD /b/k HTTP/1.1\r\nHost: h")
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.content_length = 4096
    out, _ = encode_response(head, response)
    _, fields, body = split(out)
    assert fields["Content-Length"] == "4096" and body == b""
    # An error to a HEAD: no body, and no length of a body it does not have.
    out, _ = encode_response(head, web.Response(status=404))
    status, fields, body = split(out)
    assert status == "HTTP/1.1 404 Not Found" and body == b"" and "Content-Length" not in fields


def test_not_modified_has_no_length_or_body() -> None:
    out, _ = encode_response(quick(PLAIN), web.Response(status=304, body=b"ignored"))
    status, fields, body = split(out)
    assert status == "HTTP/1.1 304 Not Modified"
    assert body == b"" and "Content-Length" not in fields and "Content-Type" not in fields


def test_connection_header_follows_the_version_and_the_answer() -> None:
    out, keep = encode_response(
        quick(b"GET /b/k HTTP/1.0\r\nConnection: keep-alive"), web.Response()
    )
    assert keep and split(out)[1]["Connection"] == "keep-alive"
    assert split(out)[0].startswith("HTTP/1.0 200")
    closing = web.Response(status=400)
    closing.force_close()
    out, keep = encode_response(quick(PLAIN), closing)
    assert not keep and split(out)[1]["Connection"] == "close"


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb"])
def test_a_header_with_a_line_break_is_never_written(value: str) -> None:
    with pytest.raises(ValueError, match="newline"):
        encode_response(quick(PLAIN), web.Response(headers={"Content-Disposition": value}))


def test_streamed_answers_are_not_framed_here() -> None:
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    with pytest.raises(ValueError):
        encode_response(quick(PLAIN), response)


def test_a_head_seen_before_is_the_same_parse_and_one_byte_more_is_its_own() -> None:
    head = b"GET /b/memo-k?x=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8"
    first = QuickHead.parse(head)
    assert first is not None
    assert QuickHead.parse(bytes(head)) is first  # equal bytes, another object: a hit
    other = QuickHead.parse(head + b"x")  # another User-Agent
    assert other is not None and other is not first
    assert dict(other.fields)["User-Agent"] == "curl/8x"
    assert dict(first.fields)["User-Agent"] == "curl/8"
    # What the quick path refuses is refused every time, never remembered as taken.
    bad = b"GET /b/k HTTP/1.1\r\nHost: h\r\nOrigin: https://example.org"
    assert QuickHead.parse(bad) is None
    assert QuickHead.parse(bad) is None
    assert bad not in quick_module._HEADS


def test_the_head_memo_is_bounded_by_the_bytes_it_keeps() -> None:
    memo = quick_module._HeadMemo(64 * 1024)
    for i in range(5000):
        head = f"GET /b/key-{i:05d}?{'q' * 200} HTTP/1.1\r\nHost: h".encode()
        parsed = QuickHead.parse(head)
        assert parsed is not None
        memo.keep(head, parsed)
        assert memo.size <= memo.limit
        assert memo.size == sum(4 * len(h) for h in memo)
    assert 0 < len(memo) < 5000


class _Transport:
    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("10.1.2.3", 5555), "sockname": ("127.0.0.1", 80)}.get(name, default)


def test_requests_made_from_one_head_share_its_message_and_cannot_change_it() -> None:
    """A head's aiohttp message is built once (QuickHead.message): every request made from
    it reads the same header view, which no request can write to, and a request's clone
    with another client address (the owner's trusted_client) leaves the others as they
    were."""
    raw = b"GET /b/k?versionId=3 HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\nX-N: 1"
    head = quick(raw)
    conn = quick_module.QuickConnection(_Transport())
    first = quick_module.make_request(head, conn, 1024)
    second = quick_module.make_request(quick(raw), conn, 1024)
    assert first.headers is second.headers and first.rel_url is second.rel_url
    assert first.raw_headers == head.raw_fields
    assert (first.method, first.raw_path) == ("GET", "/b/k?versionId=3")
    assert first.query["versionId"] == "3" and first.headers["Range"] == "bytes=0-1"
    assert first.remote == "10.1.2.3"
    with pytest.raises(TypeError):
        first.headers["Range"] = "bytes=0-"  # type: ignore[index]
    moved = first.clone(remote="192.0.2.9")
    assert moved.remote == "192.0.2.9" and second.remote == "10.1.2.3"
    mine = web.RequestKey("mine", int)
    first[mine] = 1
    assert mine not in second and first.headers["Range"] == "bytes=0-1"


class _Owner:
    """A connection as QuickReads sees it: records what it is told."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.outcomes: list[object] = []

    @property
    def gone(self) -> bool:
        return False

    def quick_answered(self, outcome: object, raw: bytes) -> None:
        if self.fail:
            raise RuntimeError("this connection's write failed")
        self.outcomes.append(outcome)

    def quick_suspended(self, task: object, raw: bytes) -> None:
        raise AssertionError("nothing here waits")


def test_a_batch_answers_every_head_whatever_one_of_them_does() -> None:
    """A head whose answer raises CancelledError gets an outcome (the owner writes a 500 and
    closes), not silence that would leave its connection busy for ever; and one owner whose
    write fails does not keep the others of the batch from theirs."""

    async def entry(request: web.Request) -> web.StreamResponse:
        if request.path == "/cancelled":
            raise asyncio.CancelledError
        return web.Response(text=request.path)

    async def go() -> tuple[_Owner, _Owner, _Owner]:
        reads = quick_module.QuickReads(entry, lambda req, resp: None, 1024)
        conn = quick_module.QuickConnection(_Transport())
        owners = _Owner(), _Owner(fail=True), _Owner()
        for owner, path in zip(owners, ("/cancelled", "/a", "/b"), strict=True):
            raw = f"GET {path} HTTP/1.1\r\nHost: h".encode()
            reads.enqueue(owner, quick(raw), conn, raw)
        await asyncio.sleep(0)  # the batch runs in the next turn
        return owners

    cancelled, failing, last = asyncio.run(go())
    assert [type(o) for o in cancelled.outcomes] == [asyncio.CancelledError]
    assert failing.outcomes == []
    (answer,) = last.outcomes
    assert isinstance(answer, tuple) and answer[0].endswith(b"\r\n\r\n/b")


class _ParserProtocol:
    """What aiohttp's request parser asks of its protocol."""

    _reading_paused = False
    connected = True
    transport = None

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass


_LENGTHS = st.sampled_from(
    ["0", "5", "007", "+5", "-1", "5 ", " 5", "5,5", "0x5", "1e3", "٥", "", "99999999999999999999"]
)
_FIELDS = st.lists(
    st.one_of(
        st.builds(lambda v: f"Content-Length: {v}", _LENGTHS),
        st.sampled_from(
            [
                "Host: h",
                "X-Amz-Meta-A: 1",
                "Transfer-Encoding: chunked",
                "Content-Length : 5",
                "Expect: 100-continue",
                "Connection: close",
                "content-length:5",
            ]
        ),
    ),
    max_size=4,
)


@settings(max_examples=400, deadline=None)
@given(fields=_FIELDS, body=st.binary(max_size=12), minor=st.sampled_from(["0", "1"]))
def test_a_put_the_quick_path_takes_is_framed_as_aiohttp_frames_it(
    fields: list[str], body: bytes, minor: str
) -> None:
    """Request smuggling's ground: where the front reads a PUT's body itself, the next
    request must start exactly where aiohttp's own parser would start it. Whatever head the
    quick path takes, aiohttp takes too, with the same method, target, fields and body
    length; the bytes after that body are the same next request to both."""
    head = "\r\n".join([f"PUT /b/k HTTP/1.{minor}", *fields]).encode()
    taken = QuickHead.parse(head)
    if taken is None:
        return
    # The body as far as it came (the front takes the PUT only once all of it has), then,
    # when it is whole and the connection stays open, the next request.
    sent = body[: taken.body_length]
    whole = len(sent) == taken.body_length
    follow = b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n" if whole and taken.keep_alive else b""
    data = head + b"\r\n\r\n" + sent + follow

    async def aiohttp_parse() -> list[tuple[Any, int]]:
        from aiohttp.http_parser import HttpRequestParser

        parser = HttpRequestParser(
            _ParserProtocol(),
            asyncio.get_running_loop(),
            2**16,
            max_line_size=8190,
            max_field_size=8190,
        )
        messages, _, _ = parser.feed_data(data)
        return [(m, payload.total_bytes) for m, payload in messages]

    parsed = asyncio.run(aiohttp_parse())
    assert parsed[0][0].method == "PUT" and parsed[0][0].path == "/b/k"
    assert list(parsed[0][0].raw_headers) == list(taken.raw_fields)
    if whole:
        # Both read exactly body_length bytes of body, then the same next request.
        assert parsed[0][1] == taken.body_length
        assert [m.path for m, _ in parsed] == (["/b/k", "/next"] if follow else ["/b/k"])
