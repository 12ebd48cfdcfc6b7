"""Users and their keys: the root user and the users added with `s3torrent user add`."""

from __future__ import annotations

import json
import os
import secrets
import string
import time
from pathlib import Path
from typing import TYPE_CHECKING

from s3torrent.store.meta_users import UserExists
from s3torrent.store.rows import User
from s3torrent.user_names import ROOT_NAME, is_user_name

if TYPE_CHECKING:
    from s3torrent.store.meta_users import UserMetadata


def new_access_key() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "S3T" + "".join(secrets.choice(alphabet) for _ in range(17))


def new_secret_key() -> str:
    return secrets.token_urlsafe(30)[:40]


def new_canonical_id() -> str:
    return secrets.token_hex(32)


class UserError(Exception):
    """A user change that cannot be made; `code` names why (IAM's error codes)."""

    def __init__(self, message: str, code: str = "InvalidArgument") -> None:
        super().__init__(message)
        self.code = code


class UserDirectory:
    """Users, cached in memory by access key; misses fall back to the metadata store."""

    def __init__(self, meta: UserMetadata) -> None:
        self.meta = meta
        self._by_key: dict[str, User] = {}
        self._by_id: dict[str, User] = {}

    def load(self) -> None:
        """Read every user again (blocking: at start, or on a worker thread)."""
        users = self.meta.all_users()
        self._by_key = {u.access_key: u for u in users}
        self._by_id = {u.canonical_id: u for u in users}

    def by_access_key(self, access_key: str) -> User | None:
        return self._by_key.get(access_key)

    def by_id(self, canonical_id: str) -> User | None:
        return self._by_id.get(canonical_id)

    async def refresh_if_unknown(self, access_key: str) -> User | None:
        """A key added by the CLI while we run: look it up in the store."""
        user = self._by_key.get(access_key)
        if user is not None:
            return user
        user = await self.meta.user_by_access_key(access_key)
        if user is None:
            return None
        self._by_key[user.access_key] = user
        self._by_id[user.canonical_id] = user
        return user

    def ensure_root(
        self, data_dir: Path, access_key: str | None, secret_key: str | None
    ) -> tuple[User, bool]:
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
        root = self.meta.ensure_root(
            User(
                canonical_id=new_canonical_id(),
                name=ROOT_NAME,
                access_key=access_key,
                secret_key=secret_key,
                is_root=True,
                created_at=time.time(),
            )
        )
        self.load()
        return root, generated

    def active_by_access_key(self, access_key: str) -> User | None:
        """The user of an access key that may sign requests (a disabled user's may not)."""
        user = self._by_key.get(access_key)
        return None if user is None or user.disabled else user

    def by_name(self, name: str) -> User | None:
        for user in self._by_id.values():
            if user.name == name:
                return user
        return None

    async def add(self, name: str, *, admin: bool = False) -> User:
        """A new user with new keys; UserError if the name is invalid or taken."""
        if not isinstance(name, str) or not is_user_name(name):
            raise UserError(f"invalid user name {name!r}")
        user = User(
            canonical_id=new_canonical_id(),
            name=name,
            access_key=new_access_key(),
            secret_key=new_secret_key(),
            is_root=False,
            created_at=time.time(),
            is_admin=admin,
        )
        try:
            await self.meta.add_user(user)
        except UserExists:
            raise UserError(f"user {name!r} already exists", "EntityAlreadyExists") from None
        self._by_key[user.access_key] = user
        self._by_id[user.canonical_id] = user
        return user

    async def remove(self, name: str) -> None:
        """Remove a user; UserError for the root user or an unknown name."""
        if name == ROOT_NAME:
            raise UserError("the root user cannot be removed", "InvalidRequest")
        if not await self.meta.remove_user(name):
            raise UserError(f"no user named {name!r}", "NoSuchEntity")
        gone = [u for u in self._by_id.values() if u.name == name]
        for u in gone:
            self._by_id.pop(u.canonical_id, None)
            self._by_key.pop(u.access_key, None)

    async def rotate(self, name: str) -> User:
        """New keys for a user (the old ones stop working at once); UserError for root, whose
        keys come from the settings or root-credentials.json and would come back at start."""
        self._not_root(name, "its keys are set by root_access_key/root_secret_key")
        return await self._update(name, access_key=new_access_key(), secret_key=new_secret_key())

    async def set_disabled(self, name: str, disabled: bool) -> User:
        """Switch a user's keys off (refused as unknown keys) or on again."""
        self._not_root(name, "it cannot be disabled")
        return await self._update(name, disabled=disabled)

    async def set_admin(self, name: str, admin: bool) -> User:
        """Let a user use the admin API, or stop them."""
        self._not_root(name, "it is always an administrator")
        return await self._update(name, is_admin=admin)

    @staticmethod
    def _not_root(name: str, why: str) -> None:
        if name == ROOT_NAME:
            raise UserError(f"the root user: {why}", "InvalidRequest")

    async def _update(
        self,
        name: str,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        disabled: bool | None = None,
        is_admin: bool | None = None,
    ) -> User:
        user = await self.meta.update_user(
            name,
            access_key=access_key,
            secret_key=secret_key,
            disabled=disabled,
            is_admin=is_admin,
        )
        if user is None:
            raise UserError(f"no user named {name!r}", "NoSuchEntity")
        old = self._by_id.pop(user.canonical_id, None)
        if old is not None:
            self._by_key.pop(old.access_key, None)
        self._by_key[user.access_key] = user
        self._by_id[user.canonical_id] = user
        return user

    def all(self) -> list[User]:
        return sorted(self._by_id.values(), key=lambda u: (not u.is_root, u.name))
