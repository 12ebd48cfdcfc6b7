"""A real page in headless Chromium on another origin: a form upload (presigned POST) and
cross-origin fetch() of public, presigned and refused objects.

Debian's `chromium`, driven by Playwright for Python (never `playwright install`).
"""

from __future__ import annotations

import hashlib
import html
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from fastbencode import bdecode

from tests.conftest import LiveServer, free_port

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


class _Page:
    """Another origin: serves whatever HTML the test sets, at any path."""

    def __init__(self) -> None:
        self.html = "<!doctype html><title>blank</title>"
        page = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = page.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def page_origin() -> Iterator[_Page]:
    site = _Page()
    yield site
    site.httpd.shutdown()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        # --no-sandbox: CI containers run as root, where Chromium's sandbox cannot start.
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield b
        b.close()


def test_form_upload_from_another_origin(
    browser: Any, page_origin: _Page, s3v4: Any, s3: Any, bucket: str
) -> None:
    done = page_origin.origin + "/done"
    presigned = s3v4.generate_presigned_post(
        bucket,
        "uploads/${filename}",
        Fields={"success_action_redirect": done, "Content-Type": "text/plain"},
        Conditions=[
            ["starts-with", "$key", "uploads/"],
            {"success_action_redirect": done},
            ["starts-with", "$Content-Type", "text/"],
            ["content-length-range", 1, 1 << 20],
        ],
        ExpiresIn=300,
    )
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in presigned["fields"].items()
    )
    page_origin.html = (
        f'<!doctype html><form id="f" action="{presigned["url"]}" method="post" '
        f'enctype="multipart/form-data">{inputs}<input type="file" name="file">'
        '<button type="submit">Upload</button></form>'
    )
    data = b"written by a browser form\n" * 100
    page = browser.new_page()
    try:
        page.goto(page_origin.origin + "/")
        page.set_input_files(
            'input[type="file"]', {"name": "note.txt", "mimeType": "text/plain", "buffer": data}
        )
        with page.expect_navigation(url=lambda url: url.startswith(done)):
            page.click("button")
        query = parse_qs(urlparse(page.url).query)
    finally:
        page.close()
    assert query["bucket"] == [bucket] and query["key"] == ["uploads/note.txt"]
    assert query["etag"] == [f'"{hashlib.md5(data).hexdigest()}"']
    got = s3.get_object(Bucket=bucket, Key="uploads/note.txt")
    assert got["Body"].read() == data and got["ContentType"] == "text/plain"


def ranged_init(first: int, last: int) -> dict[str, Any]:
    return {"headers": {"Range": f"bytes={first}-{last}"}}


_FETCH = """async ([url, init]) => {
  try {
    const r = await fetch(url, init);
    return {status: r.status, text: await r.text(),
            range: r.headers.get('Content-Range'), etag: r.headers.get('ETag')};
  } catch (e) { return {error: String(e)}; }
}"""

_POST_FORM = """async ([url, fields, name, text]) => {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  form.append('file', new Blob([text], {type: 'text/plain'}), name);
  try {
    const r = await fetch(url, {method: 'POST', body: form});
    return {status: r.status, text: await r.text()};
  } catch (e) { return {error: String(e)}; }
}"""


def test_fetch_across_origins(
    browser: Any, page_origin: _Page, server: LiveServer, s3: Any, s3v4: Any, bucket: str
) -> None:
    data = os.urandom(50_000)
    s3.put_object(Bucket=bucket, Key="public.bin", Body=data, ACL="public-read")
    s3.put_object(Bucket=bucket, Key="private.txt", Body=b"for the app only")
    page_origin.html = "<!doctype html><title>app</title>"
    page = browser.new_page()
    try:
        page.goto(page_origin.origin + "/")
        public_url = f"{server.endpoint}/{bucket}/public.bin"
        # The default rule: a range read of a public object, Content-Range visible.
        ranged = page.evaluate(_FETCH, [public_url, ranged_init(100, 109)])
        assert ranged["status"] == 206, ranged
        assert ranged["range"] == f"bytes 100-109/{len(data)}"
        assert ranged["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
        # Its torrent and web seed too: what WebTorrent in a page fetches.
        torrent_url = public_url + "?torrent"
        torrent = page.evaluate(_FETCH, [torrent_url, {}])
        assert torrent["status"] == 200, torrent
        [seed] = bdecode(requests.get(torrent_url, timeout=30).content)[b"url-list"]
        seeded = page.evaluate(_FETCH, [seed.decode() + "public.bin", ranged_init(5, 14)])
        assert seeded["status"] == 206 and seeded["range"] == f"bytes 5-14/{len(data)}"
        # The bucket has no rule for this origin: the browser refuses to show the answer.
        presigned = s3v4.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "private.txt"}, ExpiresIn=300
        )
        refused = page.evaluate(_FETCH, [presigned, {}])
        assert "error" in refused, refused
        upload = s3v4.generate_presigned_post(bucket, "from-fetch.txt", ExpiresIn=300)
        blocked = page.evaluate(_POST_FORM, [upload["url"], upload["fields"], "a.txt", "nope"])
        assert "error" in blocked, blocked
        # With a rule for the page's origin: the presigned GET and a FormData upload work.
        s3.put_bucket_cors(
            Bucket=bucket,
            CORSConfiguration={
                "CORSRules": [
                    {
                        "AllowedOrigins": [page_origin.origin],
                        "AllowedMethods": ["GET", "POST"],
                        "AllowedHeaders": ["*"],
                        "ExposeHeaders": ["ETag"],
                    }
                ]
            },
        )
        allowed = page.evaluate(_FETCH, [presigned, {}])
        assert allowed["status"] == 200 and allowed["text"] == "for the app only", allowed
        fields = {**upload["fields"]}
        posted = page.evaluate(_POST_FORM, [upload["url"], fields, "b.txt", "by fetch"])
        assert posted.get("status") == 204, json.dumps(posted)
        # The bucket's rules replace the default: the public object now follows them too.
        still = page.evaluate(_FETCH, [public_url, {"headers": {"Range": "bytes=0-1"}}])
        assert still["status"] == 206
    finally:
        page.close()
    assert s3.get_object(Bucket=bucket, Key="from-fetch.txt")["Body"].read() == b"by fetch"
