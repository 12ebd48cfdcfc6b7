"""Queries of the hash_jobs table: background hashing jobs, each claimed by one node at a time.

A claim lasts until claimed_until and is renewed by its node's heartbeat; an expired claim
is taken over by another node. PostgreSQL nodes polling at once skip each other's locked
rows (SKIP LOCKED); SQLite's single writer makes the plain UPDATE atomic.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store.schema import hash_jobs
from s3torrent.store.sql import insert_if_absent

# A job that failed this many claims is left alone (its version is probably unreadable).
MAX_ATTEMPTS = 5


def add_jobs(conn: Connection, version_ids: Iterable[str], now: float) -> None:
    """A job for each version that has none yet."""
    for vid in version_ids:
        insert_if_absent(
            conn,
            hash_jobs,
            {"version_id": vid, "created_at": now, "claimed_by": None, "attempts": 0},
        )


def claim_jobs(
    conn: Connection,
    node: str,
    now: float,
    ttl: float,
    limit: int,
    version_id: str | None = None,
) -> list[str]:
    """Claim up to `limit` free or expired jobs (only `version_id`'s, if given) for node."""
    c = hash_jobs.c
    pick = sa.select(c.version_id).where(
        sa.or_(c.claimed_by.is_(None), c.claimed_until < now, c.claimed_by == node),
        c.attempts < MAX_ATTEMPTS,
    )
    if version_id is not None:
        pick = pick.where(c.version_id == version_id)
    # SKIP LOCKED: nodes polling at once each get different jobs instead of queueing.
    pick = pick.order_by(c.created_at).limit(limit).with_for_update(skip_locked=True)
    ids = [str(r[0]) for r in conn.execute(pick)]
    if ids:
        conn.execute(
            hash_jobs.update()
            .where(c.version_id.in_(ids))
            .values(claimed_by=node, claimed_until=now + ttl, attempts=c.attempts + 1)
        )
    return ids


def renew_claims(conn: Connection, node: str, ids: list[str], until: float) -> set[str]:
    """Extend node's claims; returns the ids it still holds."""
    c = hash_jobs.c
    rows = conn.execute(
        hash_jobs.update()
        .where(c.version_id.in_(ids), c.claimed_by == node)
        .values(claimed_until=until)
        .returning(c.version_id)
    )
    return {str(r[0]) for r in rows}


def release_claims(conn: Connection, node: str, ids: list[str]) -> None:
    c = hash_jobs.c
    conn.execute(
        hash_jobs.update()
        .where(c.version_id.in_(ids), c.claimed_by == node)
        .values(claimed_by=None, claimed_until=None)
    )


def finish_job(conn: Connection, version_id: str) -> None:
    conn.execute(hash_jobs.delete().where(hash_jobs.c.version_id == version_id))
