"""Users' secret keys sealed at rest (store/user_secrets.py) and the store and start-up code
around it: the format, what a sealed value is bound to, what does not open and what then
happens, sealing an earlier version's clear secrets, rotation, and refusing the wrong keys."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from s3torrent.config import StartupError
from s3torrent.events import EventBus
from s3torrent.provision import open_user_secrets
from s3torrent.store.blobs.local import LocalBlobStore
from s3torrent.store.master_key import MasterKeyError, MasterKeys
from s3torrent.store.metastore import SqlMetadataStore, open_metadata_store
from s3torrent.store.rows import User
from s3torrent.store.sealing import Sealing
from s3torrent.store.user_secrets import SEALED_PREFIX, SecretOwner, UserSecrets, sealed_key_id

ALICE = SecretOwner("alice-id", "AKALICE")
BOB = SecretOwner("bob-id", "AKBOB")
SECRET = "s" * 40


@pytest.fixture
def keys(tmp_path: Path) -> MasterKeys:
    return MasterKeys.load_or_create(tmp_path / "keys.json")


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[SqlMetadataStore]:
    store = open_metadata_store(f"sqlite:///{tmp_path / 'm.sqlite3'}", EventBus())
    yield store
    store.close()


def user(name: str, secret: str = SECRET) -> User:
    return User(f"{name}-id", name, f"AK{name.upper()}", secret, False, 1.0)


def raw_secret(tmp_path: Path, name: str) -> str:
    with sqlite3.connect(tmp_path / "m.sqlite3") as db:
        return str(db.execute("SELECT secret_key FROM users WHERE name=?", (name,)).fetchone()[0])


def set_raw_secret(tmp_path: Path, name: str, value: str) -> None:
    db = sqlite3.connect(tmp_path / "m.sqlite3")
    with db:
        db.execute("UPDATE users SET secret_key=? WHERE name=?", (value, name))
    db.close()


# ---- the format ----


def test_a_sealed_secret_names_its_key_and_opens_for_its_owner_only(keys: MasterKeys) -> None:
    box = UserSecrets(keys)
    sealed = box.seal(ALICE, SECRET)
    assert sealed.startswith(f"{SEALED_PREFIX}{keys.current}:") and SECRET not in sealed
    assert len(sealed) <= 128  # a generated secret still fits the column of revision 0015
    assert box.seal(ALICE, SECRET) != sealed  # a fresh nonce every time
    assert box.open(ALICE, sealed) == SECRET
    # Bound to the canonical id and to the access key: moved to another row, it does not open.
    assert box.open(BOB, sealed) is None
    assert box.open(SecretOwner("alice-id", "AKOTHER"), sealed) is None
    assert box.open(SecretOwner("other-id", "AKALICE"), sealed) is None
    # Clear values (an earlier version's) are read as they are.
    assert box.open(ALICE, "plain-secret") == "plain-secret"


def test_the_sealing_key_is_derived_for_this_purpose_not_the_master_key(
    keys: MasterKeys,
) -> None:
    import base64

    sealed = UserSecrets(keys).seal(ALICE, SECRET)
    blob = sealed.rsplit(":", 1)[1]
    raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
    master = keys._keys[keys.current]
    from cryptography.exceptions import InvalidTag

    with pytest.raises(InvalidTag):
        AESGCM(master).decrypt(raw[:12], raw[12:], ALICE.aad())
    # Nor does a data key wrapped by the master key open as a user secret.
    wrapped = keys.wrap(b"k" * 32)
    fake = f"{SEALED_PREFIX}{wrapped.key_id}:" + base64.urlsafe_b64encode(wrapped.blob).decode()
    assert UserSecrets(keys).open(ALICE, fake) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s[:-4],  # truncated
        lambda s: s[: len(SEALED_PREFIX) + 20],  # truncated to almost nothing
        lambda s: s[:-6] + ("A" if s[-6] != "A" else "B") + s[-5:],  # one character changed
        lambda s: s + "=!",  # not base64 any more
        lambda s: SEALED_PREFIX + "feedfeedfeedfeed" + s[len(SEALED_PREFIX) + 16 :],  # key id
        lambda s: SEALED_PREFIX,
    ],
)
def test_a_damaged_value_opens_to_none_and_is_logged_once(
    keys: MasterKeys, caplog: pytest.LogCaptureFixture, damage: object
) -> None:
    box = UserSecrets(keys)
    bad = damage(box.seal(ALICE, SECRET))  # type: ignore[operator]
    with caplog.at_level(logging.ERROR, "s3torrent.store.user_secrets"):
        assert box.open(ALICE, bad) is None
        assert box.open(ALICE, bad) is None  # remembered: not logged on every reload
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "AKALICE" in lines[0] and SECRET not in lines[0]


def test_opening_is_remembered_by_stored_value_so_a_reload_costs_no_decryption(
    keys: MasterKeys,
) -> None:
    box = UserSecrets(keys)
    sealed = box.seal(ALICE, SECRET)
    assert box.open(ALICE, sealed) == SECRET
    box._aeads.clear()
    keys._keys.clear()  # nothing could be opened any more: the memo answers
    assert box.open(ALICE, sealed) == SECRET
    box.forget_all_but([])
    assert box._opened == {}


# ---- the store ----


def test_the_store_seals_what_it_writes_and_opens_what_it_hands_out(
    meta: SqlMetadataStore, keys: MasterKeys, tmp_path: Path
) -> None:
    open_user_secrets(meta, keys)
    root = meta.ensure_root(User("root-id", "root", "AKROOT", "rootsecret", True, 1.0))
    assert root.secret_key == "rootsecret"
    asyncio.run(meta.add_user(user("carl")))
    for name in ("root", "carl"):
        assert raw_secret(tmp_path, name).startswith(SEALED_PREFIX)
    assert {u.name: u.secret_key for u in meta.all_users()} == {
        "root": "rootsecret",
        "carl": SECRET,
    }
    got = asyncio.run(meta.update_user("carl", access_key="AKNEW", secret_key="n" * 40))
    assert got is not None and got.secret_key == "n" * 40 and got.access_key == "AKNEW"
    assert raw_secret(tmp_path, "carl").startswith(SEALED_PREFIX)
    # The sealed secret is bound to the access key: the two change together or not at all.
    with pytest.raises(ValueError, match="change together"):
        asyncio.run(meta.update_user("carl", access_key="AKLONE"))
    # The same root keys at the next start: nothing is written again.
    before = raw_secret(tmp_path, "root")
    meta.ensure_root(User("x", "root", "AKROOT", "rootsecret", True, 2.0))
    assert raw_secret(tmp_path, "root") == before
    meta.ensure_root(User("x", "root", "AKROOT", "changed-secret", True, 2.0))
    assert raw_secret(tmp_path, "root") != before
    assert meta.ensure_root(User("x", "root", "AKROOT", "changed-secret", True, 2.0)).secret_key


def test_nothing_is_stored_before_the_master_key_is_there(meta: SqlMetadataStore) -> None:
    with pytest.raises(RuntimeError, match="before the master key"):
        asyncio.run(meta.add_user(user("dora")))
    assert meta.stored_user_secrets_now() == []


def test_a_damaged_row_costs_its_user_only(
    meta: SqlMetadataStore, keys: MasterKeys, tmp_path: Path
) -> None:
    open_user_secrets(meta, keys)
    asyncio.run(meta.add_user(user("eve")))
    asyncio.run(meta.add_user(user("finn", "f" * 40)))
    set_raw_secret(tmp_path, "eve", raw_secret(tmp_path, "finn"))  # finn's, moved
    found = {u.name: u.secret_key for u in meta.all_users()}
    assert found == {"eve": None, "finn": "f" * 40}
    looked_up = asyncio.run(meta.user_by_access_key("AKEVE"))
    assert looked_up is not None and looked_up.secret_key is None


# ---- start-up: an earlier version's database, a mixed one, the wrong keys ----


def test_clear_secrets_are_sealed_at_start_once_and_sealed_ones_left(
    meta: SqlMetadataStore, keys: MasterKeys, tmp_path: Path
) -> None:
    open_user_secrets(meta, keys)
    asyncio.run(meta.add_user(user("gus")))
    asyncio.run(meta.add_user(user("hana", "h" * 40)))
    gus_sealed = raw_secret(tmp_path, "gus")
    set_raw_secret(tmp_path, "hana", "h" * 40)  # as an earlier version stored it
    meta.user_secrets = None
    open_user_secrets(meta, keys)  # a start
    hana_sealed = raw_secret(tmp_path, "hana")
    assert hana_sealed.startswith(SEALED_PREFIX) and raw_secret(tmp_path, "gus") == gus_sealed
    assert ("h" * 40).encode() not in (tmp_path / "m.sqlite3").read_bytes()
    open_user_secrets(meta, keys)  # and the next: idempotent
    assert raw_secret(tmp_path, "hana") == hana_sealed
    assert {u.name: u.secret_key for u in meta.all_users()} == {"gus": SECRET, "hana": "h" * 40}


def test_a_clear_secret_changed_meanwhile_is_not_overwritten(
    meta: SqlMetadataStore, keys: MasterKeys, tmp_path: Path
) -> None:
    open_user_secrets(meta, keys)
    asyncio.run(meta.add_user(user("ida")))
    set_raw_secret(tmp_path, "ida", "old-clear")
    # Another node rotated ida's keys between our read and our write: ours loses.
    assert not asyncio.run(meta.replace_user_secret("ida-id", "other-value", "s3ts1:x:y"))
    assert raw_secret(tmp_path, "ida") == "old-clear"


def test_keys_that_open_none_of_the_sealed_secrets_are_refused_and_nothing_is_written(
    meta: SqlMetadataStore, keys: MasterKeys, tmp_path: Path
) -> None:
    open_user_secrets(meta, keys)
    asyncio.run(meta.add_user(user("jo")))
    asyncio.run(meta.add_user(user("kai")))
    set_raw_secret(tmp_path, "kai", "k" * 40)  # a clear one too: a mixed state
    other = MasterKeys.load_or_create(tmp_path / "other.json")
    with pytest.raises(StartupError, match=r"other\.json does not open the users' secret"):
        open_user_secrets(meta, other)
    assert raw_secret(tmp_path, "kai") == "k" * 40  # not sealed under keys that are wrong


# ---- rotation ----


def test_rotation_reseals_every_secret_and_keeps_the_key_a_damaged_one_names(
    meta: SqlMetadataStore, keys: MasterKeys, tmp_path: Path
) -> None:
    open_user_secrets(meta, keys)
    first = keys.current
    for name in ("lou", "max", "ned"):
        asyncio.run(meta.add_user(user(name, name * 10)))
    set_raw_secret(tmp_path, "ned", raw_secret(tmp_path, "ned")[:-8])  # damaged
    sealing = Sealing(meta, LocalBlobStore(tmp_path / "blobs"), keys)
    rewrapped, resealed, dropped = asyncio.run(sealing.rotate())
    assert (rewrapped, resealed, dropped) == (0, 2, 0)
    second = keys.current
    assert sealed_key_id(raw_secret(tmp_path, "lou")) == keys.current != first
    assert sealed_key_id(raw_secret(tmp_path, "ned")) == first
    assert {u.name: u.secret_key for u in meta.all_users()} == {
        "lou": "lou" * 10,
        "max": "max" * 10,
        "ned": None,
    }
    # The first key still seals ned's value: a second rotation keeps it in the file.
    asyncio.run(sealing.rotate())
    assert first in keys.key_ids
    asyncio.run(meta.remove_user("ned"))
    _, _, dropped = asyncio.run(sealing.rotate())
    assert dropped == 2 and first not in keys.key_ids and second not in keys.key_ids
    fresh = MasterKeys.load(keys.path)
    assert {u.name: u.secret_key for u in meta.all_users()} == {
        "lou": "lou" * 10,
        "max": "max" * 10,
    }
    meta.user_secrets = None
    open_user_secrets(meta, fresh)
    assert [u.secret_key for u in meta.all_users()] == ["lou" * 10, "max" * 10]


# ---- the master key file made at the first start ----


def test_a_key_file_made_by_another_process_meanwhile_is_taken_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two nodes (or a node and the CLI) start on a shared key file at once: both see no
    file, and the second one's new ring must not replace the first one's, whose key may
    already seal a secret or a data key."""
    path = tmp_path / "keys.json"
    first = MasterKeys.load_or_create(path)
    sealed = UserSecrets(first).seal(ALICE, SECRET)
    real_exists = Path.exists
    # The second process checked before the first one's file was there.
    monkeypatch.setattr(Path, "exists", lambda p: False if p == path else real_exists(p))
    second = MasterKeys.load_or_create(path)
    monkeypatch.undo()
    assert second.current == first.current
    assert MasterKeys.load(path).current == first.current
    assert UserSecrets(MasterKeys.load(path)).open(ALICE, sealed) == SECRET
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]  # no temporary file left


