"""The web console's folder view over keys XML 1.0 cannot carry (headless Chromium): S3
writes such a character as a character reference (`&#1;`) that a strict XML parser, the
browser's DOMParser included, refuses; the page must still list the folder."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ROOT_SK, LiveServer, make_client
from tests.interop.test_console_browser import CHROMIUM, page, playwright_api, sign_in, srv

__all__ = ["page", "srv"]  # the fixtures, shared with the console's own tests

pytestmark = [
    pytest.mark.slow,
    pytest.mark.interop,
    pytest.mark.timeout(150),
    pytest.mark.skipif(
        playwright_api is None or not CHROMIUM.exists(), reason="no Chromium for Playwright"
    ),
]


def test_a_key_with_a_control_character_does_not_empty_its_folder(
    srv: LiveServer, page: Any
) -> None:
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket="awkward-keys")
    for key in ("plain.txt", "bell\x07name", "dir/inner 100%.txt", "a+b"):
        s3.put_object(Bucket="awkward-keys", Key=key, Body=b"x")
    sign_in(page, srv, ROOT_SK)
    page.wait_for_url("**/_console/buckets")
    page.goto(f"{srv.endpoint}/_console/objects?bucket=awkward-keys")
    page.wait_for_selector("#objects >> text=plain.txt", timeout=10_000)
    cells = page.locator("#objects td:first-child").all_text_contents()
    assert cells == ["dir/", "a+b", "bell\x07name", "plain.txt"]
    page.click("#objects >> text=dir/")
    page.wait_for_selector("#objects >> text=inner 100%.txt", timeout=10_000)
