"""A real browser (Debian's headless Chromium, driven by Playwright for Python) on another
origin, against what the server answers: a presigned PUT by fetch(), which a browser sends
only after a preflight the bucket's rules pass, and a virtual host's keys under "_".

Never `playwright install`: the browser is /usr/bin/chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.api.test_browser import CHROMIUM, _Page
from tests.conftest import LiveServer, make_client, start_server

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")

DOMAIN = "s3.localtest"

_FETCH = """async ([url, init]) => {
  try {
    const r = await fetch(url, init);
    return {status: r.status, text: await r.text(), etag: r.headers.get('ETag')};
  } catch (e) { return {error: String(e)}; }
}"""


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
        # The test domain has no DNS: every bucket's virtual host is the loopback.
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1"],
        )
        yield b
        b.close()


def _absent(s3: Any, bucket: str, key: str) -> bool:
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return exc.response["Error"]["Code"] == "404"
    return False


def test_presigned_put_across_origins(
    browser: Any, page_origin: _Page, s3: Any, s3v4: Any, bucket: str
) -> None:
    """A PUT with a Content-Type is not a simple request: the browser preflights it and
    sends nothing unless a rule passes; then the bytes are stored and the ETag the rule
    exposes is visible to the page."""
    url = s3v4.generate_presigned_url(
        "put_object",
        Params={"Bucket": bucket, "Key": "by-put.txt", "ContentType": "text/plain"},
        ExpiresIn=300,
    )
    put = {"method": "PUT", "headers": {"Content-Type": "text/plain"}, "body": "put by a page"}
    page = browser.new_page()
    try:
        page.goto(page_origin.origin + "/")
        refused = page.evaluate(_FETCH, [url, put])
        assert "error" in refused, refused
        assert _absent(s3, bucket, "by-put.txt")  # the preflight failed: nothing was sent
        s3.put_bucket_cors(
            Bucket=bucket,
            CORSConfiguration={
                "CORSRules": [
                    # First rule wins: this one matches the origin but not the method.
                    {"AllowedOrigins": [page_origin.origin], "AllowedMethods": ["GET"]},
                    {
                        "AllowedOrigins": ["http://127.0.0.1:*"],
                        "AllowedMethods": ["PUT"],
                        "AllowedHeaders": ["Content-Type"],
                        "ExposeHeaders": ["ETag"],
                    },
                ]
            },
        )
        done = page.evaluate(_FETCH, [url, put])
        assert done.get("status") == 200, done
        assert done["etag"], done  # exposed by the rule
        # A header no rule allows: preflight refused, the stored object untouched.
        extra = {**put, "headers": {**put["headers"], "X-Other": "1"}, "body": "overwritten"}
        blocked = page.evaluate(_FETCH, [url, extra])
        assert "error" in blocked, blocked
    finally:
        page.close()
    got = s3.get_object(Bucket=bucket, Key="by-put.txt")
    assert got["Body"].read() == b"put by a page" and got["ContentType"] == "text/plain"


@pytest.fixture(scope="module")
def vhost_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(tmp_path_factory.mktemp("vhost-browser"), "--domain", DOMAIN)
    yield srv
    srv.stop()


def test_virtual_host_key_under_underscore_in_a_browser(
    browser: Any, page_origin: _Page, vhost_server: LiveServer
) -> None:
    """A static site's /_next/ assets on its bucket's virtual host, fetched by a page on
    another origin with a header that needs a preflight."""
    s3 = make_client(vhost_server.endpoint)
    s3.create_bucket(Bucket="site")
    s3.put_object(Bucket="site", Key="_next/app.js", Body=b"console.log(1)", ACL="public-read")
    s3.put_bucket_cors(
        Bucket="site",
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": [page_origin.origin],
                    "AllowedMethods": ["GET"],
                    "AllowedHeaders": ["x-requested-with"],
                }
            ]
        },
    )
    url = f"http://site.{DOMAIN}:{vhost_server.port}/_next/app.js"
    page = browser.new_page()
    try:
        page.goto(page_origin.origin + "/")
        got = page.evaluate(_FETCH, [url, {"headers": {"X-Requested-With": "fetch"}}])
    finally:
        page.close()
    assert got.get("status") == 200, got
    assert got["text"] == "console.log(1)"


def test_a_read_without_origin_does_not_poison_the_cors_read(
    browser: Any, page_origin: _Page, server: LiveServer, s3: Any, bucket: str
) -> None:
    """A page shows an object (<img>, a no-cors read: no Origin sent) and then reads it with
    fetch(): the browser's cache must not answer the second from the first."""
    s3.put_object(
        Bucket=bucket, Key="pic", Body=b"not really a picture", CacheControl="max-age=3600"
    )
    s3.put_object_acl(Bucket=bucket, Key="pic", ACL="public-read")
    s3.put_object(
        Bucket=bucket,
        Key="ruled",
        Body=b"ruled bytes",
        CacheControl="max-age=3600",
        ACL="public-read",
    )
    url = f"{server.endpoint}/{bucket}/pic"
    page = browser.new_page()
    try:
        page.goto(page_origin.origin + "/")
        first = page.evaluate(_FETCH, [url, {"mode": "no-cors"}])
        assert "error" not in first, first
        second = page.evaluate(_FETCH, [url, {}])
        assert second.get("status") == 200 and second["text"] == "not really a picture", second
        # Under the bucket's own rules too.
        s3.put_bucket_cors(
            Bucket=bucket,
            CORSConfiguration={
                "CORSRules": [{"AllowedOrigins": [page_origin.origin], "AllowedMethods": ["GET"]}]
            },
        )
        ruled = f"{server.endpoint}/{bucket}/ruled"
        first = page.evaluate(_FETCH, [ruled, {"mode": "no-cors"}])
        assert "error" not in first, first
        second = page.evaluate(_FETCH, [ruled, {}])
        assert second.get("status") == 200 and second["text"] == "ruled bytes", second
    finally:
        page.close()
