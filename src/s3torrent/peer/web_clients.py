"""The web seed's clients as the offload policy sees them: who downloads, who starves.

Sans-IO and clock-free, like policy.py, which owns one of these per torrent. The web seed
names each client (its address, so one client's several connections are one
client); this counts the clients asking now, and remembers how long each has been refused.
A client that asks again for a piece it was refused ``patience`` seconds ago or more has not
got it from its peers meanwhile: it may have none it can reach (a firewall, a client that
drops the peers it is told, a slow client its peers left behind). That piece is then sent
(a rescue), at most one copy per client, and all rescues of a torrent share one copy per
``period`` (so clients that never finish, or one client posing as many from many addresses,
cannot hold the origin). A client making progress elsewhere asks for other pieces and is
never rescued.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from s3torrent.peer.token_bucket import TokenBucket

__all__ = ["MAX_REFUSED", "MAX_WEB_CLIENTS", "TARPIT", "WebClients"]

# Web seed clients remembered at most (the oldest is forgotten first), and refused pieces
# remembered per client.
MAX_WEB_CLIENTS = 256
MAX_REFUSED = 256
MAX_CONNECTIONS = 32  # connections remembered per client
# A client refused again within REFUSAL_GAP seconds of its last refusal waits TARPIT seconds
# for the next 503: WebTorrent ignores Retry-After and asks for piece after piece at once
# (tens of refusals a second, CPU both sides could spend on pieces).
REFUSAL_GAP = 2.0
TARPIT = 1.0


@dataclass(slots=True)
class _Client:
    seen: float
    # Pieces it was refused (the first piece of a 503, the piece a response was cut at):
    # index -> when first refused, while it has not been sent them.
    refused: dict[int, float] = field(default_factory=dict)
    rescued: int = 0  # bytes sent to it because it starved
    last_refused: float = float("-inf")
    # Its connections (as the web seed names them) -> when each last asked.
    connections: dict[object, float] = field(default_factory=dict)


class WebClients:
    """One torrent's web seed clients."""

    def __init__(
        self, copy: int, window: float, patience: float, period: float, now: float
    ) -> None:
        self.copy = copy  # bytes of one copy of the object
        self.window = window
        self.patience = patience
        self.clients: dict[object, _Client] = {}
        self.rescued = 0  # bytes sent to starving clients, all told
        # Bytes starving clients may still get: one copy, refilled over `period`.
        self._allowance = TokenBucket(copy / period if period > 0 else 0.0, copy, now)

    def request(self, client: object, now: float, connection: object = None) -> None:
        entry = self.clients.get(client)
        if entry is None:
            if len(self.clients) >= MAX_WEB_CLIENTS:
                oldest = min(self.clients, key=lambda c: self.clients[c].seen)
                del self.clients[oldest]
            entry = self.clients[client] = _Client(now)
        entry.seen = now
        if connection is not None:
            if connection not in entry.connections and len(entry.connections) >= MAX_CONNECTIONS:
                del entry.connections[min(entry.connections, key=entry.connections.__getitem__)]
            entry.connections[connection] = now

    def downloading(self, now: float) -> int:
        """Clients that asked within the window."""
        return sum(1 for c in self.clients.values() if now - c.seen < self.window)

    def alone(self, now: float, known: int, browsers: int | None) -> bool:
        """Whether one client downloads alone, where the peer wire or the tracker knows
        `known` downloaders and the WebSocket tracker `browsers` (None: none here).

        Web seed clients are told apart by address when the peer wire or the tracker knows
        the swarm; otherwise (browsers) each connection counts, unless the WebSocket swarm
        holds one browser (the asking one, once it announced): what the web seed sent others
        is then nowhere it can get it from. Counting connections, a browser after one that
        left (or a page reloaded) was refused every piece the other got, until
        web_seed_memory (60 s) released them. With no browser there (web-seed-only
        clients, or a browser yet to announce) connections count."""
        if not known and browsers == 1:
            return True
        web = self.downloading(now) if known else self.connections(now)
        return max(known, web) <= 1

    def connections(self, now: float) -> int:
        """Connections that asked within the window (a client without connections named
        counts as one): browsers behind one address are several of these."""
        total = 0
        for c in self.clients.values():
            if now - c.seen < self.window:
                total += max(1, sum(1 for t in c.connections.values() if now - t < self.window))
        return total

    def refusal_delay(self, client: object, now: float) -> float:
        """Seconds to hold the 503 about to go to this client (then counted as refused)."""
        entry = self.clients.get(client)
        if entry is None:
            return 0.0
        delay = TARPIT if now - entry.last_refused < REFUSAL_GAP else 0.0
        entry.last_refused = now + delay
        return delay

    def refused(self, client: object, index: int, now: float) -> None:
        entry = self.clients.get(client)
        if entry is None or index in entry.refused:
            return
        if len(entry.refused) >= MAX_REFUSED:
            del entry.refused[next(iter(entry.refused))]
        entry.refused[index] = now

    def starving(self, client: object, index: int, now: float) -> bool:
        """It asks again for a piece refused `patience` ago, within its and the torrent's
        allowance."""
        entry = self.clients.get(client)
        if entry is None:
            return False
        since = entry.refused.get(index)
        if since is None or now - since < self.patience:
            return False
        if entry.rescued >= self.copy:
            return False  # a whole copy already: it does not keep what it gets
        return self.allowance(now) > 0

    def served(self, client: object, index: int, nbytes: int, now: float, *, rescue: bool) -> None:
        """Bytes of a piece went to the client, as a rescue (it starved) or as to anyone."""
        entry = self.clients.get(client)
        if entry is None:
            return
        if rescue and index in entry.refused:
            entry.rescued += nbytes
            self.rescued += nbytes
            self._allowance.charge(nbytes, now)
        entry.refused.pop(index, None)

    def allowance(self, now: float) -> float:
        """Bytes starving clients may still get: one copy, refilled over `period`."""
        return self._allowance.level(now)

    def expire(self, now: float) -> None:
        """Forget clients gone quiet: a refused one after a few patience periods (it may
        come back only after Retry-After, or later), others after the window."""
        patient = max(self.window, 4 * self.patience)
        for client, entry in list(self.clients.items()):
            keep = patient if entry.refused else self.window
            if now - entry.seen >= keep:
                del self.clients[client]

    def idle(self, now: float) -> bool:
        return all(now - c.seen >= self.window for c in self.clients.values())
