"""Refusing a signed admin request sent twice.

SigV4 lets a captured request be sent again for as long as its date is within the allowed
clock skew (15 minutes). For a request that changes something (add a user, rotate keys)
that is an attack, so each signature is accepted once. Pure: the caller passes `now`.
"""

from __future__ import annotations

from collections import OrderedDict


class ReplayGuard:
    """Signatures seen in the last `window` seconds, at most `capacity` of them."""

    def __init__(self, window: float = 2 * 900.0, capacity: int = 100_000) -> None:
        # Twice the skew: a request dated 15 minutes ahead stays valid for 30 minutes.
        self.window = window
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, signature: str, now: float) -> bool:
        """True the first time a signature is offered within the window, False after."""
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at < self.window and len(self._seen) < self.capacity:
                break
            del self._seen[oldest]
        if signature in self._seen:
            return False
        self._seen[signature] = now
        return True
