"""Metadata store: users and their keys.

Reading all users and setting the root's keys block (they run at start, or on a worker
thread for the periodic reload); the rest is async like every other store method.
"""

from __future__ import annotations

from typing import Protocol

from s3torrent.store import user_queries as uq
from s3torrent.store.meta_base import SqlStoreBase
from s3torrent.store.rows import User
from s3torrent.store.user_queries import UserExists

__all__ = ["SqlUsers", "UserExists", "UserMetadata"]


class UserMetadata(Protocol):
    def all_users(self) -> list[User]: ...

    async def user_by_access_key(self, access_key: str) -> User | None: ...

    async def add_user(self, user: User) -> None: ...

    async def remove_user(self, name: str) -> bool: ...

    async def update_user(
        self,
        name: str,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        disabled: bool | None = None,
        is_admin: bool | None = None,
    ) -> User | None: ...

    def ensure_root(self, new_root: User) -> User: ...


class SqlUsers(SqlStoreBase):
    def all_users(self) -> list[User]:
        """Every user (blocking: at start, or on a worker thread)."""
        return self.db.read_sync(uq.all_users)

    async def user_by_access_key(self, access_key: str) -> User | None:
        return await self.db.read(lambda c: uq.user_by_access_key(c, access_key))

    async def add_user(self, user: User) -> None:
        """Store a new user; UserExists if the name is taken."""
        await self.db.write(lambda c: uq.add_user(c, user))

    async def remove_user(self, name: str) -> bool:
        """Remove the user `name` (False: there is none); their keys stop working."""
        return await self.db.write(lambda c: uq.remove_user(c, name))

    async def update_user(
        self,
        name: str,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        disabled: bool | None = None,
        is_admin: bool | None = None,
    ) -> User | None:
        """Change the given fields of the user `name` (None: there is none)."""
        return await self.db.write(
            lambda c: uq.update_user(
                c,
                name,
                access_key=access_key,
                secret_key=secret_key,
                disabled=disabled,
                is_admin=is_admin,
            )
        )

    def ensure_root(self, new_root: User) -> User:
        """Set the root user's keys to new_root's, creating it if needed (blocking: at start)."""
        return self.db.write_sync(lambda c: uq.ensure_root(c, new_root))
