"""The web seed (BEP 19): BitTorrent clients' range GETs, under the seeder's offload policy.

A torrent's ``url-list`` names ``/_webseed/<swarm id hex>/`` on the HTTP listener, never the
plain object URL, so ordinary GETs stay exactly as S3 serves them and this handler knows
every request it sees is a web-seed request. Clients append the torrent's name (the URL
ends in "/"), which is ignored: the swarm id names the version.

Each request is admitted by the one decision with its own context, as an announce or a peer
connection (``PublicTorrents.admit``), metered as GetObject-WebSeed, and then asks the torrent's
``SwarmPolicy`` piece by piece, like the seeder: it sends what the swarm lacks (everything
to a client downloading alone). A request whose first piece the swarm already has gets 503
with Retry-After (libtorrent then leaves the web seed alone that long; aria2 drops it and
keeps its peers), and the connection closes after it (requests pipelined behind the refused
one are never answered: the client would drop their answers); one that reaches such a piece
part-way is cut at the piece boundary. A revocation cuts running responses within a second
(``AnonymousReads``). Requests of clients listed in ``seeder.web_seed_hold_agents``
(WebTorrent) wait, unanswered, while the same client's peer wire to us serves it
(``peer/web_hold.py``), and are then asked of the decision and the policy afresh.

It lives above both edges: it needs the seeder's per-torrent policy (peer) and S3's range
parsing (s3), and neither edge may import the other.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from s3torrent.anonymous_reads import AnonymousReads, cut_transport, reset_transport
from s3torrent.corking import corked
from s3torrent.forwarding import client_address
from s3torrent.metering.meter import CLIENT_CLOSED, OP_WEBSEED, billed_to_owner
from s3torrent.peer.web_hold import held_agent, keep_holding
from s3torrent.roles import client_connection
from s3torrent.s3.errors import S3Error
from s3torrent.s3.ranges import parse_range
from s3torrent.s3.validators import raise_failed_condition, requested_range
from s3torrent.s3.xml import http_date
from s3torrent.store.objects import ObjectStore
from s3torrent.store.sealed_format import TamperedBlob
from s3torrent.store.usage_rows import NO_BUCKET
from s3torrent.torrent.catalog import WEB_SEED_PATH

if TYPE_CHECKING:
    from s3torrent.metering.meter import Meter
    from s3torrent.peer.policy_types import PeerRecord
    from s3torrent.peer.seeder import Seeder
    from s3torrent.peer.swarm import Swarm
    from s3torrent.publication import PublicTorrents
    from s3torrent.store import rows as md
    from s3torrent.torrent.catalog import TorrentInfo

__all__ = ["WEB_SEED_PREFIX", "WebSeed"]

log = logging.getLogger(__name__)

WEB_SEED_PREFIX = WEB_SEED_PATH
RETRY_AFTER = 10  # seconds a refused client should leave the web seed alone
CHUNK = 1 << 20  # bytes decided (and sent) at a time
HOLD_RECHECK = 0.25  # seconds between a held request's looks at the clock


class _Cut(Exception):
    """The policy or a revocation ended the response part-way."""


class WebSeed:
    """The handler of ``/_webseed/...``."""

    def __init__(
        self,
        public: PublicTorrents,
        store: ObjectStore,
        reads: AnonymousReads,
        *,
        seeder: Seeder | None = None,
        meter: Meter | None = None,
        retry_after: int = RETRY_AFTER,
        browsers: Callable[[bytes], int] | None = None,
    ) -> None:
        self.public = public
        self.store = store
        self.reads = reads
        self.seeder = seeder
        self.meter = meter
        self.retry_after = retry_after
        # Browsers in this node's WebSocket-tracker swarm of a swarm id (None: no tracker).
        self.browsers = browsers
        # User-Agent prefixes whose requests wait while their peer wire serves them.
        self.hold_agents: tuple[str, ...] = (
            tuple(seeder.settings.web_seed_hold_agents) if seeder is not None else ()
        )

    async def bucket_of(self, path: str, source_ip: str | None) -> str | None:
        """The bucket of the public torrent a web-seed path names, if a client at source_ip
        may use it now (for the CORS rules of its answers)."""
        swarm_id = _swarm_id(path)
        info = await self.public.admit(swarm_id, source_ip) if swarm_id is not None else None
        return info.bucket if info is not None else None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        sent = [0]
        status = CLIENT_CLOSED
        # The torrent admitted, set as soon as it is: a client that hangs up mid-body ends
        # _respond with a ConnectionError, and what it was sent is metered all the same.
        admitted: list[TorrentInfo | None] = [None]
        try:
            response = await self._respond(request, sent, admitted)
            status = response.status
            return response
        except ConnectionError:
            return web.Response(status=CLIENT_CLOSED)
        finally:
            info = admitted[0]
            if self.meter is not None and info is not None:
                ok = status < 300 or status == CLIENT_CLOSED
                billed = billed_to_owner(status, by_owner=False)  # anonymous
                self.meter.record(
                    info.bucket,
                    OP_WEBSEED,
                    status,
                    sent[0],
                    0,
                    time.perf_counter() - started,
                    info.key if ok else None,
                    created=info.bucket_created if billed else NO_BUCKET,
                )

    async def relay(
        self,
        request: web.Request,
        forward: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        """A web-seed request the owner worker answers (its seeder holds the offload
        policy), relayed by this worker (owner_link): a revocation resets the client's
        connection here too, whose kernel would otherwise send what the relay had written
        (up to a send buffer, 4 MiB, and the owner's reset stops only the owner's own
        socket), and the bytes dropped come off what the owner metered."""
        swarm_id = _swarm_id(request.path)
        source_ip = client_address(request)
        info = await self.public.admit(swarm_id, source_ip, request.headers) if swarm_id else None
        if info is None:
            return await forward(request)  # the owner gives the refusal its answer
        dropped = [-1]

        def cut_now() -> None:
            if request.writer.output_size == 0:
                # Nothing went out to the client yet (a request the owner holds): the
                # owner's refusal is its answer, not a reset.
                return
            dropped[0] = reset_transport(request.transport)

        token = self.reads.track(
            info.version_id,
            cut_now,
            lambda: self._still_public(info, source_ip, request.headers),
            bucket=info.bucket,
            key=info.key,
        )
        try:
            response = await forward(request)
            # The owner cut its answer short: at a piece boundary (the offload policy: the
            # client keeps what it got), or revoked, perhaps before this worker's own
            # re-decision came: then reset it here too.
            transport = request.transport
            cut_short = dropped[0] < 0 and (transport is None or transport.is_closing())
            if cut_short and not await self._still_public(info, source_ip, request.headers):
                cut_now()
            return response
        finally:
            self.reads.done(info.version_id, token)
            if dropped[0] > 0 and self.meter is not None:
                # Counted by the owner when it went into the relay: no request of its own.
                self.meter.record(
                    info.bucket, OP_WEBSEED, 206, -dropped[0], 0, 0.0, info.key, 0,
                    info.bucket_created,
                )  # fmt: skip

    async def _respond(
        self, request: web.Request, sent: list[int], admitted: list[TorrentInfo | None]
    ) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, headers={"Allow": "GET, HEAD"})
        swarm_id = _swarm_id(request.path)
        if swarm_id is None:
            return web.Response(status=404, text="no such web seed\n")
        # The one decision, with this client's address, the time and its headers.
        info = await self.public.admit(swarm_id, client_address(request), request.headers)
        if info is None:
            return _not_public()
        admitted[0] = info
        obj = await self.store.meta.object_by_version(info.version_id)
        if obj is None or obj.size != info.hashes.length:
            return web.Response(status=404, text="no such object\n")
        validators = {
            "ETag": obj.etag,
            "Last-Modified": http_date(obj.last_modified),
            # A cache may keep an answer but must ask again before each use: a revocation
            # then reaches it (the question is admitted first), where a heuristic freshness
            # from Last-Modified (RFC 9111 4.2.2) would have let a shared cache serve it on.
            "Cache-Control": "no-cache",
        }
        try:
            # Its conditions as a GET of the object's own URL has them evaluated (RFC 9110
            # 13.2.1), before the offload policy: a 304 or 412 costs the origin nothing.
            raise_failed_condition(request.headers, obj.etag, obj.last_modified, lambda: validators)
            rng = parse_range(requested_range(request.headers, obj), obj.size)
        except S3Error as err:
            return web.Response(status=err.status, headers=err.headers)
        start, count = (rng.start, rng.length) if rng is not None else (0, obj.size)
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            **validators,
        }
        status = 200
        if rng is not None:
            status = 206
            headers["Content-Range"] = f"bytes {rng.start}-{rng.end}/{obj.size}"
        swarm = self.seeder.swarm_of(info) if self.seeder is not None else None
        if request.method == "HEAD":
            head = web.StreamResponse(status=status, headers=headers)
            head.content_length = count
            return head
        client: str | None = None
        peer_wire = True
        if swarm is not None and count:
            client, peer_wire = self._observe(request, swarm)
            swarm.tstats.web_seed_requests += 1
            first = start // info.hashes.piece_length
            last = (start + count - 1) // info.hashes.piece_length
            if held_agent(request.headers.get("User-Agent"), self.hold_agents):
                await self._hold(swarm, client, first, last)
                # Answered now: asked again with the time and facts of now.
                again = await self.public.admit(swarm_id, client_address(request), request.headers)
                if again is None or again.version_id != info.version_id:
                    return _not_public()
                client, peer_wire = self._observe(request, swarm)
            continuing = start % info.hashes.piece_length != 0
            if not swarm.policy.web_seed_allows(
                first, time.monotonic(), continuing=continuing, client=client, peer_wire=peer_wire
            ):
                # The swarm has it: get it from the peers.
                swarm.policy.web_seed_refused(client, time.monotonic(), first)
                swarm.tstats.web_seed_refused += 1
                delay = swarm.policy.web_seed_refusal_delay(client, time.monotonic(), peer_wire)
                if delay > 0:
                    await asyncio.sleep(delay)  # a client asking again at once waits
                return _refusal(self.retry_after)
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = count
        cut = [False]

        def cut_now() -> None:
            cut[0] = True
            cut_transport(request.transport)

        token = self.reads.track(
            info.version_id,
            cut_now,
            lambda: self._still_public(info, client_address(request), request.headers),
            bucket=info.bucket,
            key=info.key,
        )
        try:
            await resp.prepare(request)
            await self._stream(
                request, resp, obj, info, swarm, start, count, sent, cut, client, peer_wire
            )
        except (_Cut, TamperedBlob):
            # The client gets a short body; it keeps the whole pieces it received (a sealed
            # chunk that fails its tag was logged where it was read, and is never sent).
            cut_transport(request.transport)
            return resp
        finally:
            self.reads.done(info.version_id, token)
            if cut[0]:
                # Revoked: what the kernel still held for the client is dropped, never sent.
                sent[0] = max(0, sent[0] - reset_transport(request.transport))
        await resp.write_eof()
        return resp

    async def _stream(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        obj: md.ObjectVersion,
        info: TorrentInfo,
        swarm: Swarm | None,
        start: int,
        count: int,
        sent: list[int],
        cut: list[bool],
        client: str | None = None,
        peer_wire: bool = True,
    ) -> None:
        piece_length = info.hashes.piece_length
        pos, end = start, start + count
        # Inline, sealed (read and opened) or remote: no file to sendfile from.
        direct = obj.inline is None and not info.sealed
        path = self.store.blobs.local_path(obj.version_id) if direct else None
        fobj = open(path, "rb") if path is not None else None  # noqa: SIM115
        try:
            while pos < end:
                # A revocation cuts through AnonymousReads after its grace (an access change
                # that keeps the object public must not cut anyone); a closed swarm at once.
                if cut[0] or (swarm is not None and swarm.closed):
                    raise _Cut
                # A peer wire of the client's that connected meanwhile makes it one client
                # with its peer-wire self (policy.web_seed_alone), not another beside it.
                peer_wire = peer_wire or (swarm is not None and bool(swarm.links_of(client)))
                stop = self._allowed_run(swarm, piece_length, pos, end, client, peer_wire)
                if stop == pos:
                    raise _Cut
                await self._send(request, resp, obj, fobj, pos, stop - pos, sent)
                pos = stop
        finally:
            if fobj is not None:
                fobj.close()

    @staticmethod
    async def _hold(swarm: Swarm, client: str | None, first: int, last: int) -> None:
        """Wait, unanswered, while the client's peer wire to us serves it (web_hold.py)."""
        holds = swarm.web_holds
        started = time.monotonic()
        peers = _records(swarm, client)
        if not holds.begin(client, started, wired=bool(peers)):
            return
        swarm.tstats.web_seed_held += 1
        wired = False
        try:
            while not swarm.closed:
                now = time.monotonic()
                wired = wired or bool(peers)
                piece_count = swarm.policy.piece_count
                if not keep_holding(peers, first, last, piece_count, now - started, now):
                    return
                await swarm.hear(HOLD_RECHECK)
                peers = _records(swarm, client)
        finally:
            holds.end(client, time.monotonic(), wired=wired)

    def _observe(self, request: web.Request, swarm: Swarm) -> tuple[str | None, bool]:
        """Tell the policy who asks: the client (its address: one client's
        several connections are one client), how many downloaders the tracker hears from,
        how many browsers the WebSocket tracker has in the swarm, and whether the client
        also has a peer-wire connection to us (same address)."""
        # Not the User-Agent too: some of libtorrent's requests carry none (swarm_field).
        client = client_address(request)
        now = time.monotonic()
        policy = swarm.policy
        # Its connection as the client made it (forwarded by another worker or not).
        connection = client_connection(request.transport, request.headers)
        policy.web_seed_request(client, now, connection)
        policy.tracked_downloaders(
            sum(1 for _seen, seed in swarm.announced.values() if not seed), now
        )
        if self.browsers is not None:
            policy.tracked_browsers(sum(self.browsers(sid) for sid in swarm.info.swarm_ids))
        peer_wire = bool(swarm.links_of(client))
        return client, peer_wire

    @staticmethod
    def _allowed_run(
        swarm: Swarm | None,
        piece_length: int,
        pos: int,
        end: int,
        client: object = None,
        peer_wire: bool = True,
    ) -> int:
        """Where the next run of bytes the policy lets out (up to CHUNK) ends."""
        if swarm is None:
            return min(end, pos + CHUNK)
        policy = swarm.policy
        now = time.monotonic()
        stop = pos
        while stop < end and stop - pos < CHUNK:
            index = stop // piece_length
            continuing = stop % piece_length != 0
            if not policy.web_seed_allows(
                index, now, continuing=continuing, client=client, peer_wire=peer_wire
            ):
                policy.web_seed_refused(client, now, index)  # cut there
                break
            piece_end = min((index + 1) * piece_length, end)
            policy.web_seed_sent(index, piece_end - stop, now, client=client, peer_wire=peer_wire)
            swarm.tstats.web_seed_bytes += piece_end - stop
            stop = piece_end
        return stop

    async def _send(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        obj: md.ObjectVersion,
        fobj: object,
        offset: int,
        length: int,
        sent: list[int],
    ) -> None:
        if fobj is None:
            async for chunk in self.store.object_chunks(obj, offset, length):
                await resp.write(chunk)
                sent[0] += len(chunk)
            return
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("client went away")
        done = 0
        try:
            with corked(transport):  # whole segments (corking.py)
                done = await asyncio.get_running_loop().sendfile(
                    transport,
                    fobj,  # type: ignore[arg-type]
                    offset,
                    length,
                )
        finally:
            sent[0] += done or max(0, fobj.tell() - offset)  # type: ignore[attr-defined]

    async def _still_public(
        self, info: TorrentInfo, source_ip: str | None, headers: Mapping[str, str]
    ) -> bool:
        current = self.public.get(info.swarm_ids[0])
        return (
            current is not None
            and current.version_id == info.version_id
            and self.public.admits(current, source_ip, headers)
        )


def _records(swarm: Swarm, client: str | None) -> list[PeerRecord]:
    """The policy's records of the client's peer-wire connections."""
    peers = swarm.policy.peers
    return [r for link in swarm.links_of(client) if (r := peers.get(link.key)) is not None]


def _not_public() -> web.Response:
    return web.Response(status=403, text="not a public torrent\n")


def _refusal(retry_after: int) -> web.Response:
    """503 with Retry-After, and the connection closed after it: libtorrent drops a web
    seed's connection on a 503 and with it the answers to the requests it had pipelined
    behind the refused one, so bytes sent on it after the 503 would be taken (by the policy)
    for pieces delivered that the client never keeps, and its swarm would wait for them."""
    response = web.Response(status=503, headers={"Retry-After": str(retry_after)})
    response.force_close()
    return response


def _swarm_id(path: str) -> bytes | None:
    rest = path[len(WEB_SEED_PREFIX) :]
    if not rest.startswith("/"):
        return None
    text = rest[1:].split("/", 1)[0]
    if len(text) != 40:
        return None
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        return None
