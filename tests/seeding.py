"""Helpers for tests of the origin seeder: torrents without web seeds, libtorrent, raw peers."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from s3torrent.peer import wire

TIMEOUT = 60.0


def put_public(s3: Any, bucket: str, key: str, data: bytes) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=data, ACL="public-read")


def fetch_torrent(endpoint: str, bucket: str, key: str) -> bytes:
    url = f"{endpoint}/{bucket}/{quote(key, safe='/')}?torrent"
    with urllib.request.urlopen(url, timeout=30) as r:  # anonymous
        body: bytes = r.read()
    return body


def without_web_seed(torrent: bytes) -> bytes:
    """The torrent minus `url-list`: our tracker and seeder are the only source."""
    t = dict(bdecode(torrent))
    t.pop(b"url-list", None)
    out: bytes = bencode(t)
    assert bencode(t[b"info"]) in torrent  # the info dict (the info-hash) is unchanged
    return out


def info_hash_v1(torrent: bytes) -> bytes:
    return hashlib.sha1(bencode(bdecode(torrent)[b"info"])).digest()


def seeder_stats(endpoint: str) -> dict[str, Any]:
    """GET /_seeder/stats, signed by root (the stats are root only)."""
    from tests.conftest import sign_request

    url = f"{endpoint}/_seeder/stats"
    request = urllib.request.Request(url, headers=sign_request("GET", url))
    with urllib.request.urlopen(request, timeout=10) as r:
        stats: dict[str, Any] = json.loads(r.read())
    return stats


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_for(predicate: Any, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


# ---------------------------------------------------------------- libtorrent


def lt_session(**overrides: Any) -> Any:
    import libtorrent as lt

    settings: dict[str, Any] = {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "ssrf_mitigation": False,
        "allow_multiple_connections_per_ip": True,
        # We speak TCP only; libtorrent would first spend ~3.5 s on a uTP attempt.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "alert_mask": lt.alert.category_t.error_notification,
    }
    settings.update(overrides)
    return lt.session(settings)


def lt_add(
    session: Any, save: Path, *, torrent: bytes | None = None, magnet: str | None = None
) -> Any:
    import libtorrent as lt

    if magnet is not None:
        atp = lt.parse_magnet_uri(magnet)
    else:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(lt.bdecode(torrent))
    atp.save_path = str(save)
    return session.add_torrent(atp)


def lt_download(
    torrent: bytes | None, save: Path, *, magnet: str | None = None, timeout: float = TIMEOUT
) -> Path:
    """Download with a fresh libtorrent session; the path of the finished file."""
    session = lt_session()
    handle = lt_add(session, save, torrent=torrent, magnet=magnet)
    try:
        wait_for(lambda: handle.status().is_seeding, "libtorrent to finish", timeout)
        name = handle.status().name
        return save / name
    finally:
        session.remove_torrent(handle)
        del session


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# ---------------------------------------------------------------- a raw peer


class RawPeer:
    """A blocking, hand-driven peer for hostile and load tests."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()

    def close(self) -> None:
        self.sock.close()

    def handshake(self, info_hash: bytes, *, fast: bool = True, extensions: bool = True) -> bool:
        """Send our handshake; True when the seeder answers with its own."""
        hs = wire.Handshake.build(
            info_hash, b"-TT0001-" + os.urandom(12), fast=fast, extensions=extensions, v2=False
        )
        self.sock.sendall(hs.encode())
        try:
            self.read_exactly(wire.HANDSHAKE_LENGTH)
        except (ConnectionError, TimeoutError, OSError):
            return False
        return True

    def send(self, *msgs: wire.Message) -> None:
        self.sock.sendall(b"".join(wire.encode_message(m) for m in msgs))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the seeder")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_message(self) -> tuple[int | None, bytes]:
        """(message id or None for keep-alive, payload)."""
        (size,) = struct.unpack(">I", self.read_exactly(4))
        if size == 0:
            return None, b""
        body = self.read_exactly(size)
        return body[0], body[1:]

    def read_until(self, msg_id: int, limit: int = 10_000) -> bytes:
        for _ in range(limit):
            mid, payload = self.read_message()
            if mid == msg_id:
                return payload
        raise AssertionError(f"no message {msg_id}")

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the seeder closes the connection within `timeout` (drains input)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return False


def run_until_file(
    cmd: list[str],
    target: Path,
    data: bytes,
    log: Path,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> None:
    """Run a download client until `target` holds exactly `data`, then stop its group."""
    want = hashlib.sha256(data).digest()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd
        )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (
                target.exists()
                and target.stat().st_size == len(data)
                and hashlib.sha256(target.read_bytes()).digest() == want
            ):
                return
            if proc.poll() is not None and proc.returncode != 0:
                break
            time.sleep(0.3)
        raise AssertionError(f"{cmd[0]} did not download the file: {log.read_text()[-2000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def transmission_download(
    torrent: Path, out: Path, name: str, data: bytes, workdir: Path, port: int
) -> None:
    """transmission-cli downloads `torrent` into `out` (DHT, LPD, PEX, uTP off) until
    `out/name` holds exactly `data`."""
    out.mkdir(exist_ok=True)
    config = workdir / "tr-config"
    config.mkdir(exist_ok=True)
    settings = {
        "dht-enabled": False,
        "lpd-enabled": False,
        "pex-enabled": False,
        "utp-enabled": False,
        "rpc-enabled": False,
        "port-forwarding-enabled": False,
    }
    (config / "settings.json").write_text(json.dumps(settings))
    run_until_file(
        [
            "transmission-cli",
            "--no-portmap",
            "--no-uplimit",
            "--no-downlimit",
            "-p",
            str(port),
            "-g",
            str(config),
            "-w",
            str(out),
            str(torrent),
        ],
        out / name,
        data,
        workdir / "transmission.log",
        cwd=workdir,
    )


def aria2_download(
    torrent: Path,
    out: Path,
    name: str,
    data: bytes,
    workdir: Path,
    port: int,
    extra: tuple[str, ...] = (),
) -> None:
    """aria2c downloads `torrent` into `out` (DHT, LPD, PEX off; no seeding afterwards) until
    `out/name` holds exactly `data`; `extra` options go before the torrent."""
    out.mkdir(exist_ok=True)
    run_until_file(
        [
            "aria2c",
            "--enable-dht=false",
            "--enable-dht6=false",
            "--bt-enable-lpd=false",
            "--enable-peer-exchange=false",
            "--seed-time=0",
            "--check-integrity=true",
            f"--listen-port={port}",
            f"--dir={out}",
            "--console-log-level=warn",
            "--summary-interval=0",
            *extra,
            str(torrent),
        ],
        out / name,
        data,
        workdir / "aria2.log",
        cwd=workdir,
    )


def public_read_policy(bucket: str) -> str:
    """A bucket policy that lets anyone GetObject every key of bucket (as JSON)."""
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def host_ipv4() -> str | None:
    """This host's non-loopback IPv4 address, or None (Transmission drops every 127.0.0.0/8
    peer a tracker names, so what it must reach listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent; this only picks a route
        except OSError:
            return None
        ip = str(s.getsockname()[0])
    return None if ip.startswith("127.") else ip
