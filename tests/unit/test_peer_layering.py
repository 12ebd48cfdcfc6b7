"""The peer package's boundaries: no S3 edge imports, and the wire core stays pure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import s3torrent.peer

PEER_DIR = Path(s3torrent.peer.__file__).parent
MODULES = sorted(PEER_DIR.glob("*.py"))
# The sans-IO core: no sockets, no clock, no event loop, no store.
PURE = {
    "messages",
    "handshake",
    "hash_request",
    "state",
    "connection",
    "events",
    "torrent_view",
    "wire",
    "policy",
    "mse",
    "token_bucket",
    "piece_choice",
    "web_clients",
    "web_hold",
}
IO_MODULES = ("asyncio", "socket", "time", "os", "selectors", "s3torrent.store")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_no_peer_module_imports_the_s3_edge(path: Path) -> None:
    assert not any(n == "s3torrent.s3" or n.startswith("s3torrent.s3.") for n in _imports(path))


@pytest.mark.parametrize("path", [p for p in MODULES if p.stem in PURE], ids=lambda p: p.stem)
def test_the_wire_core_does_no_io(path: Path) -> None:
    imported = _imports(path)
    assert not any(n == io or n.startswith(io + ".") for n in imported for io in IO_MODULES)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_peer_modules_stay_under_600_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) < 600
