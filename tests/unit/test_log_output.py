"""log_output: lines handed to a thread, never waited on; bounded; whole lines to a pipe;
a forked child starts afresh."""

from __future__ import annotations

import io
import logging
import os
import re
import signal
import socket
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.log_output import (
    LineOutput,
    OneLineFormatter,
    UnblockedHandler,
    line_chunks,
    whole_line_writes,
)
from tests.conftest import read_available


def test_offering_to_a_pipe_nobody_reads_never_waits_and_is_bounded() -> None:
    read_fd, write_fd = os.pipe()
    try:
        output = LineOutput(write_fd, limit=1 << 20, notice=lambda n: f"dropped {n}\n")
        line = "x" * 99 + "\n"
        started = time.monotonic()
        taken = sum(output.offer(line * 1000, 1000) for _ in range(100))  # 10 MB
        assert time.monotonic() - started < 2
        # The pipe holds 64 KiB, the queue 1 MiB: most of it was dropped, and counted.
        assert 5 <= taken < 30
        assert output.dropped == (100 - taken) * 1000
        # A close does not wait past its bound on an output that stays blocked.
        started = time.monotonic()
        assert output.close(timeout=0.5) is False
        assert time.monotonic() - started < 2
        assert not output.offer("late\n")
        # Once read, what was kept comes out as whole lines, the notice first after a drop.
        got = bytearray()
        deadline = time.monotonic() + 10
        while len(got) < taken * 100_000 and time.monotonic() < deadline:
            got.extend(read_available(read_fd))
            time.sleep(0.01)
        text = got.decode()
        assert text.count(line) == taken * 1000
        assert "late" not in text
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_the_notice_says_how_many_lines_were_dropped() -> None:
    read_fd, write_fd = os.pipe()
    try:
        output = LineOutput(write_fd, limit=200_000, notice=lambda n: f"dropped {n}\n")
        block = ("y" * 99 + "\n") * 1000  # 100 KB
        kept = [output.offer(block, 1000)]
        # The writer takes the first block and stays blocked on the pipe (64 KiB) holding
        # it; only then is the queue's own room (two blocks) what decides the rest. (Offered
        # at once, which blocks are kept depends on when the writer's thread first runs.)
        deadline = time.monotonic() + 5
        while (output._queue or not output._busy) and time.monotonic() < deadline:
            time.sleep(0.001)
        kept += [output.offer(block, 1000) for _ in range(5)]
        assert kept == [True, True, True, False, False, False]
        got = read_available(read_fd)  # room again: the writer goes on
        deadline = time.monotonic() + 5
        while not output.drain(0.1) and time.monotonic() < deadline:
            got += read_available(read_fd)
        assert output.offer("after\n")
        while b"after\n" not in got and time.monotonic() < deadline:
            got += read_available(read_fd)
            time.sleep(0.01)
        assert re.search(rb"\ndropped \d+\nafter\n$", got)
        # Each gap is marked where it is, with its own count; together, every line dropped.
        counts = [int(n) for n in re.findall(rb"^dropped (\d+)$", got, re.MULTILINE)]
        assert sum(counts) == output.dropped == 1000 * kept.count(False)
    finally:
        os.close(read_fd)
        os.close(write_fd)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 9000), max_size=30), st.integers(16, 4096))
def test_chunks_are_whole_lines_within_the_size(lengths: list[int], size: int) -> None:
    data = b"".join(b"a" * n + b"\n" for n in lengths)
    chunks = line_chunks(data, size)
    assert b"".join(chunks) == data
    for chunk in chunks:
        assert chunk.endswith(b"\n")
        # Longer only when it is one line, which no cut could keep whole.
        assert len(chunk) <= size or chunk.count(b"\n") == 1


def test_a_forked_child_does_not_write_what_its_parent_had_queued() -> None:
    read_fd, write_fd = os.pipe()
    output = LineOutput(write_fd)
    try:
        # The pipe fills; the parent's writer thread blocks with more queued behind it.
        assert output.offer(("p" * 99 + "\n") * 2000, 2000)
        assert output.offer("parent-queued\n")
        pid = os.fork()
        if pid == 0:  # the child: its own thread, none of the parent's lines
            code = 1
            try:
                signal.alarm(10)  # a child stuck on its parent's lock must not outlive the test
                output.offer("child\n")
                code = 0 if output.drain(5) else 2
            finally:
                os._exit(code)
        got = bytearray()
        deadline = time.monotonic() + 10
        done = status = 0
        while time.monotonic() < deadline:
            got.extend(read_available(read_fd))
            if not done:
                done, status = os.waitpid(pid, os.WNOHANG)
            if done and output.drain(0.05):
                break
            time.sleep(0.01)
        got.extend(read_available(read_fd))
        assert os.waitstatus_to_exitcode(status) == 0
        text = got.decode()
        assert text.count("child\n") == 1 and text.count("parent-queued\n") == 1
    finally:
        output.close(0.5)
        os.close(read_fd)
        os.close(write_fd)


