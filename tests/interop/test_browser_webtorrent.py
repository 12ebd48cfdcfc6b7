"""WebTorrent in headless Chromium through the download page (`?torrent&format=html`).

Debian's chromium (`/usr/bin/chromium`, never a downloaded browser) driven by Playwright for
Python; WebTorrent's browser bundle comes from npm (scripts/test.sh installs it) and is
served from a local port, as an operator would set `torrent.webtorrent_script_url`. Every
browser context is its own WebRTC peer; they find each other through our WebSocket tracker.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_metering import admin_totals
from tests.conftest import LiveServer, free_port, make_client, start_server
from tests.interop.clients import NODE_PREFIX

CHROMIUM = Path("/usr/bin/chromium")
BUNDLE_DIR = NODE_PREFIX / "node_modules" / "webtorrent" / "dist"
MiB = 1 << 20
# Loopback WebRTC works without flags; mDNS host candidates off all the same, in case a
# machine cannot resolve .local names.
CHROMIUM_ARGS = ["--disable-features=WebRtcHideLocalIpsWithMdns"]

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
    pytest.mark.skipif(
        not (BUNDLE_DIR / "webtorrent.min.js").exists(), reason="webtorrent (npm) not installed"
    ),
]


class _BundleHandler(http.server.SimpleHTTPRequestHandler):
    """Serves WebTorrent's dist/ with CORS: a module script from another origin needs it."""

    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def bundle_url() -> Iterator[str]:
    port = free_port()
    handler = functools.partial(_BundleHandler, directory=str(BUNDLE_DIR))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/webtorrent.min.js"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory, bundle_url: str) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("browsers"),
        env={
            "S3TORRENT_TORRENT__WEBTORRENT_SCRIPT_URL": bundle_url,
            # Browsers on one machine: no STUN server to wait for.
            "S3TORRENT_TORRENT__WEBTORRENT_ICE_SERVERS": "[]",
        },
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def put_public(srv: LiveServer, bucket: str, size: int) -> tuple[str, bytes]:
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket=bucket)
    data = os.urandom(size)
    s3.put_object(Bucket=bucket, Key="blob.bin", Body=data, ACL="public-read")
    return f"{srv.endpoint}/{bucket}/blob.bin?torrent&format=html", data


def open_pages(browser: Any, url: str, n: int) -> list[Any]:
    pages = []
    for _ in range(n):
        page = browser.new_context().new_page()
        page.goto(url)
        pages.append(page)
    return pages


def states(pages: list[Any]) -> list[dict[str, Any]]:
    return [page.evaluate("window.s3torrent") for page in pages]


def wait_all_done(pages: list[Any], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        now = states(pages)
        errors = [s["error"] for s in now if s["error"]]
        assert not errors, errors
        if all(s["done"] for s in now):
            return now
        assert time.monotonic() < deadline, [(s["progress"], s["peers"]) for s in now]
        time.sleep(0.5)


def close(pages: list[Any]) -> None:
    for page in pages:
        page.context.close()


def test_one_browser_downloads_from_the_web_seed(browser: Any, web_server: LiveServer) -> None:
    size = 20 * MiB
    url, data = put_public(web_server, "browser-one", size)
    pages = open_pages(browser, url, 1)
    try:
        [state] = wait_all_done(pages, 90)
        assert state["sha256"] == hashlib.sha256(data).hexdigest()
        assert state["fromOrigin"] == size and state["fromPeers"] == 0
        print(f"\none browser, 20 MiB from the web seed: {state['seconds']:.1f} s")
    finally:
        close(pages)
    # Metered in the web seed's own channel, apart from plain GETs.
    totals: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + 10
    while totals.get(("GetObject-WebSeed", "DataTransfer-Out-Bytes"), 0) < size:
        assert time.monotonic() < deadline, totals
        time.sleep(0.3)
        totals = admin_totals(web_server, "browser-one")
    assert totals[("GetObject-WebSeed", "DataTransfer-Out-Bytes")] == size
    assert ("GetObject", "DataTransfer-Out-Bytes") not in totals


def test_four_browsers_share_one_copy_from_the_origin(browser: Any, web_server: LiveServer) -> None:
    size = 64 * MiB
    url, data = put_public(web_server, "browser-swarm", size)
    pages = open_pages(browser, url, 4)
    try:
        done = wait_all_done(pages, 240)
    finally:
        close(pages)
    digest = hashlib.sha256(data).hexdigest()
    assert [s["sha256"] for s in done] == [digest] * 4
    origin = sum(s["fromOrigin"] for s in done)
    ratio = origin / size
    seconds = sorted(s["seconds"] for s in done)
    print(
        f"\nfour browsers, 64 MiB: origin bytes / size = {ratio:.2f}, "
        f"from peers {sum(s['fromPeers'] for s in done) / MiB:.0f} MiB, "
        f"completion {seconds[0]:.1f}-{seconds[-1]:.1f} s"
    )
    assert ratio <= 1.5


def test_revocation_stops_the_browser_swarm(browser: Any, web_server: LiveServer) -> None:
    size = 32 * MiB
    url, _ = put_public(web_server, "browser-revoked", size)
    pages = open_pages(browser, url, 2)
    try:
        deadline = time.monotonic() + 60
        while max(s["progress"] for s in states(pages)) < 0.2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        make_client(web_server.endpoint).put_object_acl(
            Bucket="browser-revoked", Key="blob.bin", ACL="private"
        )
        # Browsers may still trade what they hold; the origin sends nothing more, so the
        # swarm stalls short of the end.
        time.sleep(4)
        before = states(pages)
        time.sleep(4)
        after = states(pages)
        assert [s["progress"] for s in after] == [s["progress"] for s in before]
        assert not any(s["done"] for s in after)
        assert all(s["progress"] < 1 for s in after)
        warnings = [p.inner_text("#warning") for p in pages]
        assert all("no longer public" in w for w in warnings), warnings
    finally:
        close(pages)
