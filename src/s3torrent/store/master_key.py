"""The server's master keys: the file that holds them, and wrapping of per-object data keys.

SSE-S3 objects are sealed with a random data key of their own; only that key, wrapped
(AES-256-GCM) by the current master key, is stored with the object's metadata. The master
keys live in one JSON file in the data directory (mode 0600), created at the first start.
Rotation adds a new current key and re-wraps every data key with it (objects are not
re-encrypted). The retired key stays in the file until the next rotation, which drops every
retired key nothing stored is wrapped by. A writer that stored what it wrapped checks that
its key is still current (`is_current`), and if a rotation retired it meanwhile wraps again
with the current key: so a key is never dropped while anything stored or about to be
stored needs it, however the writes and rotations interleave. Rotations run one at a time
(`rotating`: a lock file beside the key file). A running server re-reads the file when it
changes.
Without this file the encrypted objects cannot be read by anyone: back it up with the
database, and again after every rotation.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MASTER_KEY_FILE = "sse-master-keys.json"
_WRAP_AAD = b"s3torrent data key v1"
_NONCE = 12


class MasterKeyError(Exception):
    """The master key file is missing a key, unreadable, or a wrapped key does not open."""


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key sealed by master key `key_id`."""

    key_id: str
    blob: bytes


class MasterKeys:
    """The key ring: one current key (wraps new data keys) and the retired ones (unwrap)."""

    def __init__(
        self, path: Path, current: str, keys: dict[str, bytes], seen: tuple[int, int] | None = None
    ) -> None:
        self.path = path
        self.current = current
        self._keys = dict(keys)
        # The file's identity when it was read (taken before reading it: a file that
        # changed meanwhile is read again at the next refresh, never taken as this one).
        self._seen = self._stat() if seen is None else seen

    def _stat(self) -> tuple[int, int]:
        return self._stat_of(self.path)

    @staticmethod
    def _stat_of(path: Path) -> tuple[int, int]:
        # The inode too: a rotation writes a new file and renames it over the old one, and
        # may land in the same timestamp tick as the last load (mtime alone then misses it).
        try:
            st = path.stat()
        except OSError:
            return (0, 0)
        return (st.st_ino, st.st_mtime_ns)

    def refresh(self) -> None:
        """Take the file's keys again if it changed (a rotation by the CLI)."""
        if self._stat() != self._seen:
            self._reload()

    def _reload(self) -> None:
        fresh = MasterKeys.load(self.path)
        self.current, self._keys, self._seen = fresh.current, fresh._keys, fresh._seen

    @contextlib.contextmanager
    def rotating(self) -> Iterator[None]:
        """Held for a whole rotation (blocking): one at a time across processes (a lock
        file beside the key file), with the ring read again once it is held. Two `key
        rotate` runs at once had each written back the ring it loaded, the second dropping
        the key the first had just re-wrapped every data key with."""
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._reload()
            yield
        finally:
            os.close(fd)  # the lock goes with it (and with the process, if it is killed)

    @classmethod
    def load_or_create(cls, path: Path) -> MasterKeys:
        """The ring in `path`, made (with one fresh key, mode 0600) if there is none. Made
        exclusively: when another process (a node sharing the file, the CLI) makes it at
        the same moment, its ring is taken, never replaced by a second one."""
        if path.exists():
            return cls.load(path)
        ring = cls(path, "", {})
        ring._add_key()
        if not ring._create():
            return cls.load(path)
        return ring

    def _create(self) -> bool:
        """Write the ring as a new file at self.path; False if one is there already."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        self._write(tmp)
        try:
            os.link(tmp, self.path)  # fails, rather than replaces, if the file exists
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: as before, the last one wins
            os.rename(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._seen = self._stat()
        self._sync_dir()
        return True

    @classmethod
    def load(cls, path: Path) -> MasterKeys:
        seen = cls._stat_of(path)
        try:
            doc = json.loads(path.read_text())
            keys = {str(k): base64.b64decode(v) for k, v in doc["keys"].items()}
            current = str(doc["current"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MasterKeyError(f"cannot read the master key file {path}: {exc}") from exc
        if current not in keys or any(len(k) != 32 for k in keys.values()):
            raise MasterKeyError(f"the master key file {path} is damaged")
        return cls(path, current, keys, seen)

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def add_new(self) -> str:
        """A fresh current key, saved before it wraps anything."""
        key_id = self._add_key()
        self.save()
        return key_id

    def _add_key(self) -> str:
        key_id = secrets.token_hex(8)
        self._keys[key_id] = AESGCM.generate_key(bit_length=256)
        self.current = key_id
        return key_id

    def drop(self, key_ids: set[str]) -> None:
        """Forget retired keys nothing is wrapped by any more (never the current one)."""
        for key_id in key_ids - {self.current}:
            self._keys.pop(key_id, None)
        self.save()

    def save(self) -> None:
        """Write the ring atomically (temp file, fsync, rename), readable by its owner only."""
        tmp = self.path.with_suffix(".tmp")
        self._write(tmp)
        os.rename(tmp, self.path)
        self._seen = self._stat()
        self._sync_dir()

    def _write(self, tmp: Path) -> None:
        """The ring in file `tmp` (synced), readable by its owner only."""
        doc = {
            "current": self.current,
            "keys": {k: base64.b64encode(v).decode() for k, v in self._keys.items()},
        }
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(doc, indent=1).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)

    def _sync_dir(self) -> None:
        with contextlib.suppress(OSError):
            dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def is_current(self, key_id: str) -> bool:
        """Whether `key_id` is the file's current key now (read again if it changed).

        A writer asks this after storing what it wrapped or sealed with `key_id`: a key
        leaves the file only in a rotation after the one that retired it, and that one
        drops only keys no stored record names; so what was stored while its key was still
        current is seen by the rotation that would drop it, and what is not (the key was
        retired meanwhile) is wrapped again by its writer, which still holds the data key."""
        self.refresh()
        return key_id == self.current

    def wrap(self, data_key: bytes) -> WrappedKey:
        self.refresh()
        nonce = secrets.token_bytes(_NONCE)
        sealed = AESGCM(self._keys[self.current]).encrypt(nonce, data_key, _WRAP_AAD)
        return WrappedKey(self.current, nonce + sealed)

    def _key(self, key_id: str) -> bytes:
        key = self._keys.get(key_id)
        if key is None:
            self.refresh()
            key = self._keys.get(key_id)
        if key is None:
            raise MasterKeyError(f"master key {key_id} is not in {self.path}")
        return key

    def derive(self, key_id: str, purpose: bytes) -> bytes:
        """A 256-bit key for one purpose only (HKDF-SHA256 of master key `key_id`, the
        purpose as its info): what it seals never opens with the master key itself or with
        another purpose's key."""
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose)
        return hkdf.derive(self._key(key_id))

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        key = self._key(wrapped.key_id)
        try:
            return AESGCM(key).decrypt(wrapped.blob[:_NONCE], wrapped.blob[_NONCE:], _WRAP_AAD)
        except InvalidTag:
            bad = f"a data key does not open with master key {wrapped.key_id}"
            raise MasterKeyError(bad) from None

    def rewrap(self, wrapped: WrappedKey) -> WrappedKey:
        """The same data key, wrapped by the current master key."""
        return self.wrap(self.unwrap(wrapped))
