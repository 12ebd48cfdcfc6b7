"""The aiohttp application of the S3 API: request ids, error rendering, auth, dispatch."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import unquote

from aiohttp import web

from s3torrent.access import ANONYMOUS, AccessError, Principal, RequestContext
from s3torrent.access import facts as authz
from s3torrent.forwarding import client_address, client_secure
from s3torrent.metering.meter import CLIENT_CLOSED, EXTRA_ROUTE, REQUEST_ID, S3_REQUEST
from s3torrent.s3 import tagging, versioning
from s3torrent.s3.access_log import ERROR_CODE, redact_signatures
from s3torrent.s3.auth import authenticate, query_headers, with_query_headers
from s3torrent.s3.context import S3Context
from s3torrent.s3.errors import S3Error, s3_error_of
from s3torrent.s3.params import NO_PARAMS, Params, parse_copy_source, parse_params
from s3torrent.s3.quick import QuickHandOver, is_quick
from s3torrent.s3.refusals import refuse_acls, refuse_unsupported
from s3torrent.s3.routing import Endpoint, Target, check_key, parse_target, route
from s3torrent.s3.sigv4 import VerifiedAuth
from s3torrent.s3.versioning import lock_condition_values
from s3torrent.s3.xml import render
from s3torrent.store import rows as md
from s3torrent.store.conditions import NO_CONDITION, WriteCondition
from s3torrent.store.errors import StorageFull, StoreError, engine_unreachable
from s3torrent.store.space import storage_full

log = logging.getLogger(__name__)

REQUEST_ID_KEY = web.AppKey("request_id_counter", list)

# (request, its response or None if there was none, the status, seconds taken)
FinishedHook = Callable[[web.Request, web.StreamResponse | None, int, float], None]

# Endpoints that act on an existing object and so need its row before the access check.
_READS_EXISTING_OBJECT = {
    Endpoint.GetObject,
    Endpoint.HeadObject,
    Endpoint.GetObjectAcl,
    Endpoint.PutObjectAcl,
    Endpoint.GetObjectTorrent,
    Endpoint.GetObjectTagging,
    Endpoint.PutObjectTagging,
    Endpoint.DeleteObjectTagging,
    Endpoint.GetObjectAttributes,
    Endpoint.GetObjectRetention,
    Endpoint.PutObjectRetention,
    Endpoint.GetObjectLegalHold,
    Endpoint.PutObjectLegalHold,
}

# Requests naming a multipart upload whose initiator the access decision is told of (what
# the initiator may do without a grant is the decision's: access.decision._INITIATOR_ACTIONS).
_NAMES_AN_UPLOAD = frozenset({Endpoint.AbortMultipartUpload, Endpoint.ListParts})

# What the quick path (s3/quick.py) answers; anything else is handed to aiohttp.
_QUICK_ENDPOINTS = frozenset({Endpoint.GetObject, Endpoint.HeadObject, Endpoint.PutObject})


@dataclass(slots=True)
class S3Request:
    """One S3 request as the handlers see it, after routing, authentication and access."""

    http: web.Request
    request_id: str
    now: datetime
    raw_path: str
    target: Target
    endpoint: Endpoint
    # Read-only: a GET's or HEAD's are shared by every request with its request line
    # (S3Application._routed).
    query: Mapping[str, str]
    query_pairs: Sequence[tuple[str, str]]
    params: Params = NO_PARAMS
    principal: Principal = ANONYMOUS
    auth: VerifiedAuth | None = None
    bucket: md.Bucket | None = None
    obj: md.ObjectVersion | None = None
    # Bytes of the body sent, for metering and the logs (None: as the response says).
    body_sent: int | None = None
    # Whether an ACL grant (not a policy, not ownership) allowed the request's own action.
    allowed_by_acl: bool = False
    # Who started the multipart upload the request names, in its bucket and key (None: no
    # such upload, or a request naming none); a fact of the access decision's context.
    upload_initiator: str | None = None

    @property
    def bucket_name(self) -> str:
        assert self.target.bucket is not None
        return self.target.bucket

    @property
    def bucket_created(self) -> float | None:
        """When the bucket this request was authorized against was created: a write by the
        bucket's name commits only into that bucket, never into one created again under
        the name (perhaps by another owner) while the write's body was arriving."""
        return self.bucket.created_at if self.bucket is not None else None

    def bound(self, condition: WriteCondition = NO_CONDITION) -> WriteCondition:
        """`condition`, also requiring the bucket this request was authorized against."""
        return dataclasses.replace(condition, bucket_created=self.bucket_created)

    @property
    def key(self) -> str:
        assert self.target.key is not None
        return self.target.key

    @property
    def resource(self) -> str:
        path = "/"
        if self.target.bucket:
            path += self.target.bucket
            if self.target.key:
                path += "/" + self.target.key
        return path

    @property
    def source_ip(self) -> str | None:
        """The client's address (through a trusted proxy, the one it names)."""
        return client_address(self.http)

    @property
    def secure(self) -> bool:
        """Whether the client's connection was TLS (a trusted proxy's word for it)."""
        return client_secure(self.http)

    def access_context(self) -> RequestContext:
        """The context the access decision is asked with: time, source, condition values."""
        values = _ConditionValues(
            self.query,
            self.http.headers,
            self.auth,
            self.now,
            OBJECT_CREATION.get(self.endpoint),
            tagged=self.endpoint in _TAGGED_BY_HEADER,
        )
        return RequestContext(
            self.now, self.source_ip, self.secure, values, upload_initiator=self.upload_initiator
        )