def test_a_stream_without_a_descriptor_is_written_by_the_thread() -> None:
    out = io.StringIO()
    handler = UnblockedHandler(LineOutput(out))
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test-log-output")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("one %d", 1)
        handler.flush()
        assert out.getvalue() == "WARNING one 1\n"
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_logged_values_cannot_forge_a_line() -> None:
    """A key, path or error text with a line break, logged as a value, stays on its line."""
    formatter = OneLineFormatter("%(levelname)s %(name)s: %(message)s")
    forged = "k\n2026-12-06 05:00:00,000 ERROR s3torrent: forged\u2028"
    record = logging.LogRecord(
        "s3torrent",
        logging.WARNING,
        __file__,
        1,
        "%s %s -> %s (%d)",
        ("GET", forged, ValueError(forged), 7),
        None,
    )
    line = formatter.format(record)
    assert "\n" not in line and "\u2028" not in line
    assert line == (
        "WARNING s3torrent: GET k\\n2026-12-06 05:00:00,000 ERROR s3torrent: forged\\u2028 -> "
        "k\\n2026-12-06 05:00:00,000 ERROR s3torrent: forged\\u2028 (7)"
    )
    # A traceback is still printed as one.
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        failed = logging.LogRecord(
            "s3torrent", logging.ERROR, __file__, 1, "failed on %s", ("a\nb",), sys.exc_info()
        )
    text = formatter.format(failed)
    assert text.startswith("ERROR s3torrent: failed on a\\nb\nTraceback (most recent call last):")


def test_the_command_line_logs_through_the_one_line_formatter() -> None:
    from s3torrent.invocation import configure_logging

    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    for handler in saved:
        root.removeHandler(handler)
    try:
        configure_logging("INFO")
        assert [type(h.formatter) for h in root.handlers] == [OneLineFormatter]
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved:
            root.addHandler(handler)
        root.setLevel(level)


def test_failed_writes_count_their_lines_as_dropped(tmp_path: Path) -> None:
    """Outputs that refuse every write: a regular file opened read-only (a full disk alike)
    and /dev/full, written at once, whose offers say so; a pipe with no reader left, written
    by the thread. The lines are counted as dropped, and the thread lives on."""
    path = tmp_path / "ro.log"
    path.write_text("")
    for fd in (os.open(path, os.O_RDONLY), os.open("/dev/full", os.O_WRONLY)):
        try:
            direct = LineOutput(fd)
            assert direct.offer("a\nb\n", 2) is False
            assert direct.dropped == 2 and direct.failures == 1
        finally:
            os.close(fd)
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # EPIPE from now on
    try:
        threaded = LineOutput(write_fd)
        assert threaded.offer("a\nb\nc\n", 3)  # queued: the thread finds out
        assert threaded.drain(5)
        assert threaded.dropped == 3 and threaded.failures == 1
        assert threaded.offer("d\n") and threaded.drain(5) and threaded.dropped == 4
    finally:
        threaded.close(0.5)
        os.close(write_fd)


def test_dev_null_is_written_at_once() -> None:
    """A daemon's standard output is often /dev/null: no reader, so no thread."""
    fd = os.open(os.devnull, os.O_WRONLY)
    try:
        output = LineOutput(fd)
        assert output.offer("x\n")
        assert output._thread is None and output.dropped == 0
    finally:
        os.close(fd)


def test_what_gets_a_thread(tmp_path: Path) -> None:
    """A pipe, a socket and a terminal may wait on a reader; a file and /dev/null never do."""
    master, terminal = os.openpty()
    read_fd, write_fd = os.pipe()
    left, right = socket.socketpair()
    regular = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        assert whole_line_writes(terminal) and whole_line_writes(write_fd)
        assert whole_line_writes(left.fileno())
        assert not whole_line_writes(regular) and not whole_line_writes(null)
    finally:
        for fd in (master, terminal, read_fd, write_fd, regular, null):
            os.close(fd)
        left.close()
        right.close()


def test_the_server_logs_gap_line_reads_as_its_other_lines() -> None:
    from s3torrent.log_output import _dropped_notice

    line = _dropped_notice(3)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING s3torrent: 3 log lines dropped: "
        r"standard error was blocked or failing\n",
        line,
    )
