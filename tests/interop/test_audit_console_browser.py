"""The console and the download page in headless Chromium, attacked by a bucket owner.

Objects are served from the console's own origin, so a hostile HTML object is a same-origin
page: what it may do to a console window is what these tests pin down. Hostile object keys
are shown by the console and the download page: no markup in them may run.

Debian's chromium driven by Playwright for Python, as tests/interop/test_console_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, make_client, start_server

CHROMIUM = Path("/usr/bin/chromium")

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.interop,
    pytest.mark.timeout(150),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]

# Markup that sets window.__xss (or opens a dialog) if it is ever parsed as HTML or script.
HOSTILE_KEYS = [
    "<img src=x onerror=window.__xss=1>.txt",
    '"><script>window.__xss=2</script>.txt',
    "javascript:window.__xss=3;.txt",
    "dir/<svg onload=window.__xss=4>/x.txt",
    "\u202egnp.exe<b onmouseover=window.__xss=5>",
]

# A bucket owner's HTML object: it opens the console (a click: no popup blocker) and reads
# whatever the console window holds, into its own title, where the test looks for it.
THIEF = """<!doctype html><html><head><title>waiting</title></head><body>
<button id="open">open the console</button>
<script>
let w = null;
document.getElementById("open").addEventListener("click", () => {
  w = window.open("/_console/", "console");
  setInterval(() => {
    try {
      const typed = w.document.getElementById("secret-key");
      const kept = w.sessionStorage.getItem("s3torrent.console");
      document.title = "got:" + (kept || (typed && typed.value) || "");
    } catch (e) {
      document.title = "blocked:" + e.name;
    }
  }, 50);
});
</script></body></html>"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    s = start_server(tmp_path_factory.mktemp("audit-console-browser"))
    yield s
    s.stop()


@pytest.fixture
def browser(srv: LiveServer) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


def _page(browser: Any) -> Any:
    page = browser.new_context().new_page()
    page.set_default_timeout(20_000)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.dialogs = dialogs
    return page


def _publish_page(srv: LiveServer, bucket: str, html: str) -> None:
    """A bucket owner's public HTML object, `bucket`/index.html."""
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket,
        Key="index.html",
        Body=html.encode(),
        ContentType="text/html",
        ACL="public-read",
    )


def _sign_in(page: Any, srv: LiveServer) -> None:
    page.goto(f"{srv.endpoint}/_console/")
    page.fill("#access-key", ROOT_AK)
    page.fill("#secret-key", ROOT_SK)
    page.click("#signin button[type=submit]")
    page.wait_for_url("**/_console/buckets")


def test_a_hostile_object_cannot_reach_into_a_console_it_opens(
    srv: LiveServer, browser: Any
) -> None:
    """An HTML object is same-origin with the console: without a Cross-Origin-Opener-Policy
    the window it opens stays scriptable, and what the user types there (the secret) and
    what the console keeps (the day's signing key) are the object's to read and send."""
    _publish_page(srv, "hostile-site", THIEF)
    page = _page(browser)
    page.goto(f"{srv.endpoint}/hostile-site/index.html")
    with page.expect_popup() as popup_info:
        page.click("#open")
    console = popup_info.value
    console.wait_for_selector("#secret-key")
    console.fill("#access-key", ROOT_AK)
    console.fill("#secret-key", ROOT_SK)
    console.click("#signin button[type=submit]")
    console.wait_for_url("**/_console/buckets")
    console.wait_for_selector("#buckets")
    # Bounded: the thief polls every 50 ms; give it well over that to report.
    page.wait_for_function("document.title !== 'waiting'", timeout=5_000)
    console.wait_for_timeout(500)
    title = page.title()
    assert ROOT_SK not in title, title
    assert "accessKey" not in title, title


