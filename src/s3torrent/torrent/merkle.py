"""BEP 52 merkle trees: the one place that knows how v2 hashes combine.

A file's tree has 16 KiB blocks as leaves (SHA-256 of each block), padded to a power of
two with zero leaves; every inner node is SHA-256 of its two children. Padding above
the leaves is the root of an all-zero subtree of the same height, so a piece layer can
be padded without knowing the leaves under it.

Pure functions over bytes: the streaming hasher builds piece subtrees and the pieces
root with them, and the peer wire rebuilds the upper layers to answer hash requests.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

from s3torrent.torrent.pieces import BLOCK_SIZE

__all__ = [
    "HASH_SIZE",
    "merkle_layers",
    "merkle_root",
    "next_power_of_two",
    "piece_height",
    "pieces_root",
    "zero_root",
]

HASH_SIZE = 32
# 64 levels cover any file a 64-bit length can describe.
_MAX_HEIGHT = 64


def _zero_roots() -> tuple[bytes, ...]:
    roots = [bytes(HASH_SIZE)]
    for _ in range(_MAX_HEIGHT):
        roots.append(hashlib.sha256(roots[-1] + roots[-1]).digest())
    return tuple(roots)


_ZERO_ROOTS = _zero_roots()


def zero_root(height: int) -> bytes:
    """Root of a subtree of ``2**height`` zero leaves: the padding at that height."""
    return _ZERO_ROOTS[height]


def next_power_of_two(n: int) -> int:
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def piece_height(piece_length: int) -> int:
    """Height of the piece layer above the leaves (0 for one-block pieces)."""
    return (piece_length // BLOCK_SIZE).bit_length() - 1


def _split(layer: bytes) -> list[bytes]:
    if len(layer) % HASH_SIZE:
        raise ValueError("a layer must be a whole number of 32-byte hashes")
    return [layer[i : i + HASH_SIZE] for i in range(0, len(layer), HASH_SIZE)]


def _layers(nodes: Sequence[bytes], width: int, height: int) -> list[tuple[bytes, ...]]:
    if not nodes:
        raise ValueError("a merkle tree needs at least one node")
    if width < len(nodes) or width & (width - 1):
        raise ValueError("width must be a power of two covering every node")
    layer = list(nodes) + [_ZERO_ROOTS[height]] * (width - len(nodes))
    layers = [tuple(layer)]
    while len(layer) > 1:
        layer = [hashlib.sha256(layer[i] + layer[i + 1]).digest() for i in range(0, len(layer), 2)]
        layers.append(tuple(layer))
    return layers


def merkle_root(nodes: Sequence[bytes], width: int, height: int = 0) -> bytes:
    """Root over ``nodes`` (which sit at ``height`` above the leaves) padded to ``width``."""
    return _layers(nodes, width, height)[-1][0]


@functools.lru_cache(maxsize=64)
def merkle_layers(piece_layer: bytes, piece_length: int) -> tuple[tuple[bytes, ...], ...]:
    """Every layer of a file's tree from its piece layer (padded to 2**k) up to the root.

    Cached: a hash request names a file, and its peers ask for the same file's layers
    again and again.
    """
    pieces = _split(piece_layer)
    layers = _layers(pieces, next_power_of_two(len(pieces)), piece_height(piece_length))
    return tuple(layers)


def pieces_root(piece_layer: bytes, piece_length: int) -> bytes:
    """The file's root from its piece layer; a one-piece file's root is its piece hash."""
    pieces = _split(piece_layer)
    if len(pieces) == 1:
        return pieces[0]
    return merkle_root(pieces, next_power_of_two(len(pieces)), piece_height(piece_length))
