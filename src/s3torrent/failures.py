"""Best-effort steps (shutdown, background loops) whose failure is logged, never silent."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def logged_failure(logger: logging.Logger, what: str) -> Iterator[None]:
    """Run a step that must not stop its caller: an exception becomes one warning line."""
    try:
        yield
    except Exception as exc:
        logger.warning("%s failed: %s", what, exc, exc_info=logger.isEnabledFor(logging.DEBUG))
