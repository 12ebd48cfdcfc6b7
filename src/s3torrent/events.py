"""The in-process event bus: object written / deleted / access changed.

The tracker's registry, the seeder's connections and the torrent cache subscribe. Handlers run
synchronously in publish order on the event loop thread, so a revocation is applied before the
request that caused it is answered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from typing import Any

log = logging.getLogger(__name__)


# A field's metadata: the field stays in this process (encode_event leaves it out).
LOCAL_ONLY = {"local": True}


@dataclass(frozen=True, slots=True)
class ObjectWritten:
    bucket: str
    key: str
    version_id: str
    replaced_version_id: str | None
    hashed: bool = False
    """True when the version needs no hashing job: its torrent hashes were recorded in the
    same commit, or it is inline (hashed from its row when first asked for)."""
    written: object = field(default=None, compare=False, repr=False, metadata=LOCAL_ONLY)
    """The version as its writer committed it (a store row), for this process's subscribers
    only: never relayed, so None in another process. A hint, not a fact: the row may have
    changed since (publication decides on a row it reads itself)."""
    written_bucket: object = field(default=None, compare=False, repr=False, metadata=LOCAL_ONLY)
    """The bucket row the writer's commit read, under the write lock (with `written`, for
    this process's subscribers only): what refuses a torrent at once, without a read."""
    written_hashes: object = field(default=None, compare=False, repr=False, metadata=LOCAL_ONLY)
    """The torrent hashes the commit stored with the version, if any (local, as `written`):
    a version's bytes never change, so its publication needs not read them back."""
    written_unmarked: bool = field(default=False, compare=False, repr=False, metadata=LOCAL_ONLY)
    """True when the version is inline, its commit stored no hashes, and that commit read,
    under SQLite's one write lock, that no torrent of the key was ever published
    (schema.torrent_marks). Then no process holds a publication this write takes back, and
    none can know a swarm id of the new version before its first `?torrent` (whose
    TorrentHashed goes everywhere): only this process needs the event (`local_only`)."""


def local_only(event: object) -> bool:
    """An event no other process needs: the workers' relay leaves it out (events_local)."""
    return isinstance(event, ObjectWritten) and event.written_unmarked


@dataclass(frozen=True, slots=True)
class ObjectDeleted:
    bucket: str
    key: str
    version_id: str


@dataclass(frozen=True, slots=True)
class AccessChanged:
    """An ACL, policy or public-access-block changed; key None means the whole bucket."""

    bucket: str
    key: str | None


@dataclass(frozen=True, slots=True)
class TorrentHashed:
    """Piece hashes of a version became available (after a background hashing job)."""

    bucket: str
    key: str
    version_id: str


Event = ObjectWritten | ObjectDeleted | AccessChanged | TorrentHashed
Handler = Callable[[Event], None]


def relayed_fields(event: Event) -> dict[str, object]:
    """What of an event another process receives: every field but the local-only ones."""
    names = _RELAYED_NAMES.get(type(event))
    if names is None:
        names = tuple(f.name for f in fields(event) if "local" not in f.metadata)
        _RELAYED_NAMES[type(event)] = names
    return {name: getattr(event, name) for name in names}


_RELAYED_NAMES: dict[type, tuple[str, ...]] = {}


# ---- the wire form: one JSON object per event, between workers (events_local) and nodes
# (events_redis). Here, not beside either relay, so that the embedded defaults never import
# an optional engine's client (redis is an extra: `pip install s3torrent[redis]`).

EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls for cls in (ObjectWritten, ObjectDeleted, AccessChanged, TorrentHashed)
}
# One encoder for every event: json.dumps given any argument builds one per call.
_COMPACT = json.JSONEncoder(separators=(",", ":")).encode


def encode_event(event: Event, node_id: str, instance: str | None = None) -> bytes:
    """The wire form; `instance` names the sending process (events_redis: two processes
    under one node id must not take each other's events for their own)."""
    body: dict[str, object] = {
        "node": node_id,
        "type": type(event).__name__,
        "event": relayed_fields(event),
    }
    if instance is not None:
        body["inst"] = instance
    return _COMPACT(body).encode()


def decode_event(raw: bytes | str) -> tuple[str, Event]:
    """(sender node id, event); ValueError for anything that is not one of ours."""
    sender, _, event = decode_event_from(raw)
    return sender, event


def decode_event_from(raw: bytes | str) -> tuple[str, str | None, Event]:
    """(sender node id, sending process's instance or None, event); ValueError for
    anything that is not one of ours."""
    try:
        body = json.loads(raw)
        cls = EVENT_TYPES[body["type"]]
        instance = body.get("inst")
        return str(body["node"]), None if instance is None else str(instance), cls(**body["event"])
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not an s3torrent event: {exc}") from exc


# True while the bus hands its subscribers an event another process published.
_RELAYED: ContextVar[bool] = ContextVar("s3torrent_event_relayed", default=False)


def relayed() -> bool:
    """Whether the event being handled came from another process (another worker of this
    machine through the owner's hub, or another node through Redis), not from this one."""
    return _RELAYED.get()


class EventBus:
    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def publish(self, event: Event, *, relayed: bool = False) -> None:
        """Hand event to every subscriber, in order; `relayed`: another process published
        it (the relays say so; subscribers may ask `relayed()` while they handle it)."""
        token = _RELAYED.set(relayed)
        try:
            for handler in list(self._handlers):
                try:
                    handler(event)
                except Exception:  # one broken subscriber must not stop the others
                    log.exception("event handler failed for %r", event)
        finally:
            _RELAYED.reset(token)
