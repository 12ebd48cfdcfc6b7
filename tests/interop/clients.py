"""Drivers for the real BitTorrent clients of the interop matrix (test_client_matrix.py).

Each driver downloads one input (a .torrent file or a magnet link) into its own directory
with a fresh client instance and returns the downloaded bytes, or raises `ClientFailed`
with the tail of the client's log. DHT, LSD, PEX, UPnP and uTP are off everywhere, and
encryption is allowed but not required (the seeder speaks plaintext), so the only sources
are the ones the input names: our tracker (and so the origin seeder) and the web seed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
import xmlrpc.client
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import free_port

# WebTorrent from npm (scripts/test.sh installs it here); its WebRTC dependency needs a
# native build that cannot be fetched, so node loads a stub for it (TCP and HTTP only).
NODE_PREFIX = Path(
    os.environ.get("S3TORRENT_TEST_NODE_PREFIX", str(Path.home() / ".cache" / "s3torrent-interop"))
)
WEBRTC_STUB = (
    "export class RTCPeerConnection{};export class RTCSessionDescription{};"
    "export class RTCIceCandidate{};export default {}"
)


CTORRENT_ADDRESS = "127.0.0.3"


class ClientFailed(Exception):
    """The client did not produce the object's bytes (with why, as far as it said)."""


@dataclass(frozen=True, slots=True)
class Job:
    """One download: what to hand the client and what must arrive."""

    torrent: bytes | None
    magnet: str | None
    name: str
    data: bytes
    workdir: Path
    timeout: float
    # The loopback address the client binds and announces from: in a swarm of several
    # clients on one machine, distinct addresses keep rtorrent (one peer per address) and
    # libtorrent-based clients (one connection per address) talking to everyone.
    address: str = "127.0.0.1"
    # Called once the bytes are verified, with the client still running (seeding): a swarm
    # benchmark keeps finished clients in the swarm until every client is done, as users'
    # clients stay; None: the client stops at once.
    linger: Callable[[Job], None] | None = None
    # Trust any TLS certificate (a test's self-signed proxy in front of the server).
    insecure_tls: bool = False


def _done(job: Job) -> bytes:
    if job.linger is not None:
        job.linger(job)
    return job.data