def test_a_database_of_revision_0015_with_clear_secrets_is_migrated_and_sealed(
    tmp_path: Path, keys: MasterKeys
) -> None:
    """An earlier version's file: revision 0015, secrets in the clear. The migration widens
    the column (its table copied on SQLite) and the start seals them; no byte of a clear
    secret is left in the file or its WAL, not even in free space."""
    from alembic import command

    from s3torrent.store import migrations
    from s3torrent.store.schema import create_engine

    db_path = tmp_path / "m.sqlite3"
    engine = create_engine(f"sqlite:///{db_path}")
    with engine.begin() as conn:
        command.upgrade(migrations.alembic_config(conn), "0015")
    engine.dispose()
    clear = {"root": "R" * 40, "olga": "O" * 40}
    db = sqlite3.connect(db_path)
    with db:
        for i, (name, secret) in enumerate(clear.items()):
            db.execute(
                "INSERT INTO users (canonical_id, name, access_key, secret_key, is_root,"
                " created_at, disabled, is_admin) VALUES (?, ?, ?, ?, ?, 1.0, 0, 0)",
                (f"{name}-id", name, f"AK{name.upper()}", secret, i == 0),
            )
    db.close()
    store = open_metadata_store(f"sqlite:///{db_path}", EventBus())
    try:
        open_user_secrets(store, keys)
        assert {u.name: u.secret_key for u in store.all_users()} == clear
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("m.sqlite3*"))
        for secret in clear.values():
            assert secret.encode() not in raw
        assert all(raw_secret(tmp_path, n).startswith(SEALED_PREFIX) for n in clear)
    finally:
        store.close()


