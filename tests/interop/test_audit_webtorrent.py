"""Audit of browsers in a WebSocket-tracker swarm: WebTorrent in headless Chromium through
the download page, as a user of it meets the server.

Fixtures (the server, the browser, the bundle's origin) are test_browser_webtorrent's.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, make_client
from tests.interop import test_browser_webtorrent as browsers
from tests.interop import test_webseed_offload as offload
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
live = offload.live


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


# ---- WebTorrent on node (TCP peers, the HTTP tracker, the web seed) ----


def test_two_node_webtorrents_in_one_swarm_get_every_byte(live: LiveServer, tmp_path: Path) -> None:
    """Two WebTorrent processes on node starting together, each verifying every byte; they
    share: the origin (seeder and web seed) sent 1.27 copies here (8 MiB: 1.99, each done
    before the other had anything to give; the bound is test_webseed_offload's under load)."""
    from tests.interop import clients

    why = clients.missing("webtorrent")
    if why is not None:
        pytest.skip(why)
    size = 32 * MiB
    data, torrent = offload.publish(live, "audit-node", "pair.bin", size)
    results: list[bytes | BaseException] = []

    def run(n: int) -> None:
        workdir = tmp_path / f"wt{n}"
        workdir.mkdir()
        job = clients.Job(
            torrent=torrent, magnet=None, name="pair.bin", data=data, workdir=workdir, timeout=120
        )
        try:
            results.append(clients.webtorrent(job))
        except BaseException as error:  # reported below, in the test's thread
            results.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=150)
    assert results == [data, data], [r if isinstance(r, BaseException) else len(r) for r in results]
    seeder, web = offload.origin_bytes(live.endpoint, offload.info_hash_hex(torrent))
    print(f"\ntwo node WebTorrents, 32 MiB: origin {(seeder + web) / size:.2f} copies")
    assert size <= seeder + web <= 1.75 * size
