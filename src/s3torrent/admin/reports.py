"""Admin API: usage and savings reports, for the buckets the caller may report on.

A report covers the buckets on which the caller may `s3torrent:GetUsageReport` by the one
access decision (their own buckets, or what a bucket policy grants); root and admin users
see every bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from s3torrent.access import facts
from s3torrent.admin.call import AdminCall
from s3torrent.forwarding import client_address, client_secure
from s3torrent.metering.savings_history import load_savings_history, savings_history_json
from s3torrent.metering.usage import (
    ReportError,
    UsageQuery,
    load_savings,
    load_usage,
    parse_time,
    savings_csv,
    savings_json,
    savings_table,
    usage_csv,
    usage_json,
    usage_table,
)
from s3torrent.s3.errors import S3Error

REPORT_ACTION = "s3torrent:GetUsageReport"
_TEXT = {"csv": "text/csv", "table": "text/plain"}


@dataclass(frozen=True, slots=True)
class _Scope:
    """What a report may cover: buckets (None: all), and per bucket name the created_at of
    the bucket that has it, whose counts alone it shows (None: the name's whole history,
    for root and admins)."""

    buckets: frozenset[str] | None
    created: dict[str, float] | None


async def _scope(call: AdminCall) -> _Scope:
    """The buckets the report may cover, narrowed to ?bucket= if given.

    A user's report covers the counts of each bucket that has the name now: usage is
    stored by name, and a name another user's deleted bucket had is free to take (until
    2026-12-07 its new owner's report showed the earlier owner's object keys and traffic,
    and then still the traffic of a key both used and the earlier owner's counts of the
    hour the name was taken)."""
    wanted = call.query.get("bucket") or None
    if call.user is not None and call.user.administers:
        return _Scope(None if wanted is None else frozenset({wanted}), None)
    request = call.request
    ctx = facts.context(datetime.now(UTC), client_address(request), client_secure(request))
    allowed = {
        b.name: b.created_at
        for b in await call.svc.meta.list_buckets(None)
        if facts.may(call.principal, REPORT_ACTION, b, None, None, ctx).allowed
    }
    if wanted is None:
        return _Scope(frozenset(allowed), allowed)
    if wanted not in allowed:
        raise S3Error("AccessDenied", f"no usage report of bucket {wanted!r} for you")
    return _Scope(frozenset({wanted}), {wanted: allowed[wanted]})


def _format(call: AdminCall) -> str:
    fmt = call.query.get("format", "json")
    if fmt not in ("json", "csv", "table"):
        raise S3Error("InvalidArgument", f"format is json, csv or table, not {fmt!r}")
    return fmt


async def usage(call: AdminCall) -> web.StreamResponse:
    fmt = _format(call)
    q = await _query(call)
    records = await load_usage(call.svc.meta, q)
    if fmt == "csv":
        return web.Response(text=usage_csv(records), content_type=_TEXT[fmt])
    if fmt == "table":
        return web.Response(text=usage_table(records, q), content_type=_TEXT[fmt])
    return web.json_response(usage_json(records, q))


def _price(call: AdminCall) -> float:
    try:
        price = float(call.query.get("price-per-gb", "0.09"))
    except ValueError:
        price = -1.0
    if price < 0 or not math.isfinite(price):
        raise S3Error("InvalidArgument", "price-per-gb must be a finite price of 0 or more")
    return price


async def _query(call: AdminCall) -> UsageQuery:
    """from, to and by of a report over time, narrowed to the buckets the caller may see."""
    params = call.query
    by = params.get("by", "day")
    try:
        if by not in ("hour", "day"):
            raise ReportError(f"by is hour or day, not {by!r}")
        scope = await _scope(call)
        return UsageQuery(
            start=parse_time(params["from"]) if params.get("from") else None,
            end=parse_time(params["to"]) if params.get("to") else None,
            buckets=scope.buckets,
            by="hour" if by == "hour" else "day",
            created=scope.created,
        )
    except ReportError as exc:
        raise S3Error("InvalidArgument", str(exc)) from None


async def savings_over_time(call: AdminCall) -> web.StreamResponse:
    """Per period and bucket: torrent bytes from the origin and what peers delivered."""
    price = _price(call)
    q = await _query(call)
    items = await load_savings_history(call.svc.meta, q)
    return web.json_response(savings_history_json(items, q, price))


async def savings(call: AdminCall) -> web.StreamResponse:
    fmt = _format(call)
    price = _price(call)
    key = call.query.get("key") or None
    if key is not None and not call.query.get("bucket"):
        raise S3Error("InvalidArgument", "key needs bucket")
    scope = await _scope(call)
    items = await load_savings(
        call.svc.meta,
        buckets=scope.buckets,
        key=key,
        price_per_gb=price,
        current_only=scope.created is not None,
        created=scope.created,
    )
    if fmt == "csv":
        return web.Response(text=savings_csv(items), content_type=_TEXT[fmt])
    if fmt == "table":
        return web.Response(text=savings_table(items, price), content_type=_TEXT[fmt])
    return web.json_response(savings_json(items, price))
