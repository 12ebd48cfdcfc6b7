"""Log output that never holds up the server: lines for a pipe, a socket or a terminal are
handed to a thread of their own, which writes them; the event loop never waits on a reader.

A standard output or error that nobody drains (a pipe whose reader stalled, a terminal
paused with Ctrl-S, a container's log driver under pressure) blocks a write once its buffer
is full: written from the event loop, the access log's next batch (or a warning) would stop
every connection of the process, S3, tracker and seeder alike, for as long as the output
stays blocked. Here the loop only appends to a bounded queue; when the queue is full, lines
are dropped and counted (`LineOutput.dropped`), and the server log says how many once it
can be written again.

A regular file (or a device such as /dev/null) is written at once, in one write, by the
caller: it has no reader to wait for, and a thread would cost more than the write.

Several workers share one standard output. A pipe keeps a write whole only up to PIPE_BUF
bytes, so to a pipe, a socket or a terminal a batch goes out in writes of whole lines of at
most PIPE_BUF bytes each: the workers' lines interleave but never cut into each other. (A
regular file opened for appending keeps every write whole; its batch goes in one write.)
"""

from __future__ import annotations

import logging
import os
import select
import stat
import threading
import time
import weakref
from collections.abc import Callable
from typing import IO, Final

# What one output may hold before its lines are dropped: a few seconds of access log lines
# at tens of thousands of requests a second.
DEFAULT_LIMIT: Final = 8 << 20
# How long a closing output waits for its last lines to be written (a blocked output must
# not hold up a stop).
CLOSE_WAIT: Final = 2.0
PIPE_BUF: Final = getattr(select, "PIPE_BUF", 512)

_OUTPUTS: weakref.WeakSet[LineOutput] = weakref.WeakSet()


def whole_line_writes(fd: int) -> bool:
    """Whether fd has a reader a write may wait for, and writes larger than PIPE_BUF may
    interleave with other writers' (a pipe, a socket, a terminal); not a regular file, nor
    a device such as /dev/null."""
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return True
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or (stat.S_ISCHR(mode) and os.isatty(fd))


def line_chunks(data: bytes, size: int = PIPE_BUF) -> list[bytes]:
    """data cut after newlines into pieces of at most `size` bytes (a single longer line is
    a piece of its own)."""
    chunks: list[bytes] = []
    start, end = 0, len(data)
    while end - start > size:
        cut = data.rfind(b"\n", start, start + size)
        if cut < 0:
            cut = data.find(b"\n", start + size)
            if cut < 0:
                break
        chunks.append(data[start : cut + 1])
        start = cut + 1
    if start < end:
        chunks.append(data[start:])
    return chunks


