"""Small object reads and writes on the main listener without aiohttp's per-request
machinery.

Every main-listener connection starts in the front protocol (front.py), which
reads each request head itself. A GET or HEAD that carries no body, or a PUT with a
Content-Length whose whole body arrived with its head and is no longer than an object
stored in its metadata row (`QuickReads.max_body`: a client writes a small request in one
piece; the front never waits for a body, aiohttp reads a late one under its timeout), and
that needs nothing only aiohttp does (no `Expect`, `Upgrade`, `Transfer-Encoding` or
`Origin`; `QuickHead.parse`), is answered by the S3 application's one entry point
(`S3Application.entry`: every layer, routing, authentication, the one access decision,
the handler, metering and logs), given an aiohttp `web.Request` made from the head (and a
PUT's body, whole, as its content stream). Its response, a complete `web.Response` or a
HEAD's `web.StreamResponse`, is written as aiohttp frames it (`encode_response`), in one
write.

What the quick path cannot answer it hands back before doing anything (`QuickHandOver`):
every operation but GetObject, HeadObject and PutObject (checked after routing, before
authentication), and a GetObject whose body is streamed (from a file or a remote store, or
sealed: checked before the body is opened). The request (head and body) is then put back
in front of whatever followed it, and the connection is aiohttp's from then on, as for any
request the front does not take. A hand-over is never metered or logged; aiohttp's answer
is.

The saving is aiohttp's request parsing, its task per request, its router and its response
writer: about 40% of a 4 KiB GET's CPU, and 12% of a 4 KiB presigned PUT's
(docs/ARCHITECTURE.md, "The quick path").
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from contextvars import copy_context
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any, Final, Protocol, cast

from aiohttp import web
from aiohttp.http import HttpVersion10, HttpVersion11, RawRequestMessage
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from s3torrent.tracker.eager import start_eagerly
from s3torrent.tracker.http_lean import FIELD_LINE, keeps_alive

log = logging.getLogger(__name__)

Entry = Callable[[web.Request], Awaitable[web.StreamResponse]]
Stamp = Callable[[web.Request, web.StreamResponse], None]

# A head with more fields than this goes to aiohttp (which has its own bounds).
MAX_FIELDS: Final = 100

# The request line's grammar is the lean tracker's, for these three methods; field lines
# are parsed by its FIELD_LINE.
_REQUEST_LINE: Final = re.compile(rb"(GET|HEAD|PUT) (/[\x21-\x7e]*) HTTP/1\.([01])")
# A PUT's Content-Length the quick path reads: digits only (aiohttp refuses anything else).
_LENGTH: Final = re.compile(rb"[0-9]{1,18}")
# Fields that only aiohttp acts on (a body, an interim answer, a protocol switch) or that
# make the answer depend on a hook that may suspend (CORS, for an Origin).
_NOT_HERE: Final = frozenset(
    {b"transfer-encoding", b"expect", b"upgrade", b"origin", b"te", b"trailer"}
)
# Fields aiohttp's parser refuses to see twice (its SINGLETON_HEADERS, 400 "Duplicate ...
# header found"); Host and a PUT's Content-Length are counted on their own below. A repeat
# goes to aiohttp and its 400: taken here, SigV2 checked the first Content-Type (the one it
# signs) while the object was stored with the last, one nobody signed.
_SINGLE: Final = frozenset(
    {
        b"content-location", b"content-range", b"content-type", b"etag", b"max-forwards",
        b"server", b"user-agent",
    }
)  # fmt: skip


class QuickHandOver(Exception):
    """The quick path cannot answer this request; aiohttp will, from its head on."""


@dataclass(frozen=True, slots=True)
class QuickHead:
    """A request head the quick path may answer (sans-IO: bytes in, fields out)."""

    method: str
    target: str  # origin-form, as sent: path and raw query
    minor: int  # HTTP/1.<minor>
    fields: tuple[tuple[str, str], ...]
    raw_fields: tuple[tuple[bytes, bytes], ...]
    keep_alive: bool
    # A PUT's Content-Length (its body follows the head; the front takes the PUT only once
    # all of it has arrived, s3/quick.py's module doc); 0 for GET and HEAD.
    body_length: int
    # The message aiohttp's parser would have made of these bytes: immutable (a named tuple
    # of a read-only header view, an immutable URL and the tuples above), so every request
    # made from this head shares it (make_request).
    message: RawRequestMessage = field(compare=False, repr=False)

    @classmethod
    def parse(cls, head: bytes) -> QuickHead | None:
        """The head (request line and field lines, without the blank line), or None if the
        quick path must not take it: aiohttp answers it, or refuses it, as before.

        A head seen before, byte for byte, is the QuickHead parsed then (`_HEADS`): the
        same URL fetched again by the same kind of client (curl, a browser, a presigned
        link shared with many) sends the same bytes. A QuickHead is immutable, so sharing
        it is safe; and the strings it holds keep their hashes, so what the request path
        memoizes by them further on (decoded query values, verified presigned requests)
        does not hash them again. A 4 KiB presigned GET: 66 to 56 us of the application's
        CPU in one process (docs/ARCHITECTURE.md, The quick path). Heads that differ every
        time (header-signed requests carry their date) only pay the lookup."""
        found = _HEADS.get(head)
        if found is not None:
            return found
        parsed = cls._parse(head)
        if parsed is not None:
            _HEADS.keep(head, parsed)
        return parsed

    @classmethod
    def _parse(cls, head: bytes) -> QuickHead | None:
        lines = head.split(b"\r\n")
        request_line = _REQUEST_LINE.fullmatch(lines[0])
        if request_line is None or len(lines) - 1 > MAX_FIELDS:
            return None
        method, target, minor = request_line.groups()
        if b"#" in target:
            return None  # a fragment: aiohttp's parser splits it off the URL
        fields: list[tuple[str, str]] = []
        raw: list[tuple[bytes, bytes]] = []
        connection: list[bytes] = []
        hosts = 0
        singles: set[bytes] = set()
        put = method == b"PUT"
        body_length: int | None = None if put else 0
        for line in lines[1:]:
            matched = FIELD_LINE.fullmatch(line)
            if matched is None:
                return None  # malformed: aiohttp's strict parser gives the 400
            name, value = matched.groups()
            lower = name.lower()
            if lower in _NOT_HERE:
                return None
            if lower in _SINGLE:
                if lower in singles:
                    return None  # aiohttp's 400
                singles.add(lower)
            elif lower == b"host":
                hosts += 1
            elif lower == b"content-length":
                if put:
                    if body_length is not None or not _LENGTH.fullmatch(value):
                        return None  # repeated or malformed: aiohttp's 400
                    body_length = int(value)
                elif value.strip(b"0") or not value:
                    return None  # a body to frame: aiohttp's
            elif lower == b"connection":
                connection += (token.strip().lower() for token in value.split(b","))
            raw.append((name, value))
            fields.append((name.decode("ascii"), value.decode("utf-8", "surrogateescape")))
        if body_length is None:
            return None  # a PUT without a length: aiohttp refuses it (or reads it chunked)
        http11 = minor == b"1"
        if hosts > 1 or (http11 and hosts == 0):
            return None  # aiohttp's 400
        keep_alive = keeps_alive(connection, http11)
        method_text, target_text = method.decode("ascii"), target.decode("ascii")
        path, _, query = target_text.partition("?")
        message = RawRequestMessage(
            method_text,
            target_text,
            HttpVersion11 if http11 else HttpVersion10,
            CIMultiDictProxy(CIMultiDict(fields)),
            tuple(raw),
            not keep_alive,
            None,
            False,
            False,
            URL.build(path=path, query_string=query, encoded=True),
        )
        return cls(
            method=method_text,
            target=target_text,
            minor=int(minor),
            fields=tuple(fields),
            raw_fields=message.raw_headers,
            keep_alive=keep_alive,
            body_length=body_length,
            message=message,
        )


class _HeadMemo(dict[bytes, QuickHead]):
    """Parsed heads by their bytes, bounded by the bytes of the heads kept (a head counts
    about four times its size: its parsed fields keep copies of it). Emptied when full: an
    attacker sending new heads only empties it, at the cost of a parse each, as before."""

    __slots__ = ("limit", "size")

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.size = 0

    def keep(self, head: bytes, parsed: QuickHead) -> None:
        cost = 4 * len(head)
        if self.size + cost > self.limit:
            self.clear()
            self.size = 0
        self[head] = parsed
        self.size += cost


# About 4 MiB of heads per process: a few thousand distinct URLs and clients.
HEAD_MEMO_BYTES: Final = 4 << 20
_HEADS: Final = _HeadMemo(HEAD_MEMO_BYTES)


class QuickConnection:
    """What an aiohttp request asks of its protocol, for a front-protocol connection.
    Also the mark of a quick request (`is_quick`)."""

    __slots__ = ("peername", "remote", "scheme", "sockname", "ssl_context", "transport")

    # What a request's body stream asks of its protocol (aiohttp's StreamReader): a quick
    # PUT's body is read whole before the request is made, so there is no flow to control.
    connected: Final = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self, resume_parser: bool = True) -> None:
        pass

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.peername = transport.get_extra_info("peername")
        self.sockname = transport.get_extra_info("sockname")
        self.ssl_context = transport.get_extra_info("sslcontext")
        self.scheme = "https" if self.ssl_context is not None else "http"
        peer = self.peername
        self.remote: str | None = str(peer[0]) if isinstance(peer, tuple) and peer else None


def is_quick(request: web.BaseRequest) -> bool:
    """Whether this request is being answered by the quick path."""
    return type(cast(object, request.protocol)) is QuickConnection


def make_request(
    head: QuickHead, conn: QuickConnection, max_size: int, body: bytes = b""
) -> web.Request:
    """The aiohttp request the S3 application is given for this head (and a PUT's body,
    all of it: `head.body_length` bytes)."""
    payload = EMPTY_PAYLOAD
    if head.method == "PUT":
        if len(body) != head.body_length:
            raise ValueError("a quick PUT's body is not whole")
        payload = StreamReader(cast(Any, conn), _BODY_CHUNK, loop=asyncio.get_running_loop())
        payload.feed_data(body)
        payload.feed_eof()
    return web.Request(
        head.message,
        payload,
        cast(Any, conn),
        cast(Any, None),  # no writer: the quick path writes the answer itself
        cast(Any, None),
        cast(Any, None),
        client_max_size=max_size,
        scheme=conn.scheme,
        remote=conn.remote,
    )


# The longest PUT body the quick path takes (app.py: at most storage.inline_max_size).
QUICK_PUT_MAX: Final = 64 * 1024
# The body stream's buffer limit: a quick PUT's body never reaches it (aiohttp's stream
# asks its protocol to pause reading above twice the limit).
_BODY_CHUNK: Final = QUICK_PUT_MAX
_EMPTY_STATUS: Final = frozenset({204, 304})
_DATE: list[Any] = [0, ""]


def _http_date() -> str:
    now = int(time.time())
    if _DATE[0] != now:
        _DATE[0], _DATE[1] = now, formatdate(now, usegmt=True)
    return cast(str, _DATE[1])


def encode_response(head: QuickHead, response: web.StreamResponse) -> tuple[bytes, bool]:
    """The response as aiohttp writes it (status line, Content-Length, default
    Content-Type, Date, Connection), and whether the connection stays open."""
    if response.prepared or response.chunked:
        raise ValueError("a streamed response on the quick path")
    status = response.status
    headers = response.headers
    empty = head.method == "HEAD" or status in _EMPTY_STATUS or status < 200
    body = b""
    if isinstance(response, web.Response):
        sent = response.body
        if sent is not None and not isinstance(sent, bytes | bytearray):
            raise ValueError("a payload body on the quick path")
        length = len(sent) if sent else 0
        if not empty:
            body = bytes(sent) if sent else b""
        if (
            "Content-Length" not in headers
            and status not in _EMPTY_STATUS
            and (length or head.method != "HEAD")
        ):
            headers["Content-Length"] = str(length)
    else:
        length = response.content_length or 0
    if status in _EMPTY_STATUS:
        headers.popall("Content-Length", None)
    elif not empty and length:
        headers.setdefault("Content-Type", "application/octet-stream")
    if "Date" not in headers:
        headers["Date"] = _http_date()
    keep_alive = response.keep_alive
    if keep_alive is None:
        keep_alive = head.keep_alive
    if "Connection" not in headers:
        if keep_alive:
            if head.minor == 0:
                headers["Connection"] = "keep-alive"
        elif head.minor == 1:
            headers["Connection"] = "close"
    items = headers.items()
    text = "\r\n".join(map(": ".join, items))
    # Only the CR LF between field lines: anything else would split a field.
    breaks = max(len(items) - 1, 0)
    if text.count("\r") != breaks or text.count("\n") != breaks:
        raise ValueError("newline in a response header")
    out = f"HTTP/1.{head.minor} {status} {response.reason}\r\n{text}\r\n\r\n".encode()
    return (out + body if body else out), keep_alive


QuickAnswer = tuple[bytes, bool]


class QuickOwner(Protocol):
    """The connection a quick head came on (front.py's FrontProtocol)."""

    @property
    def gone(self) -> bool:
        """The connection is lost: its queued heads are not answered."""

    def quick_answered(self, outcome: QuickAnswer | BaseException, raw: bytes) -> None:
        """The answer to the head `raw`, or why there is none (QuickHandOver among them)."""

    def quick_suspended(self, task: asyncio.Task[QuickAnswer], raw: bytes) -> None:
        """The answer to the head `raw` waits for something; the task finishes it."""


# (owner, head, its connection's stand-in, the head's bytes, a PUT's body)
_Queued = tuple[QuickOwner, "QuickHead", QuickConnection, bytes, bytes]


class QuickReads:
    """The S3 application's answers to quick heads (see the module doc).

    The heads that arrive in one turn of the event loop are answered together in the next,
    by one callback (`_answer_queued`), not by a task each. Each head is answered inline,
    in a context of its own, as far as it goes without waiting (tracker/eager.py); one that
    must wait is finished by a task, in that same context. The answers computed inline are
    written once all of the batch's are computed, in the same callback. The queue holds at
    most one head per connection (a connection's next head is read once its answer is
    written), so the admission gate's bound on connections bounds it. Against a task per
    head whose done callback wrote its answer a turn later (until 2026-12-06), a 4 KiB GET
    costs 8% less CPU (docs/ARCHITECTURE.md, The quick path).

    The batch shares one read of the metadata's lookup generation (`one_read`: store/sql.py,
    `one_generation_read`), exact for every head in it: all of them arrived before the
    batch began, so before that read. Code that needs a current task (`asyncio.timeout`,
    `TaskGroup`) finds none while a head is answered inline (it would fail the request):
    nothing on the path of a GET or HEAD the quick path takes uses either, which every API
    test's GETs and HEADs exercise, on every metadata engine the suite runs."""

    def __init__(
        self,
        entry: Entry,
        stamp: Stamp,
        max_size: int,
        one_read: Callable[[], AbstractContextManager[None]] = nullcontext,
        max_body: int = 0,
    ) -> None:
        # The longest PUT body the front reads for the quick path (0: no PUT is quick).
        self.max_body = max_body
        self._entry = entry
        self._stamp = stamp
        self._max_size = max_size
        self._one_read = one_read
        self._queue: list[_Queued] = []

    def enqueue(
        self,
        owner: QuickOwner,
        head: QuickHead,
        conn: QuickConnection,
        raw: bytes,
        body: bytes = b"",
    ) -> None:
        """Answer `head` (with a PUT's whole `body`) in the next turn of the loop
        (owner.quick_answered or owner.quick_suspended says how)."""
        queue = self._queue
        queue.append((owner, head, conn, raw, body))
        if len(queue) == 1:
            asyncio.get_running_loop().call_soon(self._answer_queued)

    def _answer_queued(self) -> None:
        queue, self._queue = self._queue, []
        answered: list[tuple[QuickOwner, QuickAnswer | BaseException, bytes]] = []
        try:
            with self._one_read():
                self._answer_all(queue, answered)
            _write_answers(answered)
        finally:
            # An exception kept here (a hand-over, a failure) holds, through its traceback,
            # the frame that caught it, and that frame this list: emptied, no cycle is left
            # for the collector (a request's objects go when it is answered).
            answered.clear()

    def _answer_all(
        self,
        queue: list[_Queued],
        answered: list[tuple[QuickOwner, QuickAnswer | BaseException, bytes]],
    ) -> None:
        loop = asyncio.get_running_loop()
        for owner, head, conn, raw, body in queue:
            if owner.gone:
                continue
            context = copy_context()
            try:
                begun = context.run(start_eagerly, self.answer(head, conn, body))
            except (Exception, asyncio.CancelledError) as exc:
                answered.append((owner, exc, raw))  # a 500 and a close (quick_answered)
                continue
            if isinstance(begun, tuple):
                answered.append((owner, begun, raw))
            else:
                owner.quick_suspended(loop.create_task(begun, context=context), raw)

    async def answer(
        self, head: QuickHead, conn: QuickConnection, body: bytes = b""
    ) -> QuickAnswer:
        """The encoded answer and whether the connection stays open; raises QuickHandOver
        for a request aiohttp must answer."""
        request = make_request(head, conn, self._max_size, body)
        response = await self._entry(request)
        self._stamp(request, response)
        return encode_response(head, response)


def _write_answers(answered: list[tuple[QuickOwner, QuickAnswer | BaseException, bytes]]) -> None:
    for owner, outcome, raw in answered:
        try:
            owner.quick_answered(outcome, raw)
        except Exception:
            # One connection's failure must not leave the others of the batch unanswered.
            log.exception("writing a quick answer failed")
