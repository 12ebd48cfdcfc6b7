"""The data directory and what a node keeps there: its permissions, the node's name, the
reserve that lets deletes commit on a full disk, and the master keys of encryption at rest.
Used by the composition root (app) and, before any worker starts, by the supervisor."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from s3torrent.config import Settings, StartupError
from s3torrent.store.blobs import BlobStore
from s3torrent.store.master_key import MASTER_KEY_FILE, MasterKeyError, MasterKeys
from s3torrent.store.metastore import MetadataStore
from s3torrent.store.sealing import Sealing
from s3torrent.store.space import SpaceReserve
from s3torrent.store.user_secrets import UserSecrets, secret_key_ids

log = logging.getLogger("s3torrent")


def secure_data_dir(settings: Settings) -> None:
    """The data directory holds every secret key (in the metadata database): owner only."""
    try:
        _secure_data_dir(settings)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        raise StartupError(
            f"cannot use the data directory {settings.data_dir.absolute()}: {reason}{where}; "
            "choose another with --data-dir (S3TORRENT_DATA_DIR) or let this user write it"
        ) from exc


def _secure_data_dir(settings: Settings) -> None:
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    data_dir.chmod(0o700)
    if settings.metadata_url is None:
        # Created here with 0600 before SQLite opens it; SQLite gives its -wal and -shm files
        # the database file's permissions.
        db_path = data_dir / "metadata.sqlite3"
        os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY, 0o600))
        db_path.chmod(0o600)


# Held by a running server (its supervisor and, inherited, its workers) for its lifetime.
SERVER_LOCK = "server.lock"


def hold_data_dir(settings: Settings, workers: int) -> list[int]:
    """Refuse to serve a data directory another running server uses where the two would
    break each other; returns the locks' descriptors, to keep open while serving.

    A server keeps its workers' Unix sockets in the data directory (owner.sock, events.sock,
    ...), which a second server would replace, and without Redis its events and tracker
    registry are its own: a revocation through one server would never reach the other's
    tracker and seeder. So a server takes the directory's lock exclusively, unless it is a
    node of several (Redis) with one worker, which keeps no sockets: such nodes may share a
    directory (local blobs on a shared path), each under a node id of its own. The kernel
    releases the locks of a process that dies, even by SIGKILL."""
    secure_data_dir(settings)  # made, or why not, before anything else is
    data_dir = settings.data_dir
    nodes = settings.redis_url is not None
    shared = nodes and workers == 1
    where = data_dir.absolute()
    server = _lock(
        data_dir / SERVER_LOCK,
        shared,
        lambda holder: (
            f"the data directory {where} is in use by another s3torrent server{holder}: "
            "stop it first, or give this one another --data-dir (S3TORRENT_DATA_DIR)"
            + (
                "; nodes share a data directory only with Redis and --workers 1 each"
                if nodes
                else ""
            )
        ),
    )
    fds = [server] if server is not None else []
    if nodes:
        node = settings.node_id or persistent_node_id(settings)
        digest = hashlib.sha256(node.encode()).hexdigest()[:16]
        try:
            mine = _lock(
                data_dir / f"node-{digest}.lock",
                False,
                lambda holder: (
                    f"the node id {node!r} is in use by another s3torrent server{holder} "
                    f"on the data directory {where}: give each node its own "
                    "S3TORRENT_NODE_ID"
                ),
            )
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        if mine is not None:
            fds.append(mine)
    return fds


def _lock(path: Path, shared: bool, refusal: Callable[[str], str]) -> int | None:
    """The lock's descriptor; StartupError if another process holds it; None, with a
    warning, where this file system cannot lock (the start goes on unguarded, as writers do
    without their turn file: store/writer_turn.py)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise StartupError(
            f"cannot use the data directory {path.parent.absolute()}: cannot open {path.name}: "
            f"{exc.strerror or exc}; choose another with --data-dir (S3TORRENT_DATA_DIR)"
        ) from exc
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise StartupError(refusal(holder)) from None
    except OSError as exc:
        os.close(fd)
        log.warning(
            "cannot lock %s (%s): a second server on this data directory would not be refused",
            path,
            exc.strerror or exc,
        )
        return None
    except BaseException:
        os.close(fd)
        raise
    if not shared:
        # Who holds it, for the next server's refusal (a shared lock names nobody); a full
        # disk leaves it empty, and the lock holds all the same.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _holder(fd: int) -> str:
    """ " (pid N)" for the process a lock file names, if it still runs."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip())
        os.kill(pid, 0)
        return f" (pid {pid})"
    return ""


def persistent_node_id(settings: Settings) -> str:
    """This node's name, kept in its data directory: a node restarted after a crash takes
    back its own hashing-job claims at once instead of waiting for them to expire."""
    path = settings.data_dir / "node-id"
    try:
        node_id = path.read_text().strip()
    except FileNotFoundError:
        node_id = ""
    if not node_id:
        node_id = secrets.token_hex(8)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(node_id + "\n")
        tmp.replace(path)
    return node_id


def space_reserve(settings: Settings) -> SpaceReserve | None:
    """The data directory's reserve, made ready before the database opens (None when the
    data directory holds neither the database nor the blobs)."""
    size = settings.storage.reserve_bytes
    if size <= 0 or (settings.metadata_url is not None and settings.blobs_url):
        return None
    reserve = SpaceReserve(settings.data_dir / "space-reserve", size)
    if not reserve.prepare_at_start():
        log.warning(
            "storage full at start (%s): serving reads and deletes; new object data is "
            "refused (507 InsufficientStorage) until space is freed",
            settings.data_dir,
        )
    return reserve


def open_sealing(settings: Settings, meta: MetadataStore, blobs: BlobStore) -> Sealing:
    """Encryption at rest: the master key file (made, mode 0600, at the first start)."""
    return Sealing(meta, blobs, master_keys(settings, meta))


def master_keys(settings: Settings, meta: MetadataStore) -> MasterKeys:
    """The master key file's ring, made (mode 0600) if there is none and nothing needs one."""
    path = settings.encryption.master_key_file or settings.data_dir / MASTER_KEY_FILE
    if not path.exists():
        needed = []
        if meta.seal_key_ids_now():
            needed.append("encrypted objects")
        if secret_key_ids(meta.stored_user_secrets_now()):
            needed.append("the users' sealed secret keys")
        if needed:
            # A new key would open nothing: better no start than data silently lost.
            raise StartupError(
                f"the master key file {path} is missing, but {' and '.join(needed)} need it: "
                "restore it from a backup (see the README's Encryption section)"
            )
    try:
        return MasterKeys.load_or_create(path)
    except MasterKeyError as exc:
        raise StartupError(str(exc)) from exc


def open_user_secrets(meta: MetadataStore, keys: MasterKeys) -> None:
    """Users' secret keys sealed by `keys` from now on (store/user_secrets.py); refused when
    the database's sealed secrets do not open with them (another node's or an old master
    key file: every signed request would be refused). Secrets still stored in the clear (a
    database of an earlier version) are sealed now, in the same transaction as that check
    (several workers or nodes may start at once)."""
    user_secrets = UserSecrets(keys)
    try:
        sealed = meta.seal_clear_user_secrets_now(user_secrets)
    except MasterKeyError as exc:
        raise StartupError(str(exc)) from exc
    if sealed:
        log.info("sealed %d users' secret keys stored in the clear", sealed)
        _scrub(meta)
    meta.user_secrets = user_secrets


def _scrub(meta: MetadataStore) -> None:
    """The clear secrets just overwritten out of the database file and its WAL too (SQLite
    keeps overwritten bytes in free space until it reuses it), once, when they are sealed."""
    try:
        meta.scrub_now()
    except Exception as exc:  # another process busy with the file: warn, and serve
        log.warning(
            "could not rewrite the database after sealing the secret keys (%s): the clear "
            "ones may stay in its free space until it is reused; run VACUUM on it",
            exc,
        )
