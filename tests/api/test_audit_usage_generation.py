"""A bucket name taken again by another user: the new owner's usage and savings reports
(JSON, CSV, by hour) show nothing of the earlier owner's traffic, even for the same key in
the same hour, while root still sees the name's whole history, exactly."""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.api.test_admin_api import call
from tests.api.test_metering import fetch, lt_download
from tests.conftest import LiveServer, UserKeys, add_user, make_client, start_server

BUCKET = "reused-generation"
KEY = "release.iso"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    s = start_server(tmp_path_factory.mktemp("audit-usage-generation"))
    yield s
    s.stop()


def _user(srv: LiveServer, name: str) -> UserKeys:
    keys = add_user(srv, name)
    deadline = time.monotonic() + 10  # the server reloads users within 3 s
    while call(srv, "GET", "/_admin/usage", keys=(keys.access_key, keys.secret_key))[0] != 200:
        assert time.monotonic() < deadline, "the new user was never accepted"
        time.sleep(0.3)
    return keys


def _until(probe: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def _savings(srv: LiveServer, keys: tuple[str, str] | None) -> dict[str, dict[str, Any]]:
    kw = {} if keys is None else {"keys": keys}
    status, body = call(srv, "GET", f"/_admin/savings?bucket={BUCKET}", **kw)
    assert status == 200, body
    return {o["key"]: o for o in body["objects"]}


def _usage(srv: LiveServer, keys: tuple[str, str] | None) -> dict[tuple[str, str], float]:
    """(Operation, UsageType) -> value summed over the hours of the JSON report."""
    kw = {} if keys is None else {"keys": keys}
    status, body = call(srv, "GET", f"/_admin/usage?bucket={BUCKET}&by=hour", **kw)
    assert status == 200, body
    out: dict[tuple[str, str], float] = {}
    for r in body["rows"]:
        k = (r["Operation"], r["UsageType"])
        out[k] = out.get(k, 0) + r["UsageValue"]
    return out


def test_the_next_owner_of_a_name_sees_none_of_the_last_owner_s_traffic(
    srv: LiveServer, tmp_path: Path
) -> None:
    """Before: usage_objects had no bucket identity, and the hourly rows were shown from the
    hour the bucket was created, so ben, creating the name alice had just deleted and
    putting the same key, saw alice's BitTorrent and GET traffic of it as his own."""
    alice, ben = _user(srv, "alice-gen"), _user(srv, "ben-gen")
    a_keys, b_keys = (alice.access_key, alice.secret_key), (ben.access_key, ben.secret_key)
    a_s3 = make_client(srv.endpoint, *a_keys)
    a_s3.create_bucket(Bucket=BUCKET)
    data = os.urandom(100_000)
    a_s3.put_object(Bucket=BUCKET, Key=KEY, Body=data, ACL="public-read")
    for _ in range(3):
        assert a_s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == data
    torrent = fetch(f"{srv.endpoint}/{BUCKET}/{quote(KEY)}?torrent")
    got = lt_download(torrent, tmp_path / "bt", web_seed=False, peer=("127.0.0.1", srv.peer_port))
    assert got == len(data)

    def alice_metered() -> bool:
        mine = _savings(srv, a_keys).get(KEY, {})
        return mine.get("rest_bytes") == 3 * len(data) and mine.get("seeder_bytes") == got

    assert _until(alice_metered), _savings(srv, a_keys)
    a_s3.delete_object(Bucket=BUCKET, Key=KEY)
    a_s3.delete_bucket(Bucket=BUCKET)

    b_s3 = make_client(srv.endpoint, *b_keys)
    b_s3.create_bucket(Bucket=BUCKET)
    b_s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"ben's")
    assert b_s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b"ben's"

    def ben_metered() -> bool:
        return _usage(srv, b_keys).get(("GetObject", "Requests-Tier2"), 0) >= 1

    assert _until(ben_metered), _usage(srv, b_keys)
    # Root's report: the name's whole history, every byte counted once.
    assert _until(lambda: _savings(srv, None).get(KEY, {}).get("rest_bytes") == 3 * len(data) + 5)
    everything = _savings(srv, None)[KEY]
    assert everything["seeder_bytes"] == got
    whole = _usage(srv, None)
    assert whole[("GetObject", "DataTransfer-Out-Bytes")] == 3 * len(data) + 5
    assert whole[("CreateBucket", "Requests-Tier1")] == 2
    assert whole[("GetObject-BitTorrent", "DataTransfer-Out-Bytes")] == got

    # Ben's own: his one GET of 5 bytes, nothing of alice's.
    savings = _savings(srv, b_keys)
    assert list(savings) == [KEY]
    assert savings[KEY]["rest_requests"] == 1 and savings[KEY]["rest_bytes"] == 5
    assert savings[KEY]["seeder_bytes"] == savings[KEY]["seeder_requests"] == 0
    assert savings[KEY]["swarm_downloaded"] == savings[KEY]["swarm_completed"] == 0
    usage = _usage(srv, b_keys)
    assert usage[("GetObject", "DataTransfer-Out-Bytes")] == 5
    assert usage[("GetObject", "Requests-Tier2")] == 1
    assert usage[("CreateBucket", "Requests-Tier1")] == 1
    assert usage[("PutObject", "Requests-Tier1")] == 1
    assert ("GetObject-BitTorrent", "DataTransfer-Out-Bytes") not in usage
    assert ("GetObjectTorrent", "Requests-Tier2") not in usage
    assert ("DeleteBucket", "Requests-Tier2") not in usage

    # The CSV forms say the same.
    status, text = call(srv, "GET", f"/_admin/savings?bucket={BUCKET}&format=csv", keys=b_keys)
    assert status == 200
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert (row["GetObjectBytes"], row["BitTorrentBytes"]) == ("5", "0")
    status, text = call(
        srv, "GET", f"/_admin/usage?bucket={BUCKET}&format=csv&by=hour", keys=b_keys
    )
    assert status == 200
    ops = {r["Operation"] for r in csv.DictReader(io.StringIO(text))}
    assert ops <= {"CreateBucket", "PutObject", "GetObject"}, ops
    status, body = call(srv, "GET", f"/_admin/savings/history?bucket={BUCKET}&by=hour", keys=b_keys)
    assert status == 200 and body["total_origin_bytes"] == 0, body
