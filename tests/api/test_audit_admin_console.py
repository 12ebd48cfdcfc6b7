"""The operator's surfaces attacked: the admin API's routes from anonymous callers and
ordinary users (odd methods and spellings of the path), the console's headers, hostile
object keys in the usage and savings reports (CSV, tables) and in the Prometheus text, and
what health and error answers tell an anonymous caller."""

from __future__ import annotations

import csv
import io
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest

from s3torrent.admin.routes import ENDPOINTS
from tests.api.test_admin_api import call, send
from tests.conftest import (
    ROOT_AK,
    ROOT_SK,
    LiveServer,
    UserKeys,
    add_user,
    make_client,
    sign_request,
    start_server,
)

# Keys a bucket owner may pick to attack whoever reads a report of them.
FORMULA_KEY = "=cmd|' /C calc'!A0"
TERMINAL_KEY = "x\x1b]0;owned\x07\x1b[2J\rforged row\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    s = start_server(tmp_path_factory.mktemp("audit-admin-console"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def carol(srv: LiveServer) -> UserKeys:
    keys = add_user(srv, "carol")
    deadline = time.monotonic() + 10  # the server reloads users within 3 s
    while call(srv, "GET", "/_admin/usage", keys=(keys.access_key, keys.secret_key))[0] != 200:
        assert time.monotonic() < deadline, "the new user was never accepted"
        time.sleep(0.3)
    return keys


def raw(srv: LiveServer, method: str, path: str, *, signed: UserKeys | None = None) -> int:
    """The status of a request whose path is sent exactly as written."""
    url = srv.endpoint + path
    headers: dict[str, str] = {}
    if signed is not None:
        headers = sign_request(method, url, {}, b"", ak=signed.access_key, sk=signed.secret_key)
    return _send_raw(url, method, headers)[0]


def _send_raw(url: str, method: str, headers: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def _concrete(template: str) -> str:
    return "/_admin" + template.replace("{name}", "root")


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.operation != "openapi"])
def test_every_admin_endpoint_refuses_anonymous_callers(srv: LiveServer, endpoint: Any) -> None:
    for path in (_concrete(endpoint.template), _concrete(endpoint.template) + "/"):
        assert raw(srv, endpoint.method, path) in (403, 404), path
    assert call(srv, endpoint.method, _concrete(endpoint.template), keys=None)[0] == 403


@pytest.mark.parametrize(
    "endpoint", [e for e in ENDPOINTS if e.caller.value == "admin"], ids=lambda e: e.operation
)
def test_every_admin_only_endpoint_refuses_an_ordinary_user(
    srv: LiveServer, carol: UserKeys, endpoint: Any
) -> None:
    keys = (carol.access_key, carol.secret_key)
    status, body = call(srv, endpoint.method, _concrete(endpoint.template), keys=keys)
    assert status == 403, body
    assert body["error"]["code"] == "AccessDenied"


@pytest.mark.parametrize(
    "path",
    [
        "/_adm%69n/users",
        "/_admin//users",
        "/_admin/./users",
        "/_admin/x/../users",
        "/_admin/%2e%2e/_admin/users",
        "/_console/../_admin/users",
        "/_admin/users%2f",
        "/_ADMIN/users",
        "/%5fadmin/users",
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "POST", "DELETE", "PATCH"])
def test_odd_spellings_of_admin_paths_give_nothing_to_a_user(
    srv: LiveServer, carol: UserKeys, path: str, method: str
) -> None:
    """Whatever a path is routed to, a user's or nobody's signature lists no users."""
    for signed in (None, carol):
        url = srv.endpoint + path
        headers: dict[str, str] = {}
        if signed is not None:
            headers = sign_request(method, url, {}, b"", ak=signed.access_key, sk=signed.secret_key)
        status, body = _send_raw(url, method, headers)
        assert status >= 400, (path, method, status, body)
        assert "canonical_id" not in str(body) and ROOT_AK not in str(body)


def test_admin_answers_carry_no_cors_grant(srv: LiveServer, carol: UserKeys) -> None:
    url = srv.endpoint + "/_admin/usage"
    origin = {"Origin": "https://evil.example"}
    headers = sign_request("GET", url, origin, b"", ak=carol.access_key, sk=carol.secret_key)
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
        assert r.headers.get("Access-Control-Allow-Origin") is None
        assert r.headers.get("Access-Control-Allow-Credentials") is None
    pre = urllib.request.Request(
        url,
        method="OPTIONS",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    try:
        urllib.request.urlopen(pre, timeout=10)
        raise AssertionError("a preflight for /_admin was granted")
    except urllib.error.HTTPError as err:
        assert err.code == 403
        assert err.headers.get("Access-Control-Allow-Origin") is None


def test_a_user_sees_only_their_own_usage(srv: LiveServer, carol: UserKeys) -> None:
    make_client(srv.endpoint).create_bucket(Bucket="roots-secret-usage")
    make_client(srv.endpoint).put_object(Bucket="roots-secret-usage", Key="k", Body=b"x")
    keys = (carol.access_key, carol.secret_key)
    for path in (
        "/_admin/usage?format=csv",
        "/_admin/usage?bucket=roots-secret-usage&format=csv",
        "/_admin/savings?bucket=roots-secret-usage",
        "/_admin/savings/history?bucket=roots-secret-usage",
    ):
        status, body = call(srv, "GET", path, keys=keys)
        assert "roots-secret-usage" not in str(body) or status == 403, (path, body)


def test_console_pages_keep_their_window_to_themselves(srv: LiveServer) -> None:
    for path in ("/_console/", "/_console/users", "/_console/static/console.js", "/_console/x"):
        req = urllib.request.Request(srv.endpoint + path)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                headers = r.headers
        except urllib.error.HTTPError as err:
            headers = err.headers
        assert headers["Cross-Origin-Opener-Policy"] == "same-origin", path
        assert headers["X-Frame-Options"] == "DENY", path


def _eventually(probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


@pytest.fixture(scope="module")
def hostile_traffic(srv: LiveServer) -> str:
    """A public bucket whose objects' names attack report readers, each read once."""
    bucket = "hostile-reports"
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket=bucket)
    for key in (FORMULA_KEY, TERMINAL_KEY):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * 10)
        s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    def both_recorded() -> bool:
        status, text = call(srv, "GET", f"/_admin/savings?bucket={bucket}")
        return status == 200 and len(text["objects"]) == 2

    assert _eventually(both_recorded), "the reads were never metered"
    return bucket


def test_savings_csv_does_not_hand_a_spreadsheet_a_formula(
    srv: LiveServer, hostile_traffic: str
) -> None:
    status, text = call(srv, "GET", f"/_admin/savings?bucket={hostile_traffic}&format=csv")
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    keys = [r["Key"] for r in rows]
    for cell in (c for r in rows for c in r.values()):
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    # The key is still all there, behind the apostrophe spreadsheets read as "text".
    assert "'" + FORMULA_KEY in keys


def test_report_tables_print_no_control_characters(srv: LiveServer, hostile_traffic: str) -> None:
    status, text = call(srv, "GET", f"/_admin/savings?bucket={hostile_traffic}&format=table")
    assert status == 200
    assert not any(ch in text for ch in "\x1b\x07\r"), repr(text)
    lines = text.splitlines()
    assert not any(line.startswith("forged row") for line in lines)
    assert "\\x1b]0;owned" in text  # shown, escaped: the operator sees what the key holds
    # The CLI prints the same table, from the data directory.
    res = srv.cli("savings", "--bucket", hostile_traffic)
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout and "\\x1b" in res.stdout
    res = srv.cli("torrent", "show", hostile_traffic, TERMINAL_KEY)
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout and "key: x\\x1b]0;owned" in res.stdout


def test_metrics_text_parses_whatever_the_names(srv: LiveServer, hostile_traffic: str) -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    url = srv.endpoint + "/_metrics"
    headers = sign_request("GET", url, {}, b"", ak=ROOT_AK, sk=ROOT_SK)
    status, text = send(url, "GET", b"", headers)
    assert status == 200
    families = list(parser.text_string_to_metric_families(text))
    assert families
    assert "owned" not in text and "forged" not in text
    # Only root reads them: an anonymous caller is refused and told nothing.
    status, body = send(url, "GET", b"", {})
    assert status == 403 and "s3torrent_" not in str(body)


def test_health_tells_an_anonymous_caller_no_more_than_ready(srv: LiveServer) -> None:
    for path in ("/_health", "/_health?ready"):
        status, body = send(srv.endpoint + path, "GET", b"", {})
        assert status == 200
        assert str(srv.data_dir) not in str(body)


