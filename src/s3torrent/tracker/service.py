"""The one tracker handler every transport calls: bytes in, bytes out, `now` passed in."""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from s3torrent.forwarding import TrustedProxies
from s3torrent.tracker.protocol import (
    AnnounceRequest,
    ScrapeStats,
    TrackerError,
    encode_announce_response,
    encode_failure,
    encode_scrape_response,
    is_ipv6,
    normalize_ip,
    parse_http_announce,
    parse_http_scrape,
)
from s3torrent.tracker.registry import AnnounceFailure, AnnounceResult, TrackerRegistry
from s3torrent.tracker.udp_protocol import (
    ACTION_ANNOUNCE,
    ACTION_SCRAPE,
    UDP_MAX_SCRAPE_HASHES,
    UDP_REQUEST_ACTIONS,
    UdpAnnounce,
    UdpConnect,
    UdpScrape,
    check_connection_id,
    encode_udp_announce,
    encode_udp_connect,
    encode_udp_error,
    encode_udp_scrape,
    make_connection_id,
    parse_udp_request,
    udp_action,
    udp_transaction_id,
)

log = logging.getLogger(__name__)

_ZERO = ScrapeStats(0, 0, 0)


class Later(enum.Enum):
    """`answer_udp_now`'s word for "not without waiting": `handle_udp` answers it."""

    LATER = enum.auto()


LATER: Final = Later.LATER


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    interval: int = 1800
    min_interval: int = 60
    max_numwant: int = 200
    default_numwant: int = 50
    # Honour the announce `ip` parameter / UDP ip field only when peers are trusted hosts.
    trust_ip_param: bool = False
    # Addresses or networks whose X-Forwarded-For we believe (a reverse proxy in front of us).
    trusted_proxies: frozenset[str] = frozenset()
    max_query_bytes: int = 4096
    max_scrape_hashes: int = 64
    # A full scrape lists every public torrent at once; off unless an operator wants it.
    allow_full_scrape: bool = False
    # Keys the UDP connection ids until `TrackerService.key_connection_ids` (app: a key
    # every worker and node derives alike).
    udp_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)


