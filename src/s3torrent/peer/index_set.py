"""A set of piece indexes with O(1) add, discard and uniform random choice."""

from __future__ import annotations

import random
from collections.abc import Iterable

__all__ = ["IndexSet"]


class IndexSet:
    """A set of ints with O(1) add, discard and uniform random choice."""

    __slots__ = ("_items", "_pos")

    def __init__(self, items: Iterable[int] = ()) -> None:
        self._items: list[int] = []
        self._pos: dict[int, int] = {}
        for i in items:
            self.add(i)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: int) -> bool:
        return item in self._pos

    def add(self, item: int) -> None:
        if item not in self._pos:
            self._pos[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: int) -> None:
        pos = self._pos.pop(item, None)
        if pos is None:
            return
        last = self._items.pop()
        if pos < len(self._items):
            self._items[pos] = last
            self._pos[last] = pos

    def sample(self, rng: random.Random, limit: int) -> list[int]:
        """Up to `limit` distinct random items (the whole set if it is small)."""
        if len(self._items) <= limit:
            items = list(self._items)
            rng.shuffle(items)
            return items
        return rng.sample(self._items, limit)
