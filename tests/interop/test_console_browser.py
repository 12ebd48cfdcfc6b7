"""The web console in headless Chromium: sign in, create a bucket, upload, publish, watch a
libtorrent download appear in the swarm panel, sign out.

Debian's chromium (`/usr/bin/chromium`, never a downloaded browser) driven by Playwright for
Python. The screenshots of README's "Web console" section are taken here (docs/console-*.png,
with S3TORRENT_TEST_CONSOLE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, add_user, make_client, start_server
from tests.seeding import lt_add, lt_session, without_web_seed

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs"
MiB = 1 << 20

playwright_api = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.interop,
    pytest.mark.timeout(150),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    s = start_server(tmp_path_factory.mktemp("console-browser"))
    yield s
    s.stop()


@pytest.fixture
def page(srv: LiveServer) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1100, "height": 760})
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        page = context.new_page()
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def shot(page: Any, name: str) -> None:
    """A screenshot; into docs/ (README's) only when asked, so a test run leaves the tree clean:
    S3TORRENT_TEST_CONSOLE_SCREENSHOTS=1 pytest tests/interop/test_console_browser.py."""
    if os.environ.get("S3TORRENT_TEST_CONSOLE_SCREENSHOTS") == "1":
        page.screenshot(path=str(DOCS / f"console-{name}.png"), full_page=True)
    else:
        page.screenshot(full_page=True)  # still renders the page: a broken one fails here


def sign_in(page: Any, srv: LiveServer, secret: str, access_key: str = ROOT_AK) -> None:
    page.goto(f"{srv.endpoint}/_console/")
    page.fill("#access-key", access_key)
    page.fill("#secret-key", secret)
    page.click("#signin button[type=submit]")


def test_a_wrong_secret_is_refused(srv: LiveServer, page: Any) -> None:
    sign_in(page, srv, ROOT_SK + "x")
    page.wait_for_selector("#signin-status.error")
    assert "SignatureDoesNotMatch" in page.text_content("#signin-status")
    assert page.evaluate("sessionStorage.length") == 0
    page.goto(f"{srv.endpoint}/_console/buckets")
    page.wait_for_url("**/_console/?reason=*")


def test_a_user_sees_what_their_keys_may_see(srv: LiveServer, page: Any, tmp_path: Path) -> None:
    """The console asks the API's own access decision: no more for a user than boto3 gets."""
    bob = add_user(srv, "bob")
    make_client(srv.endpoint).create_bucket(Bucket="roots-only")
    bob_s3 = make_client(srv.endpoint, bob.access_key, bob.secret_key)
    deadline = time.monotonic() + 10  # the server reloads users within 3 s
    while True:
        try:
            bob_s3.create_bucket(Bucket="bobs-bucket")
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    sign_in(page, srv, bob.secret_key, bob.access_key)
    page.wait_for_selector("#buckets >> text=bobs-bucket")
    assert "roots-only" not in page.text_content("#buckets")
    assert page.locator("header nav >> text=Users and keys").count() == 0
    assert page.locator("header nav >> text=Torrents").count() == 0
    # A key SigV4 must encode (space, parentheses, !, *, non-ASCII), signed by the page.
    name = "notes (ü)! *.txt"
    upload = tmp_path / name
    upload.write_bytes(b"bob's notes")
    page.click("#buckets >> text=bobs-bucket")
    page.set_input_files("#upload-file", str(upload))
    page.click("#upload button[type=submit]")
    page.click(f"#objects >> text={name}")
    with page.expect_download() as download:
        page.click("#download")
    assert Path(download.value.path()).read_bytes() == b"bob's notes"
    assert bob_s3.get_object(Bucket="bobs-bucket", Key=name)["Body"].read() == b"bob's notes"
    # Published by a user without admin rights: the magnet comes from the public ?torrent.
    page.click("#make-public")
    page.wait_for_selector("#magnet-link", timeout=20_000)
    assert page.text_content("#magnet-link").startswith("magnet:?xt=urn:btih:")

    page.goto(f"{srv.endpoint}/_console/users")
    assert "AccessDenied" in page.text_content("[role=alert]")
    page.goto(f"{srv.endpoint}/_console/objects?bucket=roots-only")
    assert "AccessDenied" in page.text_content("[role=alert]")


def test_console_publishes_an_upload_and_shows_its_swarm(
    srv: LiveServer, page: Any, tmp_path: Path
) -> None:
    sign_in(page, srv, ROOT_SK)
    page.wait_for_url("**/_console/buckets")
    assert ROOT_SK not in page.evaluate("JSON.stringify(sessionStorage)")  # a derived key only

    page.fill("#new-bucket", "console-demo")
    page.click("#create-bucket button[type=submit]")
    page.click("#buckets >> text=console-demo")
    page.wait_for_url("**/_console/objects?bucket=console-demo")

    data = os.urandom(3 * MiB)
    upload = tmp_path / "video.bin"
    upload.write_bytes(data)
    page.set_input_files("#upload-file", str(upload))
    page.click("#upload button[type=submit]")
    page.wait_for_selector("#objects >> text=video.bin")
    shot(page, "objects")

    page.click("#objects >> text=video.bin")
    page.wait_for_selector("#access")
    assert page.text_content("#access") == "private"
    with page.expect_download() as download:
        page.click("#download")
    assert Path(download.value.path()).read_bytes() == data

    page.click("#make-public")
    page.wait_for_selector("#torrent-link")
    assert page.text_content("#access") == "public"
    torrent_url = page.get_attribute("#torrent-link", "href")
    assert torrent_url == f"{srv.endpoint}/console-demo/video.bin?torrent"
    with urllib.request.urlopen(torrent_url, timeout=30) as r:  # anonymous, as a peer would
        torrent = without_web_seed(r.read())
    page.wait_for_selector("#magnet-link")
    assert page.text_content("#magnet-link").startswith("magnet:?")

    # A slow leecher: it stays in the swarm long enough to be seen.
    session = lt_session(download_rate_limit=512 * 1024, ignore_limits_on_local_network=False)
    handle = lt_add(session, tmp_path / "dl", torrent=torrent)
    try:
        page.wait_for_function(
            "() => { const s = document.getElementById('swarm');"
            " return s && (Number(s.dataset.peers) > 0 && Number(s.dataset.originBytes) > 0); }",
            timeout=45_000,
        )
        shot(page, "object")
    finally:
        session.remove_torrent(handle)
        del session

    page.click("#magnet button")  # 127.0.0.1 is a secure context: the clipboard works
    page.wait_for_selector("#magnet >> text=Copied")
    assert page.evaluate("navigator.clipboard.readText()").startswith("magnet:?")

    page.click("header nav >> text=Torrents")
    page.wait_for_selector("#torrents >> text=console-demo/video.bin")
    shot(page, "torrents")

    page.click("header nav >> text=Savings and usage")
    page.wait_for_selector("#savings-chart svg")
    page.wait_for_selector("#usage-chart svg circle", state="attached")
    # The savings plot reads the stored hourly counters: the download above is this hour's
    # point of both series once metering has stored it (every second) and the plot has
    # fetched them again (every 5 s; the first fetch may come before the store).
    page.wait_for_function(
        "() => document.querySelectorAll('#savings-chart circle').length >= 2", timeout=15_000
    )
    page.select_option("#usage-type", "DataTransfer-In-Bytes")  # the upload, 3 MiB in
    page.wait_for_selector("#usage-chart >> text=console-demo")
    page.select_option("#usage-type", "DataTransfer-Out-Bytes")
    shot(page, "reports")

    page.click("header nav >> text=Users and keys")
    page.fill("#new-user", "alice")
    page.click("#add-user button[type=submit]")
    page.wait_for_selector("#new-secret")
    page.reload()
    page.click("tr[data-user=alice] >> text=Disable")
    page.wait_for_selector("tr[data-user=alice] >> text=disabled")
    shot(page, "users")

    page.click("#signout")
    page.wait_for_url("**/_console/?reason=*")
    assert page.evaluate("sessionStorage.length") == 0
    page.goto(f"{srv.endpoint}/_console/buckets")
    page.wait_for_url("**/_console/?reason=*")  # no keys: the data page sends you to sign in
    # And the API itself refuses what the page could still try without keys.
    status = page.evaluate("fetch('/', {cache: 'no-store'}).then(r => r.status)")
    assert status == 403
    shot(page, "signin")
