"""Objects with awkward keys, downloaded by every real client from the torrent as served.

`GET /bucket/key?torrent` (anonymous) of a public object whose key is hard to turn into a
file name: longer than a file system takes, right-to-left overrides, characters or device
names Windows forbids (which Transmission replaces on every system), control characters,
path traversal. Each client must save the file under exactly the torrent's `name`, byte for
byte: a name some clients cannot create (aria2, Transmission, rtorrent and WebTorrent failed
on a 304-byte name) or save under another name (libtorrent cut it, Transmission renamed
`con.txt` to `con_.txt`, libtorrent dropped the override of `invoice<RLO>fdp.exe`) is a name
that does not work.

The same keys as v2 torrents (BEP 52: the name is also the file tree's key) with the
clients that read them, and from the web seed alone (the torrent without its trackers): each client
appends the name to `url-list` in its own escaping, which the web seed must take.

Awkward objects too: sizes around a piece (1 byte, a piece -1, +1), a multipart upload
whose odd part sizes never meet a piece boundary, a CopyObject and an UploadPartCopy of
it, SSE-S3, and a gzip-encoded object (the torrent is of the bytes stored).

All cells run at once in a thread pool, as in test_client_matrix.py; each is then its own
test.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from s3torrent.torrent.metainfo import MAX_NAME_BYTES
from tests.conftest import LiveServer, make_client, start_server
from tests.interop.clients import Job, missing
from tests.interop.test_client_matrix import PASS_TIMEOUT, run_cell, without

CLIENTS = ("libtorrent", "qbittorrent", "aria2", "transmission", "webtorrent", "rtorrent")
WEB_SEED_CLIENTS = tuple(c for c in CLIENTS if c != "rtorrent")  # rtorrent has no BEP 19
# "v2": the torrent as served by a server of `format = "v2"` (BEP 52: the name is also the
# key of the file tree), for the clients that read v2.
V2_CLIENTS = ("libtorrent", "qbittorrent")
MODES = ("torrent", "webseed", "v2")
BUCKET = "awkward"
CHROMIUM = Path("/usr/bin/chromium")
SIZE = 40 * 1024 + 321  # three 16 KiB pieces, the last one short

# key → the name every client must save it under
KEYS: dict[str, str] = {
    # One path segment past what a file system takes (255 bytes): cut before the extension.
    "long/" + "x" * 300 + ".bin": "x" * (MAX_NAME_BYTES - 4) + ".bin",
    # Multi-byte characters: cut on a character boundary.
    "long/" + "é" * 150 + ".txt": "é" * ((MAX_NAME_BYTES - 4) // 2) + ".txt",
    # A right-to-left override shows "invoiceexe.pdf"; libtorrent drops it, others keep it.
    "rtl/invoice\u202efdp.exe": "invoicefdp.exe",
    "win/a:b*c<d>e|f?g.bin": "a_b_c_d_e_f_g.bin",
    "win/con.txt": "con_.txt",
    "win/ trail. .": "trail",
    "ctl/a\x85b\tc.bin": "a_b_c.bin",
    # Fine before: unicode (NFD), emoji, spaces, `%`, `#`, `+`, `'`; stays as it is.
    "uni/cafe\u0301 \U0001f600 100% #1+2 'x'.bin": "cafe\u0301 \U0001f600 100% #1+2 'x'.bin",
    # Traversal: only the last non-empty segment, never a path.
    "../../etc/": "etc",
}


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as r:  # anonymous
        body: bytes = r.read()
    return body


def _start(tmp: Path, fmt: str) -> LiveServer:
    srv = start_server(
        tmp,
        env={
            "S3TORRENT_TORRENT__FORMAT": fmt,
            "S3TORRENT_SEEDER__MODE": "fastest",
            "S3TORRENT_TRACKER__MIN_INTERVAL": "5",
        },
        workers=1,
    )
    make_client(srv.endpoint).create_bucket(Bucket=BUCKET)
    return srv


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = _start(tmp_path_factory.mktemp("awkward"), "v1")  # Transmission 3 takes no BEP 52
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def v2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = _start(tmp_path_factory.mktemp("awkward-v2"), "v2")
    try:
        yield srv
    finally:
        srv.stop()


Cell = tuple[str, str, str]  # client, mode, key


def _job(srv: LiveServer, cell: Cell, index: int, root: Path) -> tuple[Job, str]:
    """Upload the cell's own object (its own swarm) and fetch its torrent as served (in
    mode `webseed`, without its trackers: the web seed alone, asked for the client's own
    spelling of the name appended to `url-list`)."""
    client, mode, key = cell
    s3 = make_client(srv.endpoint)
    cell_key = f"{client}-{mode}/{key}"
    data = os.urandom(SIZE)
    s3.put_object(Bucket=BUCKET, Key=cell_key, Body=data, ACL="public-read")
    torrent = fetch(f"{srv.endpoint}/{BUCKET}/{quote(cell_key)}?torrent")
    info = bdecode(torrent)[b"info"]
    assert info[b"x-amz-key"].decode() == cell_key
    if mode == "webseed":
        torrent = without(torrent, b"announce", b"announce-list")
    name = info[b"name"].decode()
    workdir = root / f"{client}-{mode}-{index}"
    workdir.mkdir()
    job = Job(
        torrent=torrent, magnet=None, name=name, data=data, workdir=workdir, timeout=PASS_TIMEOUT
    )
    return job, name


@pytest.fixture(scope="module")
def cells(
    server: LiveServer, v2_server: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[Cell, tuple[str, str]]:
    """cell → (the torrent's name, "" or why the client did not save it so)."""
    root = tmp_path_factory.mktemp("awkward-cells")
    results: dict[Cell, tuple[str, str]] = {}
    jobs: dict[Cell, Job] = {}
    for client in CLIENTS:
        why = missing(client)
        for mode in MODES:
            if client not in {"webseed": WEB_SEED_CLIENTS, "v2": V2_CLIENTS}.get(mode, CLIENTS):
                continue
            for index, key in enumerate(KEYS):
                cell = (client, mode, key)
                if why is not None:
                    results[cell] = ("", why)
                    continue
                job, name = _job(v2_server if mode == "v2" else server, cell, index, root)
                jobs[cell] = job
                results[cell] = (name, "")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = {cell: pool.submit(run_cell, cell[0], job) for cell, job in jobs.items()}
        for cell, future in futures.items():
            outcome = future.result()
            if not outcome.ok:
                saved = sorted(p.name for p in (jobs[cell].workdir / "out").glob("*"))
                results[cell] = (results[cell][0], f"{outcome.detail[-300:]}; saved {saved}")
    return results


@pytest.mark.parametrize("key", list(KEYS), ids=range(len(KEYS)))
@pytest.mark.parametrize("client", CLIENTS)
def test_client_saves_an_awkward_key_under_the_torrents_name(
    cells: dict[Cell, tuple[str, str]], client: str, key: str
) -> None:
    name, failure = cells[(client, "torrent", key)]
    assert not failure, f"{client} did not save {name!r}: {failure}"
    assert name == KEYS[key]
    assert len(name.encode()) <= MAX_NAME_BYTES


@pytest.mark.parametrize("key", list(KEYS), ids=range(len(KEYS)))
@pytest.mark.parametrize("client", V2_CLIENTS)
def test_v2_client_saves_an_awkward_key_under_the_torrents_name(
    cells: dict[Cell, tuple[str, str]], client: str, key: str
) -> None:
    name, failure = cells[(client, "v2", key)]
    assert not failure, f"{client} did not save {name!r} (v2): {failure}"
    assert name == KEYS[key]


@pytest.mark.parametrize("key", list(KEYS), ids=range(len(KEYS)))
@pytest.mark.parametrize("client", WEB_SEED_CLIENTS)
def test_web_seed_alone_serves_an_awkward_key(
    cells: dict[Cell, tuple[str, str]], client: str, key: str
) -> None:
    """Clients append the name to `url-list` each in its own escaping (or none: `%`, `#`
    and spaces raw); the web seed ignores what follows the swarm id."""
    name, failure = cells[(client, "webseed", key)]
    assert not failure, f"{client} did not save {name!r} from the web seed: {failure}"


def test_torrent_served_after_its_info_changed_is_tracked_and_seeded(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A version hashed as a hybrid, served as v1 after a restart with `format = "v1"` (or
    under a name a newer rule makes): the torrent's info-hash is not the one stored with
    the hashes, by which announces, handshakes and the web seed find a version. It was
    "unregistered torrent" everywhere, and no client could download it."""
    why = missing("libtorrent")
    if why is not None:
        pytest.fail(why)
    root = tmp_path_factory.mktemp("changed-info")
    srv = start_server(root, env={"S3TORRENT_TORRENT__FORMAT": "hybrid"}, workers=1)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket=BUCKET)
        data = os.urandom(SIZE)
        s3.put_object(Bucket=BUCKET, Key="old.bin", Body=data, ACL="public-read")
        hybrid = fetch(f"{srv.endpoint}/{BUCKET}/old.bin?torrent")
        srv.stop()
        srv.env["S3TORRENT_TORRENT__FORMAT"] = "v1"
        srv.start()
        torrent = fetch(f"{srv.endpoint}/{BUCKET}/old.bin?torrent")
        assert bdecode(torrent)[b"info"] != bdecode(hybrid)[b"info"]
        workdir = root / "libtorrent"
        workdir.mkdir()
        job = Job(
            torrent=torrent, magnet=None, name="old.bin", data=data, workdir=workdir, timeout=30
        )
        outcome = run_cell("libtorrent", job)
        assert outcome.ok, outcome.detail
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "key",
    ["pct/100%41.bin", "pct/x%E2%80%AEfdp.exe", "pct/a%2F..%2Fb.bin", "pct/caf\u00e9 %41.bin"],
)
def test_browser_saves_the_torrent_file_under_the_name(server: LiveServer, key: str) -> None:
    """Chromium percent-decodes a `filename="..."` without `filename*` (RFC 6266 appendix D
    warns of it): `100%41.bin.torrent` was saved as `100A.bin.torrent`, and `%E2%80%AE`
    became a right-to-left override in the saved name."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (scripts/test.sh installs it)")
    make_client(server.endpoint).put_object(
        Bucket=BUCKET, Key=key, Body=b"x" * 1000, ACL="public-read"
    )
    url = f"{server.endpoint}/{BUCKET}/{quote(key)}?torrent"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_context(accept_downloads=True).new_page()
            page.set_default_timeout(20_000)
            page.goto(f"{server.endpoint}/_health")
            with page.expect_download() as download:
                page.evaluate(
                    "u => { const a = document.createElement('a'); a.href = u;"
                    " document.body.appendChild(a); a.click() }",
                    url,
                )
            saved = download.value.suggested_filename
        finally:
            browser.close()
    assert saved == key.rsplit("/", 1)[-1] + ".torrent"


# ---- awkward objects: sizes around a piece, assembled from parts, copied, encrypted

PIECE = 16 * 1024  # the piece length of every object below 32 MiB
OBJECT_CLIENTS = ("libtorrent", "aria2", "transmission", "webtorrent")


def _put_awkward_objects(s3: Any, prefix: str) -> dict[str, bytes]:
    """key → bytes of each awkward object, all public."""
    objects: dict[str, bytes] = {}
    for size in (1, PIECE - 1, PIECE, PIECE + 1, 2 * PIECE + 1):
        objects[f"{prefix}size-{size}"] = data = os.urandom(size)
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}size-{size}", Body=data, ACL="public-read")
    # Parts of odd sizes, so no part boundary falls on a piece boundary.
    parts = [os.urandom(5 * 1024 * 1024 + 7), os.urandom(5 * 1024 * 1024 + 12345), os.urandom(3333)]
    whole = b"".join(parts)
    objects[f"{prefix}multipart"] = whole
    _multipart(s3, f"{prefix}multipart", [{"Body": part} for part in parts])
    objects[f"{prefix}copy"] = whole
    s3.copy_object(
        Bucket=BUCKET,
        Key=f"{prefix}copy",
        CopySource={"Bucket": BUCKET, "Key": f"{prefix}multipart"},
        ACL="public-read",
    )
    objects[f"{prefix}part-copy"] = whole[1 : 5 * 1024 * 1024 + 2] + b"tail"
    source = {"Bucket": BUCKET, "Key": f"{prefix}multipart"}
    _multipart(
        s3,
        f"{prefix}part-copy",
        [
            {"CopySource": source, "CopySourceRange": f"bytes=1-{5 * 1024 * 1024 + 1}"},
            {"Body": b"tail"},
        ],
    )
    objects[f"{prefix}sse-s3"] = data = os.urandom(3 * PIECE + 5)
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{prefix}sse-s3",
        Body=data,
        ACL="public-read",
        ServerSideEncryption="AES256",
    )
    # Stored as sent: the torrent is of these bytes, and the web seed must not say gzip.
    objects[f"{prefix}gzip"] = data = gzip.compress(os.urandom(3 * PIECE))
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{prefix}gzip",
        Body=data,
        ACL="public-read",
        ContentEncoding="gzip",
        ContentType="text/plain",
    )
    return objects


def _multipart(s3: Any, key: str, parts: list[dict[str, Any]]) -> None:
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ACL="public-read")["UploadId"]
    done = []
    for number, part in enumerate(parts, 1):
        where = {"Bucket": BUCKET, "Key": key, "UploadId": upload, "PartNumber": number}
        if "CopySource" in part:
            etag = s3.upload_part_copy(**where, **part)["CopyPartResult"]["ETag"]
        else:
            etag = s3.upload_part(**where, **part)["ETag"]
        done.append({"ETag": etag, "PartNumber": number})
    s3.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": done}
    )


@pytest.fixture(scope="module")
def object_cells(
    server: LiveServer, v2_server: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str, str], str]:
    """(client, format, object) → "" or why the client did not get the object's bytes."""
    root = tmp_path_factory.mktemp("objects")
    jobs: dict[tuple[str, str, str], Job] = {}
    results: dict[tuple[str, str, str], str] = {}
    plan = [(c, "v1", server) for c in OBJECT_CLIENTS] + [(c, "v2", v2_server) for c in V2_CLIENTS]
    for client, fmt, srv in plan:
        why = missing(client)
        objects = _put_awkward_objects(make_client(srv.endpoint), f"{client}/objects/")
        for key, data in objects.items():
            what = key.rsplit("/", 1)[-1]
            if why is not None:
                results[(client, fmt, what)] = why
                continue
            workdir = root / f"{client}-{fmt}-{what}"
            workdir.mkdir()
            torrent = fetch(f"{srv.endpoint}/{BUCKET}/{quote(key)}?torrent")
            jobs[(client, fmt, what)] = Job(
                torrent=torrent,
                magnet=None,
                name=what,
                data=data,
                workdir=workdir,
                timeout=PASS_TIMEOUT,
            )
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = {cell: pool.submit(run_cell, cell[0], job) for cell, job in jobs.items()}
        for cell, future in futures.items():
            results[cell] = future.result().detail
    return results


OBJECTS = [
    *(f"size-{size}" for size in (1, PIECE - 1, PIECE, PIECE + 1, 2 * PIECE + 1)),
    "multipart",
    "copy",
    "part-copy",
    "sse-s3",
    "gzip",
]


@pytest.mark.parametrize("what", OBJECTS)
@pytest.mark.parametrize(
    ("client", "fmt"), [(c, "v1") for c in OBJECT_CLIENTS] + [(c, "v2") for c in V2_CLIENTS]
)
def test_client_downloads_an_awkward_object(
    object_cells: dict[tuple[str, str, str], str], client: str, fmt: str, what: str
) -> None:
    failure = object_cells[(client, fmt, what)]
    assert not failure, f"{client} ({fmt}) did not get {what}: {failure}"
