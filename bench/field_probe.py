"""Runs ``s3torrent`` with per-client accounting of the origin's bytes (swarm_field only).

``python bench/field_probe.py OUT.json serve ...``: the s3torrent CLI, with the seeder's
``Swarm.piece_sent`` and the web seed's ``WebSeed._send`` wrapped so that every byte the
origin sends is also counted by object key, channel and client (the peer's address and the
client its peer id names; the web-seed request's address and User-Agent), and web-seed
refusals (503) by client. The counts are written to OUT.json twice a second. The server
itself is unchanged: this only observes (a benchmark may not change what it measures).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

# Peer id prefixes (Azureus style "-XX" and aria2's "A2-") of the mix's clients.
PEER_IDS = {
    b"-LT": "libtorrent",
    b"-qB": "qbittorrent",
    b"A2-": "aria2",
    b"-TR": "transmission",
    b"-lt": "rtorrent",
    b"-CD": "ctorrent",
    b"-WW": "webtorrent",
}
AGENTS = (
    ("qbittorrent", "qbittorrent"),
    ("libtorrent", "libtorrent"),
    ("aria2", "aria2"),
    ("transmission", "transmission"),
    ("webtorrent", "webtorrent"),
)

_lock = threading.Lock()
# key -> "channel client@address" -> [bytes, requests or refusals]
_counts: dict[str, dict[str, list[int]]] = {}


def client_of_peer_id(peer_id: bytes) -> str:
    for prefix, name in PEER_IDS.items():
        if peer_id.startswith(prefix):
            return name
    return peer_id[:8].decode("latin-1") or "?"


def client_of_agent(agent: str) -> str:
    low = agent.lower()
    for needle, name in AGENTS:
        if needle in low:
            return name
    return agent[:24] or "?"


def _add(key: str, label: str, nbytes: int, events: int = 0) -> None:
    with _lock:
        entry = _counts.setdefault(key, {}).setdefault(label, [0, 0])
        entry[0] += nbytes
        entry[1] += events


def _dump(path: str) -> None:
    while True:
        time.sleep(0.5)
        with _lock:
            text = json.dumps(_counts)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)


def install(path: str) -> None:
    from s3torrent import webseed
    from s3torrent.peer import swarm

    blocks_sent = swarm.Swarm.blocks_sent

    def counted_blocks_sent(self: Any, link: Any, blocks: list[Any], now: float) -> None:
        blocks_sent(self, link, blocks, now)
        who = f"seeder {client_of_peer_id(link.peer_id)}@{link.ip}"
        _add(self.info.key, who, sum(b.length for b in blocks))

    swarm.Swarm.blocks_sent = counted_blocks_sent  # type: ignore[method-assign]

    send = webseed.WebSeed._send

    async def counted_send(
        self: Any,
        request: Any,
        resp: Any,
        obj: Any,
        fobj: Any,
        offset: int,
        length: int,
        sent: list[int],
    ) -> None:
        before = sent[0]
        try:
            await send(self, request, resp, obj, fobj, offset, length, sent)
        finally:
            agent = client_of_agent(request.headers.get("User-Agent", ""))
            _add(obj.key, f"webseed {agent}@{request.remote}", sent[0] - before, 1)

    webseed.WebSeed._send = counted_send  # type: ignore[method-assign]

    respond = webseed.WebSeed._respond

    async def counted_respond(self: Any, request: Any, sent: list[int], admitted: list[Any]) -> Any:
        response = await respond(self, request, sent, admitted)
        info = admitted[0]
        if response.status == 503 and info is not None:
            agent = client_of_agent(request.headers.get("User-Agent", ""))
            _add(info.key, f"refused {agent}@{request.remote}", 0, 1)
        return response

    webseed.WebSeed._respond = counted_respond  # type: ignore[method-assign]
    threading.Thread(target=_dump, args=(path,), daemon=True).start()


def main() -> None:
    path = sys.argv[1]
    del sys.argv[1]
    install(path)
    from s3torrent.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
