"""Requests that come through a reverse proxy (TLS is a proxy's job here): the client a
trusted proxy names in `X-Forwarded-For`, and whether the client's own connection was TLS
(`X-Forwarded-Proto`). Believed only from the addresses in `trusted_proxies`; from anyone
else both headers are the client's own words and are ignored.

The access decision (aws:SourceIp, aws:SecureTransport), SSE-C's HTTPS rule, the web seed's
per-client decisions and the access log ask `client_address` and `client_secure` instead of
the connection's own address and scheme."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def parse_networks(
    values: Iterable[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks of a `trusted_proxies` list (an address is a network of one); ValueError
    names the entry that is neither."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or network: {value!r}") from None
    return tuple(networks)


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = value.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:1234", as some proxies write
        text = text[1 : text.index("]")]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The reverse proxies whose forwarding headers are believed."""

    __slots__ = ("_networks",)

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = parse_networks(networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str | None) -> bool:
        if not address or not self._networks:
            return False
        ip = _address(address)
        return ip is not None and any(ip in network for network in self._networks)

    def client_ip(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address: the connection's peer, or the nearest hop of
        `X-Forwarded-For` that no trusted proxy stands for (walking from the nearest hop
        outwards while each hop that told us is trusted). A hop that is not an address
        stops the walk at the proxy that wrote it."""
        hops = [hop.strip() for hop in (forwarded_for or "").split(",") if hop.strip()]
        candidate = peer
        while hops and self.trusts(candidate):
            hop = hops.pop()
            ip = _address(hop)
            if ip is None:
                break
            candidate = str(ip)
        return candidate

    def secure(self, peer: str | None, forwarded_proto: str | None, secure: bool) -> bool:
        """Whether the client's connection was TLS: the nearest `X-Forwarded-Proto` value
        when a trusted proxy sent the request, else the connection's own scheme."""
        if forwarded_proto is None or not self.trusts(peer):
            return secure
        nearest = forwarded_proto.rsplit(",", 1)[-1].strip().lower()
        return nearest == "https"


@dataclass(frozen=True, slots=True)
class Client:
    """The client of a request that a trusted proxy forwarded."""

    address: str
    secure: bool


CLIENT: web.RequestKey[Client] = web.RequestKey("s3torrent_forwarded_client", Client)
# Whether any request of this process may carry a CLIENT: until a forwarded_client_middleware
# exists (never, with no trusted_proxies) the answers below skip the lookup, whose KeyError
# would cost every request about a microsecond.
_IN_USE = [False]


def forwarded_client_middleware(
    proxies: TrustedProxies,
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Outermost on every worker when `trusted_proxies` is set: a request from a trusted
    proxy carries the client it names (CLIENT)."""
    _IN_USE[0] = True

    @web.middleware
    async def forwarded_client(request: web.Request, handler: Handler) -> web.StreamResponse:
        peer = request.remote
        if proxies.trusts(peer):
            assert peer is not None
            headers = request.headers
            # Every line of each, in order: a proxy that adds a line of its own, instead of
            # appending to the client's, must still have the last word.
            forwarded_for = ", ".join(headers.getall("X-Forwarded-For", ())) or None
            forwarded_proto = ", ".join(headers.getall("X-Forwarded-Proto", ())) or None
            request[CLIENT] = Client(
                proxies.client_ip(peer, forwarded_for),
                proxies.secure(peer, forwarded_proto, request.secure),
            )
        return await handler(request)

    return forwarded_client


def client_address(request: web.BaseRequest) -> str | None:
    """The request's client address: the one a trusted proxy named, else the peer's."""
    if _IN_USE[0]:
        try:
            return request[CLIENT].address
        except KeyError:
            pass
    return request.remote


def client_secure(request: web.BaseRequest) -> bool:
    """Whether the client's own connection was TLS (a trusted proxy's word, else ours)."""
    if _IN_USE[0]:
        try:
            return request[CLIENT].secure
        except KeyError:
            pass
    return request.secure
