"""Users' secret keys at rest, against a live server: the metadata database (SQLite file and
its WAL, byte for byte) never holds one in the clear, whatever wrote the user (the offline
CLI, the admin API, the root's settings, an earlier version); signing clients keep working,
across restarts and master key rotations; a database that does not open with the master key
file is refused at start in one line; a sealed value moved or damaged refuses only its user."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3torrent.store.master_key import MASTER_KEY_FILE, MasterKeys
from tests.api.test_admin_api import call
from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, add_user, make_client, sign_request
from tests.ports import free_port

DB = "metadata.sqlite3"


def sqlite_server(tmp: Path) -> LiveServer:
    """A server on a SQLite file (whatever S3TORRENT_TEST_METADATA says): its bytes are read."""
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    srv = LiveServer(data_dir=data, port=free_port(), peer_port=free_port())
    srv.start()
    return srv


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[LiveServer]:
    s = sqlite_server(tmp_path)
    yield s
    s.stop()


def database_bytes(data_dir: Path) -> bytes:
    """Every byte of the database: the file, its write-ahead log and shared memory."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob(f"{DB}*")))


def stored_secret(data_dir: Path, name: str) -> str:
    with sqlite3.connect(data_dir / DB) as db:
        row = db.execute("SELECT secret_key FROM users WHERE name = ?", (name,)).fetchone()
    assert row is not None
    return str(row[0])