def test_hostile_keys_are_text_in_the_console(srv: LiveServer, browser: Any) -> None:
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket="hostile-keys")
    for key in HOSTILE_KEYS:
        s3.put_object(Bucket="hostile-keys", Key=key, Body=b"x", ACL="public-read")
    page = _page(browser)
    _sign_in(page, srv)
    page.goto(f"{srv.endpoint}/_console/objects?bucket=hostile-keys")
    page.wait_for_selector("#objects")
    shown = page.text_content("#objects")
    for key in HOSTILE_KEYS:
        assert (key if "/" not in key else key.split("/")[0] + "/") in shown
    page.goto(f"{srv.endpoint}/_console/objects?bucket=hostile-keys&prefix=dir/")
    page.wait_for_selector("#objects")
    # Each key's own page: its name is the heading, its torrent link is built from it.
    for key in HOSTILE_KEYS:
        page.goto(
            f"{srv.endpoint}/_console/object?" + urlencode({"bucket": "hostile-keys", "key": key})
        )
        page.wait_for_selector("#torrent-link")
        assert page.text_content("h1") == key
        href = page.get_attribute("#torrent-link", "href")
        assert href.startswith(srv.endpoint + "/hostile-keys/")
    assert page.evaluate("window.__xss") is None
    assert page.dialogs == []


def test_hostile_keys_are_text_on_the_download_page(srv: LiveServer, browser: Any) -> None:
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket="hostile-downloads")
    page = _page(browser)
    for key in [*HOSTILE_KEYS, "</script><script>window.__xss=6</script>"]:
        s3.put_object(Bucket="hostile-downloads", Key=key, Body=b"x" * 100, ACL="public-read")
        page.goto(f"{srv.endpoint}/hostile-downloads/{quote(key, safe='')}?torrent&format=html")
        page.wait_for_selector("h1")
        # The torrent's name (a file name: some characters are replaced), shown as text.
        assert page.text_content("h1").strip()
        assert page.locator("h1 *").count() == 0
        assert page.evaluate("window.__xss") is None
    assert page.dialogs == []


# A bucket owner's HTML object opened in the console's own tab, after sign-in: it shares
# the tab's sessionStorage, and it may fetch console pages. It reports what it found.
SAME_TAB_THIEF = """<!doctype html><html><head><title>waiting</title></head><body><script>
(async () => {
  const kept = sessionStorage.getItem("s3torrent.console") || "";
  const page = await (await fetch("/_console/buckets", { credentials: "include" })).text();
  const wrap = (page.match(/data-wrap="([^"]*)"/) || [null, ""])[1];
  document.title = "kept:" + kept + "|wrap:" + wrap;
})();
</script></body></html>"""


def _signing_key_b64(secret: str, region: str = "us-east-1") -> str:
    day = datetime.now(UTC).strftime("%Y%m%d")
    key = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return base64.b64encode(key).decode()


def test_a_hostile_object_in_the_consoles_own_tab_finds_no_usable_key(
    srv: LiveServer, browser: Any
) -> None:
    """The tab's sessionStorage is the object's to read: the console keeps the signing key
    there only sealed, under a wrap key the object's fetch of a console page does not get
    (Fetch Metadata says it is a script's fetch, not a navigation)."""
    _publish_page(srv, "same-tab-thief", SAME_TAB_THIEF)
    page = _page(browser)
    _sign_in(page, srv)
    page.wait_for_selector("#buckets")
    # The session survives navigation between console pages.
    page.goto(f"{srv.endpoint}/_console/objects?bucket=same-tab-thief")
    page.wait_for_selector("#objects")
    page.goto(f"{srv.endpoint}/same-tab-thief/index.html")
    page.wait_for_function("document.title !== 'waiting'", timeout=10_000)
    title = page.title()
    kept, wrap = title.removeprefix("kept:").split("|wrap:")
    assert kept, "the console keeps its session in the tab"
    assert _signing_key_b64(ROOT_SK) not in kept
    assert ROOT_AK not in kept and "accessKey" not in kept
    assert wrap == "", title
    # Back in the console, the user is still signed in.
    page.goto(f"{srv.endpoint}/_console/buckets")
    page.wait_for_selector("#buckets")
    assert "same-tab-thief" in page.text_content("#buckets")
