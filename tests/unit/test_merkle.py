"""BEP 52 merkle trees, at the piece-size boundaries (0, 1, piece-1, piece, piece+1 bytes)."""

from __future__ import annotations

import hashlib
import itertools

import pytest

from s3torrent.torrent.hasher import TorrentHasher
from s3torrent.torrent.merkle import (
    merkle_layers,
    merkle_root,
    next_power_of_two,
    piece_height,
    pieces_root,
    zero_root,
)
from s3torrent.torrent.pieces import BLOCK_SIZE

PIECE = 4 * BLOCK_SIZE


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _reference_root(data: bytes) -> bytes:
    """The BEP 52 root written out longhand: block leaves, zero-padded to 2**k, pairwise up."""
    leaves = [_sha(data[i : i + BLOCK_SIZE]) for i in range(0, len(data), BLOCK_SIZE)]
    # A tree of more than one piece pads its leaves to whole pieces, then to 2**k pieces.
    pieces = -(-len(data) // PIECE)
    width = next_power_of_two(len(leaves)) if pieces <= 1 else next_power_of_two(pieces) * 4
    layer = leaves + [bytes(32)] * (width - len(leaves))
    while len(layer) > 1:
        layer = [_sha(layer[i] + layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


def test_zero_root_is_the_root_of_zero_leaves() -> None:
    assert zero_root(0) == bytes(32)
    assert zero_root(1) == _sha(bytes(64))
    assert zero_root(2) == _sha(zero_root(1) * 2)


def test_piece_height_counts_layers_above_the_blocks() -> None:
    assert piece_height(BLOCK_SIZE) == 0
    assert piece_height(PIECE) == 2
    assert piece_height(16 * 1024 * 1024) == 10


@pytest.mark.parametrize(
    "size",
    [1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 7],
)
def test_hasher_root_matches_the_longhand_tree_at_piece_boundaries(size: int) -> None:
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))
    hasher = TorrentHasher(PIECE, v1=False, v2=True)
    hasher.update(data)
    hashes = hasher.finish()
    assert hashes.pieces_root == _reference_root(data)
    assert hashes.piece_layer is not None
    assert pieces_root(hashes.piece_layer, PIECE) == hashes.pieces_root


def test_empty_file_has_no_tree() -> None:
    hashes = TorrentHasher(PIECE, v1=False, v2=True).finish()
    assert hashes.pieces_root is None and hashes.piece_layer == b""
    with pytest.raises(ValueError):
        merkle_root([], 1)


def test_one_piece_file_root_is_its_piece_hash() -> None:
    piece = _sha(b"x")
    assert pieces_root(piece, PIECE) == piece
    assert merkle_layers(piece, PIECE) == ((piece,),)


@pytest.mark.parametrize("pieces", [2, 3, 4, 5, 8, 9])
def test_layers_pad_the_piece_layer_with_zero_subtrees(pieces: int) -> None:
    layer = b"".join(_sha(bytes([i])) for i in range(pieces))
    layers = merkle_layers(layer, PIECE)
    assert len(layers[0]) == next_power_of_two(pieces)
    assert all(h == zero_root(2) for h in layers[0][pieces:])
    assert len(layers[-1]) == 1
    assert layers[-1][0] == pieces_root(layer, PIECE)
    for lower, upper in itertools.pairwise(layers):
        assert list(upper) == [_sha(lower[i] + lower[i + 1]) for i in range(0, len(lower), 2)]


def test_a_layer_that_is_not_whole_hashes_is_refused() -> None:
    with pytest.raises(ValueError):
        pieces_root(bytes(33), PIECE)


def test_width_must_be_a_power_of_two_covering_the_nodes() -> None:
    with pytest.raises(ValueError):
        merkle_root([bytes(32)] * 3, 2)
    with pytest.raises(ValueError):
        merkle_root([bytes(32)] * 3, 6)
