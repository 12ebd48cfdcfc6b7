"""The seeder's counters and torrents at /_seeder/stats: root only (they name private
objects too)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from aiohttp import web

from s3torrent.s3.auth import authenticate
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error

if TYPE_CHECKING:
    from s3torrent.peer.seeder import Seeder


async def seeder_stats_handler(
    svc: S3Context, seeder: Seeder | None, request: web.Request
) -> web.StreamResponse:
    raw_path, _, raw_query = request.raw_path.partition("?")
    principal, _auth = await authenticate(
        request,
        raw_path=raw_path,
        query_pairs=parse_qsl(raw_query, keep_blank_values=True),
        users=svc.users,
        region=svc.settings.region,
        now=datetime.now(UTC),
    )
    if not principal.is_root:
        raise S3Error("AccessDenied", resource=raw_path)
    if request.method != "GET":
        raise S3Error("MethodNotAllowed", resource=raw_path)
    if seeder is None:
        return web.json_response({"error": "seeder not running"}, status=503)
    return web.json_response(seeder.stats_json())
