"""Metadata store: users and their keys.

Reading all users and setting the root's keys block (they run at start, or on a worker
thread for the periodic reload); the rest is async like every other store method.

Secret keys are sealed on their way in and opened on their way out (store/user_secrets.py,
`user_secrets`, set at start with the master keys): the users table never holds one in the
clear, and every User handed out holds it opened (None if it does not open).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from sqlalchemy.engine import Connection

from s3torrent.store import user_queries as uq
from s3torrent.store.meta_base import SqlStoreBase
from s3torrent.store.rows import User
from s3torrent.store.user_queries import UserExists
from s3torrent.store.user_secrets import SecretOwner, UserSecrets

# A user's (canonical id, access key, secret as stored).
StoredSecret = tuple[str, str, str]

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

    user_secrets: UserSecrets | None

    def stored_user_secrets_now(self) -> list[StoredSecret]: ...

    async def stored_user_secrets(self) -> list[StoredSecret]: ...

    def seal_clear_user_secrets_now(self, user_secrets: UserSecrets) -> int: ...

    async def replace_user_secret(self, canonical_id: str, old: str, new: str) -> bool: ...

    def scrub_now(self) -> None: ...


class SqlUsers(SqlStoreBase):
    user_secrets: UserSecrets | None = None

    def _secrets(self) -> UserSecrets:
        if self.user_secrets is None:
            raise RuntimeError("users' secret keys are read or written before the master key")
        return self.user_secrets

    def _opened(self, user: User) -> User:
        """The user as stored, its secret opened (None if it does not open)."""
        assert user.secret_key is not None  # a stored row always has one
        owner = SecretOwner(user.canonical_id, user.access_key)
        # Built field by field: dataclasses.replace costs 5x as much, on every periodic
        # reload of every user.
        return User(
            user.canonical_id,
            user.name,
            user.access_key,
            self._secrets().open(owner, user.secret_key),
            user.is_root,
            user.created_at,
            user.disabled,
            user.is_admin,
        )

    def _sealed(self, user: User) -> User:
        """The user as it is stored: its secret sealed."""
        assert user.secret_key is not None  # a new user's keys were just made
        owner = SecretOwner(user.canonical_id, user.access_key)
        return dataclasses.replace(user, secret_key=self._secrets().seal(owner, user.secret_key))

    def all_users(self) -> list[User]:
        """Every user (blocking: at start, or on a worker thread)."""
        stored = self.db.read_sync(uq.all_users)
        users = [self._opened(u) for u in stored]
        self._secrets().forget_all_but(
            (SecretOwner(u.canonical_id, u.access_key), u.secret_key or "") for u in stored
        )
        return users

    async def user_by_access_key(self, access_key: str) -> User | None:
        user = await self.db.read(lambda c: uq.user_by_access_key(c, access_key))
        return self._opened(user) if user is not None else None

    async def add_user(self, user: User) -> None:
        """Store a new user; UserExists if the name is taken."""
        sealed = self._sealed(user)
        await self.db.write(lambda c: uq.add_user(c, sealed))
        await self._settle(user, sealed.secret_key)

    async def _settle(self, user: User, stored: str | None) -> None:
        """The user's secret, just stored as `stored`, sealed again until what is stored
        names the current master key (UserSecrets.fresher); a value changed meanwhile by
        someone else (a key rotation, the user's keys rotated) is theirs to settle."""
        assert user.secret_key is not None and stored is not None
        owner = SecretOwner(user.canonical_id, user.access_key)
        while (new := self._secrets().fresher(owner, user.secret_key, stored)) is not None:
            if not await self.replace_user_secret(owner.canonical_id, stored, new):
                return
            stored = new

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
        """Change the given fields of the user `name` (None: there is none). The access key
        and the secret change together (the sealed secret is bound to its access key)."""
        if (access_key is None) != (secret_key is None):
            raise ValueError("a user's access key and secret key change together")

        def txn(c: Connection) -> User | None:
            sealed = None
            if access_key is not None and secret_key is not None:
                user = uq.user_by_name(c, name)
                if user is None:
                    return None
                owner = SecretOwner(user.canonical_id, access_key)
                sealed = self._secrets().seal(owner, secret_key)
            return uq.update_user(
                c,
                name,
                access_key=access_key,
                secret_key=sealed,
                disabled=disabled,
                is_admin=is_admin,
            )

        user = await self.db.write(txn)
        if user is None:
            return None
        opened = self._opened(user)
        if secret_key is not None:
            await self._settle(dataclasses.replace(opened, secret_key=secret_key), user.secret_key)
        return opened

    def ensure_root(self, new_root: User) -> User:
        """Set the root user's keys to new_root's, creating it (as new_root) if needed
        (blocking: at start). Keys already stored are not written again."""

        def txn(c: Connection) -> User:
            root = uq.root_user(c)
            if root is not None:
                assert root.secret_key is not None  # a stored row always has one
                # Sealed by another node's master key (started at the same moment on a new
                # database, with its own key file): refused, not sealed over.
                self._secrets().check_ours(root.secret_key)
            if root is None:
                uq.add_user(c, self._sealed(new_root))
            elif (
                root.access_key != new_root.access_key
                or self._opened(root).secret_key != new_root.secret_key
            ):
                again = dataclasses.replace(new_root, canonical_id=root.canonical_id)
                stored = self._sealed(again).secret_key
                assert stored is not None
                uq.set_root_keys(c, new_root.access_key, stored)
            made = uq.root_user(c)
            assert made is not None
            return made

        return self._opened(self.db.write_sync(txn))

    def stored_user_secrets_now(self) -> list[StoredSecret]:
        """Every user's secret as stored (blocking: at start, before the loop runs)."""
        return self.db.read_sync(uq.stored_secrets)

    async def stored_user_secrets(self) -> list[StoredSecret]:
        return await self.db.read(uq.stored_secrets)

    def seal_clear_user_secrets_now(self, user_secrets: UserSecrets) -> int:
        """Check that `user_secrets` opens the sealed secrets (MasterKeyError if none
        opens), then seal those stored in the clear; how many (blocking: at start). One
        transaction with the rows locked: a node starting at the same moment with other keys
        sees these sealed and is refused, rather than sealing some rows under its own key."""

        def txn(c: Connection) -> int:
            stored = uq.stored_secrets(c, lock=True)
            user_secrets.check_opens(stored)
            resealed = user_secrets.resealed(stored, clear_only=True)
            return sum(uq.replace_secret(c, cid, old, new) for cid, old, new in resealed)

        return self.db.write_sync(txn)

    async def replace_user_secret(self, canonical_id: str, old: str, new: str) -> bool:
        return await self.db.write(lambda c: uq.replace_secret(c, canonical_id, old, new))

    def scrub_now(self) -> None:
        """What was overwritten gone from the database file too (blocking: at start)."""
        self.db.scrub_sync()
