"""Users and their keys: the root user and the users added with `s3torrent user add`."""

from __future__ import annotations

import json
import os
import re
import secrets
import string
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from s3torrent.store import metadata as md
from s3torrent.store.database import Database

ROOT_NAME = "root"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.@+=,-]{1,64}$")


def new_access_key() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "S3T" + "".join(secrets.choice(alphabet) for _ in range(17))


def new_secret_key() -> str:
    return secrets.token_urlsafe(30)[:40]


def new_canonical_id() -> str:
    return secrets.token_hex(32)


class UserError(Exception):
    pass


class UserDirectory:
    """Users, cached in memory by access key; misses fall back to the database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._by_key: dict[str, md.User] = {}
        self._by_id: dict[str, md.User] = {}

    def load(self) -> None:
        users = self.db.read_sync(
            lambda c: [md.User.from_row(r) for r in c.execute(sa.select(md.users))]
        )
        self._by_key = {u.access_key: u for u in users}
        self._by_id = {u.canonical_id: u for u in users}

    def by_access_key(self, access_key: str) -> md.User | None:
        return self._by_key.get(access_key)

    def by_id(self, canonical_id: str) -> md.User | None:
        return self._by_id.get(canonical_id)

    async def refresh_if_unknown(self, access_key: str) -> md.User | None:
        """A key added by the CLI while we run: look it up in the database."""
        user = self._by_key.get(access_key)
        if user is not None:
            return user
        row = await self.db.read(
            lambda c: c.execute(
                sa.select(md.users).where(md.users.c.access_key == access_key)
            ).first()
        )
        if row is None:
            return None
        user = md.User.from_row(row)
        self._by_key[user.access_key] = user
        self._by_id[user.canonical_id] = user
        return user

    def ensure_root(
        self, data_dir: Path, access_key: str | None, secret_key: str | None
    ) -> tuple[md.User, bool]:
        """Create or update the root user; returns (root, whether new keys were generated)."""
        generated = False
        cred_file = data_dir / "root-credentials.json"
        if not access_key or not secret_key:
            if cred_file.exists():
                stored = json.loads(cred_file.read_text())
                access_key, secret_key = stored["access_key"], stored["secret_key"]
            else:
                access_key, secret_key = new_access_key(), new_secret_key()
                fd = os.open(cred_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    json.dump({"access_key": access_key, "secret_key": secret_key}, fh)
                    fh.flush()
                    os.fsync(fh.fileno())
                generated = True
        ak, sk = access_key, secret_key

        def txn(conn: Connection) -> md.User:
            row = conn.execute(sa.select(md.users).where(md.users.c.is_root.is_(True))).first()
            if row is None:
                conn.execute(
                    md.users.insert().values(
                        canonical_id=new_canonical_id(),
                        name=ROOT_NAME,
                        access_key=ak,
                        secret_key=sk,
                        is_root=True,
                        created_at=time.time(),
                    )
                )
            else:
                conn.execute(
                    md.users.update()
                    .where(md.users.c.is_root.is_(True))
                    .values(access_key=ak, secret_key=sk)
                )
            got = conn.execute(sa.select(md.users).where(md.users.c.is_root.is_(True))).one()
            return md.User.from_row(got)

        root = self.db.write_sync(txn)
        self.load()
        return root, generated

    def add(self, name: str) -> md.User:
        if not _NAME_RE.match(name) or name == ROOT_NAME:
            raise UserError(f"invalid user name {name!r}")
        user = md.User(
            canonical_id=new_canonical_id(),
            name=name,
            access_key=new_access_key(),
            secret_key=new_secret_key(),
            is_root=False,
            created_at=time.time(),
        )

        def txn(conn: Connection) -> None:
            exists = conn.execute(sa.select(md.users.c.name).where(md.users.c.name == name)).first()
            if exists:
                raise UserError(f"user {name!r} already exists")
            conn.execute(
                md.users.insert().values(
                    canonical_id=user.canonical_id,
                    name=user.name,
                    access_key=user.access_key,
                    secret_key=user.secret_key,
                    is_root=False,
                    created_at=user.created_at,
                )
            )

        self.db.write_sync(txn)
        self.load()
        return user

    def remove(self, name: str) -> None:
        def txn(conn: Connection) -> None:
            if name == ROOT_NAME:
                raise UserError("the root user cannot be removed")
            res = conn.execute(md.users.delete().where(md.users.c.name == name))
            if res.rowcount == 0:
                raise UserError(f"no user named {name!r}")

        self.db.write_sync(txn)
        self.load()

    def all(self) -> list[md.User]:
        return sorted(self._by_id.values(), key=lambda u: (not u.is_root, u.name))