class _ConditionValues(Mapping[str, str | list[str]]):
    """A request's condition values (s3:prefix, s3:x-amz-acl, tags, aws:UserAgent, ...),
    worked out on first use from what the request held when its context was made. Only a
    bucket policy reads them, and most buckets have none: for them a GET or HEAD no longer
    looks up a dozen headers it never uses."""

    __slots__ = ("_auth", "_creation", "_headers", "_now", "_query", "_tagged", "_values")

    def __init__(
        self,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        auth: VerifiedAuth | None,
        now: datetime,
        creation: str | None = None,
        *,
        tagged: bool = False,
    ) -> None:
        self._query = query
        self._headers = headers
        self._auth = auth
        self._now = now
        self._creation = creation
        self._tagged = tagged
        self._values: dict[str, str | list[str]] | None = None

    def _all(self) -> dict[str, str | list[str]]:
        if self._values is None:
            self._values = condition_values(self._query, self._headers, tagged=self._tagged)
            until = self._headers.get("x-amz-object-lock-retain-until-date")
            if until:
                self._values.update(lock_condition_values(None, until, self._now))
            if self._creation is not None:
                self._values["s3:ObjectCreationOperation"] = self._creation
            if self._auth is not None:
                self._values.update(auth_values(self._auth, self._now))
        return self._values

    def __getitem__(self, name: str) -> str | list[str]:
        return self._all()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def condition_values(
    q: Mapping[str, str], headers: Mapping[str, str], *, tagged: bool = False
) -> dict[str, str | list[str]]:
    """The condition values of a request with this query and these headers (an object's
    own, s3:ExistingObjectTag, are the decision's: access.facts.may); `tagged`: of a
    request that sets the tags of its x-amz-tagging header (_TAGGED_BY_HEADER)."""
    values: dict[str, str | list[str]] = {}
    for name in ("prefix", "delimiter", "max-keys"):
        if name in q:
            values[f"s3:{name}"] = q[name]
    for header, key in _HEADER_CONDITION_KEYS:
        value = headers.get(header)
        if value:
            read = _AS_OBEYED.get(header)
            values[key] = value if read is None else read(value)
    version = q.get("versionId")
    if version:
        values["s3:versionid"] = version
    sent = _tagging_taken(headers) if tagged else None
    if sent is not None:
        # Malformed tags are refused by the operation itself; here they just add nothing.
        with contextlib.suppress(S3Error):
            tags = tagging.from_header(sent)
            values.update(tagging.request_tag_values(tags))
    return values


def _tagging_taken(headers: Mapping[str, str]) -> str | None:
    """The x-amz-tagging header of a request that writes its tags. A copy writes them only
    under `x-amz-tagging-directive: REPLACE` (else its source's): a header it ignores must
    not meet a policy's s3:RequestObjectTag condition."""
    copies = "x-amz-copy-source" in headers
    if copies and headers.get("x-amz-tagging-directive") != "REPLACE":
        return None
    return headers.get("x-amz-tagging")


def _copy_source_value(sent: str) -> str:
    """s3:x-amz-copy-source: the source as the copy reads it (URL-decoded, without the
    optional leading "/"), `bucket/key` or `bucket/key?versionId=...` as S3's policy
    examples write it; a Deny on `bucket/secret/*` must not miss `/bucket/%73ecret/k`,
    the same object to the copy. One the copy refuses is left as sent."""
    try:
        bucket, key, version_id = parse_copy_source(sent)
    except S3Error:
        return sent
    version = "" if version_id is None else f"?versionId={version_id}"
    return f"{bucket}/{key}{version}"


