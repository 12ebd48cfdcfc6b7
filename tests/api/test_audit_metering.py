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
def test_a_revoked_download_stops_for_a_slow_client_and_is_metered_as_delivered(
    srv: LiveServer, channel: str
) -> None:
    """A revocation shut the socket down, and the kernel went on sending what it held (a
    send buffer, 4 MiB) at the client's pace: a client reading 200 KB/s received a revoked
    object for 20 seconds more. Now the connection is reset, and the bytes it dropped are
    not metered: the usage report counts what reached the client."""
    bucket = f"revoked-slow-{channel.lower()}"
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket=bucket)
    size = 64 << 20
    s3.put_object(Bucket=bucket, Key="k", Body=os.urandom(size), ACL="public-read")
    if channel == "GetObject":
        path = f"/{bucket}/k"
    else:
        with urllib.request.urlopen(f"{srv.endpoint}/{bucket}/k?torrent", timeout=10) as r:
            url = bdecode(r.read())[b"url-list"][0].decode()
        path = "/" + url.split("/", 3)[3] + "k"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)  # a small window
    sock.connect(("127.0.0.1", srv.port))
    sock.settimeout(30)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    received = bytearray()
    ended = threading.Event()
    ended_at = [0.0]

    def slow_reader() -> None:
        rate = 200_000  # bytes a second
        try:
            while chunk := sock.recv(16384):
                received.extend(chunk)
                time.sleep(len(chunk) / rate)
        except OSError:
            pass  # the reset
        ended_at[0] = time.monotonic()
        ended.set()

    threading.Thread(target=slow_reader, daemon=True).start()
    deadline = time.monotonic() + 10
    while len(received) < 300_000:
        assert time.monotonic() < deadline, "the download did not start"
        time.sleep(0.05)
    s3.put_object_acl(Bucket=bucket, Key="k", ACL="private")
    revoked_at, at_revocation = time.monotonic(), len(received)
    assert ended.wait(30)
    sock.close()
    after = len(received) - at_revocation
    # The grace (0.5 s at 200 KB/s) and the client's own receive buffer; before: 4 MB more.
    assert after < 1 << 20, after
    assert ended_at[0] - revoked_at < 2.5
    body = len(received) - (received.index(b"\r\n\r\n") + 4)

    def metered() -> tuple[int, int]:
        return _usage_out(srv, bucket, channel)

    deadline = time.monotonic() + 10
    while metered()[0] < 1:
        assert time.monotonic() < deadline, "never metered"
        time.sleep(0.3)
    time.sleep(1.5)  # a flush later: nothing more comes
    requests, out = metered()
    assert requests == 1
    # What reached the client, within a few segments still in flight at the reset.
    assert body <= out <= body + 256 * 1024, (out, body)


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
