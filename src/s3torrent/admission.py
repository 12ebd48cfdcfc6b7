"""Connection admission, sans-IO: who may hold an open connection, and accept back-off.

Every listener of a process (S3 HTTP, the lean tracker, the seeder) draws from one file
descriptor limit, so they share one `Admission`: a global cap kept below that limit and a
cap per client address. When the global cap is reached, a newcomer from an address that
holds less than its fair share (cap / addresses) gets an idle connection evicted for it (the
oldest that never completed a request, else the oldest idle keep-alive one), so silent or
trickling connections cannot lock out other clients; a newcomer from an address holding
more, or with every slot busy with a request, is refused. `AcceptBackoff` is what an
accept loop does when the process is out of descriptors anyway (files or outgoing sockets
took the reserve): lower the cap and close idle connections (`Admission.shrink`), pause,
retry, and say so once in a while.
No sockets and no clock here: callers pass `now`.
"""

from __future__ import annotations

import enum
import errno
import ipaddress
from collections.abc import Callable, Hashable
from dataclasses import dataclass, replace
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# accept() errors that mean "no resources now", not "this connection is bad".
EXHAUSTION_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# Descriptors freed when accept() ran out of them below the cap: the cap drops this far
# under the connections open, and idle ones are closed down to it.
EXHAUSTION_MARGIN: Final = 32

# Connections looked at per eviction before giving up: busy ones are moved to the back,
# so a long run of busy connections costs one scan, not one per newcomer.
EVICTION_SCAN: Final = 64


class Evictability(enum.IntEnum):
    """How readily a connection may be closed to make room, from never to first."""

    BUSY = 0  # serving a request (receiving its body, computing or sending the answer)
    IDLE = 1  # between requests on keep-alive: a client that has sent requests before
    NO_REQUEST = 2  # nothing complete received yet: silent, trickling, or just connected


class Refusal(enum.Enum):
    PER_IP = "per-ip"
    TOTAL = "total"


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    max_connections: int
    max_per_ip: int


@dataclass(frozen=True, slots=True)
class Decision(Generic[K]):
    """The answer to one newcomer: admitted (possibly by evicting `evicted`) or refused."""

    refused: Refusal | None = None
    evicted: K | None = None

    @property
    def admitted(self) -> bool:
        return self.refused is None


def client_key(ip: str) -> str:
    """The address a per-client cap counts: IPv4 as is, IPv6 by its /64.

    One IPv6 host is usually given a whole /64, so counting single addresses would let it
    take any number of places.
    """
    if ":" not in ip:
        return ip
    try:
        address = ipaddress.IPv6Address(ip.partition("%")[0])
    except ValueError:
        return ip
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


def connection_cap(configured: int, soft_file_limit: int, reserve: int) -> int:
    """The global cap: the setting, lowered to leave `reserve` descriptors free.

    A negative `soft_file_limit` means unlimited. Never below 1: a process whose limit is
    smaller than its reserve still serves one connection at a time rather than none.
    """
    if soft_file_limit < 0:
        return max(1, configured)
    return max(1, min(configured, soft_file_limit - reserve))