class TrackerService:
    """Parses, asks the registry, encodes. Never raises: every input gets an answer body."""

    def __init__(
        self,
        registry: TrackerRegistry,
        settings: TrackerSettings | None = None,
        *,
        id_clock: Callable[[], float] | None = None,
    ):
        """id_clock: the time UDP connection ids are made and checked by, where it must be
        one every process agrees on (the wall clock: an id another node gave, whose
        monotonic clock is its own); None: the `now` each call is given."""
        self._registry = registry
        # The registry's announce without a coroutine, where it has one (None: it would wait).
        self._announce_now: (
            Callable[[AnnounceRequest, float], AnnounceResult | AnnounceFailure | None] | None
        ) = getattr(registry, "announce_now", None)
        self._settings = settings or TrackerSettings()
        self._udp_secret = self._settings.udp_secret
        self._id_clock = id_clock
        self._proxies = TrustedProxies(self._settings.trusted_proxies)
        # The hashes among those asked whose torrents a client at an address may use now,
        # where the registry decides access (ResolvingRegistry.admitted); None: all.
        self._admitted: Callable[[tuple[bytes, ...], str], Awaitable[tuple[bytes, ...]]] | None = (
            getattr(registry, "admitted", None)
        )

    @property
    def settings(self) -> TrackerSettings:
        return self._settings

    def key_connection_ids(self, secret: bytes) -> None:
        """Key UDP connection ids with `secret` from now on (udp_protocol.derive_udp_secret:
        one that every worker and node of the deployment holds alike)."""
        self._udp_secret = secret

    def client_ip(self, peer_ip: str, forwarded_for: str | None) -> str:
        """The client's address: the socket peer, or the nearest untrusted X-Forwarded-For hop."""
        return self._proxies.client_ip(peer_ip, forwarded_for)

    async def handle_http_announce(self, raw_query: bytes, remote_ip: str, now: float) -> bytes:
        """Bencoded answer to one HTTP announce; failures are `failure reason` bodies."""
        req = self.parse_http_announce(raw_query, remote_ip)
        if isinstance(req, bytes):
            return req
        return await self.answer_announce(req, now)

    def start_http_announce(
        self, raw_query: bytes, remote_ip: str, now: float
    ) -> bytes | asyncio.Future[bytes]:
        """`handle_http_announce`'s answer if it is ready at once (nearly always: a
        published torrent and a registry that never waits), else a future of it. No
        coroutine per announce: the lean listeners' path."""
        req = self.parse_http_announce(raw_query, remote_ip)
        if isinstance(req, bytes):
            return req
        answer = self.answer_parsed_now(req, now)
        if answer is None:
            return asyncio.ensure_future(self.answer_announce(req, now))
        return answer

    def answer_parsed_now(self, req: AnnounceRequest, now: float) -> bytes | None:
        """The answer to a parsed announce if the registry gives it without waiting, else
        None (then `answer_announce`); a registry error is answered as `answer_announce`
        answers it."""
        try:
            result = self.announce_now(req, now)
        except Exception:
            log.exception("tracker announce failed")
            return encode_failure("internal error")
        return None if result is None else self.http_announce_answer(req, result)

    async def answer_announce(self, req: AnnounceRequest, now: float) -> bytes:
        """The answer to a parsed announce, waiting for the registry where it must."""
        try:
            result = await self._registry.announce(req, now)
        except Exception:
            log.exception("tracker announce failed")
            return encode_failure("internal error")
        return self.http_announce_answer(req, result)

    def parse_http_announce(self, raw_query: bytes, remote_ip: str) -> AnnounceRequest | bytes:
        """The request an HTTP announce makes, or the `failure reason` body it gets at once.

        With `announce_now` and `http_announce_answer`, the steps of `handle_http_announce`
        one by one: a worker that relays announces to the owner parses and answers them
        itself, and the owner only runs the registry (tracker/relay.py)."""
        s = self._settings
        try:
            return parse_http_announce(
                raw_query,
                remote_ip=remote_ip,
                trust_ip_param=s.trust_ip_param,
                max_numwant=s.max_numwant,
                default_numwant=s.default_numwant,
                max_query_bytes=s.max_query_bytes,
            )
        except TrackerError as error:
            return encode_failure(error.reason)

    def announce_now(
        self, req: AnnounceRequest, now: float
    ) -> AnnounceResult | AnnounceFailure | None:
        """The registry's answer to `req` without waiting, or None where it would wait
        (then `answer_announce`)."""
        if self._announce_now is None:
            return None
        return self._announce_now(req, now)

    def http_announce_answer(
        self, req: AnnounceRequest, result: AnnounceResult | AnnounceFailure
    ) -> bytes:
        """The bencoded body that answers `req` with the registry's `result`."""
        if isinstance(result, AnnounceFailure):
            return encode_failure(result.reason)
        s = self._settings
        warning = None
        if req.warnings or result.warning:
            warning = "; ".join([*req.warnings, *([result.warning] if result.warning else [])])
        return encode_announce_response(
            interval=s.interval,
            min_interval=s.min_interval,
            complete=result.complete,
            incomplete=result.incomplete,
            peers=result.peers,
            compact=req.compact,
            no_peer_id=req.no_peer_id,
            warning=warning,
        )

    async def _scrape(
        self, hashes: tuple[bytes, ...], remote_ip: str, now: float
    ) -> dict[bytes, ScrapeStats]:
        """The stats of the hashes a client at remote_ip may use (as its announce would be
        decided); the others are left out, as unknown ones are."""
        if self._admitted is not None:
            hashes = await self._admitted(hashes, remote_ip)
        return await self._registry.scrape(hashes, now) if hashes else {}

    async def handle_http_scrape(self, raw_query: bytes, remote_ip: str, now: float) -> bytes:
        """BEP 48 answer: unregistered hashes, and those the client may not use, are left
        out of `files`, as unknown ones are."""
        s = self._settings
        try:
            req = parse_http_scrape(
                raw_query, s.max_scrape_hashes, max_query_bytes=s.max_query_bytes
            )
            hashes = req.info_hashes
            if not hashes:
                if not s.allow_full_scrape:
                    return encode_failure("full scrape not supported")
                hashes = tuple(await self._registry.registered())
            # Canonical, as an announce's source: the decision and the lookup budget
            # (ResolvingRegistry) go by it.
            files = await self._scrape(hashes, normalize_ip(remote_ip), now)
        except TrackerError as error:
            return encode_failure(error.reason)
        except Exception:
            log.exception("tracker scrape failed")
            return encode_failure("internal error")
        return encode_scrape_response(files)

    async def handle_udp(self, packet: bytes, addr: tuple[str, int], now: float) -> bytes | None:
        """Answer one BEP 15 datagram; None means send nothing."""
        transaction_id = udp_transaction_id(packet)
        if transaction_id is None or udp_action(packet) not in UDP_REQUEST_ACTIONS:
            return None  # too short to address an answer to, or no request (see _udp_error)
        try:
            return await self._handle_udp(packet, addr, now)
        except TrackerError as error:
            return _udp_error(packet, transaction_id, error.reason)
        except Exception:
            log.exception("udp tracker request failed")
            return _udp_error(packet, transaction_id, "internal error")

    def answer_udp_now(
        self, packet: bytes, addr: tuple[str, int], now: float
    ) -> bytes | Later | None:
        """`handle_udp` without a coroutine: the answer where it is ready at once (a
        connect, an error, an announce of a torrent this process has published and whose
        registry never waits: nearly every datagram), else LATER for `handle_udp`. A
        coroutine per datagram, and the ones it awaits, were a third of an announce's cost."""
        transaction_id = udp_transaction_id(packet)
        action = None if transaction_id is None else udp_action(packet)
        if transaction_id is None or action not in UDP_REQUEST_ACTIONS:
            return None  # too short to address an answer to, or no request (see _udp_error)
        # What only `handle_udp` can answer goes to it unparsed, so nothing is parsed twice:
        # a scrape, and every announce when the registry waits (Redis).
        if action == ACTION_SCRAPE or (action == ACTION_ANNOUNCE and self._announce_now is None):
            return LATER
        try:
            request = self._udp_request(packet, addr, now)
            if not isinstance(request, UdpAnnounce):
                return request if isinstance(request, bytes) else LATER
            assert self._announce_now is not None
            result = self._announce_now(request.request, now)
            if result is None:
                return LATER
            return self._udp_announce_answer(request, addr, result)
        except TrackerError as error:
            return _udp_error(packet, transaction_id, error.reason)
        except Exception:
            log.exception("udp tracker request failed")
            return _udp_error(packet, transaction_id, "internal error")

    async def _handle_udp(self, packet: bytes, addr: tuple[str, int], now: float) -> bytes | None:
        request = self._udp_request(packet, addr, now)
        if isinstance(request, bytes):
            return request
        if isinstance(request, UdpAnnounce):
            result = await self._registry.announce(request.request, now)
            return self._udp_announce_answer(request, addr, result)
        return await self._udp_scrape(request, addr[0], now)

    def _udp_request(
        self, packet: bytes, addr: tuple[str, int], now: float
    ) -> bytes | UdpAnnounce | UdpScrape:
        """The request to answer, or the answer itself: a connect's, or a refusal of an
        invalid connection id."""
        s = self._settings
        request = parse_udp_request(
            packet,
            remote_ip=addr[0],
            trust_ip_param=s.trust_ip_param,
            max_numwant=s.max_numwant,
            default_numwant=s.default_numwant,
            max_scrape_hashes=UDP_MAX_SCRAPE_HASHES,
        )
        when = now if self._id_clock is None else self._id_clock()
        if isinstance(request, UdpConnect):
            connection_id = make_connection_id(self._udp_secret, addr, when)
            return encode_udp_connect(request.transaction_id, connection_id)
        # The connection id proves the source address is real; without it our (bigger)
        # answers could be aimed at a spoofed victim.
        if not check_connection_id(self._udp_secret, addr, request.connection_id, when):
            return _udp_error(packet, request.transaction_id, "invalid connection id")
        return request

    def _udp_announce_answer(
        self,
        request: UdpAnnounce,
        addr: tuple[str, int],
        result: AnnounceResult | AnnounceFailure,
    ) -> bytes:
        if isinstance(result, AnnounceFailure):
            return encode_udp_error(request.transaction_id, result.reason)
        # BEP 15: the answer carries peers of the family of the socket the request came on.
        return encode_udp_announce(
            request.transaction_id,
            self._settings.interval,
            leechers=result.incomplete,
            seeders=result.complete,
            peers=result.peers,
            ipv6=is_ipv6(normalize_ip(addr[0])),
        )

    async def _udp_scrape(self, request: UdpScrape, remote_ip: str, now: float) -> bytes:
        files = await self._scrape(request.request.info_hashes, normalize_ip(remote_ip), now)
        # UDP answers are positional, so an unregistered hash must still take its slot.
        stats = [files.get(info_hash, _ZERO) for info_hash in request.request.info_hashes]
        return encode_udp_scrape(request.transaction_id, stats)


def _udp_error(packet: bytes, transaction_id: int, reason: str) -> bytes:
    """The error answer to `packet`, never longer than it: an error goes where the request
    says it came from, which no connection id has proven yet (a malformed request, one with
    a stale or forged id), so a longer one would make us an amplifier for spoofed sources
    (a 16-byte request had got up to 67 bytes). The client still learns, by its transaction
    id, that its request failed."""
    return encode_udp_error(transaction_id, reason, within=len(packet))
