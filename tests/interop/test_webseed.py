"""Real BitTorrent clients download objects from the web seed alone (BEP 19).

Trackers are stripped from the .torrent (the info dict, hence the info-hash, is kept
byte for byte), DHT/LSD/PEX are off, so the only source of bytes is the object's HTTP
URL in `url-list`: this proves the metainfo and the HTTP range path together.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from tests.conftest import LiveServer, make_client, start_server

MiB = 1024 * 1024


def fetch_torrent(endpoint: str, bucket: str, key: str) -> bytes:
    url = f"{endpoint}/{bucket}/{quote(key, safe='/')}?torrent"
    with urllib.request.urlopen(url, timeout=30) as r:  # anonymous
        assert r.status == 200
        body: bytes = r.read()
        return body


def web_seed_only(torrent: bytes) -> bytes:
    """The same torrent without trackers; the info dict must survive byte for byte."""
    t = dict(bdecode(torrent))
    t.pop(b"announce", None)
    t.pop(b"announce-list", None)
    assert t[b"url-list"], "the torrent has no web seed"
    out: bytes = bencode(t)
    assert (
        hashlib.sha1(bencode(t[b"info"])).digest()
        == hashlib.sha1(bencode(bdecode(torrent)[b"info"])).digest()
    )
    assert bencode(t[b"info"]) in torrent
    return out


def put_public(s3: Any, bucket: str, key: str, size: int) -> bytes:
    data = os.urandom(size)
    s3.put_object(Bucket=bucket, Key=key, Body=data, ACL="public-read")
    return data


def lt_download(torrent: bytes, dest: Path, timeout: float = 90.0) -> Path:
    import libtorrent as lt

    ses = lt.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "alert_mask": lt.alert.category_t.error_notification,
        }
    )
    ti = lt.torrent_info(lt.bdecode(torrent))
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = str(dest)
    h = ses.add_torrent(atp)
    deadline = time.monotonic() + timeout
    errors: list[str] = []
    while True:
        st = h.status()
        errors.extend(a.message() for a in ses.pop_alerts())
        if st.is_seeding:
            break
        if st.errc.value() != 0:
            raise AssertionError(f"libtorrent error: {st.errc.message()}")
        if time.monotonic() > deadline:
            raise AssertionError(
                f"libtorrent download timed out at {st.progress:.0%}, state={st.state}, "
                f"alerts={errors[-5:]}"
            )
        time.sleep(0.1)
    ses.remove_torrent(h)
    del ses
    return dest / ti.name()  # single-file torrents: the file is the name


@pytest.fixture(scope="module")
def hybrid_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("ws-hybrid"), env={"S3TORRENT_TORRENT__FORMAT": "hybrid"}
    )
    yield srv
    srv.stop()


@pytest.mark.parametrize("size", [1, 16384, 5 * MiB + 12345])
def test_libtorrent_v1_web_seed_download(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path, size: int
) -> None:
    key = f"seeded/file-{size}.bin"
    data = put_public(s3, bucket, key, size)
    torrent = web_seed_only(fetch_torrent(server.endpoint, bucket, key))
    assert b"pieces" in bdecode(torrent)[b"info"]
    got = lt_download(torrent, tmp_path / "lt")
    assert got.name == f"file-{size}.bin"
    assert hashlib.sha256(got.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [1000, 3 * MiB + 777])
def test_libtorrent_hybrid_web_seed_download(
    hybrid_server: LiveServer, tmp_path: Path, size: int
) -> None:
    s3 = make_client(hybrid_server.endpoint)
    bucket = f"ws-hybrid-{size}"
    s3.create_bucket(Bucket=bucket)
    key = f"dir/sub/hybrid-{size}.bin"
    data = put_public(s3, bucket, key, size)
    torrent = web_seed_only(fetch_torrent(hybrid_server.endpoint, bucket, key))
    info = bdecode(torrent)[b"info"]
    assert info[b"meta version"] == 2 and b"pieces" in info
    got = lt_download(torrent, tmp_path / "lt")
    assert got.name == f"hybrid-{size}.bin"
    assert hashlib.sha256(got.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_aria2c_v1_web_seed_download(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    exe = shutil.which("aria2c")
    assert exe is not None, "aria2c (Debian aria2) is required"
    key = "aria/some file.bin"
    data = put_public(s3, bucket, key, 4 * MiB + 4321)
    torrent_path = tmp_path / "t.torrent"
    torrent_path.write_bytes(web_seed_only(fetch_torrent(server.endpoint, bucket, key)))
    dest = tmp_path / "aria"
    res = subprocess.run(
        [
            exe, "--dir", str(dest), "--seed-time=0", "--bt-enable-lpd=false",
            "--enable-dht=false", "--enable-dht6=false", "--enable-peer-exchange=false",
            "--check-integrity=true", "--file-allocation=none", "--summary-interval=0",
            "--console-log-level=warn", "--bt-stop-timeout=60", "--auto-save-interval=0",
            "--listen-port=51000-51999", str(torrent_path),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    got = (dest / "some file.bin").read_bytes()
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


def test_libtorrent_web_seed_key_with_trailing_slash(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    """A key ending in "/": the web seed URL names the swarm, not the key, so it works."""
    data = put_public(s3, bucket, "folder/", 40_000)
    torrent = web_seed_only(fetch_torrent(server.endpoint, bucket, "folder/"))
    [url] = bdecode(torrent)[b"url-list"]
    assert b"/_webseed/" in url and url.endswith(b"/")
    got = lt_download(torrent, tmp_path / "lt")
    assert got.name == "folder"
    assert hashlib.sha256(got.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