class Admission(Generic[K]):
    """Open connections by client address and in admission order; the caps over them."""

    __slots__ = ("_order", "_per_ip", "evicted", "limits", "refused_per_ip", "refused_total")

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self._order: dict[K, str] = {}  # connection -> ip; oldest first (dicts keep order)
        self._per_ip: dict[str, int] = {}
        self.refused_per_ip = 0
        self.refused_total = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, connection: object) -> bool:
        return connection in self._order

    def count(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)

    def admit(
        self,
        connection: K,
        ip: str,
        evictability: Callable[[K], Evictability],
        *,
        shared: bool = False,
    ) -> Decision[K]:
        """Admit `connection` from `ip`, or refuse it; a returned victim must be closed.

        `evictability(c)` says whether c may be closed to make room, and how readily.
        `shared`: the address speaks for many clients (a trusted reverse proxy): neither the
        per-address cap nor the fair share at the total cap applies to it.
        """
        if connection in self._order:
            raise ValueError("connection admitted twice")
        if not shared and self._per_ip.get(ip, 0) >= self.limits.max_per_ip:
            self.refused_per_ip += 1
            return Decision(refused=Refusal.PER_IP)
        victim: K | None = None
        if len(self._order) >= self.limits.max_connections:
            if not shared and self._over_fair_share(ip):
                # Cheap to say no: a flood from a few addresses is refused at accept
                # instead of churning through evictions at the cost of a full setup each.
                self.refused_total += 1
                return Decision(refused=Refusal.TOTAL)
            victim = self.evict_one(evictability)
            if victim is None:
                self.refused_total += 1
                return Decision(refused=Refusal.TOTAL)
        self._order[connection] = ip
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        return Decision(evicted=victim)

    def release(self, connection: K) -> None:
        """Forget `connection` (closed, or evicted); unknown ones are ignored."""
        ip = self._order.pop(connection, None)
        if ip is None:
            return
        left = self._per_ip[ip] - 1
        if left:
            self._per_ip[ip] = left
        else:
            del self._per_ip[ip]

    def shrink(self, evictability: Callable[[K], Evictability]) -> list[K]:
        """Out of descriptors below the cap: lower it under the connections open now.

        Returns the idle connections forgotten to get there (the caller closes them); the
        freed descriptors serve accepts, refusals and files again.
        """
        target = max(1, len(self._order) - EXHAUSTION_MARGIN)
        victims: list[K] = []
        while len(self._order) > target:
            victim = self.evict_one(evictability)
            if victim is None:
                break  # the rest are busy: no room for newcomers until they finish
            victims.append(victim)
        cap = max(target, len(self._order))
        if cap < self.limits.max_connections:
            self.limits = replace(self.limits, max_connections=cap)
        return victims

    def _over_fair_share(self, ip: str) -> bool:
        # With one address only (a reverse proxy), its idle connections make room for it.
        addresses = len(self._per_ip)
        if addresses < 2:
            return False
        return self._per_ip.get(ip, 0) >= max(1, self.limits.max_connections // addresses)

    def evict_one(self, evictability: Callable[[K], Evictability]) -> K | None:
        """Forget the connection to close for room, if any; the caller must close it."""
        order = self._order
        passed: list[K] = []
        found: K | None = None
        best = Evictability.BUSY
        for connection in order:
            rank = evictability(connection)
            if rank > best:
                if found is not None:
                    passed.append(found)
                found, best = connection, rank
                if rank is Evictability.NO_REQUEST:
                    break
            else:
                passed.append(connection)
            if len(passed) >= EVICTION_SCAN:
                break
        for connection in passed:
            # To the back: the next scan starts with connections not looked at yet.
            order[connection] = order.pop(connection)
        if found is not None:
            self.release(found)
            self.evicted += 1
        return found


@dataclass(frozen=True, slots=True)
class BackoffStep:
    """What to do after an exhausted accept: wait `delay`; log if `report` is set."""

    delay: float
    report: bool
    failures: int  # exhausted accepts since the last report, this one included


class AcceptBackoff:
    """Pause lengths after accept() ran out of descriptors, and when to say so.

    The delay starts short (descriptors free up as requests finish) and doubles up to
    `max_delay`; a successful accept resets it. At most one report per `report_interval`,
    counting the failures in between, so a flood of refused accepts is one log line.
    """

    __slots__ = ("_delay", "_failures", "_last_report", "max_delay", "min_delay", "report_interval")

    def __init__(
        self, min_delay: float = 0.05, max_delay: float = 1.0, report_interval: float = 60.0
    ) -> None:
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.report_interval = report_interval
        self._delay = 0.0
        self._failures = 0
        self._last_report: float | None = None

    @property
    def backing_off(self) -> bool:
        return self._delay > 0

    def exhausted(self, now: float) -> BackoffStep:
        self._delay = min(self.max_delay, self._delay * 2) if self._delay else self.min_delay
        self._failures += 1
        last = self._last_report
        report = last is None or now - last >= self.report_interval
        failures = self._failures
        if report:
            self._last_report = now
            self._failures = 0
        return BackoffStep(delay=self._delay, report=report, failures=failures)

    def accepted(self) -> None:
        self._delay = 0.0
