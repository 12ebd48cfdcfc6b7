"""The console's wrap key: the key that seals the tab's signing key in sessionStorage is
written only into pages the browser navigated to, and kept in an HttpOnly cookie.

A hostile HTML object shares the console's origin; its script can fetch a console page
but cannot set Fetch Metadata, which the browser fills in (tests/interop/
test_audit_console_browser.py shows the whole attack in Chromium).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message

import pytest

from s3torrent.console.pages import PAGES, WRAP_COOKIE
from tests.conftest import LiveServer, start_server

NAVIGATION = {"Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "none"}
SCRIPT_FETCH = {
    "Sec-Fetch-Dest": "empty",
    "Sec-Fetch-Mode": "cors",
    "Sec-Fetch-Site": "same-origin",
}
WRAP = re.compile(rb'data-wrap="([A-Za-z0-9_-]+)"')


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    s = start_server(tmp_path_factory.mktemp("console-wrap"))
    yield s
    s.stop()


def get(srv: LiveServer, path: str, headers: dict[str, str]) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(srv.endpoint + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def wrap_of(body: bytes) -> str | None:
    found = WRAP.search(body)
    return found.group(1).decode() if found else None


@pytest.mark.parametrize("path", sorted(PAGES))
def test_a_navigation_gets_a_wrap_key_in_the_page_and_an_httponly_cookie(
    srv: LiveServer, path: str
) -> None:
    status, headers, body = get(srv, "/_console" + path, NAVIGATION)
    assert status == 200
    wrap = wrap_of(body)
    assert wrap is not None and len(wrap) == 43  # 32 random bytes
    (cookie,) = headers.get_all("Set-Cookie") or []
    assert cookie.startswith(f"{WRAP_COOKIE}={wrap};")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "samesite"} <= attributes
    assert "Path=/_console" in cookie and "SameSite=Strict" in cookie


def test_the_cookie_keeps_the_same_wrap_key_across_pages(srv: LiveServer) -> None:
    _, _, body = get(srv, "/_console/", NAVIGATION)
    wrap = wrap_of(body)
    cookie = {**NAVIGATION, "Cookie": f"{WRAP_COOKIE}={wrap}"}
    _, again, body = get(srv, "/_console/buckets", cookie)
    assert wrap_of(body) == wrap
    assert again.get_all("Set-Cookie") is None  # nothing new to set


@pytest.mark.parametrize(
    "headers",
    [
        SCRIPT_FETCH,  # an object's script: fetch("/_console/")
        {"Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "cors"},
        {"Sec-Fetch-Dest": "object", "Sec-Fetch-Mode": "navigate"},
    ],
    ids=["fetch", "no-cors", "iframe", "document-cors", "object"],
)
def test_a_page_loaded_otherwise_has_no_wrap_key_even_with_the_cookie(
    srv: LiveServer, headers: dict[str, str]
) -> None:
    _, _, body = get(srv, "/_console/", NAVIGATION)
    wrap = wrap_of(body)
    status, answer, body = get(
        srv, "/_console/buckets", {**headers, "Cookie": f"{WRAP_COOKIE}={wrap}"}
    )
    assert status == 200 and b'data-page="buckets"' in body
    assert wrap_of(body) is None
    assert (wrap or "") not in body.decode()
    assert answer.get_all("Set-Cookie") is None


@pytest.mark.parametrize(
    "value", ["short", "x" * 44, "a" * 42 + "+/", "<script>" + "a" * 35, "a" * 42 + '"']
)
def test_a_malformed_cookie_is_replaced_never_echoed(srv: LiveServer, value: str) -> None:
    _, headers, body = get(srv, "/_console/", {**NAVIGATION, "Cookie": f"{WRAP_COOKIE}={value}"})
    wrap = wrap_of(body)
    assert wrap is not None and wrap != value and value.encode() not in body
    (cookie,) = headers.get_all("Set-Cookie") or []
    assert cookie.startswith(f"{WRAP_COOKIE}={wrap};")


def test_without_fetch_metadata_a_page_still_gets_its_wrap_key(srv: LiveServer) -> None:
    """Browsers send Fetch Metadata only to HTTPS and localhost: over plain HTTP from
    another machine every load lacks it, and the console must still work there."""
    _, headers, body = get(srv, "/_console/", {})
    assert wrap_of(body) is not None
    assert headers.get_all("Set-Cookie") is not None


def test_static_files_and_404s_set_no_cookie(srv: LiveServer) -> None:
    for path in ("/_console/static/console.js", "/_console/nowhere"):
        _, headers, body = get(srv, path, NAVIGATION)
        assert headers.get_all("Set-Cookie") is None
        assert wrap_of(body) is None
