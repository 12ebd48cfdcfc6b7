"""WriteCondition: the rules a conditional write or delete applies to the current version,
and the metadata queries that apply them in the committing transaction (SQLite)."""

from __future__ import annotations

import hashlib
import secrets
import time
from pathlib import Path

import pytest

from s3torrent.store import metadata as md
from s3torrent.store import migrations
from s3torrent.store.conditions import NO_CONDITION, WriteCondition
from s3torrent.store.errors import ObjectMissing, PreconditionFailed

ETAG = '"0cc175b9c0f1b6a831c399e269772661"'


@pytest.mark.parametrize(
    ("condition", "current", "error"),
    [
        (NO_CONDITION, None, None),
        (NO_CONDITION, ETAG, None),
        (WriteCondition(if_none_match=True), None, None),
        (WriteCondition(if_none_match=True), ETAG, PreconditionFailed),
        (WriteCondition(if_match=ETAG), ETAG, None),
        (WriteCondition(if_match=ETAG.strip('"')), ETAG, None),
        (WriteCondition(if_match='"ffff"'), ETAG, PreconditionFailed),
        (WriteCondition(if_match=ETAG), None, ObjectMissing),
        (WriteCondition(if_match="*"), ETAG, None),
        (WriteCondition(if_match="*"), None, ObjectMissing),
        (WriteCondition(if_none_match=True, if_match=ETAG), ETAG, PreconditionFailed),
    ],
)
def test_condition_against_current_version(
    condition: WriteCondition, current: str | None, error: type[Exception] | None
) -> None:
    if error is None:
        condition.check("b", "k", current)
    else:
        with pytest.raises(error):
            condition.check("b", "k", current)


def _version(body: bytes) -> md.ObjectVersion:
    return md.ObjectVersion(
        bucket="b",
        key="k",
        version_id=secrets.token_hex(16),
        size=len(body),
        etag=f'"{hashlib.md5(body).hexdigest()}"',
        last_modified=time.time(),
        owner_id="0" * 64,
        inline=body,
    )


def test_queries_apply_conditions_in_the_transaction(tmp_path: Path) -> None:
    engine = md.create_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    migrations.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            md.buckets.insert().values(name="b", owner_id="0" * 64, created_at=0.0, region="r")
        )
        first = _version(b"a")
        assert md.upsert_object(conn, first, WriteCondition(if_none_match=True)) is None
        with pytest.raises(PreconditionFailed):
            md.upsert_object(conn, _version(b"b"), WriteCondition(if_none_match=True))
        with pytest.raises(PreconditionFailed):
            md.upsert_object(conn, _version(b"b"), WriteCondition(if_match='"ffff"'))
        second = _version(b"b")
        replaced = md.upsert_object(conn, second, WriteCondition(if_match=first.etag))
        assert replaced is not None and replaced.version_id == first.version_id
        with pytest.raises(PreconditionFailed):
            md.delete_object(conn, "b", "k", WriteCondition(if_match=first.etag))
        removed = md.delete_object(conn, "b", "k", WriteCondition(if_match=second.etag))
        assert removed is not None and removed.version_id == second.version_id
        with pytest.raises(ObjectMissing):
            md.delete_object(conn, "b", "k", WriteCondition(if_match="*"))
        assert md.delete_object(conn, "b", "k") is None
    engine.dispose()