def signature_values(
    *, v4: bool, auth_type: str, signed_at: str | None, now: datetime
) -> dict[str, str]:
    """The condition keys S3 fills from how a request was signed (its "Signature Version 4
    authentication specific policy keys"): s3:signatureversion (`AWS` for SigV2,
    `AWS4-HMAC-SHA256`), s3:authType (`REST-HEADER`, `REST-QUERY-STRING`, or `POST` for a
    browser form) and, for a presigned URL or a form (`signed_at` given: its x-amz-date),
    s3:signatureAge: the milliseconds since it was signed (always 0 for SigV2, as S3
    documents)."""
    values = {"s3:signatureversion": "AWS4-HMAC-SHA256" if v4 else "AWS", "s3:authType": auth_type}
    if signed_at is not None:
        age = 0
        if v4:
            try:
                when = datetime.strptime(signed_at, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            except ValueError:
                when = None
            if when is not None:
                moment = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
                age = max(0, int((moment - when).total_seconds() * 1000))
        values["s3:signatureAge"] = str(age)
    return values


def auth_values(auth: VerifiedAuth, now: datetime) -> dict[str, str]:
    """signature_values for a request signed in its header or its query (`auth`)."""
    return signature_values(
        v4=bool(auth.scope),
        auth_type="REST-QUERY-STRING" if auth.presigned else "REST-HEADER",
        signed_at=auth.amz_date if auth.presigned else None,
        now=now,
    )


Handler = Callable[["S3Context", S3Request], Awaitable[web.StreamResponse]]
# A layer around every request (S3Application.build): called with the request and the
# next layer, as an aiohttp middleware is.
Wrapper = Callable[..., Awaitable[web.StreamResponse]]


def error_response(err: S3Error, request_id: str, resource: str, head: bool) -> web.Response:
    children: list[tuple[str, Any]] = [
        ("Code", err.code),
        ("Message", err.message),
    ]
    children += list(err.extra.items())
    children += [("Resource", err.resource or resource), ("RequestId", request_id)]
    body = b"" if head or err.status == 304 else render("Error", children, ns=False)
    resp = web.Response(
        status=err.status,
        body=body if body else None,
        content_type="application/xml" if body else None,
        headers=err.headers,
    )
    if err.status == 503 and "Retry-After" not in err.headers:
        resp.headers["Retry-After"] = "1"
    return resp


# The requests whose x-amz-tagging header sets the tags of what they write, so fills
# s3:RequestObjectTag (a form's `tagging` field: post_object; PutObjectTagging's body: its
# handler). Any other request's header sets nothing, so must meet no tag condition.
_TAGGED_BY_HEADER = frozenset(
    {Endpoint.PutObject, Endpoint.CopyObject, Endpoint.CreateMultipartUpload}
)

# s3:ObjectCreationOperation of the operations S3 authorizes as s3:PutObject: "true" for the
# ones that create an object (what a policy requiring If-None-Match tests), "false" for the
# multipart steps before the completion, which take no conditional header.
OBJECT_CREATION: Mapping[Endpoint, str] = {
    Endpoint.PutObject: "true",
    Endpoint.CopyObject: "true",
    Endpoint.CompleteMultipartUpload: "true",
    Endpoint.PostObject: "true",
    Endpoint.CreateMultipartUpload: "false",
    Endpoint.UploadPart: "false",
    Endpoint.UploadPartCopy: "false",
}

# Request headers that bucket policies may test, as the condition keys AWS fills from them
# (only where the request carries them). Every x-amz-* one is signed (sigv4.unsigned_headers);
# If-Match and If-None-Match may be added to a presigned URL, where all they can do is make
# the write conditional.
_HEADER_CONDITION_KEYS = (
    ("x-amz-acl", "s3:x-amz-acl"),
    ("x-amz-grant-read", "s3:x-amz-grant-read"),
    ("x-amz-grant-write", "s3:x-amz-grant-write"),
    ("x-amz-grant-read-acp", "s3:x-amz-grant-read-acp"),
    ("x-amz-grant-write-acp", "s3:x-amz-grant-write-acp"),
    ("x-amz-grant-full-control", "s3:x-amz-grant-full-control"),
    ("x-amz-server-side-encryption", "s3:x-amz-server-side-encryption"),
    (
        "x-amz-server-side-encryption-aws-kms-key-id",
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
    ),
    ("x-amz-storage-class", "s3:x-amz-storage-class"),
    ("x-amz-object-lock-mode", "s3:object-lock-mode"),
    ("x-amz-object-lock-retain-until-date", "s3:object-lock-retain-until-date"),
    ("x-amz-object-lock-legal-hold", "s3:object-lock-legal-hold"),
    ("x-amz-copy-source", "s3:x-amz-copy-source"),
    ("x-amz-metadata-directive", "s3:x-amz-metadata-directive"),
    (
        "x-amz-server-side-encryption-customer-algorithm",
        "s3:x-amz-server-side-encryption-customer-algorithm",
    ),
    ("x-amz-website-redirect-location", "s3:x-amz-website-redirect-location"),
    ("x-amz-object-ownership", "s3:x-amz-object-ownership"),
    # The header only: S3 does not read X-Amz-Content-Sha256 from a presigned URL's query.
    ("x-amz-content-sha256", "s3:x-amz-content-sha256"),
    # Conditional writes (a policy may require them: Null s3:if-none-match).
    ("If-None-Match", "s3:if-none-match"),
    ("If-Match", "s3:if-match"),
    # aws:UserAgent, aws:Referer: as the web seed's decision has them.
    *authz.REQUEST_HEADER_KEYS,
)

# Headers an operation reads otherwise than as sent: their condition keys hold the value
# it obeys, or a Deny on that value misses a spelling that means the same to it.
_AS_OBEYED: Mapping[str, Callable[[str], str]] = {
    "x-amz-copy-source": _copy_source_value,
    # CopyObject refuses a directive not in upper case (as S3 does); a Deny on REPLACE
    # still answers `replace` first, as the directive it spells.
    "x-amz-metadata-directive": str.upper,
}

_CONTINUED: web.RequestKey[bool] = web.RequestKey("s3torrent.continued", bool)


class _EveryPath(web.PlainResource):
    """aiohttp's one route here: every path that starts with "/" (S3Application._dispatch
    routes them). A dynamic resource (a `/{tail}` pattern matching anything) would answer
    the same at the cost of a regular expression and a decoded copy of the path per
    request, which nobody reads."""

    def __init__(self) -> None:
        super().__init__("/")

    def _match(self, path: str) -> dict[str, str] | None:
        return {} if path.startswith("/") else None


# AWS's message for a 503 ServiceUnavailable.
_UNAVAILABLE: Final = "Service is unable to handle request."


def _awaits_continue(request: web.Request) -> bool:
    """An `Expect: 100-continue` request not yet told to send its body."""
    return request.headers.get("Expect", "").lower() == "100-continue" and _CONTINUED not in request


# Decoded query fields, by their text as sent: a presigned URL's credential
# (`AKIA...%2F20261203%2Fus-east-1%2Fs3%2Faws4_request`) is the same on every request of a
# key for a day, and decoding it costs more than the rest of the query together. A pure
# function of the text, so nothing can go stale; bounded in count and size.
_DECODED: dict[str, str] = {}
_DECODED_MAX = 512
_DECODED_MAX_CHARS = 256


def _decoded(text: str) -> str:
    """A query field's text, percent-decoded as UTF-8: bytes that are not UTF-8 are S3's
    400 InvalidURI, as in the path (parse_target). They were replaced by U+FFFD, so that a
    listing's prefix, delimiter or marker of such bytes listed from another string than the
    one sent (and a signed request's canonical query differed from the client's)."""
    found = _DECODED.get(text)
    if found is not None:
        return found
    try:
        value = unquote(text.replace("+", " "), errors="strict")
    except UnicodeDecodeError as exc:
        raise S3Error("InvalidURI", "Couldn't parse the specified URI.") from exc
    if len(text) <= _DECODED_MAX_CHARS:
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.clear()
        _DECODED[text] = value
    return value


def query_pairs_of(raw_query: str) -> list[tuple[str, str]]:
    """`parse_qsl(raw_query, keep_blank_values=True)`, without its per-field cost where a
    field has nothing to decode (no '%' or '+': a presigned URL's names and most values)."""
    if not raw_query:
        return []
    pairs: list[tuple[str, str]] = []
    for field in raw_query.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        if "%" in field or "+" in field:
            name = _decoded(name)
            value = _decoded(value)
        pairs.append((name, value))
    return pairs


def _headers_sent(request: web.Request) -> bool:
    """Whether this request's answer already went out (a streamed body under way)."""
    exchange: _Exchange | None = request.get(_EXCHANGE)
    return exchange is not None and exchange.headers_done


def _cut_streamed_answer(request: web.Request, err: S3Error) -> None:
    """A failure after a streamed answer's headers (the blob backend failing mid-GET): the
    client must see the body cut short, so the connection is aborted. Answering with the
    error instead wrote its status line and XML into the body, where a client counting
    Content-Length took them for the object's last bytes; its prepare on the aborted
    transport now fails, and aiohttp drops it."""
    log.warning("%s %s: cut mid-body: %s", request.method, request.path[:200], err.code)
    transport = request.transport
    if transport is not None:
        transport.abort()


# The S3Request refers to its aiohttp request (S3Request.http) and the request to it
# (S3_REQUEST): a reference cycle, which only the cyclic collector would free, and with it
# the whole request (headers, rows, writer; some two dozen objects a request). Its last two
# readers are the finished hooks (metering, logs: end of the middleware) and the CORS
# headers (on_response_prepare), which come in either order: a streamed answer is prepared
# inside the handler, a plain one after the middleware returned. The second of them to
# finish drops the link, so reference counting frees the request as soon as it is answered.
# (A request cut short before either leaves the cycle to the collector, as before.)
class _Exchange:
    """What the middleware keeps of one request it handles: whether an extra route (not
    S3) took it, and which of the S3Request's last two readers are done. An object set once
    per request, read by attribute: a key that is absent from an aiohttp request costs a
    raised KeyError to ask about."""

    __slots__ = ("extra", "headers_done", "hooks_done")

    def __init__(self) -> None:
        self.extra = False
        self.hooks_done = False
        self.headers_done = False


_EXCHANGE: web.RequestKey[_Exchange] = web.RequestKey("s3torrent.exchange", _Exchange)


def _release_after(request: web.Request, exchange: _Exchange) -> None:
    """Called when one of the two readers is done (its flag already set in `exchange`):
    once both are, break the S3Request's cycle."""
    if exchange.hooks_done and exchange.headers_done:
        try:  # noqa: SIM105 (not .pop nor suppress: several times the cost, per request)
            del request[S3_REQUEST]
        except KeyError:
            pass


_REQUEST_IDS = itertools.count(secrets.randbits(62))


def new_request_id() -> str:
    """A unique id per request: a random start, then a counter (no syscall per request)."""
    return f"{next(_REQUEST_IDS) & 0xFFFFFFFFFFFFFFFF:016X}"


# Methods whose routing depends only on the request line and Host (route() reads headers
# only for PUT), so that what it makes of them can be kept (S3Application._routed).
_ROUTED_METHODS: Final = frozenset({"GET", "HEAD"})
_Routed = tuple[Target, Sequence[tuple[str, str]], Mapping[str, str], Endpoint, Params]


class _RoutedMemo(dict[tuple[str, str, str | None], _Routed]):
    """What routing made of a GET's or HEAD's request line and Host: target, query, endpoint
    and parameters, all pure functions of them and of the application's settings. The same
    URL fetched again skips parsing it again (about 9 us of a 4 KiB GET in one process,
    docs/ARCHITECTURE.md, The quick path). Kept only once every check passed (a bad key or
    parameter is refused again each time), read-only (the query is a MappingProxyType,
    its pairs a tuple: requests share them). Bounded: entries and their line's length;
    emptied when full."""

    __slots__ = ()

    MAX_ENTRIES: Final = 4096
    MAX_LINE: Final = 2048

    def keep(self, line: tuple[str, str, str | None], routed: _Routed) -> None:
        if len(line[1]) > self.MAX_LINE:
            return
        if len(self) >= self.MAX_ENTRIES:
            self.clear()
        self[line] = routed


class S3Application:
    """Builds the aiohttp app and dispatches every request to its endpoint handler."""

    def __init__(self, services: S3Context, handlers: dict[Endpoint, Handler]) -> None:
        self.svc = services
        self.handlers = handlers
        self._routed = _RoutedMemo()
        self.extra_routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}
        self.query_routes: dict[
            str, tuple[frozenset[str], Callable[[web.Request], Awaitable[web.StreamResponse]]]
        ] = {}
        # Called once per S3 request, after its response, error responses included
        # (metering); None when nobody listens.
        self.on_finished: FinishedHook | None = None
        # Browsers (s3.cross_origin): OPTIONS preflights on any path, and the CORS headers
        # of every answer to a request with an Origin; None: no CORS.
        self.preflight: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        self.cors_headers: Callable[[web.Request], Awaitable[dict[str, str]]] | None = None
        # The Vary of an answer whose CORS headers depend on the Origin, sent or not.
        self.cors_vary: Callable[[web.Request], str | None] | None = None
        # Every request's way in, all layers included (set by `build`): the quick path's.
        self.entry: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None
        # The server is stopping: every answer closes its connection (Connection: close).
        self.draining = False

    def add_route(
        self, prefix: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> None:
        """A non-S3 path (health, tracker, admin) that no bucket name can clash with."""
        assert prefix.startswith("/_")
        self.extra_routes[prefix] = handler

    def _extra_route_of(self, raw_path: str) -> str | None:
        """The prefix of the extra route a path is under; None: an S3 path (on a virtual
        host, one whose key may well start with "_")."""
        # Every extra route's prefix starts with "/_" (add_route), which no bucket does.
        if not raw_path.startswith("/_"):
            return None
        for prefix in self.extra_routes:
            if raw_path == prefix or raw_path.startswith(prefix + "/"):
                return prefix
        return None

    def add_query_route(
        self,
        path: str,
        params: frozenset[str],
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> None:
        """A path that a bucket may also have (`/announce`), taken only by requests whose
        query carries every one of `params`: parameters no S3 request ever sends."""
        assert params
        self.query_routes[path] = (params, handler)

    def build(self, outer: Sequence[Wrapper] = ()) -> web.Application:
        """The aiohttp application: one route, every request through `outer` (outermost
        first), then `_middleware` and `_dispatch`.

        The layers are composed here rather than as aiohttp middlewares: an application
        with none skips aiohttp's middleware machinery (a chain looked up per request and a
        layer of its own that sets `match_info.current_app`), which cost about 2% of a GET.
        """
        app = web.Application(client_max_size=self.svc.settings.limits.max_xml_body)
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]] = partial(
            self._middleware, handler=self._dispatch
        )
        for wrapper in reversed(outer):
            handler = partial(wrapper, handler=handler)
        self.entry = handler
        every_path = _EveryPath()
        app.router.register_resource(every_path)
        every_path.add_route("*", handler, expect_handler=self._defer_expect)
        app.on_response_prepare.append(self._stamp_headers)
        return app

    @staticmethod
    async def _defer_expect(request: web.Request) -> None:
        """`Expect: 100-continue` is answered only once the request is authenticated and
        authorized (in _dispatch): a refused upload gets its error without sending its body."""
        expect = request.headers.get("Expect", "")
        if expect.lower() != "100-continue":
            raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect[:64]}")

    async def _stamp_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.cors_headers is not None and "Origin" in request.headers:
            try:
                response.headers.update(await self.cors_headers(request))
            except Exception:
                # Headers for the browser only: their failure must not lose the answer.
                log.exception("CORS headers for %s %s", request.method, request.path[:200])
        if self.draining:  # closed after it, if too late to say so
            response.force_close()
        self.stamp(request, response)

    def stamp(self, request: web.Request, response: web.StreamResponse) -> None:
        """The headers every answer carries, once it is final (the quick path calls this
        itself: it takes no request with an Origin, so there are no CORS headers to add, but
        its answers may still vary by Origin)."""
        # Absent when aiohttp answered before the middleware ran (a refused Expect). Asked
        # directly: a mapping's .get costs two Python calls on an aiohttp request.
        try:
            rid = request[REQUEST_ID]
        except KeyError:
            rid = new_request_id()
        try:
            exchange: _Exchange | None = request[_EXCHANGE]
        except KeyError:
            exchange = None
        headers = response.headers
        headers.setdefault("x-amz-request-id", rid)
        headers.setdefault("x-amz-id-2", rid)
        headers["Server"] = "s3torrent"
        if self.cors_vary is not None and "Vary" not in headers:
            vary = self.cors_vary(request)
            if vary is not None:
                headers["Vary"] = vary
        if exchange is not None:
            exchange.headers_done = True
            _release_after(request, exchange)

    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        started = time.perf_counter()
        response: web.StreamResponse | None = None
        status = CLIENT_CLOSED
        exchange = request[_EXCHANGE] = _Exchange()
        try:
            response = await self._respond(request, handler)
            status = response.status
            if self.draining:  # said in its headers (a streamed answer's were: _stamp_headers)
                response.force_close()
            return response
        except QuickHandOver:
            # Not answered here (s3/quick.py): aiohttp answers, meters and logs it. Nothing
            # will stamp this request: break its S3Request's cycle now (_release_after).
            exchange.extra = True
            request.pop(S3_REQUEST, None)
            raise
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            if self.on_finished is not None and not exchange.extra:
                self.on_finished(request, response, status, time.perf_counter() - started)
            exchange.hooks_done = True
            _release_after(request, exchange)

    async def _respond(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        rid = new_request_id()
        request[REQUEST_ID] = rid
        try:
            return await handler(request)
        except (StoreError, AccessError) as exc:
            # The inner layers' errors, as S3 errors.
            return self._error(request, s3_error_of(exc), rid)
        except S3Error as err:
            if err.status >= 500:
                log.warning("%s %s -> %s %s", request.method, request.path, err.code, err.message)
            return self._error(request, err, rid)
        except (web.HTTPException, QuickHandOver):
            raise
        except ConnectionError:
            # The client went away mid-request (an aborted upload, a GET cut short: reset or
            # broken pipe): nobody to answer, nothing for the operator to act on, and the
            # bytes it did receive are metered as a client abort (499).
            log.debug("%s %s: client connection lost", request.method, request.path)
            if _headers_sent(request) and request.transport is not None:
                request.transport.abort()  # never an answer inside a streamed one's body
            return web.Response(status=CLIENT_CLOSED)
        except TimeoutError:
            raise
        except Exception as exc:
            if storage_full(exc):
                # A full disk met outside the store's write path: still the client's answer.
                return self._error(request, s3_error_of(StorageFull()), rid)
            if engine_unreachable(exc):
                # PostgreSQL or the blob backend away (restarting, cut off): one line for the
                # operator, and S3's answer to try again, not a traceback and a 500 each.
                log.warning(
                    "%s %s: %s unreachable: %s",
                    request.method,
                    redact_signatures(request.raw_path)[:200],
                    "the blob backend" if "botocore" in type(exc).__module__ else "the database",
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
                return self._error(request, S3Error("ServiceUnavailable", _UNAVAILABLE), rid)
            log.exception(
                "internal error on %s %s", request.method, redact_signatures(request.raw_path)[:200]
            )
            # Through _error like every other refusal: one before 100 Continue must close.
            return self._error(request, S3Error("InternalError"), rid)

    @staticmethod
    def _error(request: web.Request, err: S3Error, rid: str) -> web.Response:
        request[ERROR_CODE] = err.code  # for the access log: a HEAD's answer has no body
        if _headers_sent(request):
            _cut_streamed_answer(request, err)
        resp = error_response(err, rid, request.path, request.method == "HEAD")
        if _awaits_continue(request):
            # Refused before `100 Continue`: the client may or may not send its body, so the
            # connection cannot be read further. Close it after this answer.
            resp.force_close()
        return resp

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path
        raw_path, _, raw_query = raw.partition("?")
        prefix = self._extra_route_of(raw_path)
        if request.method == "OPTIONS" and self.preflight is not None:
            if prefix is not None:
                request[EXTRA_ROUTE] = prefix  # the preflight's path is no bucket's
            return await self.preflight(request)
        quick = is_quick(request)
        if prefix is not None:
            if quick:
                raise QuickHandOver
            request[EXTRA_ROUTE] = prefix
            request[_EXCHANGE].extra = True
            return await self.extra_routes[prefix](request)
        taken = self.query_routes.get(raw_path)
        if taken is not None and taken[0] <= {p.partition("=")[0] for p in raw_query.split("&")}:
            if quick:
                raise QuickHandOver
            request[EXTRA_ROUTE] = raw_path
            request[_EXCHANGE].extra = True
            return await taken[1](request)
        settings = self.svc.settings
        host = request.headers.get("Host")
        line = (request.method, raw, host)
        routed = self._routed.get(line)
        if routed is None:
            target = parse_target(raw_path, host, settings.domain)
            query_pairs: Sequence[tuple[str, str]] = tuple(query_pairs_of(raw_query))
            first: dict[str, str] = {}
            for k, v in query_pairs:
                first.setdefault(k, v)
            query: Mapping[str, str] = MappingProxyType(first)
            endpoint = route(request.method, target, query, request.headers)
        else:
            target, query_pairs, query, endpoint, params = routed
        if quick and endpoint not in _QUICK_ENDPOINTS:
            raise QuickHandOver  # before anything is done: aiohttp does it all
        now = datetime.now(UTC)
        req = S3Request(
            http=request,
            request_id=request[REQUEST_ID],
            now=now,
            raw_path=raw_path,
            target=target,
            endpoint=endpoint,
            query=query,
            query_pairs=query_pairs,
        )
        request[S3_REQUEST] = req
        if routed is None:
            if target.key is not None:
                check_key(target.key)
            params = parse_params(endpoint, query, settings.limits.max_keys)
            if request.method in _ROUTED_METHODS:
                self._routed.keep(line, (target, query_pairs, query, endpoint, params))
        req.params = params
        req.principal, req.auth = await authenticate(
            request,
            raw_path=raw_path,
            query_pairs=query_pairs,
            users=self.svc.users,
            region=settings.region,
            now=now,
            virtual_host_bucket=target.bucket if target.virtual_host else None,
        )
        # Signed headers in the query are headers for everything after; unsigned ones, 403.
        hoisted = query_headers(query_pairs, request.headers, req.auth)
        if hoisted:
            req.http = with_query_headers(request, hoisted)
        await self._authorize(req)
        # What changes S3's semantics and is not acted on is refused, before any body is read.
        owner = req.bucket.owner_id if req.bucket is not None else None
        headers = req.http.headers
        refuse_unsupported(endpoint, headers, query, owner)
        refuse_acls(endpoint, headers, req.bucket.settings if req.bucket else None)
        handler = self.handlers.get(endpoint)
        if handler is None:
            raise S3Error("NotImplemented", f"{endpoint.op} is not implemented.")
        if _awaits_continue(request):
            await request.writer.write(b"HTTP/%d.%d 100 Continue\r\n\r\n" % request.version)
            request[_CONTINUED] = True
        return await handler(self.svc, req)

    async def _upload_initiator(self, req: S3Request) -> str | None:
        """Who started the upload the request names, when it is an upload of the request's
        bucket and key (another's id names no upload there)."""
        up = await self.svc.meta.upload(req.query.get("uploadId", ""))
        return up.initiator_id if up is not None and up.is_at(req.bucket_name, req.key) else None

    async def _authorize(self, req: S3Request) -> None:
        """Load the bucket (and object) and ask the one access decision."""
        ep = req.endpoint
        if ep.scope == "service" or ep is Endpoint.CreateBucket:
            if req.principal.is_anonymous:
                raise S3Error("AccessDenied")
            if ep is Endpoint.CreateBucket:
                req.bucket = await self.svc.meta.bucket(req.bucket_name)
            return
        key = req.target.key
        wants_object = ep in _READS_EXISTING_OBJECT
        version_id = req.query.get("versionId") if ep is not Endpoint.GetObjectTorrent else None
        # One trip to the database for both rows: this is the hot path of every GET.
        bucket, obj = await self.svc.meta.bucket_and_object(
            req.bucket_name, key if wants_object and version_id is None else None
        )
        if bucket is None:
            raise S3Error(
                "NoSuchBucket", resource=req.resource, extra={"BucketName": req.bucket_name}
            )
        req.bucket = bucket
        if ep is Endpoint.PostObject:
            # Its key and principal come with the form: ops.post_object asks the decision.
            return
        if ep is Endpoint.DeleteObjects:
            # S3 decides each key as its own DELETE (ops.deletes), reporting a refused one
            # as that key's AccessDenied: nothing is asked of the bucket itself.
            return
        if wants_object:
            assert key is not None
            if version_id is not None:
                obj = await versioning.named_version(self.svc.meta, bucket, key, version_id)
            req.obj = obj
            if req.obj is None:
                # S3 says NoSuchKey only to those who may list the bucket; others get 403.
                listing = authz.may(
                    req.principal, "s3:ListBucket", bucket, None, None, req.access_context()
                )
                if not listing.allowed:
                    raise S3Error("AccessDenied", resource=req.resource)
                if version_id is not None:
                    raise S3Error(
                        "NoSuchVersion",
                        resource=req.resource,
                        extra={"Key": req.key, "VersionId": version_id},
                    )
                if ep is Endpoint.PutObjectAcl and bucket.versioning is not None:
                    # S3 answers an ACL put on a key whose latest version is a delete
                    # marker as one on the marker itself: 405, not NoSuchKey.
                    marker = await self.svc.meta.latest_delete_marker(bucket.name, req.key)
                    if marker is not None:
                        raise versioning.marker_not_allowed(marker, req.resource, "PUT")
                raise await versioning.no_such_key(self.svc.meta, bucket, req.key, req.resource)
        if ep in _NAMES_AN_UPLOAD:
            req.upload_initiator = await self._upload_initiator(req)
        ctx = req.access_context()
        decision = authz.may(req.principal, ep.action_for(req.query), bucket, key, req.obj, ctx)
        if not decision.allowed:
            if ep is Endpoint.PutObjectTagging and authz.tests_request_tags(bucket):
                # Decided on the tags of its body, once read (ops.tagging): asked without
                # them, an Allow on s3:RequestObjectTag is never met.
                return
            raise S3Error("AccessDenied", resource=req.resource)
        req.allowed_by_acl = decision.by_acl
        if req.obj is not None and req.obj.delete_marker:
            # A delete marker named by its version id: it has no data, ACL or tags.
            raise versioning.marker_not_allowed(req.obj, req.resource, req.http.method)
