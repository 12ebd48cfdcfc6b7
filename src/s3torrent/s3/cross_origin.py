"""Browsers on other origins: preflight OPTIONS and the CORS headers of every answer.

The rules are the bucket's CORS configuration (s3.cors), or, when it has none and
`cors.public_default` is on, a default rule for GET/HEAD of anonymously readable objects
(their ?torrent and web seed included), so web seeds work cross-origin out of the box.
Nothing here is an access decision: a matching rule adds headers to an answer the one
decision already chose; the default rule is offered only where anonymous GetObject is
allowed, asked of `access.facts.may` like any read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from s3torrent.access import ANONYMOUS
from s3torrent.access import facts as authz
from s3torrent.forwarding import client_address, client_secure
from s3torrent.metering.meter import EXTRA_ROUTE, S3_REQUEST
from s3torrent.s3 import cors
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error
from s3torrent.s3.routing import parse_target
from s3torrent.store import rows as md

# The bucket a web-seed path serves to a client at an address (None: no public torrent).
WebSeedBucket = Callable[[str, str | None], Awaitable[str | None]]

_READS = ("GET", "HEAD")


class CrossOrigin:
    """The S3 application's preflight handler and CORS header source."""

    def __init__(
        self,
        svc: S3Context,
        *,
        web_seed_prefix: str | None = None,
        web_seed_bucket: WebSeedBucket | None = None,
    ) -> None:
        self.svc = svc
        self.web_seed_prefix = web_seed_prefix
        self.web_seed_bucket = web_seed_bucket
        settings = svc.settings.cors
        self.default_rule = (
            cors.public_default_rule(settings.public_default_max_age)
            if settings.public_default
            else None
        )

    # ---- preflight

    async def preflight(self, request: web.Request) -> web.StreamResponse:
        """An OPTIONS preflight, answered from the rules of the bucket it names."""
        raw_path = request.raw_path.partition("?")[0]
        # The application names the extra route (web seed, admin...) a path is under; any
        # other path is S3's, "/_next/app.js" on a virtual host included.
        extra_route = request.get(EXTRA_ROUTE)
        web_seed = extra_route is not None and extra_route == self.web_seed_prefix
        key: str | None = None
        if web_seed:
            bucket_name = await self._web_seed_bucket(raw_path, client_address(request))
            resource_type = "OBJECT"
        elif extra_route is not None:
            bucket_name, resource_type = None, "OBJECT"
        else:
            target = parse_target(raw_path, request.headers.get("Host"), self.svc.settings.domain)
            bucket_name, key = target.bucket, target.key
            resource_type = "OBJECT" if key is not None else "BUCKET"
        extra = {"Method": "OPTIONS", "ResourceType": resource_type}
        origin = request.headers.get("Origin")
        if origin is None:
            raise S3Error(
                "BadRequest", "Insufficient information. Origin request header needed.", extra=extra
            )
        method = request.headers.get("Access-Control-Request-Method")
        if method is None:
            raise S3Error(
                "BadRequest",
                "Insufficient information. Access-Control-Request-Method header needed.",
                extra=extra,
            )
        if bucket_name is None:
            raise _forbidden(cors.NOT_ENABLED, extra)
        bucket = await self.svc.meta.bucket(bucket_name)
        if bucket is None:
            raise S3Error(
                "NoSuchBucket", resource=f"/{bucket_name}", extra={"BucketName": bucket_name}
            )
        requested = cors.requested_headers(request.headers.get("Access-Control-Request-Headers"))
        rules = cors.bucket_rules(bucket.settings)
        if rules is None:
            if (
                self.default_rule is None
                or method not in _READS
                or not (web_seed or await self._publicly_readable(request, bucket, key, None))
            ):
                raise _forbidden(cors.NOT_ENABLED, extra)
            rules = (self.default_rule,)
        found = cors.match(rules, origin, method, requested)
        if found is None:
            raise _forbidden(cors.NOT_ALLOWED, extra)
        rule, matched = found
        return web.Response(
            status=200, headers=cors.response_headers(rule, matched, origin, requested=requested)
        )

    # ---- actual requests

    async def headers(self, request: web.Request) -> dict[str, str]:
        """The CORS headers of the answer to a request that carries an Origin (errors too)."""
        origin = request.headers.get("Origin")
        if origin is None or request.method == "OPTIONS":
            return {}
        method = request.method
        extra_route = request.get(EXTRA_ROUTE)
        if extra_route is not None:
            if extra_route != self.web_seed_prefix:
                return {}
            name = await self._web_seed_bucket(request.path, client_address(request))
            bucket = await self.svc.meta.bucket(name) if name is not None else None
            if bucket is None:
                return {}
            return self._answer(cors.bucket_rules(bucket.settings), True, origin, method)
        s3req = request.get(S3_REQUEST)
        if s3req is None:
            return {}
        bucket = s3req.bucket
        if bucket is None:
            if s3req.target.bucket is None:
                return {}
            bucket = await self.svc.meta.bucket(s3req.target.bucket)
            if bucket is None:
                return {}
        rules = cors.bucket_rules(bucket.settings)
        public = False
        if rules is None and self.default_rule is not None and method in _READS:
            obj = s3req.obj
            public = obj is not None and (
                authz.may(
                    ANONYMOUS,
                    "s3:GetObject",
                    bucket,
                    s3req.target.key,
                    obj,
                    s3req.access_context(),
                ).allowed
            )
        return self._answer(rules, public, origin, method)

    def vary(self, request: web.Request) -> str | None:
        """The Vary an answer must carry when its CORS headers depend on the request's
        Origin, a request without one included: a browser's cache (a page shows an object,
        then reads it with fetch()) or a shared one would otherwise answer a request with
        an Origin from a copy read without one, which has no Access-Control-* headers.
        Synchronous and cheap: the quick path's answers ask it too."""
        try:
            s3req = request[S3_REQUEST]
        except KeyError:
            # The web seed's answers follow the default rule, or their bucket's.
            web_seed = self.web_seed_prefix is not None and (
                request.get(EXTRA_ROUTE) == self.web_seed_prefix
            )
            return cors.VARY if web_seed else None
        bucket = s3req.bucket
        if bucket is None:
            return None
        if bucket.settings.get(cors.SETTING):
            return cors.VARY
        # The default rule is offered where anyone may read the object: rather than ask the
        # decision for every read, every read of an object says Vary.
        if self.default_rule is not None and request.method in _READS and s3req.target.key:
            return cors.VARY
        return None

    def _answer(
        self, rules: tuple[cors.CorsRule, ...] | None, public: bool, origin: str, method: str
    ) -> dict[str, str]:
        if rules is None:
            if not public or self.default_rule is None or method not in _READS:
                return {}
            rules = (self.default_rule,)
        found = cors.match(rules, origin, method)
        if found is None:
            return {}
        rule, matched = found
        return cors.response_headers(rule, matched, origin)

    # ---- helpers of both

    async def _web_seed_bucket(self, path: str, source_ip: str | None) -> str | None:
        if self.web_seed_bucket is None:
            return None
        return await self.web_seed_bucket(path, source_ip)

    async def _publicly_readable(
        self,
        request: web.Request,
        bucket: md.Bucket,
        key: str | None,
        obj: md.ObjectVersion | None,
    ) -> bool:
        """May anyone read this object now (what the default rule is offered for)?"""
        if key is None:
            return False
        if obj is None:
            obj = await self.svc.meta.object(bucket.name, key)
            if obj is None:
                return False
        ctx = authz.context(datetime.now(UTC), client_address(request), client_secure(request))
        return authz.may(ANONYMOUS, "s3:GetObject", bucket, key, obj, ctx).allowed


def _forbidden(message: str, extra: dict[str, str]) -> S3Error:
    return S3Error("AccessForbidden", message, status=403, extra=extra)
