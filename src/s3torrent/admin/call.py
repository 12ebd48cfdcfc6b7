"""One admin API request as its handlers see it: who asks, what they sent."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from s3torrent.access import Principal
from s3torrent.s3.errors import S3Error

if TYPE_CHECKING:
    from s3torrent.peer.seeder import Seeder
    from s3torrent.s3.context import S3Context
    from s3torrent.store.rows import User
    from s3torrent.tracker.registry import TrackerRegistry


@dataclass(slots=True)
class NodeFacts:
    """What the admin API reports about the running process."""

    started: float = field(default_factory=time.time)
    seeder: Seeder | None = None
    swarms: TrackerRegistry | None = None  # the tracker's registry: live peer counts
    engines: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AdminCall:
    svc: S3Context
    node: NodeFacts
    request: web.Request
    principal: Principal
    user: User | None  # None for an anonymous caller (the description only)
    params: dict[str, str]
    query: dict[str, str]
    body: bytes

    def json_body(self) -> dict[str, Any]:
        """The request body: one JSON object (an empty body is an empty object)."""
        if not self.body.strip():
            return {}
        try:
            value = json.loads(self.body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # nested past the stack
            raise S3Error("MalformedJSON", "The body is not valid JSON", status=400) from None
        if not isinstance(value, dict):
            raise S3Error("MalformedJSON", "The body must be a JSON object", status=400)
        return value


Handler = Callable[[AdminCall], Awaitable[web.StreamResponse]]


def flag(query: dict[str, str], name: str) -> bool:
    """A boolean query parameter: true/1/yes, false/0/no/absent."""
    value = query.get(name, "false").lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise S3Error("InvalidArgument", f"{name} must be true or false, not {value!r}")
