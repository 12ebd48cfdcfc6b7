"""The origin's offload policy: whom to unchoke, which pieces to reveal to whom, how fast.

Sans-IO and clock-free: the seeder reports what it sees (peers joining and leaving, their
bitfields and HAVEs, bytes sent) with ``now``, and asks for decisions, which come back as
actions (unchoke, choke, reveal a piece, suggest a piece). Tests drive it in simulated time.

How it keeps the origin's bytes near one copy (modes ``offload`` and ``auto``):

* Peers are accepted super-seeding style: they are told we have nothing, and pieces are
  revealed (HAVE) one window at a time, so a peer can only ask us for what we chose.
* Each piece nobody holds yet (a *fresh* piece) is revealed to one peer only. Peers get
  the rest from each other; their HAVEs tell us where every piece is.
* A peer that keeps the pieces it got first-hand to itself (they never show up at other
  peers while others still lack them) gets no new fresh pieces past ``unspread_limit``;
  peers whose pieces spread rank first when unchoke slots are handed out.
* A peer without progress for ``stall_timeout`` (``endgame_stall_timeout`` once it lacks at
  most ``endgame_window``) gets a window of the pieces it lacks that
  are rarest in the swarm (the only way the origin sends a piece twice); one fed only by us
  for ``swarm_stall_timeout`` gets what no other connected peer holds, and the rest one
  window per ``swarm_stall_timeout``.
* Once connected peers hold every piece, the origin's upload for the torrent is capped at
  ``carry_rate``: the swarm can carry itself.
* ``auto``: while a single peer downloads it gets a large window (as fast as the link
  allows); ``fastest``: every peer gets every piece advertised and served.

The web seed (BEP 19) asks the same policy piece by piece: it may send a piece nobody holds or
was given (anything to a client alone); what it sends is held for ``web_seed_memory``. Its
clients (one per address, beside the tracker's downloaders) and the rescue of
a client only the web seed can serve are in web_clients.py.

Swarm memory: a whole piece sent to a peer counts as held by it (some clients never send HAVE
to a peer they think has the piece), and a peer that leaves the origin but stays in the swarm
(the tracker still hears from it) keeps its pieces counted until it is forgotten.
"""

from __future__ import annotations

import random

from s3torrent.peer import piece_choice
from s3torrent.peer.index_set import IndexSet
from s3torrent.peer.policy_types import (
    Action,
    ChokePeer,
    Mode,
    PeerKey,
    PeerRecord,
    PolicySettings,
    RevealPiece,
    SuggestPiece,
    UnchokePeer,
)
from s3torrent.peer.token_bucket import TokenBucket
from s3torrent.peer.web_clients import WebClients

__all__ = [
    "Action",
    "ChokePeer",
    "Mode",
    "PeerKey",
    "PolicySettings",
    "RevealPiece",
    "SuggestPiece",
    "SwarmPolicy",
    "UnchokePeer",
]


