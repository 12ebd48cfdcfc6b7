"""Piece-length policy and piece layout arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.torrent.pieces import (
    BLOCK_SIZE,
    MAX_PIECE_LENGTH,
    MIN_PIECE_LENGTH,
    TARGET_MAX_PIECES,
    PieceLayout,
    piece_length_for,
)

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def test_block_size_is_the_bep52_leaf() -> None:
    assert BLOCK_SIZE == 16384


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, 16 * KIB),
        (1, 16 * KIB),
        (2048 * 16 * KIB, 16 * KIB),
        (2048 * 16 * KIB + 1, 32 * KIB),
        (1 * GIB, 512 * KIB),
        (32 * GIB, 16 * MIB),
        (1024 * GIB, 16 * MIB),
    ],
)
def test_piece_length_policy_boundaries(size: int, expected: int) -> None:
    assert piece_length_for(size) == expected


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=2**50))
def test_piece_length_is_smallest_power_of_two_within_piece_target(size: int) -> None:
    length = piece_length_for(size)
    assert MIN_PIECE_LENGTH <= length <= MAX_PIECE_LENGTH
    assert length & (length - 1) == 0
    pieces = -(-size // length)
    if length < MAX_PIECE_LENGTH:
        assert pieces <= TARGET_MAX_PIECES
    if length > MIN_PIECE_LENGTH:
        # half the length would have given too many pieces
        assert -(-size // (length // 2)) > TARGET_MAX_PIECES


def test_piece_length_rejects_negative_size() -> None:
    with pytest.raises(ValueError):
        piece_length_for(-1)


@settings(max_examples=200)
@given(
    total=st.integers(min_value=0, max_value=10**12),
    shift=st.integers(min_value=14, max_value=24),
)
def test_layout_pieces_tile_the_file(total: int, shift: int) -> None:
    layout = PieceLayout(total, 1 << shift)
    count = layout.count
    if total == 0:
        assert count == 0
        return
    sizes = [layout.piece_size(0), layout.piece_size(count - 1)]
    assert all(layout.piece_size(i) == layout.piece_length for i in range(count - 1)[:50])
    assert 0 < sizes[-1] <= layout.piece_length
    assert (count - 1) * layout.piece_length + sizes[-1] == total
    last_offset, last_length = layout.piece_range(count - 1)
    assert last_offset + last_length == total
    assert layout.piece_range(0) == (0, sizes[0])


@pytest.mark.parametrize("total", [1, 16383, 16384, 16385, 5 * 16384 + 7])
def test_layout_small_files_enumerate_exactly(total: int) -> None:
    layout = PieceLayout(total, 16384)
    ranges = [layout.piece_range(i) for i in range(layout.count)]
    assert sum(length for _, length in ranges) == total
    assert [offset for offset, _ in ranges] == [i * 16384 for i in range(layout.count)]


def test_layout_rejects_out_of_range_piece() -> None:
    layout = PieceLayout(100, 16384)
    with pytest.raises(IndexError):
        layout.piece_range(1)
    with pytest.raises(IndexError):
        layout.piece_size(-1)
    with pytest.raises(IndexError):
        PieceLayout(0, 16384).piece_range(0)


@pytest.mark.parametrize("piece_length", [0, 8192, 16385, 3 * 16384, -16384])
def test_layout_rejects_bad_piece_length(piece_length: int) -> None:
    with pytest.raises(ValueError):
        PieceLayout(10, piece_length)


def test_layout_rejects_negative_length() -> None:
    with pytest.raises(ValueError):
        PieceLayout(-1, 16384)


def test_layout_for_size_uses_policy() -> None:
    assert PieceLayout.for_size(1 * GIB) == PieceLayout(1 * GIB, 512 * KIB)
