"""The admin API's edge: route, authenticate, authorize, read the signed body, answer JSON.

Every endpoint but the description is signed with SigV4 like an S3 request (the same
verifier, so a disabled user's key is refused the same way), then allowed by the endpoint's
caller rule (routes.py). Errors are JSON with the code and status S3 gives that code.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from aiohttp import web

from s3torrent.access import AccessError
from s3torrent.admin import info, reports, swarm, torrents, users
from s3torrent.admin.call import AdminCall, Handler, NodeFacts
from s3torrent.admin.openapi import openapi_document
from s3torrent.admin.replay import ReplayGuard
from s3torrent.admin.routes import Caller, MethodNotAllowed, NoSuchEndpoint, route
from s3torrent.metering.meter import REQUEST_ID
from s3torrent.s3 import sigv2
from s3torrent.s3.auth import authenticate
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error, s3_error_of
from s3torrent.s3.sigv4_signing import is_sha256_hex
from s3torrent.store.errors import StoreError

log = logging.getLogger(__name__)

# Admin bodies are a user name and a flag: anything larger is not ours.
MAX_BODY = 64 * 1024


async def _openapi(call: AdminCall) -> web.StreamResponse:
    return web.json_response(openapi_document(call.svc.settings.base_url, info.package_version()))


HANDLERS: dict[str, Handler] = {
    "openapi": _openapi,
    "info": info.server_info,
    "listUsers": users.list_users,
    "addUser": users.add_user,
    "getUser": users.get_user,
    "removeUser": users.remove_user,
    "rotateKeys": users.rotate_keys,
    "disableUser": users.disable_user,
    "enableUser": users.enable_user,
    "usage": reports.usage,
    "savings": reports.savings,
    "savingsHistory": reports.savings_over_time,
    "showTorrent": torrents.show_torrent,
    "showSwarm": swarm.show_swarm,
    "rehash": torrents.rehash,
}


def error_json(err: S3Error, request_id: str | None) -> web.Response:
    body = {"error": {"code": err.code, "message": err.message, "request_id": request_id}}
    return web.json_response(body, status=err.status, headers=err.headers or None)


class AdminApi:
    """Requests under /_admin."""

    def __init__(self, svc: S3Context, node: NodeFacts | None = None) -> None:
        self.svc = svc
        self.node = node or NodeFacts()
        self.replays = ReplayGuard()

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        rid = request.get(REQUEST_ID)
        try:
            return await self._answer(request)
        except (StoreError, AccessError) as exc:
            return self._refused(request, s3_error_of(exc), rid)
        except S3Error as err:
            return self._refused(request, err, rid)

    @staticmethod
    def _refused(request: web.Request, err: S3Error, rid: str | None) -> web.Response:
        resp = error_json(err, rid)
        if request.headers.get("Expect", "").lower() == "100-continue":
            # Refused before `100 Continue`: the body may or may not follow; close after.
            resp.force_close()
        return resp

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        raw_path, _, raw_query = request.raw_path.partition("?")
        try:
            endpoint, params = route(request.method, raw_path)
        except NoSuchEndpoint:
            raise S3Error(
                "NoSuchEndpoint", "no admin endpoint here: see /_admin/openapi.json", status=404
            ) from None
        except MethodNotAllowed as exc:
            raise S3Error("MethodNotAllowed", headers={"Allow": ", ".join(exc.allowed)}) from None
        query_pairs = parse_qsl(raw_query, keep_blank_values=True)
        query: dict[str, str] = {}
        for k, v in query_pairs:
            query.setdefault(k, v)
        if sigv2.is_sigv2(list(request.headers.items()), query_pairs):
            # SigV2 signs S3's sub-resources only, none of this API's parameters: a captured
            # request would be obeyed with another ?bucket=, ?from= or ?format=.
            raise S3Error("AccessDenied", "sign admin requests (AWS Signature Version 4)")
        principal, verified = await authenticate(
            request,
            raw_path=raw_path,
            query_pairs=query_pairs,
            users=self.svc.users,
            region=self.svc.settings.region,
            now=datetime.now(UTC),
        )
        user = (
            None if principal.canonical_id is None else self.svc.users.by_id(principal.canonical_id)
        )
        if endpoint.caller is not Caller.ANYONE:
            if user is None or verified is None:
                raise S3Error("AccessDenied", "sign admin requests (AWS Signature Version 4)")
            if endpoint.caller is Caller.ADMIN and not user.administers:
                raise S3Error("AccessDenied", "only root and admin users may do this")
        body = b""
        if request.method in ("POST", "PUT", "DELETE"):
            if verified is not None and verified.presigned:
                # A presigned URL is valid until it expires (up to a week), the replay memory
                # holds a signature for 30 minutes: a captured link would change things again
                # once forgotten. Changes are header-signed.
                raise S3Error(
                    "AccessDenied",
                    "admin requests that change something must be signed in the "
                    "Authorization header, not presigned",
                )
            body = await self._signed_body(request, verified.payload_hash if verified else None)
            if verified is not None and not self.replays.first_time(
                verified.signature, time.time()
            ):
                raise S3Error(
                    "RequestReplayed",
                    "this signed request was already accepted once: sign each request anew",
                    status=403,
                )
        call = AdminCall(
            svc=self.svc,
            node=self.node,
            request=request,
            principal=principal,
            user=user,
            params=params,
            query=query,
            body=body,
        )
        return await HANDLERS[endpoint.operation](call)

    @staticmethod
    async def _signed_body(request: web.Request, payload_hash: str | None) -> bytes:
        """The body, whose SHA-256 the signature covers (a body nobody signed is not obeyed)."""
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise S3Error("EntityTooLarge", f"admin request bodies are at most {MAX_BODY} bytes")
        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/%d.%d 100 Continue\r\n\r\n" % request.version)
        body = await request.content.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise S3Error("EntityTooLarge", f"admin request bodies are at most {MAX_BODY} bytes")
        if payload_hash is None or not is_sha256_hex(payload_hash):
            if body:
                raise S3Error(
                    "InvalidRequest",
                    "sign the body: x-amz-content-sha256 must be its SHA-256, not a marker",
                )
            return body
        digest = hashlib.sha256(body).hexdigest()
        if not hmac.compare_digest(digest, payload_hash.lower()):
            raise S3Error("XAmzContentSHA256Mismatch")
        return body
