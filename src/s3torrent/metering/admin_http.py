"""The owner's view of usage over HTTP: GET /_admin/usage and GET /_admin/savings (JSON)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from aiohttp import web

from s3torrent.metering.usage import (
    ReportError,
    UsageQuery,
    load_savings,
    load_usage,
    parse_time,
    savings_json,
    usage_json,
)

if TYPE_CHECKING:
    from s3torrent.app import Services


async def admin_handler(svc: Services, request: web.Request) -> web.StreamResponse:
    """Usage (or savings) as JSON for a signed request: root sees all buckets, a user theirs."""
    from s3torrent.s3.auth import authenticate
    from s3torrent.s3.errors import S3Error

    raw_path, _, raw_query = request.raw_path.partition("?")
    query_pairs = parse_qsl(raw_query, keep_blank_values=True)
    principal, _auth = await authenticate(
        request,
        raw_path=raw_path,
        query_pairs=query_pairs,
        users=svc.users,
        region=svc.settings.region,
        now=datetime.now(UTC),
    )
    if principal.is_anonymous:
        raise S3Error("AccessDenied", resource=raw_path)
    if request.method != "GET":
        raise S3Error("MethodNotAllowed", resource=raw_path)
    params = dict(query_pairs)
    visible: frozenset[str] | None = None
    if not principal.is_root:
        owner = principal.canonical_id
        own = await svc.meta.list_buckets(owner)
        visible = frozenset(b.name for b in own)
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