class LineOutput:
    """Text written whole lines at a time: to a pipe, a socket or a terminal by a thread of
    its own (`offer` never waits), to a regular file at once by the caller.

    The thread starts with the first line offered, in the process that offers it: a
    supervisor that forks workers has none of its own, and a forked child starts afresh
    (nothing the parent had queued is written twice)."""

    def __init__(
        self,
        target: int | IO[str],
        *,
        limit: int = DEFAULT_LIMIT,
        name: str = "log output",
        notice: Callable[[int], str] | None = None,
    ) -> None:
        self.target = target
        self.limit = limit
        self.name = name
        # The line written where lines were dropped, ahead of the next one kept (None: say
        # nothing in the output itself, e.g. an access log, whose every line is a record).
        self.notice = notice
        self.dropped = 0  # lines dropped since the start: the output was full, or failed
        self.failures = 0  # writes that failed (a closed pipe, a full disk)
        self._cond = threading.Condition()
        self._queue: list[str] = []
        self._queued = 0
        self._unreported = 0
        self._busy = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._whole_lines = isinstance(target, int) and whole_line_writes(target)
        # A regular file is written at once, by the caller: a write to it does not wait on
        # a reader, and one write is cheaper than a thread's turn (which costs the event
        # loop the GIL while the thread joins and encodes).
        self._direct = isinstance(target, int) and not self._whole_lines
        _OUTPUTS.add(self)

    def offer(self, text: str, lines: int = 1) -> bool:
        """Queue `text` (`lines` whole lines) for writing; False when it was dropped (the
        output is full or closed, or a regular file's write failed)."""
        if self._direct and not self._closing:
            if self._write(text):
                return True
            with self._cond:
                self._lost(lines)
            return False
        with self._cond:
            if self._closing or self._queued + len(text) > self.limit:
                self._lost(lines)
                return False
            if self._unreported and self.notice is not None:
                # Where the lines are missing, before the first line kept after them.
                self._queue.append(self.notice(self._unreported))
                self._unreported = 0
            self._queue.append(text)
            self._queued += len(text)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return True

    def drain(self, timeout: float = CLOSE_WAIT) -> bool:
        """Wait (at most `timeout`) until everything queued is written; whether it was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = CLOSE_WAIT) -> bool:
        """Write what is queued (waiting at most `timeout`), then stop the thread. Lines
        offered later are dropped. Whether everything was written."""
        done = self.drain(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        return done

    def _lost(self, lines: int) -> None:
        self.dropped += lines
        self._unreported += lines

    def _forget(self) -> None:
        """In a forked child: the parent's thread and queue are not this process's."""
        self._cond = threading.Condition()
        self._queue, self._queued, self._busy = [], 0, False
        self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch, self._queue, self._queued = self._queue, [], 0
                self._busy = True
            text = "".join(batch)
            written = self._write(text)
            with self._cond:
                if not written:
                    self._lost(text.count("\n"))
                self._busy = False
                self._cond.notify_all()

    def _write(self, text: str) -> bool:
        """Whether text was written."""
        target = self.target
        try:
            if not isinstance(target, int):
                target.write(text)
                target.flush()
                return True
            data = text.encode("utf-8", "backslashreplace")
            for chunk in line_chunks(data) if self._whole_lines else [data]:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(target, view) :]
        except Exception:
            # A closed pipe, a full disk or a stream gone away (a closed standard output is
            # None) loses these lines, not the server, nor the output's thread.
            self.failures += 1
            return False
        return True


def dropped_lines() -> dict[str, int]:
    """Lines dropped since the start by each kind of output of this process ("access log",
    "server log"), for /metrics."""
    out: dict[str, int] = {}
    for output in list(_OUTPUTS):
        kind = output.name.removesuffix(" output")
        out[kind] = out.get(kind, 0) + output.dropped
    return out


def _forget_in_child() -> None:
    for output in list(_OUTPUTS):
        output._forget()


os.register_at_fork(after_in_child=_forget_in_child)


def output_for(stream: IO[str], **kwargs: object) -> LineOutput:
    """A LineOutput writing to stream's file descriptor (the stream itself when it has none,
    as under a test runner's capture)."""
    try:
        stream.flush()
        target: int | IO[str] = stream.fileno()
    except (OSError, ValueError, AttributeError):
        target = stream
    return LineOutput(target, **kwargs)  # type: ignore[arg-type]


class UnblockedHandler(logging.Handler):
    """A logging handler writing its records through a LineOutput."""

    def __init__(self, output: LineOutput, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        self.output.offer(text, text.count("\n"))

    def flush(self) -> None:
        self.output.drain()

    def close(self) -> None:
        self.output.close()
        super().close()


def printable(text: str) -> str:
    """`text` with each character that does not print (control characters such as ESC, CR
    and LF, line and paragraph separators, bidi overrides) as its Python escape: one line
    that cannot drive a terminal. Also for what the CLI prints of keys (report tables)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _one_line(value: object) -> object:
    """A logged value as it is if it prints on one line, else escaped (`printable`)."""
    if value is None or isinstance(value, int | float):
        return value
    text = str(value)
    return value if text.isprintable() else printable(text)


class OneLineFormatter(logging.Formatter):
    """The server log's formatter: the values a message is made of (`log.warning("%s", v)`)
    are escaped when they would not print on one line, so a key, path or error text holding
    a line break cannot forge a log line of its own. The message's own text and tracebacks
    stay as written."""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(_one_line(a) for a in args)
        return super().format(record)


def _dropped_notice(count: int) -> str:
    """The server log's line at a gap, stamped as its other lines are."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"
    return (
        f"{stamp} WARNING s3torrent: {count} log lines dropped: "
        "standard error was blocked or failing\n"
    )


def unblock_server_log() -> None:
    """Make the root logger's plain stream handlers (logging.basicConfig's, on standard
    error) write through a LineOutput. Called by the serving process, not the supervisor
    (which forks, and must have no threads of its own when it does). Idempotent. Python's
    warnings (which would write to standard error themselves) go through the log too."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if type(handler) is not logging.StreamHandler:
            continue
        stream = handler.stream
        unblocked = UnblockedHandler(
            output_for(stream, name="server log output", limit=1 << 20, notice=_dropped_notice),
            handler.level,
        )
        unblocked.setFormatter(handler.formatter)
        root.addHandler(unblocked)
        root.removeHandler(handler)
