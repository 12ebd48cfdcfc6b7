"""Decimal numbers as S3 reads them in headers, query parameters and XML values: ASCII
digits only. int() also takes "1_0", "+10", surrounding spaces and other scripts' digits,
which no client sends and which let one value mean two things to two readers."""

from __future__ import annotations

MAX_DIGITS = 10  # S3's Integer (32 bits) and the counts and markers it pages by
_ASCII_DIGITS = frozenset("0123456789")


def ascii_int(raw: str, max_digits: int = MAX_DIGITS) -> int | None:
    """raw as a non-negative integer if it is 1..max_digits ASCII digits, else None."""
    if not raw or len(raw) > max_digits or not _ASCII_DIGITS.issuperset(raw):
        return None
    return int(raw)
