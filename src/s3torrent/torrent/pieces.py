"""How an object is cut into pieces: the piece-length policy and the piece layout.

Pure arithmetic, shared by the hasher, the metainfo builder and the seeder, so that all
of them agree on where piece *i* starts and how long it is.
"""

from __future__ import annotations

from dataclasses import dataclass

# BEP 52 fixes the v2 merkle leaf at 16 KiB, and it is also the de-facto wire block size
# (peers request 16 KiB blocks), so piece lengths are always whole multiples of it.
BLOCK_SIZE = 16384

MIN_PIECE_LENGTH = BLOCK_SIZE
MAX_PIECE_LENGTH = 16 * 1024 * 1024
# Aim for at most this many pieces: ~2,000 keeps the v1 `pieces` string (20 B per piece)
# and the v2 piece layer (32 B per piece) small, while pieces stay fine-grained enough
# for a swarm to spread them.
TARGET_MAX_PIECES = 2048


def piece_length_for(size: int) -> int:
    """The piece length we use for an object of ``size`` bytes.

    Rule: the smallest power of two >= 16 KiB such that ``ceil(size / piece_length)
    <= 2048``, capped at 16 MiB (so objects over 32 GiB get more than 2048 pieces).
    A power of two is required by BEP 52 and keeps piece boundaries aligned to blocks.
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    length = MIN_PIECE_LENGTH
    while length < MAX_PIECE_LENGTH and -(-size // length) > TARGET_MAX_PIECES:
        length *= 2
    return length


def is_valid_piece_length(piece_length: int) -> bool:
    """True when ``piece_length`` is a power of two of at least one block (BEP 52)."""
    return piece_length >= BLOCK_SIZE and piece_length & (piece_length - 1) == 0


@dataclass(frozen=True, slots=True)
class PieceLayout:
    """A file of ``total_length`` bytes cut into pieces of ``piece_length`` bytes.

    Every piece is ``piece_length`` long except the last, which holds the remainder
    (1..piece_length bytes). An empty file has no pieces.
    """

    total_length: int
    piece_length: int

    def __post_init__(self) -> None:
        if self.total_length < 0:
            raise ValueError(f"total_length must be >= 0, got {self.total_length}")
        if not is_valid_piece_length(self.piece_length):
            raise ValueError(
                f"piece_length must be a power of two >= {BLOCK_SIZE}, got {self.piece_length}"
            )

    @classmethod
    def for_size(cls, total_length: int) -> PieceLayout:
        """The layout our piece-length policy picks for ``total_length`` bytes."""
        return cls(total_length, piece_length_for(total_length))

    @property
    def count(self) -> int:
        return -(-self.total_length // self.piece_length)

    @property
    def blocks_per_piece(self) -> int:
        return self.piece_length // BLOCK_SIZE

    def piece_size(self, index: int) -> int:
        return self.piece_range(index)[1]

    def piece_range(self, index: int) -> tuple[int, int]:
        """(offset, length) of piece ``index`` within the file."""
        if not 0 <= index < self.count:
            raise IndexError(f"piece index {index} out of range 0..{self.count - 1}")
        offset = index * self.piece_length
        return offset, min(self.piece_length, self.total_length - offset)
