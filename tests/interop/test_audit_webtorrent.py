"""Audit of browsers in a WebSocket-tracker swarm: WebTorrent in headless Chromium through
the download page, as a user of it meets the server.

Fixtures (the server, the browser, the bundle's origin) are test_browser_webtorrent's.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from tests.conftest import LiveServer, make_client
from tests.interop import test_browser_webtorrent as browsers
from tests.interop.test_browser_webtorrent import (
    MiB,
    close,
    open_pages,
    put_public,
    states,
    wait_all_done,
)

pytestmark = browsers.pytestmark
bundle_url = browsers.bundle_url
web_server = browsers.web_server
browser = browsers.browser


def _wait(pages: list[Any], check: Any, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        now = states(pages)
        if check(now):
            return now
        assert time.monotonic() < deadline, [(s["progress"], s["peers"]) for s in now]
        time.sleep(0.3)


def test_a_bucket_change_that_keeps_the_object_public_keeps_the_browser_swarm(
    browser: Any, web_server: LiveServer
) -> None:
    """A seeding browser stays in the swarm through a PutBucketTagging: a browser opening
    the page after it finds it as a peer. Before 2026-12-07 the tagging revoked the torrent
    for good as far as the WebSocket tracker was concerned: the seeding page showed 'torrent
    is no longer public' and lost its tracker socket, and WebTorrent reconnects 10 s to 5 min
    later, so the newcomer found no peer."""
    bucket, size = "browser-tagged", 4 * MiB
    url, data = put_public(web_server, bucket, size)
    seeder = open_pages(browser, url, 1)
    newcomer: list[Any] = []
    try:
        [first] = wait_all_done(seeder, 90)
        assert first["sha256"] == hashlib.sha256(data).hexdigest()
        make_client(web_server.endpoint).put_bucket_tagging(
            Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "web"}]}
        )
        newcomer = open_pages(browser, url, 1)
        _wait(newcomer, lambda s: s[0]["peers"] >= 1, 20)
        [second] = wait_all_done(newcomer, 90)
        assert second["sha256"] == hashlib.sha256(data).hexdigest()
        warning = seeder[0].inner_text("#warning")
        assert "no longer public" not in warning, warning
    finally:
        close(seeder + newcomer)


def test_a_second_browser_at_the_same_address_after_the_first_left(
    browser: Any, web_server: LiveServer
) -> None:
    """Two users behind one address (an office's NAT), one after the other (or one page
    reloaded): the second opens the page after the first closed it, and must get every byte
    from the web seed. Before 2026-12-07 it was refused every piece the first had got until
    web_seed_memory (60 s) released them: 65 s for 4 MiB the first got in 4 s."""
    bucket, size = "browser-after", 4 * MiB
    url, data = put_public(web_server, bucket, size)
    first = open_pages(browser, url, 1)
    try:
        [done] = wait_all_done(first, 90)
        assert done["sha256"] == hashlib.sha256(data).hexdigest()
    finally:
        close(first)
    second = open_pages(browser, url, 1)
    try:
        [done] = wait_all_done(second, 30)
        assert done["sha256"] == hashlib.sha256(data).hexdigest()
        assert done["fromOrigin"] == size
    finally:
        close(second)