class SwarmPolicy:
    """Decisions for one torrent's connections at the origin."""

    def __init__(
        self,
        piece_count: int,
        piece_length: int,
        settings: PolicySettings | None = None,
        *,
        rng: random.Random | None = None,
        now: float = 0.0,
    ) -> None:
        if piece_count <= 0 or piece_length <= 0:
            raise ValueError("a torrent has at least one piece")
        self.piece_count = piece_count
        self.piece_length = piece_length
        self.settings = settings or PolicySettings()
        self.rng = rng or random.Random()
        self.peers: dict[PeerKey, PeerRecord] = {}
        # Peers gone from the origin but still in the swarm: their pieces still count.
        self.departed: dict[PeerKey, PeerRecord] = {}
        self._unspread_by: dict[int, PeerRecord] = {}  # piece -> whose `unspread` holds it
        # Pieces the web seed sent that no peer has reported yet: index -> when.
        self.web_held: dict[int, float] = {}
        s = self.settings
        self.web_clients = WebClients(
            piece_count * piece_length,
            s.web_seed_client_window,
            s.web_seed_patience,
            s.web_seed_rescue_period,
            now,
        )
        self._tracked = 0  # downloaders the tracker hears from
        # Browsers in this node's WebSocket-tracker swarm (None: no such tracker here).
        self._browsers: int | None = None
        self.web_seed_bytes = 0
        self.availability = [0] * piece_count  # peers holding each piece (departed too)
        self.remote_held = [0] * piece_count  # of those, departed (remembered) peers
        self.assigned_count = [0] * piece_count  # live assignments of each piece
        self.origin_copies = [0] * piece_count  # pieces' bytes sent by us / piece length
        self._fresh = IndexSet(range(piece_count))  # nobody holds it, nobody assigned it
        # Pieces no connected peer holds (a departed seed carries nobody).
        self._unconnected = piece_count
        self._next_round = now
        self._complete = 0  # connected peers holding every piece
        self._cap = TokenBucket(self.settings.carry_rate, self._burst(), now)
        self.bytes_sent = 0

    # ------------------------------------------------------------------ queries

    @property
    def mode(self) -> Mode:
        return self.settings.mode

    def super_seed(self) -> bool:
        """Whether a new peer is told we have nothing (pieces revealed later). Not for one
        piece: revealing it would make us a seed the peer is not interested in yet, and
        libtorrent drops those."""
        return self.mode != "fastest" and self.piece_count > 1

    def downloaders(self) -> int:
        return len(self.peers) - self._complete  # a kept count: asked per run served

    def carrying(self) -> bool:
        """Connected peers hold every piece and at least two of them still download."""
        return self._unconnected == 0 and self.downloaders() >= 1 and len(self.peers) >= 2

    # ------------------------------------------------------------------ observations

    def peer_joined(self, key: PeerKey, now: float, *, super_seed: bool) -> None:
        if key in self.peers:
            raise ValueError(f"peer {key} joined twice")
        self.peers[key] = PeerRecord(
            key, now, super_seed, bytearray(self.piece_count), last_progress=now, swarm_progress=now
        )

    def peer_left(self, key: PeerKey, now: float, *, remember: bool = False) -> None:
        """A peer's connection closed; `remember`: it stays in the swarm, so do its pieces."""
        peer = self.peers.pop(key, None)
        if peer is None:
            return
        self._complete -= peer.has_count >= self.piece_count  # it was counted complete
        for index in list(peer.assigned):
            self._unassign(peer, index)
        for index in peer.unspread:
            self._unspread_by.pop(index, None)
        peer.unspread.clear()
        if remember:
            peer.remote_since = now
            self.departed[key] = peer
            self._depart_pieces(peer)
            return
        self._drop_pieces(peer)

    def forget(self, key: PeerKey) -> None:
        """A departed peer left the swarm too: its pieces no longer count."""
        peer = self.departed.pop(key, None)
        if peer is not None:
            self._drop_pieces(peer, remote=True)

    def remote_seed(self, key: PeerKey, now: float) -> bool:
        """A peer we are not connected to holds every piece (it announced itself a seed).
        Whether that changed anything: a seed announces again every interval, and what
        it held is already counted."""
        if key in self.peers:
            return False
        peer = self.departed.get(key)
        if peer is None:
            peer = PeerRecord(key, now, False, bytearray(self.piece_count), last_progress=now)
            self.departed[key] = peer
        elif peer.has_count >= self.piece_count:
            return False
        peer.remote_since = now
        for index in range(self.piece_count):
            if not peer.has[index]:
                peer.has[index] = 1
                peer.has_count += 1
                self._gain(index, remote=True)
                self._release_web_hold(index)
        return True

    def _depart_pieces(self, peer: PeerRecord) -> None:
        """A connected peer's pieces become a departed peer's: still held, not connected."""
        for index in range(self.piece_count if peer.has_count else 0):
            if peer.has[index]:
                self.remote_held[index] += 1
                if self.availability[index] == self.remote_held[index]:
                    self._unconnected += 1

    def _drop_pieces(self, peer: PeerRecord, *, remote: bool = False) -> None:
        for index in range(self.piece_count if peer.has_count else 0):
            if peer.has[index]:
                self._lose(index, remote=remote)

    def peer_has(self, key: PeerKey, index: int, now: float, *, from_us: bool = False) -> None:
        peer = self.peers.get(key)
        if peer is None or not 0 <= index < self.piece_count or peer.has[index]:
            return
        peer.has[index] = 1
        peer.has_count += 1
        if peer.has_count == self.piece_count:
            self._complete += 1
        peer.last_progress = now
        peer.delivered.pop(index, None)
        first = self.availability[index] == 0
        self._gain(index)
        self._release_web_hold(index)
        firsthand = index in peer.assigned
        if not firsthand and not from_us:
            peer.swarm_progress = now
        if firsthand:
            self._unassign(peer, index)
        if first and firsthand:
            peer.unspread.add(index)
            self._unspread_by[index] = peer
        elif not first and (other := self._unspread_by.pop(index, None)) is not None:
            other.unspread.discard(index)
            other.spread_credit += 1.0

    def peer_bitfield(self, key: PeerKey, bits: bytes | None, now: float) -> bool:
        """The peer's bitfield; None: it has every piece (HAVE_ALL, or it told the tracker).
        Whether it named a piece not yet known to be the peer's."""
        peer = self.peers.get(key)
        if peer is None or (bits is None and peer.has_count >= self.piece_count):
            return False  # a seed telling the tracker again what we know already
        changed = False
        for index in range(self.piece_count):
            if not peer.has[index] and (bits is None or bits[index >> 3] & (0x80 >> (index & 7))):
                self.peer_has(key, index, now)
                changed = True
        return changed

    def peer_have_all(self, key: PeerKey, now: float) -> bool:
        return self.peer_bitfield(key, None, now)

    def peer_interested(self, key: PeerKey, interested: bool, now: float) -> None:
        if (peer := self.peers.get(key)) is not None:
            peer.interested = interested

    def piece_sent(
        self, key: PeerKey, index: int, nbytes: int, now: float, piece_size: int = 0
    ) -> bool:
        """Bytes of one block went to a peer (after upload_delay allowed them); whether
        they were the last of a piece.

        Once `piece_size` bytes of a piece went to a peer it holds the piece, whether or not
        it tells us: clients need not send HAVE to a peer that (as far as they know) has it.
        """
        self.bytes_sent += nbytes
        if 0 <= index < self.piece_count:
            self.origin_copies[index] += nbytes
        peer = self.peers.get(key)
        if peer is not None:
            peer.bytes_from_us += nbytes
            peer.last_progress = now
            if piece_size > 0 and 0 <= index < self.piece_count and not peer.has[index]:
                got = peer.delivered.get(index, 0) + nbytes
                if got >= piece_size:
                    self.peer_has(key, index, now, from_us=True)
                    return True
                peer.delivered[index] = got
        return False

    def downloading_alone(self) -> bool:
        """One peer downloads (mode auto): it gets `alone_window` revealed ahead."""
        return self.mode == "auto" and self.downloaders() <= 1

    def window_drained(self, key: PeerKey) -> bool:
        """Top the peer up now rather than at its HAVE (see Swarm.blocks_sent): it downloads
        alone and half its window went out, or it is a gated peer kept busy (piece_choice)
        and one of its pieces went out."""
        peer = self.peers.get(key)
        if peer is None or not peer.super_seed or peer.complete(self.piece_count):
            return False
        if not self.downloading_alone():
            kept = piece_choice.gated(self, peer) and piece_choice.kept_busy(peer)
            return kept and bool(self._fresh)
        return 2 * len(peer.assigned) <= min(self.piece_count, self._window_pieces())

    # ------------------------------------------------------------------ web seed

    def web_seed_request(self, client: object, now: float, connection: object = None) -> None:
        """A web seed client asked for bytes, on `connection`. The web seed names clients
        so that one client's several connections are one (its address)."""
        self.web_clients.request(client, now, connection)

    def tracked_downloaders(self, count: int, now: float) -> None:
        """How many peers the tracker hears from still download (one per peer id): clients
        that share an address (a loopback swarm, an office behind NAT)
        are told apart there, not by their web seed requests."""
        self._tracked = max(0, count)

    def tracked_browsers(self, count: int) -> None:
        """How many browsers (seeds included) the WebSocket tracker has in the swarm."""
        self._browsers = max(0, count)

    def web_seed_alone(self, now: float, *, apart: bool = False) -> bool:
        """Whether one client downloads alone (mode auto), so the web seed sends it anything.
        `apart`: the asking client has no peer-wire connection to us, so a peer downloading
        on the peer wire is another client."""
        if self.mode == "fastest":
            return True
        if self.mode != "auto":
            return False
        if apart and self.downloaders():
            # Counted as one client (the busiest channel), aria2 alone on the web seed and
            # rtorrent alone on the peer wire were each sent the object (audit h1).
            return False
        # A client uses both channels (and announces): count the busiest, not their sum.
        # Seeds beside it do not count: a libtorrent refused by the web seed idles up to 5 s
        # (8 leechers 0.5 s apart took 2x as long, for 1.0 copies instead of 2.9).
        return self.web_clients.alone(now, max(self.downloaders(), self._tracked), self._browsers)

    def web_seed_allows(
        self,
        index: int,
        now: float,
        *,
        continuing: bool = False,
        client: object = None,
        peer_wire: bool = True,
    ) -> bool:
        """May the web seed send this piece now? `continuing`: the rest of a piece it began;
        `client` (as web_seed_request names it) without a `peer_wire` connection to us may
        be starving for it (web_seed_patience)."""
        if not 0 <= index < self.piece_count:
            return False
        if self.web_seed_alone(now, apart=not peer_wire):
            return True
        if continuing and index in self.web_held:
            return True
        if self.availability[index] == 0 and self.assigned_count[index] == 0:
            return True
        # A starving client (web_clients.py) of a swarm the peer wire or the tracker knows;
        # browsers have their own peers and tracker, and replace a failed web seed.
        if peer_wire or not max(self.downloaders(), self._tracked):
            return False
        return self.web_clients.starving(client, index, now)

    def web_seed_refusal_delay(self, client: object, now: float, peer_wire: bool = False) -> float:
        """Seconds the web seed holds a 503 to a client refused moments ago (web_clients.py);
        none with a peer wire: libtorrent keeps a refused range, and its swarm waited."""
        return 0.0 if peer_wire else self.web_clients.refusal_delay(client, now)

    def web_seed_refused(self, client: object, now: float, index: int = -1) -> None:
        """The web seed refused this client a piece (a 503 for its first, or a cut)."""
        if 0 <= index < self.piece_count:
            self.web_clients.refused(client, index, now)

    def web_seed_sent(
        self, index: int, nbytes: int, now: float, *, client: object = None, peer_wire: bool = True
    ) -> None:
        """The web seed sent bytes of this piece: it is taken until a peer reports it
        (`client` and `peer_wire` as for web_seed_allows)."""
        self.web_seed_bytes += nbytes
        if not 0 <= index < self.piece_count:
            return
        fresh = self.availability[index] == 0 and (
            self.assigned_count[index] == 0 or index in self.web_held
        )
        if client is not None:
            rescue = not fresh and not self.web_seed_alone(now, apart=not peer_wire)
            self.web_clients.served(client, index, nbytes, now, rescue=rescue)
        self.origin_copies[index] += nbytes
        if index not in self.web_held and self.availability[index] == 0:
            self.web_held[index] = now
            self.assigned_count[index] += 1
            self._fresh.discard(index)

    def _release_web_hold(self, index: int) -> None:
        if self.web_held.pop(index, None) is not None:
            self.assigned_count[index] -= 1
            self._refresh(index)

    def idle(self, now: float) -> bool:
        """Nothing to remember: no peers, no departed peers, no web seed holds or clients."""
        if self.peers or self.departed or self.web_held:
            return False
        return self.web_clients.idle(now)

    # ------------------------------------------------------------------ rate cap

    def _burst(self) -> int:
        return max(self.settings.carry_rate, 4 * self.piece_length, 256 * 1024)

    def capping(self) -> bool:
        """Whether upload_delay may hold bytes back now; while False it need not be asked.

        It changes only with what peers hold (and the mode), so the seeder asks once per
        run of blocks instead of once per block.
        """
        return self.mode != "fastest" and self.settings.carry_rate > 0 and self.carrying()

    def upload_delay(self, nbytes: int, now: float) -> float:
        """0 to send `nbytes` now (and charge them), else seconds to wait before asking again."""
        if not self.capping():
            self._cap.level(now)  # keeps refilling while uncapped
            return 0.0
        return self._cap.delay(nbytes, now)

    # ------------------------------------------------------------------ decisions

    def update(self, now: float) -> list[Action]:
        """Decisions that cannot wait for the next round: fill free slots, top up windows."""
        actions: list[Action] = []
        self._expire_assignments(now)
        if now >= self._next_round:
            self._next_round = now + self.settings.round_interval
            self._choke_round(now, actions)
        else:
            self._fill_slots(now, actions)
        for peer in list(self.peers.values()):
            if peer.unchoked:
                self._top_up(peer, now, actions)
        return actions

    def _wants(self, peer: PeerRecord) -> bool:
        if peer.complete(self.piece_count):
            return False
        if not peer.super_seed:
            return peer.interested
        return True

    def _slots(self) -> int:
        if self.mode == "fastest":
            return len(self.peers)
        return max(1, self.settings.unchoke_slots)

    def _rank(self, peer: PeerRecord) -> tuple[int, float, float]:
        # Peers with pieces of ours half-way first (their pieces must finish), then peers
        # whose first-hand pieces spread, then a random order.
        return (1 if peer.assigned else 0, peer.spread_credit, self.rng.random())

    def _choke_round(self, now: float, actions: list[Action]) -> None:
        for peer in self.peers.values():
            peer.spread_credit *= 0.5
        wanting = [p for p in self.peers.values() if self._wants(p)]
        slots = self._slots()
        wanting.sort(key=self._rank, reverse=True)
        keep = wanting[: max(0, slots - 1)] if len(wanting) > slots else wanting
        chosen = {p.key for p in keep}
        rest = [p for p in wanting if p.key not in chosen]
        if rest and len(chosen) < slots:
            chosen.add(self.rng.choice(rest).key)  # optimistic unchoke
        for peer in self.peers.values():
            if peer.key in chosen and not peer.unchoked:
                self._unchoke(peer, actions)
            elif peer.key not in chosen and peer.unchoked:
                peer.unchoked = False
                actions.append(ChokePeer(peer.key))

    def _fill_slots(self, now: float, actions: list[Action]) -> None:
        unchoked = 0
        for peer in self.peers.values():
            if peer.unchoked and not self._wants(peer) and not peer.assigned:
                peer.unchoked = False
                actions.append(ChokePeer(peer.key))
            elif peer.unchoked:
                unchoked += 1
        free = self._slots() - unchoked
        if free <= 0:
            return
        waiting = [p for p in self.peers.values() if not p.unchoked and self._wants(p)]
        waiting.sort(key=self._rank, reverse=True)
        for peer in waiting[:free]:
            self._unchoke(peer, actions)

    def _unchoke(self, peer: PeerRecord, actions: list[Action]) -> None:
        peer.unchoked = True
        actions.append(UnchokePeer(peer.key))
        if not peer.super_seed and not peer.suggested and self.settings.suggestions:
            peer.suggested = True
            for index in piece_choice.rarest_lacking(self, peer, self.settings.suggestions):
                actions.append(SuggestPiece(peer.key, index))

    def _window_pieces(self) -> int:
        alone = self.downloading_alone()
        window = self.settings.alone_window if alone else self.settings.peer_window
        return max(1, -(-window // self.piece_length))

    def _top_up(self, peer: PeerRecord, now: float, actions: list[Action]) -> None:
        if not peer.super_seed or peer.complete(self.piece_count):
            return
        window = self._window_pieces()
        room = window - len(peer.assigned)
        if room <= 0:
            return
        gated = piece_choice.gated(self, peer)
        batch: list[int] = []
        if gated and piece_choice.kept_busy(peer):
            gated, room = False, piece_choice.KEEP_IN_FLIGHT - len(peer.assigned)
        if not gated and self._fresh:
            for index in self._fresh.sample(self.rng, room + 8):
                if len(batch) >= room:
                    break
                if not peer.has[index] and index not in peer.revealed:
                    batch.append(index)
        # Pieces only departed peers hold (the tracker still lists them, or they never said
        # they left) go to a peer the swarm gave nothing for `remote_grace`: a seed that quit
        # without a `stopped` announce is remembered for an hour, and nobody else has them.
        # Not those only a newcomer holds (remote_newcomer_grace): it has yet to meet them.
        want = room - len(batch)
        remote = self.departed and now - peer.swarm_progress >= self.settings.remote_grace
        if want > 0 and remote and not gated:
            batch += piece_choice.remote_only(self, peer, want, now, batch)
        want = room - len(batch)
        if want > 0:
            batch += piece_choice.rescue(self, peer, want, now, batch)
        self._assign_batch(peer, batch, now, actions)

    def _assign_batch(
        self, peer: PeerRecord, batch: list[int], now: float, actions: list[Action]
    ) -> None:
        if not batch:
            return
        # Revealing a peer's last unrevealed piece makes us a seed in its eyes, and
        # libtorrent drops a seed it is not interested in at that moment. A batch never
        # leaves exactly one piece behind: the last goes out right after one the peer
        # lacks, so the peer is interested when it sees us complete.
        if self.piece_count - len(peer.revealed) - len(batch) == 1:
            chosen = set(batch)
            last = next(
                i for i in range(self.piece_count) if i not in peer.revealed and i not in chosen
            )
            if not peer.has[last]:
                batch.append(last)
        for index in batch:
            self._assign(peer, index, now, actions)

    # ------------------------------------------------------------------ bookkeeping

    def _assign(self, peer: PeerRecord, index: int, now: float, actions: list[Action]) -> None:
        peer.assigned[index] = now
        self.assigned_count[index] += 1
        self._fresh.discard(index)
        if index not in peer.revealed:
            peer.revealed.add(index)
            actions.append(RevealPiece(peer.key, index))

    def _unassign(self, peer: PeerRecord, index: int) -> None:
        if peer.assigned.pop(index, None) is None:
            return
        self.assigned_count[index] -= 1
        self._refresh(index)

    def _expire_assignments(self, now: float) -> None:
        memory = self.settings.web_seed_memory
        for index, since in list(self.web_held.items()):
            if now - since >= memory:
                self._release_web_hold(index)
        self.web_clients.expire(now)
        limit = self.settings.stall_timeout * self.settings.stale_assignments
        for peer in self.peers.values():
            if not peer.assigned or now - peer.last_progress < limit:
                continue
            for index, since in list(peer.assigned.items()):
                if now - since >= limit:
                    self._unassign(peer, index)

    def _gain(self, index: int, *, remote: bool = False) -> None:
        """One more peer holds the piece (`remote`: a departed one)."""
        if remote:
            self.remote_held[index] += 1
        elif self.availability[index] == self.remote_held[index]:
            self._unconnected -= 1
        self.availability[index] += 1
        self._fresh.discard(index)

    def _lose(self, index: int, *, remote: bool = False) -> None:
        self.availability[index] -= 1
        if remote:
            self.remote_held[index] -= 1
        elif self.availability[index] == self.remote_held[index]:
            self._unconnected += 1
        self._refresh(index)

    def _refresh(self, index: int) -> None:
        if self.availability[index] == 0 and self.assigned_count[index] == 0:
            self._fresh.add(index)
