"""The console's pages and static files: a small HTML shell per page, filled in by
console.js with what the signed API calls answer.

No page holds data nor reads credentials: the server answers every console path the same
way to anyone, so there is no second authentication path to get wrong. The headers still
lock pages down (no framing, no inline script, no caching) because the page's script
holds a signing key while it runs.

Between pages the tab keeps that key in `sessionStorage`, which any page of this origin
loaded in the same tab can read, and objects share the origin. So the key is kept
encrypted there, under a wrap key that only a console page the browser navigated to can
see: it lives in an HttpOnly cookie scoped to the console and is written into a page only
when the request's Fetch Metadata (`Sec-Fetch-Dest: document`, `Sec-Fetch-Mode: navigate`,
headers a script cannot set) says the browser is loading the page as a document. A
hostile HTML object in the same tab reads ciphertext, and its own `fetch` of a console
page gets the page without the wrap key. The wrap key authorizes nothing by itself.
"""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

PREFIX = "/_console"

# The pages, by path under PREFIX, and their titles.
PAGES: dict[str, str] = {
    "/": "Sign in",
    "/buckets": "Buckets",
    "/objects": "Objects",
    "/object": "Object",
    "/torrents": "Torrents",
    "/reports": "Savings and usage",
    "/users": "Users and keys",
}

_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

# 'self' only: every script and style is a file of this package; connect-src 'self' keeps the
# signing key from being sent anywhere but this server.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    # Objects are served from this origin: a bucket's HTML page is same-origin with the
    # console. Opened by such a page (or any other), a console window gets a browsing
    # context group of its own, so the opener can neither script it (read the secret as it
    # is typed, or the signing key in sessionStorage) nor navigate it later.
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


# The cookie holding the tab's wrap key (an AES-256-GCM key, base64url without padding).
WRAP_COOKIE = "s3torrent-console-wrap"
_WRAP_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}")


def navigated(request: web.BaseRequest) -> bool:
    """Whether the browser loads this page as a top-level document by navigation, by the
    Fetch Metadata only a browser sets (a script's fetch says `empty` and `cors` or
    `same-origin`; a frame says `iframe`).

    A request without Fetch Metadata counts as navigated: browsers send it only to
    potentially trustworthy origins (HTTPS, localhost), so a console reached over plain
    HTTP from another machine gets none, on navigations and scripts' fetches alike. There
    the wrap key protects nothing, as the signing key on the wire does not either (README,
    Web console: put the server behind HTTPS).
    """
    headers = request.headers
    dest = headers.get("Sec-Fetch-Dest")
    if dest is None:
        return True
    return dest == "document" and headers.get("Sec-Fetch-Mode") == "navigate"


def wrap_key(request: web.BaseRequest) -> tuple[str, bool]:
    """The wrap key the request's cookie holds, or a new one; and whether it is new."""
    held = request.cookies.get(WRAP_COOKIE, "")
    if _WRAP_SHAPE.fullmatch(held):
        return held, False
    return secrets.token_urlsafe(32), True


def _static_files() -> dict[str, bytes]:
    """The package's static files, read once: a fixed set, so a path can never escape it."""
    root = resources.files("s3torrent.console") / "static"
    return {
        entry.name: entry.read_bytes()
        for entry in root.iterdir()
        if entry.is_file() and any(entry.name.endswith(ext) for ext in _TYPES)
    }


def page_html(path: str, region: str, wrap: str | None = None) -> str:
    title = PAGES[path]
    name = "signin" if path == "/" else path.lstrip("/")
    nav = "".join(
        f'<a href="{PREFIX}{p}" data-nav="{p.lstrip("/")}">{html.escape(t)}</a>'
        for p, t in PAGES.items()
        if p not in ("/", "/objects", "/object")
    )
    wrap_attr = f' data-wrap="{wrap}"' if wrap is not None else ""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · s3torrent console</title>
<link rel="stylesheet" href="{PREFIX}/static/console.css">
<script type="module" src="{PREFIX}/static/console.js"></script>
</head>
<body data-page="{name}" data-region="{html.escape(region)}" data-prefix="{PREFIX}"{wrap_attr}>
<header>
<strong>s3torrent</strong>
<nav hidden>{nav}</nav>
<span id="who"></span>
<button id="signout" type="button" hidden>Sign out</button>
</header>
<main id="app"><h1>{html.escape(title)}</h1><p class="muted">Loading…</p>
<noscript><p>The console signs each request in the page: it needs JavaScript.</p></noscript>
</main>
</body>
</html>
"""


@dataclass(slots=True)
class ConsolePages:
    """Requests under /_console."""

    region: str
    static: dict[str, bytes] | None = None

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return self._text("method not allowed", 405, {"Allow": "GET, HEAD"})
        path = request.path[len(PREFIX) :] or "/"
        if path in PAGES:
            return self._page(request, path)
        if path.startswith("/static/"):
            if self.static is None:
                self.static = _static_files()
            name = path[len("/static/") :]
            body = self.static.get(name)
            if body is not None:
                kind = _TYPES[name[name.rfind(".") :]]
                # Static files hold no data; revalidate so an upgrade is picked up at once.
                headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
                return web.Response(body=body, content_type=kind, headers=headers)
        return self._text("no such console page", 404)

    def _page(self, request: web.Request, path: str) -> web.Response:
        if not navigated(request):
            text = page_html(path, self.region)
            return web.Response(text=text, content_type="text/html", headers=SECURITY_HEADERS)
        wrap, new = wrap_key(request)
        response = web.Response(
            text=page_html(path, self.region, wrap),
            content_type="text/html",
            headers=SECURITY_HEADERS,
        )
        if new:
            # A session cookie (gone with the browser), sent only to console pages and
            # never to another site's requests; never readable by a page's script.
            response.set_cookie(
                WRAP_COOKIE,
                wrap,
                path=PREFIX,
                httponly=True,
                samesite="Strict",
                secure=request.secure,
            )
        return response

    @staticmethod
    def _text(text: str, status: int, extra: dict[str, str] | None = None) -> web.Response:
        return web.Response(text=text, status=status, headers={**SECURITY_HEADERS, **(extra or {})})