def test_errors_do_not_show_a_stack_or_a_path(srv: LiveServer) -> None:
    for path in (
        "/_admin/usage?from=not-a-time",
        "/_admin/users/%ff",
        "/_admin/" + quote("\x00"),
        "/_console/static/../../pages.py",
    ):
        status, body = send(srv.endpoint + path, "GET", b"", {})
        assert status >= 400
        text = str(body)
        assert "Traceback" not in text and str(srv.data_dir) not in text, text
        assert "/src/s3torrent" not in text and "site-packages" not in text, text


def test_a_node_that_is_not_ready_tells_anonymous_callers_what_not_where(
    tmp_path: Any,
) -> None:
    """`/_health?ready` needs no signature (load balancers call it): its problems name the
    part that fails; the exception, with its paths, hosts and database users, goes to the
    server's log only."""
    s = start_server(tmp_path)
    try:
        [tmp_dir] = [p for p in s.data_dir.rglob("tmp") if (p.parent / "blobs").is_dir()]
        tmp_dir.rename(tmp_dir.with_name("tmp-away"))
        try:
            status, body = send(s.endpoint + "/_health?ready", "GET", b"", {})
        finally:
            tmp_dir.with_name("tmp-away").rename(tmp_dir)
        assert status == 503
        assert body["problems"] == ["blob store"]
        assert str(s.data_dir) not in str(body) and "OSError" not in str(body)
        assert str(tmp_dir) in s.log_path.read_text()
    finally:
        s.stop()


@pytest.mark.parametrize("path", ["/_seeder/stats", "/_metrics"])
def test_root_only_routes_refuse_users_and_nobody(
    srv: LiveServer, carol: UserKeys, path: str
) -> None:
    for signed in (None, carol):
        for method in ("GET", "HEAD", "POST"):
            status, body = _send_raw(
                srv.endpoint + path,
                method,
                {}
                if signed is None
                else sign_request(
                    method, srv.endpoint + path, {}, b"", ak=signed.access_key, sk=signed.secret_key
                ),
            )
            assert status == 403, (path, method, signed, body)
            assert "s3torrent_" not in body and "torrents" not in body


def test_an_admin_user_cannot_take_over_root(srv: LiveServer) -> None:
    dave = add_user(srv, "dave")
    assert call(srv, "POST", "/_admin/users/dave/disable")[0] == 200
    assert call(srv, "POST", "/_admin/users/dave/enable")[0] == 200
    status, made = call(srv, "POST", "/_admin/users", {"name": "erin", "admin": True})
    assert status == 201
    keys = (made["access_key"], made["secret_key"])
    deadline = time.monotonic() + 10
    while call(srv, "GET", "/_admin/users", keys=keys)[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    for method, path in (
        ("POST", "/_admin/users/root/rotate"),
        ("POST", "/_admin/users/root/disable"),
        ("DELETE", "/_admin/users/root"),
        ("POST", "/_admin/users/%72oot/rotate"),
    ):
        status, body = call(srv, method, path, keys=keys)
        assert status in (400, 403), (path, body)
        assert "secret_key" not in body
    assert dave.name == "dave"


def test_a_deeply_nested_body_is_malformed_json_not_an_internal_error(srv: LiveServer) -> None:
    """64 KiB of `[` is within the body limit and is no JSON object: json.loads raised
    RecursionError, which no handler expected (500 InternalError, in XML)."""
    url = srv.endpoint + "/_admin/users"
    data = b"[" * 60_000
    headers = sign_request("POST", url, {"x-s3torrent-nonce": "deep"}, data, ak=ROOT_AK, sk=ROOT_SK)
    status, body = send(url, "POST", data, headers)
    assert status == 400, body
    assert body["error"]["code"] == "MalformedJSON"


def test_a_form_policy_nested_past_the_stack_is_refused_not_an_internal_error(
    srv: LiveServer,
) -> None:
    """The policy is decoded before its signature is checked: anyone's form reached
    json.loads, whose RecursionError on deeply nested input was a 500 InternalError."""
    import base64

    make_client(srv.endpoint).create_bucket(Bucket="deep-forms")
    boundary = "deepformboundary"
    fields = {
        "key": "k",
        "policy": base64.b64encode(b"[" * 12_000).decode(),
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": f"{ROOT_AK}/20260101/us-east-1/s3/aws4_request",
        "x-amz-date": "20260101T000000Z",
        "x-amz-signature": "0" * 64,
    }
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
        f"x\r\n--{boundary}--\r\n"
    )
    data = "".join(parts).encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    status, body = _send_raw_body(srv.endpoint + "/deep-forms", "POST", data, headers)
    assert status == 400, body
    assert "<Code>InvalidPolicyDocument</Code>" in body


