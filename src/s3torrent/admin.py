"""Signed JSON endpoints outside the S3 API: usage and savings (/_admin), seeder state.

Every request is authenticated as S3 requests are, and authorized by the one access
decision: a report covers the buckets on which the caller may `s3torrent:GetUsageReport`
(their own buckets, every bucket for root, or what a bucket policy grants), and the seeder's
state (which names every torrent ever seeded) is for root alone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from aiohttp import web

from s3torrent.access import Principal, facts
from s3torrent.metering.usage import (
    ReportError,
    UsageQuery,
    load_savings,
    load_usage,
    parse_time,
    savings_json,
    usage_json,
)
from s3torrent.s3.auth import authenticate
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error

if TYPE_CHECKING:
    from s3torrent.peer.seeder import Seeder

REPORT_ACTION = "s3torrent:GetUsageReport"


async def _signed(svc: S3Context, request: web.Request) -> tuple[Principal, list[tuple[str, str]]]:
    """The caller of a signed GET (anonymous callers and other methods are refused)."""
    raw_path, _, raw_query = request.raw_path.partition("?")
    query_pairs = parse_qsl(raw_query, keep_blank_values=True)
    now = datetime.now(UTC)
    principal, _auth = await authenticate(
        request,
        raw_path=raw_path,
        query_pairs=query_pairs,
        users=svc.users,
        region=svc.settings.region,
        now=now,
    )
    if principal.is_anonymous:
        raise S3Error("AccessDenied", resource=raw_path)
    if request.method != "GET":
        raise S3Error("MethodNotAllowed", resource=raw_path)
    return principal, query_pairs


async def admin_handler(svc: S3Context, request: web.Request) -> web.StreamResponse:
    """Usage (or savings) as JSON for the buckets the caller may report on."""
    raw_path = request.raw_path.partition("?")[0]
    principal, query_pairs = await _signed(svc, request)
    params = dict(query_pairs)
    ctx = facts.context(datetime.now(UTC), request.remote, request.secure)
    buckets = await svc.meta.list_buckets(None)
    allowed = frozenset(
        b.name for b in buckets if facts.may(principal, REPORT_ACTION, b, None, None, ctx).allowed
    )
    visible: frozenset[str] | None = None if principal.is_root else allowed
    wanted = params.get("bucket")
    if wanted:
        if visible is not None and wanted not in visible:
            raise S3Error("AccessDenied", resource=raw_path)
        visible = frozenset({wanted})
    try:
        if raw_path.rstrip("/") == "/_admin/usage":
            q = UsageQuery(
                start=parse_time(params["from"]) if params.get("from") else None,
                end=parse_time(params["to"]) if params.get("to") else None,
                buckets=visible,
                by=params.get("by", "day"),  # type: ignore[arg-type]
            )
            records = await load_usage(svc.meta, q)
            body = usage_json(records, q)
        elif raw_path.rstrip("/") == "/_admin/savings":
            price = float(params.get("price-per-gb", "0.09"))
            key = params.get("key") or None
            items = await load_savings(svc.meta, buckets=visible, key=key, price_per_gb=price)
            body = savings_json(items, price)
        else:
            raise S3Error("NoSuchKey", resource=raw_path)
    except (ReportError, ValueError) as exc:
        raise S3Error("InvalidArgument", str(exc), resource=raw_path) from None
    return web.json_response(body)


async def seeder_stats_handler(
    svc: S3Context, seeder: Seeder | None, request: web.Request
) -> web.StreamResponse:
    """The seeder's counters and torrents: root only (they name private objects too)."""
    principal, _ = await _signed(svc, request)
    if not principal.is_root:
        raise S3Error("AccessDenied", resource=request.path)
    if seeder is None:
        return web.json_response({"error": "seeder not running"}, status=503)
    return web.json_response(seeder.stats_json())
