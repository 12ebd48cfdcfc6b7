"""The admin API's endpoints: one table of method, path template and who may call it.

Pure: a request's method and path (percent-decoded segments) go in, the endpoint and its
path parameters come out. The OpenAPI description is checked against this table by a test,
so a new endpoint cannot go undocumented.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import unquote

PREFIX = "/_admin"


class Caller(enum.Enum):
    """Who may call an endpoint."""

    ANYONE = "anyone"  # the API's own description
    SIGNED = "signed"  # any user; the answer covers what the access decision lets them see
    ADMIN = "admin"  # root, or a user flagged admin


@dataclass(frozen=True, slots=True)
class AdminEndpoint:
    method: str
    template: str  # under PREFIX; "{name}" is one path segment
    operation: str
    caller: Caller
    summary: str

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(s for s in self.template.split("/") if s)


ENDPOINTS: tuple[AdminEndpoint, ...] = (
    AdminEndpoint("GET", "/openapi.json", "openapi", Caller.ANYONE, "This description"),
    AdminEndpoint("GET", "/info", "info", Caller.ADMIN, "Version, uptime, settings, engines"),
    AdminEndpoint("GET", "/users", "listUsers", Caller.ADMIN, "Every user (no secrets)"),
    AdminEndpoint("POST", "/users", "addUser", Caller.ADMIN, "Create a user with new keys"),
    AdminEndpoint("GET", "/users/{name}", "getUser", Caller.ADMIN, "One user (no secret)"),
    AdminEndpoint("DELETE", "/users/{name}", "removeUser", Caller.ADMIN, "Remove a user"),
    AdminEndpoint(
        "POST", "/users/{name}/rotate", "rotateKeys", Caller.ADMIN, "New keys; old ones stop"
    ),
    AdminEndpoint(
        "POST", "/users/{name}/disable", "disableUser", Caller.ADMIN, "Refuse the user's keys"
    ),
    AdminEndpoint(
        "POST", "/users/{name}/enable", "enableUser", Caller.ADMIN, "Accept the user's keys"
    ),
    AdminEndpoint(
        "GET", "/usage", "usage", Caller.SIGNED, "Usage report (AWS usage-report columns)"
    ),
    AdminEndpoint("GET", "/savings", "savings", Caller.SIGNED, "Per object: swarm offload"),
    AdminEndpoint(
        "GET", "/savings/history", "savingsHistory", Caller.SIGNED, "Swarm offload over time"
    ),
    AdminEndpoint("GET", "/torrent", "showTorrent", Caller.ADMIN, "An object's torrent state"),
    AdminEndpoint(
        "GET", "/torrent/swarm", "showSwarm", Caller.ADMIN, "An object's live swarm and bytes"
    ),
    AdminEndpoint(
        "POST", "/torrent/rehash", "rehash", Caller.ADMIN, "Hash objects lacking piece hashes"
    ),
)


class NoSuchEndpoint(Exception):
    """No endpoint has this path."""


class MethodNotAllowed(Exception):
    """An endpoint has this path, with other methods."""

    def __init__(self, allowed: list[str]) -> None:
        super().__init__(", ".join(allowed))
        self.allowed = allowed


def _match(template: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    if len(template) != len(segments):
        return None
    params: dict[str, str] = {}
    for want, got in zip(template, segments, strict=True):
        if want.startswith("{") and want.endswith("}"):
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


def route(method: str, raw_path: str) -> tuple[AdminEndpoint, dict[str, str]]:
    """The endpoint of a request under PREFIX; NoSuchEndpoint or MethodNotAllowed if none."""
    if raw_path != PREFIX and not raw_path.startswith(PREFIX + "/"):
        raise NoSuchEndpoint(raw_path)
    # Split before decoding: an encoded slash in a user name stays inside its segment.
    try:
        segments = [unquote(s, errors="strict") for s in raw_path[len(PREFIX) :].split("/") if s]
    except UnicodeDecodeError:
        raise NoSuchEndpoint(raw_path) from None
    allowed: list[str] = []
    for endpoint in ENDPOINTS:
        params = _match(endpoint.segments, segments)
        if params is None:
            continue
        if endpoint.method == method:
            return endpoint, params
        allowed.append(endpoint.method)
    if allowed:
        raise MethodNotAllowed(allowed)
    raise NoSuchEndpoint(raw_path)