def _send_raw_body(url: str, method: str, data: bytes, headers: dict[str, str]) -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def test_a_reused_bucket_name_does_not_show_the_last_owner_s_traffic(
    srv: LiveServer, carol: UserKeys
) -> None:
    """Usage is stored by bucket name. Bucket names are global: once carol deleted hers,
    dan could create one of the same name, and its usage and savings reports showed
    carol's object keys and traffic (a user's report must cover only what is theirs)."""
    bucket = "reused-name"
    carol_s3 = make_client(srv.endpoint, carol.access_key, carol.secret_key)
    carol_s3.create_bucket(Bucket=bucket)
    secret_key = "carol-salaries-2026.xlsx"
    carol_s3.put_object(Bucket=bucket, Key=secret_key, Body=b"x" * 1000)
    carol_s3.get_object(Bucket=bucket, Key=secret_key)["Body"].read()
    carol_keys = (carol.access_key, carol.secret_key)

    def carol_sees_it() -> bool:
        status, body = call(srv, "GET", f"/_admin/savings?bucket={bucket}", keys=carol_keys)
        return status == 200 and [o["key"] for o in body["objects"]] == [secret_key]

    assert _eventually(carol_sees_it), "carol's read was never metered"
    carol_s3.delete_object(Bucket=bucket, Key=secret_key)
    carol_s3.delete_bucket(Bucket=bucket)

    dan = add_user(srv, "dan")
    dan_keys = (dan.access_key, dan.secret_key)
    dan_s3 = make_client(srv.endpoint, *dan_keys)
    deadline = time.monotonic() + 10  # the server reloads users within 3 s
    while True:
        try:
            dan_s3.create_bucket(Bucket=bucket)
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.3)
    for path in (
        f"/_admin/savings?bucket={bucket}",
        f"/_admin/savings?bucket={bucket}&format=csv",
        f"/_admin/usage?bucket={bucket}&by=hour",
        f"/_admin/savings/history?bucket={bucket}&by=hour",
    ):
        status, body = call(srv, "GET", path, keys=dan_keys)
        assert status == 200, (path, body)
        assert secret_key not in str(body), (path, body)
    # Root's reports keep the name's history (the operator's, across owners).
    status, body = call(srv, "GET", f"/_admin/savings?bucket={bucket}")
    assert status == 200 and [o["key"] for o in body["objects"]] == [secret_key]


def test_a_user_s_usage_of_a_bucket_is_that_bucket_s_only() -> None:
    """The hourly counters say which bucket of the name they count (its created_at): an
    earlier owner's, of the hours before and of the hour the name was taken alike, are
    not shown to the bucket's user (until late 2026-12-07 that hour's were)."""
    from s3torrent.metering.savings_history import savings_history
    from s3torrent.metering.usage import UsageQuery, usage_records
    from s3torrent.store.usage_rows import HourlyUsage, SwarmHour

    created = 1_800_000_000.5
    hour = 1_800_000_000 - 1_800_000_000 % 3600
    earlier = created - 4000.0
    web = "GetObject-WebSeed"
    hours = [
        HourlyUsage(hour - 3600, "b", web, 1, 500, 0, 0.0, earlier),
        HourlyUsage(hour, "b", web, 1, 300, 0, 0.0, earlier),
        HourlyUsage(hour, "b", web, 1, 7, 0, 0.0, created),
    ]
    swarms = [
        SwarmHour(hour - 3600, "b", 1, 900, 0, earlier),
        SwarmHour(hour, "b", 1, 11, 0, created),
    ]
    mine = UsageQuery(by="hour", created={"b": created})
    assert [
        (r.start, r.value) for r in usage_records(hours, mine) if r.usage_type.endswith("Bytes")
    ] == [(hour, 7)]
    assert [(p.start, p.web_seed_bytes) for p in savings_history(hours, swarms, mine)] == [
        (hour, 7)
    ]
    everything = UsageQuery(by="hour")
    whole = [
        (r.start, r.value)
        for r in usage_records(hours, everything)
        if r.usage_type.endswith("Bytes")
    ]
    assert whole == [(hour - 3600, 500), (hour, 307)]
