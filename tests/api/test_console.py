"""The web console's routes: pages and static files with their security headers, 404s,
and the admin API's swarm endpoint the console polls."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest

from s3torrent.console.pages import PAGES
from tests.api.test_admin_api import call
from tests.conftest import LiveServer, make_client, start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    s = start_server(tmp_path_factory.mktemp("console"))
    yield s
    s.stop()


def get(srv: LiveServer, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(srv.endpoint + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.mark.parametrize("path", sorted(PAGES))
def test_pages_are_served_locked_down(srv: LiveServer, path: str) -> None:
    status, headers, body = get(srv, "/_console" + path)
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"
    assert b'src="/_console/static/console.js"' in body
    # No inline script: the only <script> element loads a file.
    assert body.count(b"<script") == 1


def test_the_bare_prefix_is_the_sign_in_page(srv: LiveServer) -> None:
    status, _, body = get(srv, "/_console")
    assert status == 200 and b'data-page="signin"' in body


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("console.js", "text/javascript"),
        ("sigv4.js", "text/javascript"),
        ("plot.js", "text/javascript"),
        ("console.css", "text/css"),
    ],
)
def test_static_files(srv: LiveServer, name: str, kind: str) -> None:
    status, headers, body = get(srv, f"/_console/static/{name}")
    assert status == 200 and headers["Content-Type"].startswith(kind) and body
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "/_console/nope",
        "/_console/static/nope.js",
        "/_console/static/pages.py",
        "/_console/static/../pages.py",
        "/_console/static/%2e%2e/pages.py",
        "/_console/static/",
    ],
)
def test_unknown_paths_are_404(srv: LiveServer, path: str) -> None:
    status, headers, body = get(srv, path)
    assert status == 404, body
    assert headers["X-Frame-Options"] == "DENY"


def test_only_get_and_head(srv: LiveServer) -> None:
    status, headers, _ = get(srv, "/_console/buckets", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert get(srv, "/_console/buckets", method="HEAD")[0] == 200


def test_a_bucket_cannot_shadow_the_console(srv: LiveServer) -> None:
    """/_console is not a bucket name, so the console path is always the console."""
    s3 = make_client(srv.endpoint)
    with pytest.raises(Exception):  # noqa: B017 - botocore raises ClientError or ParamValidation
        s3.create_bucket(Bucket="_console")
    assert get(srv, "/_console/")[0] == 200


def test_swarm_endpoint_reports_an_objects_swarm(srv: LiveServer) -> None:
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket="swarmy")
    s3.put_object(Bucket="swarmy", Key="a/b.bin", Body=b"x" * 70000, ACL="public-read")
    status, doc = call(srv, "GET", "/_admin/torrent/swarm?bucket=swarmy&key=a%2Fb.bin")
    assert status == 200, doc
    assert doc["bucket"] == "swarmy" and doc["key"] == "a/b.bin"
    assert set(doc["tracker"]) == {"seeders", "leechers", "completed"}
    assert set(doc["seeder"]) == {"connections", "bytes_sent"}
    assert doc["origin_bytes"] == 0 and doc["peer_bytes"] == 0
    assert call(srv, "GET", "/_admin/torrent/swarm?bucket=swarmy&key=none")[0] == 404
    assert call(srv, "GET", "/_admin/torrent/swarm?bucket=swarmy")[0] == 400
    assert call(srv, "GET", "/_admin/torrent/swarm?bucket=swarmy&key=a", keys=None)[0] == 403
