"""The node's Prometheus counters across workers (metering/worker_totals.py, worker_push.py):
sums, a restarted worker's counts kept, a restarted owner's sum started afresh, and pushes
that are malformed, unbounded or from TCP refused."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from s3torrent.log_output import LineOutput
from s3torrent.metering.meter import Meter
from s3torrent.metering.metrics import MeterCollector
from s3torrent.metering.worker_push import TOTALS_PATH, _PushState, totals_handler
from s3torrent.metering.worker_totals import (
    BUCKETS,
    MAX_SERIES,
    MAX_WORKERS,
    Totals,
    WorkerTotals,
    decode,
    encode,
    totals_of,
)

GET = ("GetObject", 200)


def meter() -> Meter:
    return Meter(None)  # type: ignore[arg-type]  # the counters only; nothing is flushed


def totals(gets: int) -> Totals:
    return Totals(
        requests={GET: gets}, bytes={("GetObject", "out"): 10 * gets}, latency={}, flushes=gets
    )


def test_a_snapshot_round_trips() -> None:
    m = meter()
    m.record("b", "GetObject", 200, 100, 0, 0.002, "k")
    m.record("b", "PutObject", 200, 0, 50, 0.01)
    t = totals_of(m)
    back = decode(encode(t))
    assert back == t
    assert back.requests[GET] == 1 and back.bytes[("PutObject", "in")] == 50
    assert len(back.latency["GetObject"][0]) == BUCKETS


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"requests": [["GetObject", "200", 1]]}',
        b'{"requests": [["GetObject", 200]]}',
        b'{"requests": [["GetObject", 200, true]]}',
        b'{"latency": [["GetObject", [1, 2], 0.5]]}',
        b'{"bytes": [["' + b"x" * 200 + b'", "out", 1]]}',
        json.dumps({"requests": [["op", i, 1] for i in range(MAX_SERIES + 1)]}).encode(),
    ],
)
def test_malformed_or_unbounded_snapshots_are_refused(body: bytes) -> None:
    with pytest.raises(ValueError):
        decode(body)


def test_the_owner_sums_its_own_and_every_workers_latest() -> None:
    others = WorkerTotals("owner-1")
    assert others.update(1, "w1-a", totals(3))
    assert others.update(2, "w2-a", totals(4))
    assert others.update(1, "w1-a", totals(5))  # a later snapshot replaces the earlier
    assert others.merged(totals(2)).requests[GET] == 2 + 5 + 4


def test_a_worker_started_again_keeps_its_predecessors_counts() -> None:
    """Counters never go back: the dead process's last totals stay in the sum."""
    others = WorkerTotals("owner-1")
    others.update(1, "w1-a", totals(5))
    others.update(1, "w1-b", totals(1))  # a new process under index 1, counting from 0
    merged = others.merged(Totals())
    assert merged.requests[GET] == 6 and merged.flushes == 6


def test_worker_indexes_are_bounded() -> None:
    others = WorkerTotals("owner-1")
    assert all(others.update(i, "x", totals(1)) for i in range(MAX_WORKERS))
    assert not others.update(MAX_WORKERS, "x", totals(1))
    assert others.update(0, "x", totals(2))  # one it knows still reports


def test_pushes_over_the_unix_socket_and_a_new_owner(tmp_path: Path) -> None:
    """A worker's counts reach the owner; an owner started again (new incarnation) gets only
    what the worker counts from then on, not what the old owner already showed."""

    async def scenario() -> None:
        holder: dict[str, WorkerTotals] = {"totals": WorkerTotals("owner-1")}

        async def handler(request: web.Request) -> web.StreamResponse:
            return await totals_handler(holder["totals"])(request)

        app = web.Application()
        app.router.add_route("*", TOTALS_PATH, handler)
        runner = web.AppRunner(app)
        await runner.setup()
        sock = str(tmp_path / "owner.sock")
        await web.UnixSite(runner, sock).start()
        session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(sock))
        try:
            m = meter()
            state = _PushState(1)
            for _ in range(3):
                m.record("b", "GetObject", 200, 1, 0, 0.001)
            await state.push(m, session)
            assert holder["totals"].merged(Totals()).requests[GET] == 3
            assert state.owner == "owner-1"
            # The owner is started again.
            holder["totals"] = WorkerTotals("owner-2")
            await state.push(m, session)  # 409: counts for the old owner; rebased
            assert holder["totals"].merged(Totals()).requests == {}
            m.record("b", "GetObject", 200, 1, 0, 0.001)
            await state.push(m, session)
            assert holder["totals"].merged(Totals()).requests[GET] == 1
            # Over TCP the path is not there, whatever it carries.
            tcp = web.TCPSite(runner, "127.0.0.1", 0)
            await tcp.start()
            port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            async with aiohttp.ClientSession() as plain:
                bad: Any = encode(totals(10**6))
                headers = {"X-S3torrent-Worker-Index": "3", "X-S3torrent-Incarnation": "z"}
                url = f"http://127.0.0.1:{port}{TOTALS_PATH}"
                async with plain.post(url, data=bad, headers=headers) as resp:
                    assert resp.status == 404
            assert holder["totals"].merged(Totals()).requests[GET] == 1
        finally:
            await session.close()
            await runner.cleanup()

    asyncio.run(scenario())


def test_dropped_log_lines_are_summed_and_exported() -> None:
    """Log lines dropped (log_output.py) count in every worker's push, are summed by the
    owner and shown as s3torrent_log_lines_dropped_total{log=...}."""
    others = WorkerTotals("owner-1")
    others.update(1, "w1-a", Totals(logs_dropped={"access log": 7}))
    merged = others.merged(Totals(logs_dropped={"access log": 2, "server log": 1}))
    assert merged.logs_dropped == {"access log": 9, "server log": 1}
    assert decode(encode(merged)).logs_dropped == merged.logs_dropped

    read_fd, write_fd = os.pipe()  # nobody reads it: the output fills, then drops
    output = LineOutput(write_fd, name="access log output", limit=10_000)
    try:
        for _ in range(50):
            output.offer("z" * 999 + "\n", 1)
        assert output.dropped > 0
        collector = MeterCollector(meter())
        collector.others = others
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        text = generate_latest(registry).decode()
        own = totals_of(meter()).logs_dropped["access log"]  # this process's, every output
        assert own >= output.dropped
        assert f's3torrent_log_lines_dropped_total{{log="access"}} {float(own + 7)}' in text
        assert 's3torrent_log_lines_dropped_total{log="server"} 0.0' in text
    finally:
        output.close(0.1)
        os.close(read_fd)
        os.close(write_fd)