def users_table(data_dir: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(data_dir / DB) as db:
        return db.execute("SELECT * FROM users ORDER BY name").fetchall()


def set_stored_secret(data_dir: Path, name: str, value: str) -> None:
    db = sqlite3.connect(data_dir / DB, timeout=30)
    try:
        with db:
            db.execute("UPDATE users SET secret_key = ? WHERE name = ?", (value, name))
    finally:
        db.close()


def works(srv: LiveServer, ak: str, sk: str) -> bool:
    try:
        make_client(srv.endpoint, ak, sk).list_buckets()
    except ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403, exc.response
        return False
    return True


def refusal(srv: LiveServer, ak: str, sk: str) -> str:
    with pytest.raises(ClientError) as exc:
        make_client(srv.endpoint, ak, sk).list_buckets()
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return str(exc.value.response["Error"]["Code"])


def until(check: Any, timeout: float = 20.0) -> None:
    """Wait (bounded) for the server's periodic reload of users (every 3 s) to see a change."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the change was not seen in time"
        time.sleep(0.2)


def aws_as(srv: LiveServer, tmp: Path, ak: str, sk: str, *args: str) -> str:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ak,
        "AWS_SECRET_ACCESS_KEY": sk,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    done = subprocess.run(
        ["aws", "--endpoint-url", srv.endpoint, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def start_refused(srv: LiveServer) -> str:
    """The server's output when its start is refused (it must be)."""
    with pytest.raises(RuntimeError, match="server exited") as exc:
        srv.start(timeout=30)
    srv.proc = None
    return str(exc.value)


# ---- requirement 1: nothing in the clear, whoever made the user ----


def test_users_of_the_cli_and_the_admin_api_are_sealed_and_sign_across_a_restart(
    srv: LiveServer, tmp_path: Path
) -> None:
    carol = add_user(srv, "carol")  # offline, straight into the data directory
    status, dan = call(srv, "POST", "/_admin/users", {"name": "dan"})
    assert status == 201, dan
    secrets = [ROOT_SK, carol.secret_key, dan["secret_key"]]
    for name in ("root", "carol", "dan"):
        assert stored_secret(srv.data_dir, name).startswith("s3ts1:")
    raw = database_bytes(srv.data_dir)
    for secret in secrets:
        assert secret.encode() not in raw
    s3c = make_client(srv.endpoint, carol.access_key, carol.secret_key)
    s3c.create_bucket(Bucket="carols")
    s3c.put_object(Bucket="carols", Key="k", Body=b"hello")
    assert aws_as(srv, tmp_path, carol.access_key, carol.secret_key, "s3", "ls", "s3://carols")
    assert works(srv, dan["access_key"], dan["secret_key"])
    # A rotation by the admin API stores the new secret sealed too.
    status, again = call(srv, "POST", "/_admin/users/dan/rotate")
    assert status == 200, again
    assert again["secret_key"].encode() not in database_bytes(srv.data_dir)
    srv.stop()
    srv.start()
    got = s3c.get_object(Bucket="carols", Key="k")["Body"].read()
    assert got == b"hello"
    assert works(srv, again["access_key"], again["secret_key"])
    assert not works(srv, dan["access_key"], dan["secret_key"])
    out = aws_as(
        srv, tmp_path, carol.access_key, carol.secret_key, "s3", "cp", "s3://carols/k", "-"
    )
    assert out == "hello"
    for secret in (*secrets, again["secret_key"]):
        assert secret.encode() not in database_bytes(srv.data_dir)


# ---- requirement 2: a database of an earlier version ----


def test_clear_secrets_of_an_earlier_version_are_sealed_at_start_and_keep_working(
    srv: LiveServer,
) -> None:
    erin, fred = add_user(srv, "erin"), add_user(srv, "fred")
    srv.stop()
    # As an earlier version stored them: in the clear (fred's stays sealed: a mixed state).
    set_stored_secret(srv.data_dir, "erin", erin.secret_key)
    set_stored_secret(srv.data_dir, "root", ROOT_SK)
    fred_sealed = stored_secret(srv.data_dir, "fred")
    assert erin.secret_key.encode() in database_bytes(srv.data_dir)
    srv.start()
    assert stored_secret(srv.data_dir, "erin").startswith("s3ts1:")
    assert stored_secret(srv.data_dir, "root").startswith("s3ts1:")
    assert stored_secret(srv.data_dir, "fred") == fred_sealed  # sealed ones are left alone
    raw = database_bytes(srv.data_dir)
    assert erin.secret_key.encode() not in raw and ROOT_SK.encode() not in raw
    for ak, sk in ((ROOT_AK, ROOT_SK), (erin.access_key, erin.secret_key)):
        assert works(srv, ak, sk)
    assert works(srv, fred.access_key, fred.secret_key)
    # Once sealed, a start seals nothing again.
    erin_sealed = stored_secret(srv.data_dir, "erin")
    srv.stop()
    srv.start()
    assert stored_secret(srv.data_dir, "erin") == erin_sealed
    assert works(srv, erin.access_key, erin.secret_key)


# ---- requirement 3: rotation, and the wrong or missing master key file ----


def test_master_key_rotation_reseals_the_secrets_and_they_keep_working(srv: LiveServer) -> None:
    gina = add_user(srv, "gina")
    before = stored_secret(srv.data_dir, "gina")
    rotated = srv.cli("key", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert "user secret keys re-sealed" in rotated.stdout
    keys = MasterKeys.load(srv.data_dir / MASTER_KEY_FILE)
    for name in ("gina", "root"):
        assert stored_secret(srv.data_dir, name).startswith(f"s3ts1:{keys.current}:")
    assert stored_secret(srv.data_dir, "gina") != before
    until(lambda: works(srv, gina.access_key, gina.secret_key))
    assert works(srv, ROOT_AK, ROOT_SK)
    # The key the secrets were sealed under is retired, wraps nothing, and goes next time.
    shown = srv.cli("key", "show").stdout
    assert "retired\twraps nothing" in shown and "current\twraps user secret keys" in shown
    again = srv.cli("key", "rotate")
    assert "1 unused retired keys removed" in again.stdout, again.stdout
    srv.stop()
    srv.start()
    assert works(srv, gina.access_key, gina.secret_key) and works(srv, ROOT_AK, ROOT_SK)


def test_a_missing_or_another_master_key_file_is_refused_at_start_in_one_line(
    srv: LiveServer, tmp_path: Path
) -> None:
    hal = add_user(srv, "hal")
    srv.stop()
    keyfile = srv.data_dir / MASTER_KEY_FILE
    kept = keyfile.read_bytes()
    keyfile.unlink()
    said = start_refused(srv)
    assert f"the master key file {keyfile} is missing" in said
    assert "sealed secret keys" in said
    other = MasterKeys.load_or_create(tmp_path / "other.json")
    keyfile.write_bytes(other.path.read_bytes())
    said = start_refused(srv)
    assert f"the master key file {keyfile} does not open the users' secret keys" in said
    for text in (said, srv.log_path.read_text() if srv.log_path else ""):
        assert "Traceback" not in text
        assert hal.secret_key not in text and ROOT_SK not in text
    # The CLI refuses alike, and writes nothing.
    before = users_table(srv.data_dir)
    added = srv.cli("user", "add", "ivy")
    assert added.returncode != 0 and "does not open the users' secret keys" in added.stderr
    assert "Traceback" not in added.stderr
    assert users_table(srv.data_dir) == before
    keyfile.write_bytes(kept)
    srv.start()
    assert works(srv, hal.access_key, hal.secret_key)


# ---- requirement 6: a sealed value moved or damaged ----


def test_a_sealed_secret_moved_onto_another_user_opens_for_nobody(srv: LiveServer) -> None:
    jack, kim = add_user(srv, "jack"), add_user(srv, "kim")
    set_stored_secret(srv.data_dir, "kim", stored_secret(srv.data_dir, "jack"))
    until(lambda: not works(srv, kim.access_key, kim.secret_key))
    # Kim's row now holds jack's sealed secret: neither secret signs for kim's access key.
    assert refusal(srv, kim.access_key, jack.secret_key) == "InvalidAccessKeyId"
    assert refusal(srv, kim.access_key, kim.secret_key) == "InvalidAccessKeyId"
    assert works(srv, jack.access_key, jack.secret_key) and works(srv, ROOT_AK, ROOT_SK)
    assert srv.log_path is not None
    assert f"the secret key of access key {kim.access_key} does not open" in (
        srv.log_path.read_text()
    )


@pytest.mark.parametrize("damage", ["truncated", "garbled", "not-base64"])
def test_a_damaged_sealed_secret_refuses_its_user_only(srv: LiveServer, damage: str) -> None:
    lee = add_user(srv, "lee")
    sealed = stored_secret(srv.data_dir, "lee")
    bad = {
        "truncated": sealed[:-20],
        "garbled": sealed[:-10] + ("A" if sealed[-10] != "A" else "B") + sealed[-9:],
        "not-base64": sealed[:30] + "!!!",
    }[damage]
    set_stored_secret(srv.data_dir, "lee", bad)
    until(lambda: not works(srv, lee.access_key, lee.secret_key))
    assert refusal(srv, lee.access_key, lee.secret_key) == "InvalidAccessKeyId"
    assert works(srv, ROOT_AK, ROOT_SK)
    # Presigned and SigV2 are refused alike, not failed.
    url = make_client(srv.endpoint, lee.access_key, lee.secret_key).generate_presigned_url(
        "list_buckets"
    )
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url, timeout=10)
    assert exc.value.code == 403
    headers = sign_request("GET", srv.endpoint + "/", ak=lee.access_key, sk=lee.secret_key)
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(urllib.request.Request(srv.endpoint + "/", headers=headers))
    assert exc.value.code == 403
    # A restart with the damaged row: the others' secrets open, so it starts.
    srv.stop()
    srv.start()
    assert works(srv, ROOT_AK, ROOT_SK)
    assert refusal(srv, lee.access_key, lee.secret_key) == "InvalidAccessKeyId"
    assert srv.log_path is not None
    log = srv.log_path.read_text()
    assert f"the secret key of access key {lee.access_key} does not open" in log
    assert "Traceback" not in log and lee.secret_key not in log


def test_the_cli_lists_users_without_opening_trouble(srv: LiveServer) -> None:
    add_user(srv, "mo")
    set_stored_secret(srv.data_dir, "mo", "s3ts1:0000:AAAA")
    listed = srv.cli("user", "list")
    assert listed.returncode == 0, listed.stderr
    assert "mo\t" in listed.stdout and "s3ts1" not in listed.stdout
