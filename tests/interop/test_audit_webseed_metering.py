"""Audit of the web seed in the field: real clients downloading through the url-list only
(no tracker, so the seeder is never reached), with every byte on the wire counted by a
relay between them and the server, against the usage report; and revocation by a policy
that expires, for a response streaming and a connection kept alive."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from tests.conftest import LiveServer, make_client, sign_request, start_server
from tests.interop.test_webseed import lt_download, web_seed_only

pytestmark = [pytest.mark.interop, pytest.mark.slow]

MiB = 1 << 20


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("audit-webseed"))
    yield server
    server.stop()


class CountingRelay:
    """A TCP relay to the server that counts the response body bytes it passes on (by each
    response's Content-Length): the bytes a client got on the wire."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.body_bytes = 0
        self.statuses: list[int] = []
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.port = 0

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(asyncio.start_server(self._relay, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()
            server.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(5)

    async def _relay(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def requests() -> None:
            with _quiet():
                while data := await client_r.read(65536):
                    up_w.write(data)
                    await up_w.drain()
            up_w.close()

        async def responses() -> None:
            pending, body_left = b"", 0
            with _quiet():
                while data := await up_r.read(65536):
                    client_w.write(data)
                    await client_w.drain()
                    pending += data
                    while pending:
                        if body_left:
                            n = min(body_left, len(pending))
                            self.body_bytes += n
                            body_left -= n
                            pending = pending[n:]
                            continue
                        head, sep, rest = pending.partition(b"\r\n\r\n")
                        if not sep:
                            break
                        lines = head.decode("latin-1").split("\r\n")
                        self.statuses.append(int(lines[0].split()[1]))
                        for line in lines[1:]:
                            name, _, value = line.partition(":")
                            if name.strip().lower() == "content-length":
                                body_left = int(value)
                        pending = rest
            client_w.close()

        await asyncio.gather(requests(), responses())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class _quiet:
    """Connection errors end a relay's direction quietly."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, *_: Any) -> bool:
        return kind is not None and issubclass(kind, OSError)


def web_seed_usage(srv: LiveServer, bucket: str) -> tuple[int, int]:
    """(requests, bytes out) of GetObject-WebSeed in bucket's usage report."""
    url = f"{srv.endpoint}/_admin/usage?bucket={bucket}&by=hour"
    req = urllib.request.Request(url, headers=sign_request("GET", url))
    with urllib.request.urlopen(req, timeout=30) as r:
        rows = json.loads(r.read())["rows"]
    requests = out = 0
    for row in rows:
        if row["Operation"] == "GetObject-WebSeed":
            if row["UsageType"] == "DataTransfer-Out-Bytes":
                out += row["UsageValue"]
            else:
                requests += row["UsageValue"]
    return requests, out


def through(relay: CountingRelay, srv: LiveServer, torrent: bytes) -> bytes:
    """The torrent with its web seed reached through the relay (the info dict untouched)."""
    t = dict(bdecode(web_seed_only(torrent)))
    here, there = f":{srv.port}/".encode(), f":{relay.port}/".encode()
    t[b"url-list"] = [url.replace(here, there) for url in t[b"url-list"]]
    out: bytes = bencode(t)
    return out


def publish(srv: LiveServer, bucket: str, size: int) -> tuple[bytes, bytes]:
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="obj.bin", Body=data, ACL="public-read")
    with urllib.request.urlopen(f"{srv.endpoint}/{bucket}/obj.bin?torrent", timeout=10) as r:
        torrent: bytes = r.read()
    return data, torrent


@pytest.mark.parametrize("client", ["libtorrent", "aria2c"])
def test_the_usage_report_counts_the_web_seed_bytes_on_the_wire(
    srv: LiveServer, tmp_path: Path, client: str
) -> None:
    bucket = f"wire-{client}"
    data, torrent = publish(srv, bucket, 12 * MiB + 4321)
    relay = CountingRelay(srv.port)
    try:
        relayed = through(relay, srv, torrent)
        if client == "libtorrent":
            got = lt_download(relayed, tmp_path / "lt").read_bytes()
        else:
            path = tmp_path / "t.torrent"
            path.write_bytes(relayed)
            res = subprocess.run(
                [
                    "aria2c", f"--dir={tmp_path / 'aria'}", "--seed-time=0",
                    "--bt-enable-lpd=false", "--enable-dht=false", "--enable-dht6=false",
                    "--enable-peer-exchange=false", "--file-allocation=none",
                    "--summary-interval=0", "--console-log-level=warn",
                    "--listen-port=52000-52999", str(path),
                ],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
            got = (tmp_path / "aria" / "obj.bin").read_bytes()
    finally:
        relay.close()
    assert got == data
    assert relay.body_bytes >= len(data)
    deadline = time.monotonic() + 15
    while web_seed_usage(srv, bucket)[1] < relay.body_bytes:
        assert time.monotonic() < deadline, (web_seed_usage(srv, bucket), relay.body_bytes)
        time.sleep(0.3)
    time.sleep(1.5)  # a flush later: nothing more comes
    requests, out = web_seed_usage(srv, bucket)
    assert out == relay.body_bytes
    assert requests == len(relay.statuses)


def _request(sock: socket.socket, path: str, first: int, last: int) -> int:
    """One range request on a kept-alive connection; its status (0: the connection closed)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nRange: bytes={first}-{last}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return 0
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next(
        int(v) for n, _, v in (ln.partition(":") for ln in lines) if n.lower() == "content-length"
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return 0
        body += chunk
    return int(lines[0].split()[1])


def test_a_policy_that_expires_stops_the_web_seed_within_a_second(srv: LiveServer) -> None:
    """A bucket policy grants anonymous reads until aws:CurrentTime reaches a moment: then
    a range already streaming is cut, and the next request on a kept-alive connection
    is refused, within a second."""
    bucket = "expiring-webseed"
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket=bucket)
    size = 64 * MiB
    s3.put_object(Bucket=bucket, Key="obj.bin", Body=os.urandom(size))
    until = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
                "Condition": {
                    "DateLessThan": {"aws:CurrentTime": until.strftime("%Y-%m-%dT%H:%M:%SZ")}
                },
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    with urllib.request.urlopen(f"{srv.endpoint}/{bucket}/obj.bin?torrent", timeout=10) as r:
        url = bdecode(r.read())[b"url-list"][0].decode()
    path = "/" + url.split("/", 3)[3] + "obj.bin"
    kept = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    assert _request(kept, path, 0, 16383) == 206

    streaming = socket.socket()
    streaming.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
    streaming.connect(("127.0.0.1", srv.port))
    streaming.settimeout(30)
    streaming.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nRange: bytes={MiB}-{size - 1}\r\n\r\n".encode()
    )
    ended_at = [0.0]
    got = [0]

    def slow_reader() -> None:
        try:
            while chunk := streaming.recv(16384):
                got[0] += len(chunk)
                time.sleep(len(chunk) / 2_000_000)
        except OSError:
            pass
        ended_at[0] = time.monotonic()

    reader = threading.Thread(target=slow_reader, daemon=True)
    reader.start()
    expires_in = until.timestamp() - time.time()
    assert expires_in > 1, "the test's setup took too long"
    time.sleep(expires_in)
    expired_at = time.monotonic()
    status = 206
    while status == 206:
        status = _request(kept, path, 16384, 32767)
        assert time.monotonic() - expired_at < 1.0, "a kept-alive connection still served"
        time.sleep(0.05)
    assert status == 403
    reader.join(10)
    assert not reader.is_alive()
    assert ended_at[0] - expired_at < 1.5
    assert got[0] < size - MiB
    kept.close()
    streaming.close()


def test_an_overwritten_version_s_web_seed_never_serves_the_new_bytes(srv: LiveServer) -> None:
    """The web seed's URL names the version (its swarm id): once a new version is current,
    the old torrent's web seed refuses (403) rather than serve the new object's bytes under
    the old piece hashes, in a versioned bucket too, where the old version is still stored."""
    bucket = "overwritten-webseed"
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old, new = os.urandom(100_000), os.urandom(100_000)

    def web_seed_url() -> str:
        with urllib.request.urlopen(f"{srv.endpoint}/{bucket}/obj.bin?torrent", timeout=10) as r:
            return str(bdecode(r.read())[b"url-list"][0].decode()) + "obj.bin"

    s3.put_object(Bucket=bucket, Key="obj.bin", Body=old, ACL="public-read")
    old_url = web_seed_url()
    with urllib.request.urlopen(old_url, timeout=10) as r:
        assert r.read() == old
    s3.put_object(Bucket=bucket, Key="obj.bin", Body=new, ACL="public-read")
    deadline = time.monotonic() + 1.0
    while True:
        try:
            with urllib.request.urlopen(old_url, timeout=10) as r:
                assert r.read() == old  # the old version's bytes, or nothing
        except urllib.error.HTTPError as e:
            assert e.code == 403
            break
        assert time.monotonic() < deadline, "the old torrent's web seed still answers"
        time.sleep(0.05)
    new_url = web_seed_url()
    assert new_url != old_url
    with urllib.request.urlopen(new_url, timeout=10) as r:
        assert r.read() == new


class SlowPeer:
    """A BitTorrent peer (the wire protocol by hand) that asks the origin seeder for
    `blocks` blocks and reads them at `rate` bytes a second, through a small window."""

    def __init__(self, srv: LiveServer, torrent: bytes, blocks: int, rate: float) -> None:
        meta = bdecode(torrent)
        self.piece_length = int(meta[b"info"][b"piece length"])
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        self.sock.connect(("127.0.0.1", srv.peer_port))
        self.sock.settimeout(30)
        info_hash = hashlib.sha1(bencode(meta[b"info"])).digest()
        self.sock.sendall(
            b"\x13BitTorrent protocol" + bytes(8) + info_hash + b"-AU0001-" + os.urandom(12)
        )
        self._exactly(68)
        self.sock.sendall(struct.pack(">IB", 1, 2))  # interested
        self.rate, self.payload, self.ended_at = rate, 0, 0.0
        self.revealed = self._revealed_after_unchoke()
        requests = [
            struct.pack(">IBIII", 13, 6, index, begin, 16384)
            for index in sorted(self.revealed)
            for begin in range(0, self.piece_length, 16384)
        ][:blocks]
        assert len(requests) == blocks, f"only {len(self.revealed)} pieces revealed"
        self.sock.sendall(b"".join(requests))
        self.thread = threading.Thread(target=self._read_pieces, daemon=True)
        self.thread.start()

    def _exactly(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def _message(self) -> bytes:
        return self._exactly(struct.unpack(">I", self._exactly(4))[0])

    def _revealed_after_unchoke(self) -> set[int]:
        revealed: set[int] = set()
        unchoked_at = None
        while unchoked_at is None or time.monotonic() - unchoked_at < 1.0:
            self.sock.settimeout(0.2 if unchoked_at is not None else 10)
            try:
                msg = self._message()
            except TimeoutError:
                continue
            if msg[:1] == b"\x01":
                unchoked_at = time.monotonic()
            elif msg[:1] == b"\x04":
                revealed.add(struct.unpack(">I", msg[1:5])[0])
            elif msg[:1] == b"\x05":
                bits = msg[1:]
                revealed |= {i for i in range(len(bits) * 8) if bits[i // 8] >> (7 - i % 8) & 1}
        self.sock.settimeout(30)
        return revealed

    def _read_pieces(self) -> None:
        try:
            while True:
                msg = self._message()
                if msg[:1] == b"\x07":
                    self.payload += len(msg) - 9
                time.sleep((len(msg) + 4) / self.rate)
        except (OSError, EOFError):
            pass
        self.ended_at = time.monotonic()


def bittorrent_usage(srv: LiveServer, bucket: str) -> int:
    url = f"{srv.endpoint}/_admin/usage?bucket={bucket}&by=hour"
    req = urllib.request.Request(url, headers=sign_request("GET", url))
    with urllib.request.urlopen(req, timeout=30) as r:
        rows = json.loads(r.read())["rows"]
    return sum(
        row["UsageValue"]
        for row in rows
        if row["Operation"] == "GetObject-BitTorrent"
        and row["UsageType"] == "DataTransfer-Out-Bytes"
    )


def test_a_revoked_torrent_s_slow_peer_stops_getting_pieces_and_is_metered_as_delivered(
    srv: LiveServer,
) -> None:
    """A revocation closed the seeder's connections with a plain close, and the kernel went
    on sending the pieces it held (a send buffer, 4 MiB) at the peer's pace: a peer reading
    500 KB/s received all 4 MB it had asked for, 6 s after the revocation. Now the close is
    a reset, and the bytes it drops are not metered."""
    bucket = "revoked-slow-peer"
    _data, torrent = publish(srv, bucket, 64 * MiB)
    peer = SlowPeer(srv, torrent, blocks=250, rate=500_000)
    deadline = time.monotonic() + 10
    while peer.payload < 300_000:
        assert time.monotonic() < deadline, "the seeder sent nothing"
        time.sleep(0.05)
    make_client(srv.endpoint).put_object_acl(Bucket=bucket, Key="obj.bin", ACL="private")
    revoked_at, at_revocation = time.monotonic(), peer.payload
    peer.thread.join(30)
    assert not peer.thread.is_alive()
    peer.sock.close()
    # The grace (0.5 s at 500 KB/s) and the peer's own receive buffer; before: 3 MB more.
    assert peer.payload - at_revocation < 1 << 20, peer.payload - at_revocation
    assert peer.ended_at - revoked_at < 2.5
    assert peer.payload < 250 * 16384
    deadline = time.monotonic() + 10
    while bittorrent_usage(srv, bucket) < peer.payload:
        assert time.monotonic() < deadline, (bittorrent_usage(srv, bucket), peer.payload)
        time.sleep(0.3)
    time.sleep(1.5)  # a flush later: nothing more comes
    # What reached the peer, to within a few blocks in flight at the reset (less, at most,
    # the 13-byte headers of the blocks dropped: the kernel's count holds them too).
    metered = bittorrent_usage(srv, bucket)
    assert peer.payload - 250 * 13 <= metered <= peer.payload + 4 * 16384, metered
