"""Browsers sharing one public object: WebTorrent's download page against plain GETs."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import statistics
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import servers
from bench.harness import Context, Row, Samples, Target, Unavailable, alternate, compare

TITLE = "Browser swarm (WebTorrent)"
BROWSERS = 4
CHROMIUM = Path("/usr/bin/chromium")
BUNDLE = (
    Path(os.environ.get("S3TORRENT_TEST_NODE_PREFIX", Path.home() / ".cache/s3torrent-interop"))
    / "node_modules/webtorrent/dist/webtorrent.min.js"
)
DESCRIPTION = (
    f"{BROWSERS} headless Chromium contexts (Debian's chromium, driven by Playwright) start "
    "together on one public object: through the download page (`?torrent&format=html`: "
    "WebTorrent 2.8.5 with the web seed and the WebSocket tracker, browsers trading pieces "
    "over WebRTC), or with a plain `fetch()` of the object's URL. Completion is the median "
    "of the browsers' times (page: from the page's start to the last piece); the origin "
    "ratio is the bytes the origin sent to browsers ÷ the object size (plain GETs: "
    f"{BROWSERS}). Target for the origin ratio: ≤ 1.5 copies. On a busy 2-core machine the "
    "browsers share the cores with the server, which costs WebTorrent most (one HTTP "
    "request per 16-32 KiB block from the web seed)."
)

_WAIT_DONE = """async (limit) => {
  const started = performance.now();
  while (!(window.s3torrent && (window.s3torrent.done || window.s3torrent.error))) {
    if (performance.now() - started > limit) return null;
    await new Promise((r) => setTimeout(r, 200));
  }
  return window.s3torrent;
}"""

_FETCH = """async (url) => {
  const started = performance.now();
  const body = await (await fetch(url)).arrayBuffer();
  return [body.byteLength, (performance.now() - started) / 1000];
}"""


class _Bundle(http.server.SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _bundle_server() -> Iterator[str]:
    handler = functools.partial(_Bundle, directory=str(BUNDLE.parent))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/{BUNDLE.name}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _check() -> None:
    if not CHROMIUM.exists():
        raise Unavailable("Debian's chromium is not installed (/usr/bin/chromium)")
    if not BUNDLE.exists():
        raise Unavailable(f"WebTorrent's browser bundle is not installed ({BUNDLE})")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        raise Unavailable("playwright (pip) is not installed") from e


def run(ctx: Context) -> list[Row]:
    size = ctx.size(64 << 20, 16 << 20)
    try:
        _check()
    except Unavailable as e:
        return [Row("completion", "s", None, ours_error=str(e))]
    from playwright.sync_api import sync_playwright

    ratios: list[float] = []
    counter = [0]
    with (
        _bundle_server() as bundle,
        servers.s3torrent(
            ctx,
            env={
                "S3TORRENT_TORRENT__WEBTORRENT_SCRIPT_URL": bundle,
                "S3TORRENT_TORRENT__WEBTORRENT_ICE_SERVERS": "[]",
            },
            name="s3torrent-browsers",
        ) as ep,
        sync_playwright() as p,
    ):
        s3 = ep.client()
        s3.create_bucket(Bucket="browsers")
        browser = p.chromium.launch(executable_path=str(CHROMIUM))

        def fresh_object() -> str:
            # A new object each run: the web seed's memory of what it sent starts empty.
            counter[0] += 1
            key = f"object-{counter[0]}.bin"
            s3.put_object(Bucket="browsers", Key=key, Body=os.urandom(size), ACL="public-read")
            return key

        def pages(n: int) -> list[Any]:
            return [browser.new_context().new_page() for _ in range(n)]

        def close(opened: list[Any]) -> None:
            for page in opened:
                page.context.close()

        def webtorrent() -> float:
            key = fresh_object()
            opened = pages(BROWSERS)
            try:
                for page in opened:
                    page.goto(f"{ep.url}/browsers/{key}?torrent&format=html")
                limit = 300_000  # ms; a started run finishes (the time box stops new runs)
                states = [page.evaluate(_WAIT_DONE, limit) for page in opened]
            finally:
                close(opened)
            if any(s is None or s["error"] or not s["done"] for s in states):
                raise RuntimeError(f"a browser did not finish: {states}")
            ratios.append(sum(s["fromOrigin"] for s in states) / size)
            return statistics.median(s["seconds"] for s in states)

        def plain_get() -> float:
            key = fresh_object()
            opened = pages(BROWSERS)
            try:
                for page in opened:
                    page.goto(f"{ep.url}/_health")
                # Started together, as the page runs are: each evaluate is awaited in turn,
                # so start them all first (void: nothing to await) and collect afterwards.
                for page in opened:
                    page.evaluate(f"void (window.got = ({_FETCH})('/browsers/{key}'))")
                results = [page.evaluate("window.got") for page in opened]
            finally:
                close(opened)
            if any(length != size for length, _ in results):
                raise RuntimeError(f"short bodies: {[length for length, _ in results]}")
            return statistics.median(seconds for _, seconds in results)

        samples = alternate(ctx, [("webtorrent page", webtorrent), ("plain GET", plain_get)])
        browser.close()
    page_times, get_times = samples
    origin = Samples("webtorrent page", values=ratios, error=page_times.error)
    copies = Samples("plain GET", values=[float(BROWSERS)] * len(get_times.values))
    mib = size >> 20
    return [
        compare(f"median completion, {BROWSERS} browsers, {mib} MiB", "s", page_times, get_times),
        compare(
            f"origin bytes ÷ object size, {BROWSERS} browsers",
            "copies",
            origin,
            copies,
            Target(1.5 / BROWSERS, higher_is_better=False),
            note="target: ≤ 1.5 copies from the origin",
        ),
    ]
