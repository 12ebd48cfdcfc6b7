"""Queries of the users table."""

from __future__ import annotations

from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store.rows import User
from s3torrent.store.schema import users


class UserExists(Exception):
    """A user of that name exists already."""


def all_users(conn: Connection) -> list[User]:
    return [User.from_row(r) for r in conn.execute(sa.select(users))]


def user_by_access_key(conn: Connection, access_key: str) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.access_key == access_key)).first()
    return User.from_row(row) if row is not None else None


def canonical_ids(conn: Connection, names: Collection[str]) -> dict[str, str]:
    """The canonical id of each of these names that is a user's."""
    if not names:
        return {}
    rows = conn.execute(
        sa.select(users.c.name, users.c.canonical_id).where(users.c.name.in_(sorted(names)))
    )
    return {row.name: row.canonical_id for row in rows}


def add_user(conn: Connection, user: User) -> None:
    exists = conn.execute(sa.select(users.c.name).where(users.c.name == user.name)).first()
    if exists:
        raise UserExists(user.name)
    conn.execute(
        users.insert().values(
            canonical_id=user.canonical_id,
            name=user.name,
            access_key=user.access_key,
            secret_key=user.secret_key,
            is_root=user.is_root,
            created_at=user.created_at,
            disabled=user.disabled,
            is_admin=user.is_admin,
        )
    )


def user_by_name(conn: Connection, name: str) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.name == name)).first()
    return User.from_row(row) if row is not None else None


def update_user(
    conn: Connection,
    name: str,
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    disabled: bool | None = None,
    is_admin: bool | None = None,
) -> User | None:
    """Change the given fields of the user `name`; the user as stored after, None if none."""
    values: dict[str, object] = {}
    if access_key is not None:
        values["access_key"] = access_key
    if secret_key is not None:
        values["secret_key"] = secret_key
    if disabled is not None:
        values["disabled"] = disabled
    if is_admin is not None:
        values["is_admin"] = is_admin
    if values:
        conn.execute(users.update().where(users.c.name == name).values(**values))
    return user_by_name(conn, name)


def remove_user(conn: Connection, name: str) -> bool:
    """Delete the user `name`; False if there is none."""
    return bool(conn.execute(users.delete().where(users.c.name == name)).rowcount)


def root_user(conn: Connection) -> User | None:
    row = conn.execute(sa.select(users).where(users.c.is_root.is_(True))).first()
    return User.from_row(row) if row is not None else None


def set_root_keys(conn: Connection, access_key: str, secret_key: str) -> None:
    conn.execute(
        users.update()
        .where(users.c.is_root.is_(True))
        .values(access_key=access_key, secret_key=secret_key)
    )


def stored_secrets(conn: Connection, *, lock: bool = False) -> list[tuple[str, str, str]]:
    """Every user's (canonical id, access key, stored secret); with `lock`, their rows
    locked until the transaction ends (PostgreSQL; SQLite's writer holds the whole file)."""
    stmt = sa.select(users.c.canonical_id, users.c.access_key, users.c.secret_key)
    if lock:
        stmt = stmt.with_for_update()
    return [(r[0], r[1], r[2]) for r in conn.execute(stmt)]


def replace_secret(conn: Connection, canonical_id: str, old: str, new: str) -> bool:
    """The user's stored secret `old` becomes `new`; False if it is not `old` any more (the
    keys were rotated, or another node sealed it first): nothing is overwritten then."""
    stmt = (
        users.update()
        .where(users.c.canonical_id == canonical_id, users.c.secret_key == old)
        .values(secret_key=new)
    )
    return bool(conn.execute(stmt).rowcount)