def _file_matches(path: Path, data: bytes) -> bool:
    try:
        if path.stat().st_size != len(data):
            return False
        # Clients allocate the whole file first: a few sampled blocks rule out a download
        # in progress without hashing it every poll (eight 100 MiB downloads at once).
        with path.open("rb") as f:
            step = max(1, len(data) // 16)
            for offset in range(0, len(data), step):
                f.seek(offset)
                if f.read(4096) != data[offset : offset + 4096]:
                    return False
        return hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(data).digest()
    except OSError:
        return False


def _input_arg(job: Job) -> str:
    if job.magnet is not None:
        return job.magnet
    assert job.torrent is not None
    path = job.workdir / "input.torrent"
    path.write_bytes(job.torrent)
    return str(path)


@contextlib.contextmanager
def _process(
    cmd: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _wait_file(job: Job, target: Path, proc: subprocess.Popen[bytes] | None, log: Path) -> bytes:
    deadline = time.monotonic() + job.timeout
    while time.monotonic() < deadline:
        if _file_matches(target, job.data):
            return _done(job)
        if proc is not None and proc.poll() is not None:
            if _file_matches(target, job.data):
                return job.data
            raise ClientFailed(f"exited {proc.returncode}: {_tail(log)}")
        time.sleep(0.25)
    raise ClientFailed(f"timed out: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-600:]
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------- the drivers


def libtorrent(job: Job) -> bytes:
    """libtorrent (python bindings) with its default SSRF mitigation on."""
    import libtorrent as lt

    host = f"[{job.address}]" if ":" in job.address else job.address
    session = lt.session(
        {
            "listen_interfaces": f"{host}:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "alert_mask": lt.alert.category_t.error_notification
            | lt.alert.category_t.tracker_notification,
        }
    )
    save = job.workdir / "out"
    if job.magnet is not None:
        params = lt.parse_magnet_uri(job.magnet)
    else:
        params = lt.add_torrent_params()
        try:
            params.ti = lt.torrent_info(lt.bdecode(job.torrent))
        except RuntimeError as exc:
            raise ClientFailed(f"refused the torrent: {exc}") from None
    params.save_path = str(save)
    handle = session.add_torrent(params)
    alerts: list[str] = []
    try:
        deadline = time.monotonic() + job.timeout
        while time.monotonic() < deadline:
            alerts += [a.message() for a in session.pop_alerts()]
            if handle.status().is_seeding and _file_matches(save / job.name, job.data):
                return _done(job)
            time.sleep(0.2)
        raise ClientFailed(f"timed out: {alerts[-6:]}")
    finally:
        session.remove_torrent(handle)


def aria2(job: Job) -> bytes:
    out = job.workdir / "out"
    log = job.workdir / "aria2.log"
    cmd = [
        "aria2c", "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
        "--enable-peer-exchange=false", "--seed-time=0", "--file-allocation=none",
        f"--listen-port={free_port()}", f"--dir={out}", "--summary-interval=0",
        "--bt-require-crypto=false", "--bt-stop-timeout=60", f"--interface={job.address}",
        *(["--check-certificate=false"] if job.insecure_tls else []),
        _input_arg(job),
    ]  # fmt: skip
    with _process(cmd, log) as proc:
        return _wait_file(job, out / job.name, proc, log)


def transmission(job: Job) -> bytes:
    out = job.workdir / "out"
    out.mkdir()
    config = job.workdir / "config"
    config.mkdir()
    settings = {
        "dht-enabled": False, "lpd-enabled": False, "pex-enabled": False,
        "utp-enabled": False, "rpc-enabled": False, "port-forwarding-enabled": False,
        "encryption": 0,
    }  # fmt: skip
    (config / "settings.json").write_text(json.dumps(settings))
    log = job.workdir / "transmission.log"
    cmd = [
        "transmission-cli", "--no-portmap", "-p", str(free_port()), "-g", str(config),
        "-w", str(out), _input_arg(job),
    ]  # fmt: skip
    with _process(cmd, log) as proc:
        return _wait_file(job, out / job.name, proc, log)


def ctorrent(job: Job) -> bytes:
    if job.magnet is not None:
        raise ClientFailed("ctorrent has no magnet support")
    out = job.workdir / "out"
    out.mkdir()
    log = job.workdir / "ctorrent.log"
    cmd = [
        # -I: its own address, as it believes; it drops every peer at that address, and the
        # origin seeder shares 127.0.0.1 with it.
        "ctorrent", "-e", "0", "-p", str(free_port()), "-I", CTORRENT_ADDRESS,
        "-s", str(out / job.name), _input_arg(job),
    ]  # fmt: skip
    with _process(cmd, log) as proc:
        return _wait_file(job, out / job.name, proc, log)


def lftp(job: Job) -> bytes:
    out = job.workdir / "out"
    out.mkdir()
    log = job.workdir / "lftp.log"
    port = free_port()
    script = (
        "set torrent:use-dht no; set torrent:ipv6 ''; "
        f"set torrent:port-range {port}-{port}; set torrent:stop-on-ratio 0; "
        f"torrent -O {out} '{_input_arg(job)}'"
    )
    try:
        with _process(["lftp", "-c", script], log) as proc:
            return _wait_file(job, out / job.name, proc, log)
    finally:
        # On SIGTERM lftp moves its running torrent job to the background (a fork in a new
        # session, which the process-group kill misses): kill what still names this job.
        _kill_matching(str(out))


def _kill_matching(marker: str) -> None:
    """SIGKILL every process whose command line contains `marker`."""
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)


def webtorrent(job: Job) -> bytes:
    out = job.workdir / "out"
    out.mkdir()
    module = NODE_PREFIX / "node_modules" / "webtorrent" / "index.js"
    if not module.exists():
        raise ClientFailed(f"webtorrent is not installed under {NODE_PREFIX}")
    hooks = job.workdir / "hooks.mjs"
    hooks.write_text(
        "export async function resolve(s, c, next) {\n"
        "  if (s === 'webrtc-polyfill') return { url: 'data:text/javascript,"
        + WEBRTC_STUB
        + "', shortCircuit: true }\n  return next(s, c)\n}\n"
    )
    register = job.workdir / "register.mjs"
    register.write_text(
        "import { register } from 'node:module'\nregister('./hooks.mjs', import.meta.url)\n"
    )
    script = job.workdir / "download.mjs"
    script.write_text(
        f"import WebTorrent from {json.dumps(str(module))}\n"
        "import fs from 'node:fs'\n"
        "const client = new WebTorrent({ dht: false, lsd: false, utPex: false,"
        " natUpnp: false, natPmp: false, utp: false, tracker: { wrtc: false } })\n"
        "client.on('error', e => { console.error('client error', e.message); process.exit(3) })\n"
        "const input = process.argv[2]\n"
        "const src = input.startsWith('magnet:') ? input : fs.readFileSync(input)\n"
        f"client.add(src, {{ path: {json.dumps(str(out))} }}, t => {{\n"
        "  t.on('warning', w => console.error('warning', String(w)))\n"
        "  t.on('error', e => { console.error('torrent error', String(e)); process.exit(4) })\n"
        "  t.on('done', () => { console.log('done'); setTimeout(() => process.exit(0), 300) })\n"
        "})\n"
    )
    log = job.workdir / "webtorrent.log"
    cmd = ["node", "--import", str(register), str(script), _input_arg(job)]
    with _process(cmd, log) as proc:
        return _wait_file(job, out / job.name, proc, log)


# ---- qBittorrent-nox through its Web API


def qbittorrent(job: Job) -> bytes:
    out = job.workdir / "out"
    profile = job.workdir / "profile"
    conf_dir = profile / "qBittorrent" / "config"
    conf_dir.mkdir(parents=True)
    ui_port = free_port()
    (conf_dir / "qBittorrent.conf").write_text(
        "[LegalNotice]\nAccepted=true\n\n"
        "[BitTorrent]\n"
        "Session\\DHTEnabled=false\nSession\\LSDEnabled=false\nSession\\PeXEnabled=false\n"
        f"Session\\Port={free_port()}\nSession\\Interface=lo\nSession\\InterfaceName=lo\n"
        f"Session\\InterfaceAddress={job.address}\n"
        "Session\\Encryption=0\nSession\\uTPRateLimited=false\n"
        # Several peers of a loopback swarm may share an address.
        "Session\\MultiConnectionsPerIp=true\n"
        f"Session\\DefaultSavePath={out}\nSession\\TempPathEnabled=false\n"
        "Session\\BTProtocol=TCP\nSession\\AnonymousModeEnabled=false\n\n"
        "[Preferences]\nConnection\\UPnP=false\nConnection\\ResolvePeerCountries=false\n"
        "WebUI\\LocalHostAuth=false\nWebUI\\CSRFProtection=false\n"
        "WebUI\\HostHeaderValidation=false\n"
        f"WebUI\\Address=127.0.0.1\nWebUI\\Port={ui_port}\n"
    )
    log = job.workdir / "qbittorrent.log"
    cmd = ["qbittorrent-nox", f"--profile={profile}", f"--webui-port={ui_port}"]
    with _process(cmd, log) as proc:
        api = f"http://127.0.0.1:{ui_port}/api/v2"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{api}/app/version", timeout=2) as r:
                    r.read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise ClientFailed(f"web API did not start: {_tail(log)}") from None
                time.sleep(0.2)
        fields = {"savepath": str(out)}
        files = {}
        if job.magnet is not None:
            fields["urls"] = job.magnet
        else:
            assert job.torrent is not None
            files["torrents"] = ("input.torrent", job.torrent)
        status, body = _multipart_post(f"{api}/torrents/add", fields, files)
        if status != 200 or body.strip() != b"Ok.":
            raise ClientFailed(f"torrents/add answered {status} {body[:200]!r}")
        try:
            return _wait_file(job, out / job.name, proc, log)
        except ClientFailed as exc:
            raise ClientFailed(f"{exc}; {_qbittorrent_state(api)}") from None


def _qbittorrent_state(api: str) -> str:
    """What qBittorrent says about its torrent and its trackers, for a failure message."""
    try:
        with urllib.request.urlopen(f"{api}/torrents/info", timeout=5) as r:
            torrents = json.loads(r.read())
        said = []
        for t in torrents:
            with urllib.request.urlopen(f"{api}/torrents/trackers?hash={t['hash']}") as r:
                trackers = [(x["url"], x["status"], x["msg"]) for x in json.loads(r.read())]
            said.append(f"state {t['state']} progress {t['progress']} trackers {trackers}")
        return "; ".join(said) or "no torrent"
    except (OSError, ValueError, KeyError) as exc:
        return f"(web API: {exc})"


def _multipart_post(
    url: str, fields: dict[str, str], files: dict[str, tuple[str, bytes]]
) -> tuple[int, bytes]:
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    for name, (filename, content) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: application/x-bittorrent\r\n\r\n'.encode()
            + content
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# ---- rtorrent through XML-RPC over SCGI


def scgi_xmlrpc(port: int, method: str, *params: object) -> object:
    """One XML-RPC call over SCGI (rtorrent's `network.scgi.open_port`)."""
    body = xmlrpc.client.dumps(params, method).encode()
    headers = {"CONTENT_LENGTH": str(len(body)), "SCGI": "1", "REQUEST_METHOD": "POST"}
    head = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(str(len(head)).encode() + b":" + head + b"," + body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    _, _, payload = answer.partition(b"\r\n\r\n")
    result, _ = xmlrpc.client.loads(payload.decode())
    return result[0]


def rtorrent(job: Job) -> bytes:
    out = job.workdir / "out"
    out.mkdir()
    session = job.workdir / "session"
    session.mkdir()
    scgi = free_port()
    port = free_port()
    rc = job.workdir / "rtorrent.rc"
    rc.write_text(
        f"directory.default.set = {out}\nsession.path.set = {session}\n"
        f"network.port_range.set = {port}-{port}\nnetwork.port_random.set = no\n"
        "dht.mode.set = disable\nprotocol.pex.set = no\ntrackers.use_udp.set = no\n"
        "protocol.encryption.set = allow_incoming,try_outgoing,enable_retry\n"
        f"network.bind_address.set = {job.address}\n"
        f"network.scgi.open_port = 127.0.0.1:{scgi}\nsystem.daemon.set = true\n"
    )
    log = job.workdir / "rtorrent.log"
    cmd = ["rtorrent", "-n", "-o", f"import={rc}"]
    with _process(cmd, log, env={"HOME": str(job.workdir)}) as proc:
        deadline = time.monotonic() + 15
        while True:
            try:
                scgi_xmlrpc(scgi, "system.client_version")
                break
            except (OSError, xmlrpc.client.Error):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise ClientFailed(f"XML-RPC did not start: {_tail(log)}") from None
                time.sleep(0.2)
        scgi_xmlrpc(scgi, "load.start", "", _input_arg(job))
        target = out / job.name
        try:
            return _wait_file(job, target, proc, log)
        except ClientFailed as exc:
            with contextlib.suppress(OSError, xmlrpc.client.Error):
                msgs = scgi_xmlrpc(scgi, "d.multicall2", "", "main", "d.message=")
                raise ClientFailed(f"{exc}; messages {msgs}") from None
            raise


DRIVERS: dict[str, Callable[[Job], bytes]] = {
    "libtorrent": libtorrent,
    "qbittorrent": qbittorrent,
    "aria2": aria2,
    "transmission": transmission,
    "webtorrent": webtorrent,
    "rtorrent": rtorrent,
    "ctorrent": ctorrent,
    "lftp": lftp,
}

EXECUTABLES = {
    "qbittorrent": "qbittorrent-nox",
    "aria2": "aria2c",
    "transmission": "transmission-cli",
    "webtorrent": "node",
    "rtorrent": "rtorrent",
    "ctorrent": "ctorrent",
    "lftp": "lftp",
}


def missing(client: str) -> str | None:
    """Why `client` cannot run here, or None."""
    exe = EXECUTABLES.get(client)
    if exe is not None and shutil.which(exe) is None:
        return f"{exe} is not installed (scripts/test.sh installs it)"
    if client == "libtorrent":
        try:
            import libtorrent  # noqa: F401
        except ImportError:
            return "python libtorrent is not installed"
    return None
