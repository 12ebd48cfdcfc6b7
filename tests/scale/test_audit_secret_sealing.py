"""Users' secret keys sealed on nodes that share PostgreSQL: the table (what a dump or a
replica holds) has no secret in the clear; every node sharing the master key file opens them,
through a rotation too; a node started with another master key file refuses to start, in one
line naming its file, instead of answering every signed request with 403."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from botocore.exceptions import ClientError

from s3torrent.store.master_key import MasterKeys
from tests.api.test_admin_api import call
from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, add_user, free_port, make_client

pytestmark = pytest.mark.timeout(240)


class Nodes:
    """Nodes on one PostgreSQL database, each with its own data directory."""

    def __init__(self, tmp: Path, pg_url: str) -> None:
        self.tmp, self.pg_url = tmp, pg_url
        self.shared_keys = tmp / "master-keys.json"
        self.started: list[LiveServer] = []

    def node(self, name: str, key_file: Path | None = None) -> LiveServer:
        data = self.tmp / name
        data.mkdir(exist_ok=True)
        node = LiveServer(
            data_dir=data,
            port=free_port(),
            peer_port=free_port(),
            env={
                "S3TORRENT_METADATA_URL": self.pg_url,
                "S3TORRENT_NODE_ID": f"node-{name}",
                "S3TORRENT_ENCRYPTION__MASTER_KEY_FILE": str(key_file or self.shared_keys),
            },
        )
        self.started.append(node)
        return node

    def stop(self) -> None:
        for node in self.started:
            node.stop()

    def stored(self) -> dict[str, str]:
        engine = sa.create_engine(self.pg_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT name, secret_key FROM users")).all()
        finally:
            engine.dispose()
        return {str(r[0]): str(r[1]) for r in rows}


@pytest.fixture
def nodes(tmp_path: Path, pg_url: str) -> Iterator[Nodes]:
    n = Nodes(tmp_path, pg_url)
    try:
        yield n
    finally:
        n.stop()


def signs(node: LiveServer, ak: str, sk: str) -> bool:
    try:
        make_client(node.endpoint, ak, sk).list_buckets()
    except ClientError as exc:
        assert exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        return False
    return True


def test_nodes_sharing_the_key_file_open_every_secret_and_the_table_holds_none(
    nodes: Nodes,
) -> None:
    a, b = nodes.node("a"), nodes.node("b")
    a.start(timeout=60)
    b.start(timeout=60)
    status, made = call(a, "POST", "/_admin/users", {"name": "nina"})
    assert status == 201, made
    olaf = add_user(b, "olaf")  # the CLI, offline, with node b's settings
    stored = nodes.stored()
    assert set(stored) == {"root", "nina", "olaf"}
    assert all(v.startswith("s3ts1:") for v in stored.values()), stored
    for secret in (ROOT_SK, made["secret_key"], olaf.secret_key):
        assert not any(secret in v for v in stored.values())
    for node in (a, b):
        assert signs(node, made["access_key"], made["secret_key"])
        assert signs(node, olaf.access_key, olaf.secret_key)
        assert signs(node, ROOT_AK, ROOT_SK)
    # A rotation through one node's CLI: both nodes keep opening every secret.
    rotated = a.cli("key", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    current = MasterKeys.load(nodes.shared_keys).current
    assert all(v.startswith(f"s3ts1:{current}:") for v in nodes.stored().values())
    b.stop()
    b.start(timeout=60)
    for node in (a, b):
        assert signs(node, olaf.access_key, olaf.secret_key)
        assert signs(node, ROOT_AK, ROOT_SK)


def test_a_node_with_another_master_key_file_refuses_to_start(nodes: Nodes, tmp_path: Path) -> None:
    a = nodes.node("a")
    a.start(timeout=60)
    stored = nodes.stored()
    # Its own key file, made at its start (none given): the database's secrets need the shared one.
    own = tmp_path / "c" / "own-keys.json"
    c = nodes.node("c", key_file=own)
    with pytest.raises(RuntimeError, match="server exited") as exc:
        c.start(timeout=60)
    c.proc = None
    said = str(exc.value)
    assert f"the master key file {own} is missing" in said and "Traceback" not in said
    # Another ring that exists: refused as not opening the secrets.
    MasterKeys.load_or_create(own)
    with pytest.raises(RuntimeError, match="server exited") as exc:
        c.start(timeout=60)
    c.proc = None
    said = str(exc.value)
    assert f"the master key file {own} does not open the users' secret keys" in said
    assert "Traceback" not in said and ROOT_SK not in said
    assert nodes.stored() == stored  # the refused node wrote nothing
    assert signs(a, ROOT_AK, ROOT_SK)


def test_clear_secrets_on_postgres_are_sealed_by_the_next_start_and_every_node_opens_them(
    nodes: Nodes,
) -> None:
    a, b = nodes.node("a"), nodes.node("b")
    a.start(timeout=60)
    b.start(timeout=60)
    pia = add_user(a, "pia")
    b.stop()
    # As an earlier version stored it (a mixed state: root stays sealed).
    engine = sa.create_engine(nodes.pg_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE users SET secret_key = :s WHERE name = 'pia'"), {"s": pia.secret_key}
        )
    engine.dispose()
    root_sealed = nodes.stored()["root"]
    b.start(timeout=60)
    stored = nodes.stored()
    assert stored["pia"].startswith("s3ts1:") and pia.secret_key not in stored["pia"]
    assert stored["root"] == root_sealed
    for node in (a, b):
        assert signs(node, pia.access_key, pia.secret_key)
        assert signs(node, ROOT_AK, ROOT_SK)


def test_a_start_with_other_keys_racing_the_sealing_of_clear_secrets_is_refused(
    pg_url: str, tmp_path: Path
) -> None:
    """An earlier version's table (secrets in the clear); node A seals it at its start while
    node B, with another key file, starts at the same moment. B's check and sealing are one
    transaction on the locked rows: it waits for A's, then sees A's sealed values and is
    refused, instead of passing on the clear rows it read first and serving 403s."""
    import threading

    from s3torrent.config import StartupError
    from s3torrent.events import EventBus
    from s3torrent.provision import open_user_secrets
    from s3torrent.store.metastore import open_metadata_store
    from s3torrent.store.rows import User
    from s3torrent.store.user_secrets import UserSecrets

    keys_a = MasterKeys.load_or_create(tmp_path / "a.json")
    keys_b = MasterKeys.load_or_create(tmp_path / "b.json")
    store = open_metadata_store(pg_url, EventBus())
    engine = sa.create_engine(pg_url)
    try:
        open_user_secrets(store, keys_a)
        import asyncio

        for name in ("quinn", "rita"):
            asyncio.run(store.add_user(User(f"{name}-id", name, f"AK{name}", name * 8, False, 1.0)))
        with engine.begin() as conn:  # as an earlier version stored them
            conn.execute(sa.text("UPDATE users SET secret_key = 'clear-' || name"))
        outcome: list[BaseException | None] = []
        with engine.connect() as a:
            tx = a.begin()  # node A's sealing, holding the rows
            rows = a.execute(
                sa.text("SELECT canonical_id, access_key, secret_key FROM users FOR UPDATE")
            ).all()
            for cid, _old, new in UserSecrets(keys_a).resealed(
                [(r[0], r[1], r[2]) for r in rows], clear_only=True
            ):
                a.execute(
                    sa.text("UPDATE users SET secret_key = :n WHERE canonical_id = :c"),
                    {"n": new, "c": cid},
                )

            def start_b() -> None:
                other = open_metadata_store(pg_url, EventBus())
                try:
                    open_user_secrets(other, keys_b)
                    outcome.append(None)
                except StartupError as exc:
                    outcome.append(exc)
                finally:
                    other.close()

            b = threading.Thread(target=start_b)
            b.start()
            deadline = time.monotonic() + 30
            with engine.connect() as watch:  # B waits for A's row locks
                while not watch.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                ).scalar():
                    assert time.monotonic() < deadline and b.is_alive() and not outcome
                    time.sleep(0.05)
            tx.commit()
        b.join(30)
        assert not b.is_alive()
        assert outcome and isinstance(outcome[0], StartupError), outcome
        assert "does not open the users' secret keys" in str(outcome[0])
        assert all(v.startswith("s3ts1:") for v in Nodes(tmp_path, pg_url).stored().values())
    finally:
        engine.dispose()
        store.close()
