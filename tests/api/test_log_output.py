"""A server whose standard output and error nobody drains keeps serving, and several
workers sharing one pipe never cut into each other's access log lines."""

from __future__ import annotations

import http.client
import os
import re
import threading
import time
from pathlib import Path

from tests.conftest import LiveServer, read_available, start_server

# An access log line in the s3 format (README, Logs).
ACCESS_LINE = re.compile(
    r'- \S+ \[[^\]]+\] \S+ \S+ [0-9A-F]{16} \S+ \S+ "[^"]*" \d{3} \S+ \S+ - \d+ - "[^"]*" "[^"]*"'
)
SERVER_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: ")


def anonymous_gets(srv: LiveServer, count: int, key_length: int = 200) -> list[int]:
    """count anonymous GETs on one keep-alive connection (refused: no such bucket), each
    with a long key, so the lines are long; their statuses."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    statuses = []
    try:
        for i in range(count):
            conn.request("GET", f"/no-such-bucket/{i:06d}{'k' * key_length}")
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        conn.close()
    return statuses


def test_a_stalled_standard_output_does_not_stop_the_server(tmp_path: Path) -> None:
    """Nobody reads the pipe: once it is full, a write from the event loop would stop every
    connection. The server answers on, and stops on SIGTERM within its bounded waits."""
    read_fd, write_fd = os.pipe()
    srv = start_server(tmp_path, workers=1, output=write_fd)
    os.close(write_fd)
    try:
        started = time.monotonic()
        # About 300 bytes a line: some 900 KB of lines, many times a pipe's 64 KiB.
        statuses = anonymous_gets(srv, 3000)
        assert statuses == [404] * 3000
        assert time.monotonic() - started < 60
        assert srv.proc is not None
        stopping = time.monotonic()
        srv.proc.terminate()
        srv.proc.wait(timeout=20)
        assert time.monotonic() - stopping < 20
        srv.proc = None
        # What the pipe held is whole lines.
        lines = read_available(read_fd).decode().splitlines()
        assert lines and all(ACCESS_LINE.fullmatch(x) or SERVER_LINE.match(x) for x in lines)
    finally:
        srv.stop()
        os.close(read_fd)


def test_workers_sharing_a_pipe_never_cut_into_each_others_lines(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    got = bytearray()
    reading = threading.Event()

    def drain() -> None:
        # A slow reader: the pipe is full for most of the run, so both workers are often
        # in the middle of a write, each waiting for room as the other is.
        time.sleep(3)
        reading.set()
        while chunk := os.read(read_fd, 4096):
            got.extend(chunk)
            time.sleep(0.001)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    srv = start_server(tmp_path, workers=2, output=write_fd)
    os.close(write_fd)
    try:
        results: list[list[int]] = []
        clients = [
            threading.Thread(target=lambda: results.append(anonymous_gets(srv, 1500)))
            for _ in range(4)
        ]
        for c in clients:
            c.start()
        for c in clients:
            c.join(120)
        assert [len(r) for r in results] == [1500] * 4
        # Not before the reader reads: a worker that is stopped waits a bounded time for a
        # blocked output (log_output.CLOSE_WAIT), then drops what it holds, by design; on a
        # fast machine the GETs are over before the reader's first read.
        assert reading.wait(30)
    finally:
        srv.stop()
    reader.join(30)
    os.close(read_fd)
    lines = got.decode().splitlines()
    bad = [x for x in lines if not (ACCESS_LINE.fullmatch(x) or SERVER_LINE.match(x))]
    assert not bad, bad[:3]
    access = [x for x in lines if ACCESS_LINE.fullmatch(x)]
    assert len(access) == 6000
