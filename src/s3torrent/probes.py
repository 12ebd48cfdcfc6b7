"""What operators and their tools ask the main listener: `/_health` (liveness, and readiness
with `?ready`) and `/_metrics` (Prometheus text, for the root user's signed requests).

Metrics are on the main listener so that they work without a second port; they name every
operation's traffic, so only root may read them (Prometheus signs with the root keys, or
scrapes the separate `metering.metrics_listen` listener bound to a management network).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from aiohttp import web

from s3torrent.s3.auth import authenticate
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error

if TYPE_CHECKING:
    from s3torrent.metering.metrics import MetricsEndpoint
    from s3torrent.store.blobs import BlobStore

log = logging.getLogger(__name__)

# A bucket name S3 can never create: looking it up proves the database answers.
_PROBE_BUCKET = "-readiness-probe-"
READY_TIMEOUT = 5.0


def _blob_store_ready(blobs: BlobStore) -> None:
    """Raise unless the blob store can take writes (blocking: run it on a thread)."""
    ensure_bucket = getattr(blobs, "ensure_bucket", None)
    if ensure_bucket is not None:
        ensure_bucket()  # a HEAD of the backend bucket
        return
    tmp_dir = getattr(blobs, "tmp_dir", None)
    if tmp_dir is not None and not os.access(tmp_dir, os.W_OK | os.X_OK):
        raise OSError(f"{tmp_dir} is not writable")


async def readiness_problems(svc: S3Context) -> dict[str, str]:
    """Why this node cannot serve requests right now, by failing part (empty: it can)."""
    problems: dict[str, str] = {}
    try:
        await asyncio.wait_for(svc.meta.bucket(_PROBE_BUCKET), READY_TIMEOUT)
    except Exception as exc:  # any failure means "not ready": say which
        problems["metadata database"] = f"{type(exc).__name__}: {exc}"[:300]
    try:
        await asyncio.wait_for(
            asyncio.get_running_loop().run_in_executor(None, _blob_store_ready, svc.store.blobs),
            READY_TIMEOUT,
        )
    except Exception as exc:
        problems["blob store"] = f"{type(exc).__name__}: {exc}"[:300]
    return problems


RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def health_handler(svc: S3Context, started: Callable[[], bool]) -> RouteHandler:
    """`/_health`: 200 once started; `/_health?ready` also checks the database and blobs."""

    async def health(request: web.Request) -> web.StreamResponse:
        if not started():
            return web.json_response({"status": "starting"}, status=503)
        if "ready" not in request.query:
            return web.json_response({"status": "ok"})
        problems = await readiness_problems(svc)
        if problems:
            log.warning("not ready: %s", "; ".join(f"{k}: {v}" for k, v in problems.items()))
            # Anyone may ask: the answer names the failing parts; the exceptions (paths,
            # database hosts and users, backend endpoints) are for the log only.
            return web.json_response(
                {"status": "not ready", "problems": list(problems)}, status=503
            )
        return web.json_response({"status": "ready"})

    return health


async def _root_caller(svc: S3Context, request: web.Request) -> None:
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
        raise S3Error("AccessDenied", "Metrics are for the root user.", resource=raw_path)
    if request.method not in ("GET", "HEAD"):
        raise S3Error("MethodNotAllowed", resource=raw_path)


def metrics_handler(svc: S3Context, metrics: MetricsEndpoint) -> RouteHandler:
    """`/_metrics`: the Prometheus text of `metrics`, for signed requests of root."""

    async def handle(request: web.Request) -> web.StreamResponse:
        await _root_caller(svc, request)
        return await metrics.handle(request)

    return handle
