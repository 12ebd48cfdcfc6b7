"""Audit of metering and usage reports in the field: report queries at the edges of time,
and whose usage a reused bucket name shows."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.conftest import LiveServer, UserKeys, sign_request, start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("audit-metering"))
    yield server
    server.stop()


def admin_get(
    srv: LiveServer, path: str, params: dict[str, str], user: UserKeys | None = None
) -> tuple[int, Any]:
    """A signed admin API GET; (status, decoded JSON body or the raw bytes)."""
    url = (
        f"{srv.endpoint}{path}?{urlencode(params, quote_via=quote)}"
        if params
        else srv.endpoint + path
    )
    keys = {"ak": user.access_key, "sk": user.secret_key} if user is not None else {}
    req = urllib.request.Request(url, headers=sign_request("GET", url, **keys))
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, body = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


@pytest.mark.parametrize("path", ["/_admin/usage", "/_admin/savings/history"])
@pytest.mark.parametrize(
    "bound",
    [
        {"from": "9999-12-31T23:00-10:00"},  # 10000-01-01 in UTC
        {"from": "0001-01-01T00:00+10:00"},  # year 0 in UTC
        {"to": "0001-01-01T05:00+06:00"},
    ],
)
def test_a_period_outside_the_calendar_in_utc_is_refused_not_an_internal_error(
    srv: LiveServer, path: str, bound: dict[str, str]
) -> None:
    """Any user may ask for a report: a time that is a valid ISO 8601 date-time but falls
    outside years 1-9999 once in UTC was a 500 (and a traceback in the server's log)."""
    status, body = admin_get(srv, path, bound)
    assert status == 400, body
    assert body["error"]["code"] == "InvalidArgument"


def test_the_first_and_last_days_of_the_calendar_are_reported_in_iso_8601(
    srv: LiveServer,
) -> None:
    status, body = admin_get(
        srv, "/_admin/usage", {"from": "0001-01-01", "to": "9999-12-31T23:59:59"}
    )
    assert status == 200, body
    # Four-digit years (strftime's %Y wrote "1-01-01T00:00:00Z").
    assert body["from"] == "0001-01-01T00:00:00Z"
    assert body["to"] == "9999-12-31T23:59:59Z"
