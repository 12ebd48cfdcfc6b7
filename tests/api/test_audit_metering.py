"""Audit of metering and usage reports in the field: report queries at the edges of time,
and whose usage a reused bucket name shows."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.conftest import LiveServer, UserKeys, make_client, sign_request, start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("audit-metering"))
    yield server
    server.stop()


def admin_get(
    srv: LiveServer, path: str, params: dict[str, str], user: UserKeys | None = None
) -> tuple[int, Any]:
    """A signed admin API GET; (status, decoded JSON body or the raw bytes)."""
    url = (
        f"{srv.endpoint}{path}?{urlencode(params, quote_via=quote)}"
        if params
        else srv.endpoint + path
    )
    keys = {"ak": user.access_key, "sk": user.secret_key} if user is not None else {}
    req = urllib.request.Request(url, headers=sign_request("GET", url, **keys))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


@pytest.mark.parametrize("path", ["/_admin/usage", "/_admin/savings/history"])
@pytest.mark.parametrize(
    "bound",
    [
        {"from": "9999-12-31T23:00-10:00"},  # 10000-01-01 in UTC
        {"from": "0001-01-01T00:00+10:00"},  # year 0 in UTC
        {"to": "0001-01-01T05:00+06:00"},
    ],
)
def test_a_period_outside_the_calendar_in_utc_is_refused_not_an_internal_error(
    srv: LiveServer, path: str, bound: dict[str, str]
) -> None:
    """Any user may ask for a report: a time that is a valid ISO 8601 date-time but falls
    outside years 1-9999 once in UTC was a 500 (and a traceback in the server's log)."""
    status, body = admin_get(srv, path, bound)
    assert status == 400, body
    assert body["error"]["code"] == "InvalidArgument"


def test_the_first_and_last_days_of_the_calendar_are_reported_in_iso_8601(
    srv: LiveServer,
) -> None:
    status, body = admin_get(
        srv, "/_admin/usage", {"from": "0001-01-01", "to": "9999-12-31T23:59:59"}
    )
    assert status == 200, body
    # Four-digit years (strftime's %Y wrote "1-01-01T00:00:00Z").
    assert body["from"] == "0001-01-01T00:00:00Z"
    assert body["to"] == "9999-12-31T23:59:59Z"


def _usage_out(srv: LiveServer, bucket: str, operation: str) -> tuple[int, int]:
    """(requests, bytes out) of one operation of bucket, from the usage report."""
    status, body = admin_get(srv, "/_admin/usage", {"bucket": bucket, "by": "hour"})
    assert status == 200, body
    requests = out = 0
    for row in body["rows"]:
        if row["Operation"] == operation:
            if row["UsageType"] == "DataTransfer-Out-Bytes":
                out += row["UsageValue"]
            elif row["UsageType"].startswith("Requests-"):
                requests += row["UsageValue"]
    return requests, out


@pytest.mark.parametrize("channel", ["GetObject-WebSeed", "GetObject"])
def test_a_download_the_client_abandons_is_metered(srv: LiveServer, channel: str) -> None:
    """A client that closes its connection mid-body: the bytes it was sent are metered (a
    499), as REST GETs always were. The web seed learnt which torrent it served from its
    answer, which a hang-up (a ConnectionError out of sendfile) never gave back: such a
    download was not metered at all, neither its request nor its bytes."""
    bucket = f"abandoned-{channel.lower()}"
    path = _publish_large(srv, bucket, channel)
    received = 0
    for i in range(3):
        quarter = 16 << 20
        ranged = f"bytes={i * quarter}-{(i + 1) * quarter - 1}"
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nRange: {ranged}\r\n\r\n".encode())
            got = b""
            while len(got) < 200_000:
                chunk = sock.recv(65536)
                assert chunk, got[:200]
                got += chunk
            assert got.startswith(b"HTTP/1.1 206"), got[:200]
            received += len(got) - (got.index(b"\r\n\r\n") + 4)
    deadline = time.monotonic() + 10
    while _usage_out(srv, bucket, channel)[0] < 3:
        assert time.monotonic() < deadline, _usage_out(srv, bucket, channel)
        time.sleep(0.3)
    time.sleep(1.5)  # a flush later: nothing more comes
    requests, out = _usage_out(srv, bucket, channel)
    assert requests == 3
    # What went to the socket: what the client read, and what its kernel held besides.
    assert received <= out < 3 * (16 << 20), (out, received)


class SlowDownload:
    """A GET through a small window, read at `rate` bytes a second until the server ends it."""

    def __init__(self, srv: LiveServer, path: str, rate: float = 200_000, ranged: str = "") -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        self.sock.connect(("127.0.0.1", srv.port))
        self.sock.settimeout(30)
        head = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        self.sock.sendall((head + (f"Range: {ranged}\r\n" if ranged else "") + "\r\n").encode())
        self.rate = rate
        self.received = bytearray()
        self.ended_at = 0.0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            while chunk := self.sock.recv(16384):
                self.received.extend(chunk)
                time.sleep(len(chunk) / self.rate)
        except OSError:
            pass  # the reset
        self.ended_at = time.monotonic()

    def started(self, nbytes: int = 300_000) -> None:
        deadline = time.monotonic() + 10
        while len(self.received) < nbytes:
            assert time.monotonic() < deadline, "the download did not start"
            time.sleep(0.05)

    def ended(self) -> None:
        self.thread.join(30)
        assert not self.thread.is_alive()
        self.sock.close()

    @property
    def body(self) -> int:
        return len(self.received) - (self.received.index(b"\r\n\r\n") + 4)


def _publish_large(srv: LiveServer, bucket: str, channel: str) -> str:
    """A public 64 MiB object; the path a GET of it takes on this channel."""
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=os.urandom(64 << 20), ACL="public-read")
    if channel == "GetObject":
        return f"/{bucket}/k"
    with urllib.request.urlopen(f"{srv.endpoint}/{bucket}/k?torrent", timeout=10) as r:
        url = bdecode(r.read())[b"url-list"][0].decode()
    return "/" + url.split("/", 3)[3] + "k"


