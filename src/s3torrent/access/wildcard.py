"""IAM-style wildcard matching (`*` any run, `?` one character) without regular expressions."""

from __future__ import annotations


def _segment_at(text: str, pos: int, segment: str) -> bool:
    if pos + len(segment) > len(text):
        return False
    return all(c == "?" or c == text[pos + i] for i, c in enumerate(segment))


def _find_segment(text: str, start: int, end: int, segment: str) -> int:
    """Leftmost position >= start where `segment` (may hold `?`) fits inside text[:end]."""
    if "?" not in segment:
        return text.find(segment, start, end)
    for pos in range(start, end - len(segment) + 1):
        if _segment_at(text, pos, segment):
            return pos
    return -1


def wildcard_match(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    """Match `text` against `pattern`; O(len(pattern) * len(text)) at worst, never exponential.

    The pattern is split at `*`; the first segment must sit at the start, the last at the end,
    and the middle ones are placed leftmost-first, which is optimal because any later placement
    only leaves less room for what follows.
    """
    if ignore_case:
        pattern, text = pattern.lower(), text.lower()
    segments = pattern.split("*")
    if len(segments) == 1:
        return len(pattern) == len(text) and _segment_at(text, 0, pattern)
    first, *middle, last = segments
    if len(first) + len(last) > len(text):
        return False
    if not _segment_at(text, 0, first) or not _segment_at(text, len(text) - len(last), last):
        return False
    pos, end = len(first), len(text) - len(last)
    for segment in middle:
        if not segment:
            continue
        found = _find_segment(text, pos, end, segment)
        if found < 0:
            return False
        pos = found + len(segment)
    return True


def has_wildcard(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern
