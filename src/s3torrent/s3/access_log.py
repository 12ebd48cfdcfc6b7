"""The access log: one line per S3 request, in the field order of Amazon S3 server access logs
or as JSON, to a file or standard output.

The request path pays for a tuple of facts and a list append (the S3 application's
`on_finished` hook, like metering); lines are formatted later, a batch at a time (at most a
second later, or once `max_pending` records wait), and the batch goes to a
log_output.LineOutput: one write to a file, or a thread's whole-line writes to standard
output when it is a pipe or a terminal (the loop never waits on a reader). A crash loses at
most that second of lines. SIGUSR1 opens the file again by its name (`reopen`).

A presigned URL's signature is a credential until the link expires: the Request-URI is
logged with it redacted (`redact_signatures`), as Amazon S3 logs it, so reading a log does
not give anyone the links it lists. Bucket logs (s3/bucket_logs.py) format their lines here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import IO, Final, Literal, NamedTuple, TypeVar

from aiohttp import web

from s3torrent.forwarding import client_address
from s3torrent.log_output import CLOSE_WAIT, LineOutput, output_for
from s3torrent.metering.meter import REQUEST_ID, S3_REQUEST, body_bytes_sent

log = logging.getLogger(__name__)

K = TypeVar("K")

# Seconds between two warnings that lines were dropped (each says how many so far).
BLOCKED_WARNING_EVERY = 10.0

AccessLogFormat = Literal["s3", "json"]

# aiohttp request key: the S3 error code of the answer (set by S3Application._error).
ERROR_CODE: web.RequestKey[str] = web.RequestKey("s3_error_code", str)

_CODE_START = b"<Code>"
_CODE_END = b"</Code>"


class AccessRecord(NamedTuple):
    """What is known of one request once it is answered (plain values: no request kept)."""

    at: float
    remote: str
    requester: str
    request_id: str
    operation: str
    bucket: str
    key: str
    method: str
    target: str
    version: tuple[int, int]
    status: int
    error_code: str
    bytes_sent: int
    bytes_received: int
    seconds: float
    referer: str
    user_agent: str
    host: str


def error_code_of(request: web.Request, response: web.StreamResponse | None) -> str:
    """The S3 error code of the answer ('' when there is none)."""
    code = request.get(ERROR_CODE)
    if code is not None:
        return str(code)
    if not isinstance(response, web.Response) or response.status < 300:
        return ""
    body = response.body
    if not isinstance(body, bytes):
        return ""
    start = body.find(_CODE_START)
    if start < 0:
        return ""
    start += len(_CODE_START)
    end = body.find(_CODE_END, start)
    return body[start:end].decode("ascii", "replace") if end > 0 else ""


_new_record = tuple.__new__  # a NamedTuple's own constructor costs three times more


def record_of(
    request: web.Request, response: web.StreamResponse | None, status: int, seconds: float
) -> AccessRecord:
    """The facts of one answered request (cheap: no formatting)."""
    operation = bucket = key = requester = ""
    sent: int | None = None
    try:
        s3req = request[S3_REQUEST]
    except KeyError:
        pass
    else:
        sent = s3req.body_sent
        operation = s3req.endpoint.op
        target = s3req.target
        bucket = target.bucket or ""
        key = target.key or ""
        principal = s3req.principal
        if principal.canonical_id:
            requester = principal.name or ""
    try:  # indexed: an aiohttp request's .get costs several times more (Mapping's)
        request_id = request[REQUEST_ID]
    except KeyError:
        request_id = ""
    headers = request.headers
    # Positional, and the error code looked for only in errors: this runs once per request.
    return _new_record(
        AccessRecord,
        (
            time.time(),
            client_address(request) or "",
            requester,
            request_id,
            operation,
            bucket,
            key,
            request.method,
            request.raw_path,
            request.version,
            status,
            error_code_of(request, response) if status >= 300 else "",
            body_bytes_sent(request, response, sent) if sent is None else sent,
            request.content.total_bytes,
            seconds,
            headers.get("Referer", ""),
            headers.get("User-Agent", ""),
            headers.get("Host", ""),
        ),
    )


# A presigned URL's signature, by the names S3 reads it under (SigV4, SigV2): the field's
# value is replaced by this in every logged Request-URI.
REDACTED: Final = "REDACTED"
_SIGNED = "Signature="
_SIGNED_V4 = "X-Amz-"


# An SSE-C customer key in the query (boto3's SigV2 presigner moves it there, any client may
# put it there; x-amz-server-side-encryption-customer-key or its copy-source form, in any
# case): it opens the object for good, and the server promises to keep it nowhere.
_CUSTOMER_KEY = re.compile(r"([?&][^&=]*server-side-encryption-customer-key=)[^&]*", re.I)


def redact_signatures(target: str) -> str:
    """The request target with the value of every `X-Amz-Signature` and `Signature` query
    field replaced by REDACTED (names as a client sends them: S3 reads them case-sensitively,
    and no client encodes them), and that of every SSE-C customer key too."""
    query = target.find("?")
    if query >= 0:
        target = _CUSTOMER_KEY.sub(rf"\g<1>{REDACTED}", target)
    at = target.find(_SIGNED, query) if query >= 0 else -1
    while at >= 0:
        begin = at - 6 if at - 6 > query and target.startswith(_SIGNED_V4, at - 6) else at
        value = at + len(_SIGNED)
        end = target.find("&", value)
        if target[begin - 1] in "?&":  # a whole field's name, not the end of another
            if end < 0:
                return target[:value] + REDACTED
            target = target[:value] + REDACTED + target[end:]
            end = value + len(REDACTED)
        at = target.find(_SIGNED, value if end < 0 else end)
    return target


_MAX_FIELD = 2048


def _quoted(value: str) -> str:
    """A double-quoted field: quotes and control characters escaped, bounded length."""
    value = value[:_MAX_FIELD]
    if value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return '"' + json.dumps(value, ensure_ascii=False)[1:-1] + '"'


def _bare(value: str) -> str:
    """An unquoted field: '-' when empty, no spaces or control characters."""
    if not value:
        return "-"
    value = value[:_MAX_FIELD]
    if value.isprintable() and " " not in value:
        return value
    return json.dumps(value, ensure_ascii=True)[1:-1].replace(" ", "%20")


def _json_string(value: str) -> str:
    """A JSON string, or null when empty (json.dumps only for what needs escaping)."""
    if not value:
        return "null"
    value = value[:_MAX_FIELD]
    if value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return json.dumps(value, ensure_ascii=False)


class _Memo(dict[K, str]):
    """Escaped forms of values that repeat from request to request (addresses, requesters,
    buckets, user agents, request lines): escaped once, then looked up. Bounded: cleared
    when `limit` entries are kept."""

    __slots__ = ("escape", "limit")

    def __init__(self, escape: Callable[[K], str], limit: int = 4096) -> None:
        super().__init__()
        self.escape = escape
        self.limit = limit

    def __missing__(self, value: K) -> str:
        if len(self) >= self.limit:
            self.clear()
        out = self[value] = self.escape(value)
        return out


RequestLine = tuple[str, str, tuple[int, int]]  # method, target, HTTP version


def _escape_line(line: RequestLine) -> str:
    method, target, version = line
    return _quoted(f"{method} {redact_signatures(target)} HTTP/{version[0]}.{version[1]}")


# Request lines kept escaped (their signatures redacted): a link is fetched again and again
# (a published object, a presigned URL handed out), and the same request line then arrives
# as the same string (s3/quick.py keeps request heads), whose lookup costs a fraction of
# redacting and escaping it. Bounded in entries and, for what is kept, in length.
_LINES_MAX = 2048
_LINE_TARGET_MAX = 1024
_LINES: _Memo[RequestLine] = _Memo(_escape_line, _LINES_MAX)


def _request_line(method: str, target: str, version: tuple[int, int]) -> str:
    """The quoted Request-URI field: method, target (signatures redacted), protocol."""
    if len(target) > _LINE_TARGET_MAX:
        return _escape_line((method, target, version))
    return _LINES[method, target, version]


_BARE = _Memo(_bare)
_QUOTED: _Memo[str] = _Memo(lambda v: _quoted(v or "-"))
_JSON = _Memo(_json_string)


def format_s3(r: AccessRecord, stamp: str) -> str:
    """One line in the field order of Amazon S3 server access logs (their first 17 fields):
    owner, bucket, [time], remote IP, requester, request id, operation, key, "request-URI",
    status, error code, bytes sent, object size, total ms, turn-around ms, "referer",
    "user agent"."""
    # Unpacked at once: a named tuple's fields read one by one cost a third of this function.
    (_, remote, requester, request_id, operation, bucket, key, method, target, version,
     status, error_code, bytes_sent, _, seconds, referer, user_agent, _) = r  # fmt: skip
    return (
        f"- {_BARE[bucket]} [{stamp}] {_BARE[remote]} {_BARE[requester]} "
        f"{request_id or '-'} {operation or '-'} {_bare(key)} "
        f"{_request_line(method, target, version)} "
        f"{status} {error_code or '-'} {bytes_sent or '-'} - {seconds * 1000:.0f} - "
        f"{_QUOTED[referer]} {_QUOTED[user_agent]}\n"
    )


def format_json(r: AccessRecord, stamp: str) -> str:
    """One JSON object per line (written field by field: json.dumps of a dict per request
    costs several times more)."""
    js = _JSON
    return (
        f'{{"time": "{stamp}", "remote": {js[r.remote]}, "requester": {js[r.requester]}, '
        f'"request_id": {_json_string(r.request_id)}, "operation": {js[r.operation]}, '
        f'"bucket": {js[r.bucket]}, "key": {_json_string(r.key)}, "method": {js[r.method]}, '
        f'"uri": {_json_string(redact_signatures(r.target))}, "status": {r.status}, '
        f'"error_code": {js[r.error_code]}, "bytes_sent": {r.bytes_sent}, '
        f'"bytes_received": {r.bytes_received}, "ms": {round(r.seconds * 1000, 3)}, '
        f'"referer": {js[r.referer]}, "user_agent": {js[r.user_agent]}, "host": {js[r.host]}}}\n'
    )


def s3_stamp(t: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(t))


def _iso_stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class AccessLog:
    """Collects records on the request path; formats them in batches, which its
    log_output.LineOutput writes (the loop never waits on a pipe's or a terminal's reader)."""

    def __init__(
        self,
        stream: IO[str] | int,
        fmt: AccessLogFormat = "s3",
        *,
        flush_interval: float = 1.0,
        max_pending: int = 1024,
        owns_stream: bool = False,
    ) -> None:
        self.output = (
            LineOutput(stream, name="access log output")
            if isinstance(stream, int)
            else output_for(stream, name="access log output")
        )
        self._fd = stream if owns_stream and isinstance(stream, int) else None
        self.destination: str | None = None  # the file it appends to (see open, reopen)
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self._format: Callable[[AccessRecord, str], str] = (
            format_json if fmt == "json" else format_s3
        )
        self._stamp = _iso_stamp if fmt == "json" else s3_stamp
        self._pending: list[AccessRecord] = []
        self._timer: asyncio.TimerHandle | None = None
        self._warned_at = -BLOCKED_WARNING_EVERY

    @classmethod
    def open(cls, destination: str, fmt: AccessLogFormat = "s3") -> AccessLog:
        """The access log writing to a file (appended to) or '-' (standard output)."""
        if destination == "-":
            return cls(sys.stdout, fmt)
        made = cls(_append_to(destination), fmt, owns_stream=True)
        made.destination = destination
        return made

    def reopen(self) -> None:
        """Append to the file by its name again, from the next line on (after log rotation
        moved the file away: SIGUSR1). Raises OSError, keeping the old file, when it cannot
        be opened. Nothing to do for standard output."""
        if self.destination is None:
            return
        fd = _append_to(self.destination)
        self.flush()  # what was logged before the signal goes to the file it was logged in
        old, old_fd = self.output, self._fd
        self.output = LineOutput(fd, name="access log output")
        # The counts are the log's since the start, not the file's (/metrics): moved, so
        # they are not counted twice while the old output lives on.
        self.output.dropped, self.output.failures = old.dropped, old.failures
        old.dropped = old.failures = 0
        self._fd = fd
        if old.close() and old_fd is not None:
            os.close(old_fd)

    def hook(
        self, request: web.Request, response: web.StreamResponse | None, status: int, seconds: float
    ) -> None:
        """The S3 application's finished hook (see S3Application.on_finished)."""
        self._pending.append(record_of(request, response, status, seconds))
        if len(self._pending) >= self.max_pending:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_interval, self.flush)

    def flush(self) -> None:
        """Format every pending record and hand the lines to the output."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        fmt, stamp_of = self._format, self._stamp
        per_second = stamp_of is s3_stamp
        last_second, stamp = -1, ""
        lines = []
        for r in pending:
            second = int(r.at)
            if second != last_second or not per_second:
                last_second, stamp = second, stamp_of(r.at)
            lines.append(fmt(r, stamp))
        # One string for the batch: one write to a file; to a pipe, whole lines at a time.
        if not self.output.offer("".join(lines), len(lines)):
            now = time.monotonic()
            if now - self._warned_at >= BLOCKED_WARNING_EVERY:
                self._warned_at = now
                log.warning(
                    "access log lines dropped (the output is blocked or failing): %d so far",
                    self.output.dropped,
                )

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """Write what is pending (waiting at most `timeout` for the output), then close.
        Blocks: from a loop, run it in a thread after a last `flush` on the loop."""
        self.flush()
        written = self.output.close(timeout)
        if self._fd is not None and written:
            # Not while a blocked write may still be using it.
            os.close(self._fd)
            self._fd = None


def _append_to(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
