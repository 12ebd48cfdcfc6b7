"""The access log (one line per S3 request, with its request id and S3 error code), /_metrics
for root on the main listener, and /_health?ready."""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import LiveServer, add_user, make_client, sign_request, start_server


def eventually(read: Callable[[], Any], timeout: float = 10.0) -> Any:
    """read()'s first truthy value (lines are written within a second)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


@pytest.fixture(scope="module")
def json_logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    tmp = tmp_path_factory.mktemp("access-json")
    log = tmp / "access.log"
    srv = start_server(
        tmp,
        env={
            "S3TORRENT_LOGGING__ACCESS_LOG_FORMAT": "json",
            "S3TORRENT_LOGGING__ACCESS_LOG_FILE": str(log),
        },
    )
    yield srv, log
    srv.stop()


def json_lines(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_json_access_log_has_2xx_and_4xx_with_request_ids(
    json_logged: tuple[LiveServer, Path],
) -> None:
    srv, log = json_logged
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket="logged")
    put = s3.put_object(Bucket="logged", Key="a b", Body=b"hello")
    ok_id = put["ResponseMetadata"]["RequestId"]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket="logged", Key="missing")
    missing_id = err.value.response["ResponseMetadata"]["RequestId"]
    anon = urllib.request.Request(f"{srv.endpoint}/logged/a%20b")
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(anon, timeout=10)
    denied_id = denied.value.headers["x-amz-request-id"]

    def by_id() -> dict[str, dict[str, Any]]:
        lines = {r["request_id"]: r for r in json_lines(log)}
        return lines if {ok_id, missing_id, denied_id} <= lines.keys() else {}

    lines = eventually(by_id)
    assert lines, log.read_text() if log.exists() else "no access log"
    ok = lines[ok_id]
    assert ok["status"] == 200 and ok["operation"] == "PutObject"
    assert ok["bucket"] == "logged" and ok["key"] == "a b" and ok["bytes_received"] == 5
    assert ok["error_code"] is None and ok["requester"]
    missing = lines[missing_id]
    assert missing["status"] == 404 and missing["error_code"] == "NoSuchKey"
    assert missing["operation"] == "GetObject"
    denied_line = lines[denied_id]
    assert denied_line["status"] == 403 and denied_line["error_code"] == "AccessDenied"
    assert denied_line["requester"] is None and denied_line["remote"] == "127.0.0.1"


def test_presigned_links_are_logged_without_their_signatures(
    json_logged: tuple[LiveServer, Path],
) -> None:
    """Reading the access log must not give anyone the links it lists: a link's signature
    (SigV4's X-Amz-Signature, SigV2's Signature) is logged as REDACTED, and the logged URI
    is refused."""
    srv, log = json_logged
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket="linked")
    s3.put_object(Bucket="linked", Key="secret.txt", Body=b"for the link's holder only")
    links = {
        "X-Amz-Signature": make_client(
            srv.endpoint, signature_version="s3v4"
        ).generate_presigned_url(
            "get_object", Params={"Bucket": "linked", "Key": "secret.txt"}, ExpiresIn=600
        ),
        "Signature": make_client(srv.endpoint, signature_version="s3").generate_presigned_url(
            "get_object", Params={"Bucket": "linked", "Key": "secret.txt"}, ExpiresIn=600
        ),
    }
    ids = {}
    for name, link in links.items():
        assert f"&{name}=" in link or f"?{name}=" in link
        with urllib.request.urlopen(link, timeout=10) as r:
            assert r.read() == b"for the link's holder only"
            ids[name] = r.headers["x-amz-request-id"]

    def logged() -> dict[str, dict[str, Any]]:
        lines = {r["request_id"]: r for r in json_lines(log)}
        return lines if set(ids.values()) <= lines.keys() else {}

    lines = eventually(logged)
    assert lines, "no access log lines for the links"
    text = log.read_text()
    for name, link in links.items():
        signature = link.split(f"{name}=", 1)[1].split("&", 1)[0]
        assert signature and signature not in text
        uri = lines[ids[name]]["uri"]
        assert f"{name}=REDACTED" in uri and lines[ids[name]]["status"] == 200
        # The link as the log shows it opens nothing.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(srv.endpoint + uri, timeout=10)
        assert refused.value.code == 403


def test_s3_format_access_log_on_stdout_by_default(server: LiveServer) -> None:
    s3 = make_client(server.endpoint)
    with pytest.raises(ClientError) as err:
        s3.head_bucket(Bucket="no-such-bucket-for-the-log")
    rid = err.value.response["ResponseMetadata"]["RequestId"]
    assert server.log_path is not None
    log_path = server.log_path

    def line() -> str:
        return next((ln for ln in log_path.read_text().splitlines() if f" {rid} " in ln), "")

    found = eventually(line)
    assert found, "no access log line for the request"
    fields = found.split(" ")
    # owner, bucket, [time (2 fields)], remote, requester, request id, operation, key, ...
    assert fields[1] == "no-such-bucket-for-the-log"
    assert fields[4] == "127.0.0.1"
    assert fields[6] == rid and fields[7] == "HeadBucket"
    assert '"HEAD /no-such-bucket-for-the-log HTTP/1.1" 404 NoSuchBucket' in found


def test_access_log_off(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    srv = start_server(
        tmp_path,
        env={
            "S3TORRENT_LOGGING__ACCESS_LOG": "false",
            "S3TORRENT_LOGGING__ACCESS_LOG_FILE": str(log),
        },
    )
    try:
        make_client(srv.endpoint).list_buckets()
        time.sleep(1.5)
    finally:
        srv.stop()
    assert not log.exists() or log.read_text() == ""


@pytest.mark.parametrize("workers", [1, 2])
def test_sigusr1_opens_the_access_log_file_again(tmp_path: Path, workers: int) -> None:
    """Log rotation: the file is moved away, SIGUSR1 is sent (to the supervisor with
    workers), and the next lines go to a new file by the configured name."""
    log = tmp_path / "access.log"
    srv = start_server(
        tmp_path,
        env={"S3TORRENT_LOGGING__ACCESS_LOG_FILE": str(log)},
        workers=workers,
    )
    try:
        s3 = make_client(srv.endpoint)

        def request_id() -> str:
            with pytest.raises(ClientError) as err:
                s3.head_bucket(Bucket="rotated-log-probe")
            return str(err.value.response["ResponseMetadata"]["RequestId"])

        before = [request_id() for _ in range(8)]  # both workers answer some
        assert eventually(
            lambda: all(r in log.read_text() for r in before) if log.exists() else False
        )
        log.rename(tmp_path / "access.log.1")
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)  # the supervisor forwards it within 0.2 s
        after = [request_id() for _ in range(8)]
        assert eventually(lambda: log.exists() and all(r in log.read_text() for r in after))
        rotated = (tmp_path / "access.log.1").read_text()
        assert all(r in rotated for r in before) and not any(r in rotated for r in after)
        assert not any(r in log.read_text() for r in before)
        assert srv.proc.poll() is None  # SIGUSR1 stopped nothing
    finally:
        srv.stop()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_metrics_on_the_main_listener_for_root_only(server: LiveServer) -> None:
    url = f"{server.endpoint}/_metrics"
    make_client(server.endpoint).list_buckets()
    status, body = get(url, sign_request("GET", url))
    assert status == 200, body
    assert b"s3torrent_requests_total" in body
    anonymous, body = get(url)
    assert anonymous == 403 and b"AccessDenied" in body
    user = add_user(server, "metrics-reader")
    signed_user, _ = get(url, sign_request("GET", url, ak=user.access_key, sk=user.secret_key))
    assert signed_user == 403


def test_health_ready_checks_database_and_blobs(server: LiveServer) -> None:
    status, body = get(f"{server.endpoint}/_health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = get(f"{server.endpoint}/_health?ready")
    assert status == 200 and json.loads(body)["status"] == "ready"


def test_health_ready_fails_without_blob_directory(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    try:
        tmp_dir = srv.data_dir / "tmp"
        tmp_dir.rename(tmp_path / "moved-away")
        try:
            status, body = get(f"{srv.endpoint}/_health?ready")
            live, _ = get(f"{srv.endpoint}/_health")
        finally:
            (tmp_path / "moved-away").rename(tmp_dir)
        assert status == 503 and b"blob store" in body
        assert live == 200
    finally:
        srv.stop()