def test_a_node_with_other_keys_does_not_overwrite_the_root_another_node_sealed(
    tmp_path: Path, keys: MasterKeys
) -> None:
    """Two nodes with different key files start at once on an empty database: both pass
    the start's check (nothing sealed yet), the first stores root. The second must refuse,
    not seal root again under its own key, which the first node cannot open."""
    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    first, second = open_metadata_store(url, EventBus()), open_metadata_store(url, EventBus())
    try:
        open_user_secrets(first, keys)
        open_user_secrets(second, MasterKeys.load_or_create(tmp_path / "other.json"))
        root = User("root-id", "root", "AKROOT", "rootsecret", True, 1.0)
        first.ensure_root(root)
        stored = raw_secret(tmp_path, "root")
        with pytest.raises(MasterKeyError, match=r"other\.json"):
            second.ensure_root(root)
        assert raw_secret(tmp_path, "root") == stored
        assert [u.secret_key for u in first.all_users()] == ["rootsecret"]
    finally:
        first.close()
        second.close()


def test_a_damaged_key_id_is_never_repeated_in_a_log_line_or_a_refusal(
    keys: MasterKeys, caplog: pytest.LogCaptureFixture
) -> None:
    box = UserSecrets(keys)
    sealed = box.seal(ALICE, SECRET)
    injected = SEALED_PREFIX + "x\nFAKE LOG LINE" + sealed[len(SEALED_PREFIX) + 16 :]
    with caplog.at_level(logging.ERROR, "s3torrent.store.user_secrets"):
        assert box.open(ALICE, injected) is None
    assert "FAKE" not in caplog.text and "names no master key" in caplog.text
    assert sealed_key_id(injected) is None
    with pytest.raises(MasterKeyError) as exc:
        box.check_opens([("alice-id", "AKALICE", injected)])
    assert "FAKE" not in str(exc.value) and "\n" not in str(exc.value)
