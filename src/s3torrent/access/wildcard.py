"""IAM-style wildcard matching (`*` any run, `?` one character), compiled once, never quadratic.

A pattern is compiled when its policy is parsed; matching then runs on the event loop for
every request, against texts a client chooses (a 16 KiB User-Agent), so its cost must not
grow with text x pattern. The pattern is split at `*` into segments; the first segment must
sit at the start of the text, the last at the end, and the middle ones are placed
leftmost-first, which is optimal because a later placement only leaves less room for what
follows. Each search resumes where the previous segment ended, so the text is scanned once.

A segment is literal chunks at fixed offsets with `?` between them. Leading and trailing `?`
are only offsets; what remains (the core) is found by:
  - one chunk: `str.find` (CPython's two-way search: linear);
  - a short core (at most `_SHORT_CORE` characters): a regular expression of fixed length,
    which has no choice points, so at most `_SHORT_CORE` steps per text position, in C;
  - a longer core: a bit-parallel (shift-and) scan, one step per text character over an
    integer of core-length bits, skipping with `str.find` to the first chunk while no
    partial match is alive.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

# Cores up to this length use a fixed-length regex (per-position cost <= this, in C); longer
# ones the shift-and scan (one interpreted step per character, whatever the core's length).
_SHORT_CORE = 160


def _segments(parts: Iterable[tuple[str, bool]]) -> list[tuple[str, frozenset[int]]]:
    """The texts between the wildcard `*`s of these parts (see compile_parts), each with the
    offsets of its wildcard `?`s."""
    segments: list[tuple[str, frozenset[int]]] = []
    text: list[str] = []
    gaps: set[int] = set()
    for part, wild in parts:
        pieces = part.split("*") if wild else [part]
        for index, piece in enumerate(pieces):
            if index:
                segments.append(("".join(text), frozenset(gaps)))
                text, gaps = [], set()
            if wild:
                offset = sum(len(t) for t in text)
                gaps.update(offset + m.start() for m in re.finditer(r"\?", piece))
            text.append(piece)
    segments.append(("".join(text), frozenset(gaps)))
    return segments


def _chunks(text: str, gaps: frozenset[int]) -> tuple[tuple[int, str], ...]:
    """The runs of `text` between its gaps, each with its offset."""
    chunks: list[tuple[int, str]] = []
    start = 0
    for gap in sorted(gaps):
        if gap > start:
            chunks.append((start, text[start:gap]))
        start = gap + 1
    if start < len(text):
        chunks.append((start, text[start:]))
    return tuple(chunks)


@dataclass(frozen=True, slots=True)
class _Segment:
    """The pattern between two `*`: `length` characters, `chunks` literal at their offsets."""

    length: int
    chunks: tuple[tuple[int, str], ...]
    short_core: re.Pattern[str] | None = None
    masks: dict[str, int] = field(default_factory=dict, compare=False)
    any_mask: int = 0

    @classmethod
    def compile(cls, text: str, gaps: frozenset[int]) -> _Segment:
        """The segment `text` whose wildcard `?`s are at the offsets `gaps` (any other
        character, a `?` included, is literal)."""
        chunks = _chunks(text, gaps)  # the gaps are between them
        if len(chunks) <= 1:
            return cls(len(text), chunks)
        lead = chunks[0][0]
        core = text[lead : chunks[-1][0] + len(chunks[-1][1])]
        if len(core) <= _SHORT_CORE:
            source = "".join("." if lead + i in gaps else re.escape(c) for i, c in enumerate(core))
            return cls(len(text), chunks, short_core=re.compile(source, re.DOTALL))
        any_mask = 0
        positions: dict[str, list[int]] = {}
        for index, char in enumerate(core):
            if lead + index in gaps:
                any_mask |= 1 << index
            else:
                positions.setdefault(char, []).append(index)
        masks = {char: sum(1 << i for i in where) | any_mask for char, where in positions.items()}
        return cls(len(text), chunks, masks=masks, any_mask=any_mask)

    @property
    def search_cost(self) -> int:
        """Worst-case work per text character of `find`, in units of one `str.find` step.

        Measured: a fixed-length regex costs about 2 find steps per position plus one per 4
        characters of core; shift-and about 70 plus one per 32 bits of state.
        """
        if not self.chunks:
            return 0
        core_length = self.chunks[-1][0] + len(self.chunks[-1][1]) - self.chunks[0][0]
        if len(self.chunks) == 1:
            return 1
        if self.short_core is not None:
            return 2 + core_length // 4
        return 70 + core_length // 32

    def fits_at(self, text: str, pos: int) -> bool:
        if pos < 0 or pos + self.length > len(text):
            return False
        return all(text.startswith(chunk, pos + offset) for offset, chunk in self.chunks)

    def find(self, text: str, start: int, end: int) -> int:
        """Leftmost position p >= start where the segment fits inside text[:end]; -1 if none."""
        if end - start < self.length:
            return -1
        if not self.chunks:
            return start
        lead, first = self.chunks[0]
        last_offset, last = self.chunks[-1]
        core_start, core_end = start + lead, end - (self.length - last_offset - len(last))
        if len(self.chunks) == 1:
            found = text.find(first, core_start, core_end)
        elif self.short_core is not None:
            match = self.short_core.search(text, core_start, core_end)
            found = -1 if match is None else match.start()
        else:
            found = self._shift_and(text, core_start, core_end, last_offset + len(last) - lead)
        return -1 if found < 0 else found - lead

    def _shift_and(self, text: str, start: int, end: int, core_length: int) -> int:
        """Leftmost start of the core within text[start:end]: bit i = core[: i + 1] matches."""
        first = self.chunks[0][1]
        masks, any_mask, accept = self.masks, self.any_mask, 1 << (core_length - 1)
        state, pos = 0, start
        while pos < end:
            if not state:
                pos = text.find(first, pos, end)
                if pos < 0:
                    return -1
            state = ((state << 1) | 1) & masks.get(text[pos], any_mask)
            if state & accept:
                return pos - core_length + 1
            pos += 1
        return -1


@dataclass(frozen=True, slots=True)
class WildcardPattern:
    """A compiled wildcard; `matches(text)` is linear in len(text) for short cores."""

    source: str
    ignore_case: bool
    head: _Segment
    middle: tuple[_Segment, ...]
    tail: _Segment | None  # None: the pattern has no `*` and must match the whole text

    @classmethod
    def compile(cls, pattern: str, *, ignore_case: bool = False) -> WildcardPattern:
        folded = pattern.lower() if ignore_case else pattern
        return cls._build(pattern, ignore_case, _segments(((folded, True),)))

    @classmethod
    def compile_parts(cls, parts: Sequence[tuple[str, bool]]) -> WildcardPattern:
        """A pattern of parts, each (text, wild): `*` and `?` are wildcards in a wild part
        and themselves in another (a policy variable's value, or `${*}`)."""
        return cls._build("".join(text for text, _ in parts), False, _segments(parts))

    @classmethod
    def _build(
        cls, source: str, ignore_case: bool, segments: list[tuple[str, frozenset[int]]]
    ) -> WildcardPattern:
        head = _Segment.compile(*segments[0])
        if len(segments) == 1:
            return cls(source, ignore_case, head, (), None)
        middle = tuple(_Segment.compile(*s) for s in segments[1:-1] if s[0])
        return cls(source, ignore_case, head, middle, _Segment.compile(*segments[-1]))

    @property
    def cost(self) -> int:
        """Worst-case work per character of a text it is matched against (see _Segment)."""
        return sum(segment.search_cost for segment in self.middle)

    def matches(self, text: str) -> bool:
        if self.ignore_case:
            text = text.lower()
        head, tail = self.head, self.tail
        if tail is None:
            return len(text) == head.length and head.fits_at(text, 0)
        end = len(text) - tail.length
        if end < head.length or not head.fits_at(text, 0) or not tail.fits_at(text, end):
            return False
        pos = head.length
        for segment in self.middle:
            found = segment.find(text, pos, end)
            if found < 0:
                return False
            pos = found + segment.length
        return True


# Policies compile their own patterns once; this cache only serves one-off matches.
@lru_cache(maxsize=256)
def _compiled(pattern: str, ignore_case: bool) -> WildcardPattern:
    return WildcardPattern.compile(pattern, ignore_case=ignore_case)


def wildcard_match(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    """Match `text` against `pattern`, for a one-off match; policies keep compiled patterns."""
    return _compiled(pattern, ignore_case).matches(text)


def has_wildcard(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern
