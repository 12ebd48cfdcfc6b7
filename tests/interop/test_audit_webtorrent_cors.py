"""WebTorrent in headless Chromium on a page of another origin (audit h7, 2026-12-08): the
page fetches `?torrent` from the server across origins, allowed by the bucket's own CORS
rule (not the public default), and downloads through the WebSocket tracker and the web
seed; every byte is checked, and a revocation stops the web seed within a second.

The server and the browser are test_browser_webtorrent's fixtures; the pages are served
from an origin of their own, beside a link to WebTorrent's bundle.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, free_port, make_client
from tests.interop import test_browser_webtorrent as browsers
from tests.interop.test_browser_webtorrent import MiB

pytestmark = browsers.pytestmark
bundle_url = browsers.bundle_url
web_server = browsers.web_server
browser = browsers.browser

# The page: the torrent fetched across origins, WebTorrent with no other peer, the bytes
# counted per wire and hashed when done. `config` is the JSON the test writes into it.
_PAGE = """<!doctype html><meta charset="utf-8"><title>cross-origin</title>
<script type="application/json" id="config">CONFIG</script>
<script type="module">
const config = JSON.parse(document.getElementById("config").textContent);
const state = window.state = {done: false, error: null, fromOrigin: 0, fromPeers: 0,
                              progress: 0, sha256: null, torrentStatus: null};
async function main() {
  const { default: WebTorrent } = await import(config.webtorrent);
  const response = await fetch(config.torrent);
  state.torrentStatus = response.status;
  if (!response.ok) throw new Error("torrent " + response.status);
  const file = new Uint8Array(await response.arrayBuffer());
  const client = new WebTorrent({ tracker: { rtcConfig: { iceServers: [] } } });
  client.on("error", (e) => { state.error = String(e); });
  const torrent = client.add(file, { strategy: "sequential" });
  torrent.on("wire", (wire) => wire.on("download", (n) => {
    if (wire.type === "webSeed") state.fromOrigin += n; else state.fromPeers += n;
  }));
  const timer = setInterval(() => { state.progress = torrent.progress; }, 100);
  torrent.on("done", async () => {
    clearInterval(timer);
    state.progress = 1;
    const data = await (await torrent.files[0].blob()).arrayBuffer();
    const digest = await crypto.subtle.digest("SHA-256", data);
    state.sha256 = Array.from(new Uint8Array(digest),
                              (b) => b.toString(16).padStart(2, "0")).join("");
    state.done = true;
  });
}
main().catch((e) => { state.error = String(e); });
</script>
"""


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The pages' origin (not the server's): a directory of their own beside WebTorrent's
    bundle (a link to it), served on a port of its own."""
    (tmp_path / "webtorrent.min.js").symlink_to(browsers.BUNDLE_DIR / "webtorrent.min.js")
    port = free_port()
    handler = functools.partial(browsers._BundleHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", tmp_path
    httpd.shutdown()
    httpd.server_close()


def _page(site: tuple[str, Path], torrent_url: str, name: str) -> str:
    """A page of the site that downloads torrent_url; its URL."""
    base, root = site
    config = {"webtorrent": f"{base}/webtorrent.min.js", "torrent": torrent_url}
    text = json.dumps(config).replace("<", "\\u003c")
    (root / name).write_text(_PAGE.replace("CONFIG", text))
    return f"{base}/{name}"


def _state(page: Any) -> dict[str, Any]:
    return page.evaluate("window.state")  # type: ignore[no-any-return]


def _put(srv: LiveServer, bucket: str, size: int, origin: str) -> tuple[str, bytes]:
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_cors(
        Bucket=bucket,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": [origin],
                    "AllowedMethods": ["GET", "HEAD"],
                    "AllowedHeaders": ["*"],
                    "ExposeHeaders": ["Content-Range", "Content-Length", "ETag"],
                }
            ]
        },
    )
    data = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="blob.bin", Body=data, ACL="public-read")
    return f"{srv.endpoint}/{bucket}/blob.bin?torrent", data


@pytest.fixture
def pages(browser: Any) -> Any:
    opened: list[Any] = []

    def open_page(url: str) -> Any:
        page = browser.new_context().new_page()
        page.goto(url)
        opened.append(page)
        return page

    yield open_page
    for page in opened:
        page.context.close()


def _wait(page: Any, done: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = _state(page)
        assert not state["error"], state
        if done(state):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.2)


def test_a_page_of_another_origin_downloads_through_the_bucket_cors_rule(
    web_server: LiveServer, site: tuple[str, Path], pages: Any
) -> None:
    """The bucket's rule names the page's origin: the `.torrent` and every web-seed range
    are readable across origins, and the file arrives whole (its SHA-256 in the browser).
    A bucket whose rule names another origin: the page cannot read its `.torrent`."""
    origin = site[0]
    size = 12 * MiB
    torrent, data = _put(web_server, "h7-cross", size, origin)
    page = pages(_page(site, torrent, "h7-cross.html"))
    state = _wait(page, lambda s: s["done"], 90)
    assert state["sha256"] == hashlib.sha256(data).hexdigest()
    assert state["fromOrigin"] == size and state["fromPeers"] == 0
    # The negative control: the same page, a bucket whose rule names another origin.
    other, _ = _put(web_server, "h7-elsewhere", MiB, "https://elsewhere.example")
    refused = pages(_page(site, other, "h7-elsewhere.html"))
    deadline = time.monotonic() + 30
    while not (state := _state(refused))["error"]:
        assert time.monotonic() < deadline, state
        time.sleep(0.2)
    assert state["torrentStatus"] is None and "fetch" in state["error"].lower(), state


def test_a_revocation_stops_a_cross_origin_download_within_a_second(
    web_server: LiveServer, site: tuple[str, Path], pages: Any
) -> None:
    """PutObjectAcl private while the page downloads from the web seed alone: one second
    later the web seed sends nothing more (responses under way are cut, new ones refused),
    and the download never completes."""
    origin = site[0]
    size = 160 * MiB
    torrent, _ = _put(web_server, "h7-revoked", size, origin)
    page = pages(_page(site, torrent, "h7-revoked.html"))
    _wait(page, lambda s: 4 * MiB <= s["fromOrigin"], 90)
    make_client(web_server.endpoint).put_object_acl(
        Bucket="h7-revoked", Key="blob.bin", ACL="private"
    )
    revoked = time.monotonic()
    time.sleep(1.0)
    after_a_second = _state(page)
    assert after_a_second["fromOrigin"] < size, "finished before the revocation could act"
    time.sleep(3.0)
    later = _state(page)
    print(
        f"\nrevoked at {after_a_second['fromOrigin'] / MiB:.1f} MiB of {size // MiB} MiB; "
        f"sampled {time.monotonic() - revoked:.1f} s after"
    )
    assert later["fromOrigin"] == after_a_second["fromOrigin"], (after_a_second, later)
    assert not later["done"]
