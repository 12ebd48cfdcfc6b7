"""The admin API's route table, its OpenAPI description, and the replay guard."""

from __future__ import annotations

import pytest

from s3torrent.admin.api import HANDLERS
from s3torrent.admin.openapi import PATHS, openapi_document
from s3torrent.admin.replay import ReplayGuard
from s3torrent.admin.routes import (
    ENDPOINTS,
    Caller,
    MethodNotAllowed,
    NoSuchEndpoint,
    route,
)

_METHODS = {"get", "post", "put", "delete", "patch"}


def _documented() -> set[tuple[str, str, str]]:
    return {
        (method.upper(), path, op["operationId"])
        for path, item in PATHS.items()
        for method, op in item.items()
        if method in _METHODS
    }


def test_openapi_describes_exactly_the_routes() -> None:
    routes = {(e.method, e.template, e.operation) for e in ENDPOINTS}
    assert _documented() == routes


def test_every_route_has_a_handler() -> None:
    assert {e.operation for e in ENDPOINTS} == set(HANDLERS)


def test_only_the_description_is_unsigned_in_openapi_too() -> None:
    unsigned = {
        op["operationId"]
        for item in PATHS.values()
        for method, op in item.items()
        if method in _METHODS and op.get("security") == []
    }
    assert unsigned == {e.operation for e in ENDPOINTS if e.caller is Caller.ANYONE}


def test_path_parameters_are_declared() -> None:
    for path, item in PATHS.items():
        declared = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        in_template = {s[1:-1] for s in path.split("/") if s.startswith("{")}
        assert declared == in_template, path


def test_document_names_this_server() -> None:
    doc = openapi_document("http://example.test:9000/", "1.2.3")
    assert doc["servers"] == [{"url": "http://example.test:9000/_admin"}]
    assert doc["info"]["version"] == "1.2.3"


def test_route_matches_templates_and_decodes_segments() -> None:
    endpoint, params = route("POST", "/_admin/users/a%40b.c/rotate")
    assert endpoint.operation == "rotateKeys" and params == {"name": "a@b.c"}
    assert route("GET", "/_admin/users/")[0].operation == "listUsers"
    # An encoded slash stays inside its segment: no route has a two-segment name.
    assert route("GET", "/_admin/users/a%2Fb")[1] == {"name": "a/b"}


@pytest.mark.parametrize(
    "path", ["/_admin", "/_admin/user", "/_admin/users/a/b/c", "/_adminx", "/_admin/users/%ff"]
)
def test_unknown_paths_are_no_endpoint(path: str) -> None:
    with pytest.raises(NoSuchEndpoint):
        route("GET", path)


def test_wrong_method_lists_the_allowed_ones() -> None:
    with pytest.raises(MethodNotAllowed) as exc:
        route("PATCH", "/_admin/users/bob")
    assert sorted(exc.value.allowed) == ["DELETE", "GET"]


def test_replay_guard_accepts_a_signature_once_within_its_window() -> None:
    guard = ReplayGuard(window=10.0, capacity=3)
    assert guard.first_time("a", now=0.0)
    assert not guard.first_time("a", now=5.0)
    assert guard.first_time("b", now=5.0)
    assert guard.first_time("a", now=10.5)  # out of the window: the date check refuses it


def test_replay_guard_stays_bounded() -> None:
    guard = ReplayGuard(window=100.0, capacity=3)
    for i in range(10):
        assert guard.first_time(str(i), now=float(i))
    assert len(guard._seen) <= 3
