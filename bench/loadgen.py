"""Closed-loop HTTP/1.1 load generator over raw asyncio streams.

Used where wrk cannot go (HEAD: wrk waits for a body that never comes) or is
missing. Each of `--connections` keep-alive connections sends one request at a
time, cycling over a file of request paths (pre-presigned URLs), for
`--duration` seconds. Prints one JSON object: 2xx count, other statuses, errors.

    python -m bench.loadgen --port P --method GET --paths FILE [--body FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class Tally:
    ok: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return
    length = int(headers.get("content-length", "0"))
    if length:
        await reader.readexactly(length)


async def _response(reader: asyncio.StreamReader, method: str) -> tuple[int, bool]:
    """Read one response; return its status and whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    if method != "HEAD" and status not in (204, 304) and status >= 200:
        await _read_body(reader, headers)
    return status, headers.get("connection", "").lower() != "close"


async def _connection(
    host: str,
    port: int,
    method: str,
    requests: list[bytes],
    start: int,
    stop_at: float,
    tally: Tally,
) -> None:
    i = start
    writer: asyncio.StreamWriter | None = None
    try:
        while time.monotonic() < stop_at:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(requests[i % len(requests)])
                i += 1
                status, keep = await asyncio.wait_for(
                    _response(reader, method), timeout=max(0.1, stop_at - time.monotonic() + 5)
                )
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError,
                    TimeoutError) as e:  # fmt: skip
                tally.errors[type(e).__name__] += 1
                keep = False
                if writer is not None:
                    writer.close()
                writer = None
                await asyncio.sleep(0.01)
                continue
            if 200 <= status < 300:
                tally.ok += 1
            else:
                tally.statuses[status] += 1
            if not keep:
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


def build_requests(
    host: str,
    port: int,
    method: str,
    paths: list[str],
    body: bytes,
    headers: tuple[str, ...] = (),
) -> list[bytes]:
    out = []
    extra = "".join(f"{h}\r\n" for h in headers)
    for path in paths:
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}"
        if body or method in ("PUT", "POST"):
            head += f"Content-Length: {len(body)}\r\n"
        out.append(head.encode() + b"\r\n" + body)
    return out


async def generate(
    host: str,
    port: int,
    method: str,
    paths: list[str],
    body: bytes,
    connections: int,
    duration: float,
    headers: tuple[str, ...] = (),
) -> dict[str, object]:
    requests = build_requests(host, port, method, paths, body, headers)
    tally = Tally()
    began = time.monotonic()
    stop_at = began + duration
    step = max(1, len(requests) // connections)
    await asyncio.gather(
        *(
            _connection(host, port, method, requests, n * step, stop_at, tally)
            for n in range(connections)
        )
    )
    elapsed = time.monotonic() - began
    return {
        "ok": tally.ok,
        "non_2xx": sum(tally.statuses.values()),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": dict(tally.errors),
        "seconds": elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen")
    p.add_argument("--host", default="127.0.0.1", choices=["127.0.0.1", "::1"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--method", default="GET")
    p.add_argument("--paths", required=True, help="file with one request path per line")
    p.add_argument("--body", help="file whose bytes are sent as every request's body")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--header", action="append", default=[], help="'Name: value', every request")
    a = p.parse_args(argv)
    with open(a.paths) as f:
        paths = [line.strip() for line in f if line.strip()]
    body = b""
    if a.body:
        with open(a.body, "rb") as f:
            body = f.read()
    duration = min(a.duration, 600.0)
    if any("\r" in h or "\n" in h or ":" not in h for h in a.header):
        p.error("--header takes one 'Name: value' line")
    work = generate(
        a.host, a.port, a.method.upper(), paths, body, a.connections, duration, tuple(a.header)
    )
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(work)
    else:
        result = uvloop.run(work)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