def _revoke_and_check(
    srv: LiveServer,
    bucket: str,
    channel: str,
    downloads: list[SlowDownload],
    slack: int = 256 * 1024,
) -> None:
    """Revoke anonymous reads of bucket/k: each download stops within about a second, and
    the usage report counts what reached the clients."""
    for d in downloads:
        d.started()
    make_client(srv.endpoint).put_object_acl(Bucket=bucket, Key="k", ACL="private")
    revoked_at = time.monotonic()
    at_revocation = [len(d.received) for d in downloads]
    for d, before in zip(downloads, at_revocation, strict=True):
        d.ended()
        # The grace (0.5 s at 200 KB/s) and the client's own receive buffer; before: 4 MB.
        assert len(d.received) - before < 1 << 20, len(d.received) - before
        assert d.ended_at - revoked_at < 2.5
    body = sum(d.body for d in downloads)
    deadline = time.monotonic() + 10
    while _usage_out(srv, bucket, channel)[0] < len(downloads):
        assert time.monotonic() < deadline, _usage_out(srv, bucket, channel)
        time.sleep(0.3)
    time.sleep(1.5)  # a flush later: nothing more comes
    requests, out = _usage_out(srv, bucket, channel)
    assert requests == len(downloads)
    # What reached the clients, within `slack` each (segments still in flight at the reset).
    assert body <= out <= body + len(downloads) * slack, (out, body)


@pytest.mark.parametrize("channel", ["GetObject-WebSeed", "GetObject"])
def test_a_revoked_download_stops_for_a_slow_client_and_is_metered_as_delivered(
    srv: LiveServer, channel: str
) -> None:
    """A revocation shut the socket down, and the kernel went on sending what it held (a
    send buffer, 4 MiB) at the client's pace: a client reading 200 KB/s received a revoked
    object for 20 seconds more. Now the connection is reset, and the bytes it dropped are
    not metered: the usage report counts what reached the client."""
    bucket = f"revoked-slow-{channel.lower()}"
    path = _publish_large(srv, bucket, channel)
    _revoke_and_check(srv, bucket, channel, [SlowDownload(srv, path)])


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("audit-metering-2w"), workers=2)
    yield server
    server.stop()


def test_a_revoked_web_seed_download_relayed_by_another_worker_stops_too(
    two_workers: LiveServer,
) -> None:
    """With workers, a web-seed request that reaches a worker other than the owner is
    relayed to the owner (owner_link): the owner's reset stopped its own socket only, and
    the relaying worker's kernel went on sending (6.9 MB for 14 s at 500 KB/s). Several
    connections at once, so that some are relayed."""
    bucket = "revoked-relayed"
    path = _publish_large(two_workers, bucket, "GetObject-WebSeed")
    # Ranges of their own: one client asking again for pieces it was just sent is refused.
    quarter = 16 << 20
    downloads = [
        SlowDownload(two_workers, path, 100_000, f"bytes={i * quarter}-{(i + 1) * quarter - 1}")
        for i in range(4)
    ]
    # A relayed download may be metered up to what the relay held between its two sockets
    # (the owner's socket to it, aiohttp's read buffer): the owner counted it as sent, and
    # neither reset sees it (about 400 KB a download here).
    _revoke_and_check(two_workers, bucket, "GetObject-WebSeed", downloads, slack=1 << 20)


def test_bytes_a_reset_dropped_leave_the_metrics_counter_growing() -> None:
    """The bytes a revocation's reset dropped are taken off the usage report by a negative
    record; /_metrics' transfer counter must not go down with them (Prometheus reads a
    decrease as a counter reset, and rate() would show the whole counter again)."""
    from s3torrent.metering.meter import OP_BITTORRENT, Meter

    meter = Meter(meta=None, clock=lambda: 1_800_000_000.0)  # type: ignore[arg-type]
    meter.on_piece_sent("b", "k", 100_000, 7)
    assert meter.bytes_total[(OP_BITTORRENT, "out")] == 100_000
    meter.on_piece_sent("b", "k", -40_000, 0)
    assert meter.bytes_total[(OP_BITTORRENT, "out")] == 100_000
    [(requests, out, _in)] = meter.pending.usage.values()
    assert (requests, out) == (7, 60_000)
    assert meter.pending.objects[("b", None, "k", OP_BITTORRENT)] == [7, 60_000]
