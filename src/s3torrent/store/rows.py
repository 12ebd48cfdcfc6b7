"""The metadata's values: what a stored row means to the rest of the code."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# JSON without spaces, as json.dumps(..., separators=(",", ":")) writes it, from one encoder:
# given any argument, json.dumps builds a new encoder per call (a PUT writes its headers so).
compact_json: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode

# Tags as (key, value) pairs in the order they were given (S3 returns them so).
Tags = tuple[tuple[str, str], ...]


def encode_tags(tags: Tags) -> str | None:
    return compact_json([list(t) for t in tags]) if tags else None


def decode_tags(text: str | None) -> Tags:
    return tuple((str(k), str(v)) for k, v in json.loads(text)) if text else ()


# The version id S3 names a key's one unversioned version by.
NULL_VERSION = "null"


class _RandomBits:
    """Random bits from the kernel's generator, read 4 KiB at a time.

    `secrets.randbits` makes a system call per id, and the call lets go of the GIL: on the
    event loop, with the commit and file threads busy, a PUT then waited for the GIL to come
    back far longer than the call took (3% of a 4 KiB PUT's loop time in a py-spy
    profile). Read ahead, one call serves 512 ids. A child process made by fork starts
    with nothing read, so no two processes hand out the same bits; the lock keeps two
    threads from taking the same ones."""

    _CHUNK = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._at = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._buffer, self._at = b"", 0

    def bits64(self) -> int:
        with self._lock:
            at, buffer = self._at, self._buffer
            if at + 8 > len(buffer):
                buffer = self._buffer = os.urandom(self._CHUNK)
                at = 0
            self._at = at + 8
        return int.from_bytes(buffer[at : at + 8], "big")


_RANDOM = _RandomBits()


def new_row_version_id() -> str:
    """A store id for a version with no blob (its bytes inline in its row, or a delete
    marker): "v", the microseconds since the epoch (15 hex digits) and 64 random bits.

    New ones sort after each other and after every random hex id, so the unique indexes of
    version ids (objects, object_versions, torrents) take them at their right edge, a page
    the batch shares, instead of at a random leaf each: about 8 KB less written per
    versioned 4 KiB PUT and 3 KB per unversioned one. The random half keeps them unique
    whatever the clock does (a clock that steps back costs only that locality). Versions
    with a blob keep random hex ids (`ObjectStore.new_version_id`): the blob's file is
    sharded by the id's first characters."""
    return f"v{time.time_ns() // 1000:015x}{_RANDOM.bits64():016x}"


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """One stored object version: the current one for its key, or (read by version id or
    listed) a noncurrent one or a delete marker.

    `version_id` is the store's own id (its blob's name, its torrent's key); `s3_version_id`
    is what S3 clients see: "null" for the version written while the bucket was unversioned
    or suspended."""

    bucket: str
    key: str
    version_id: str
    size: int
    etag: str
    last_modified: float
    owner_id: str
    headers: dict[str, str] = field(default_factory=dict)
    acl: str | None = None
    checksum_algorithm: str | None = None
    checksum_value: str | None = None
    checksum_type: str | None = None
    parts: list[dict[str, Any]] | None = None
    inline: bytes | None = field(default=None, repr=False)
    tags: Tags = ()
    versioned: bool = False
    delete_marker: bool = False
    lock_mode: str | None = None
    lock_until: float | None = None
    legal_hold: bool = False
    # Whether a legal hold was ever set on the version (ON or OFF): S3 tells OFF only then.
    legal_hold_set: bool = False

    @property
    def s3_version_id(self) -> str:
        return self.version_id if self.versioned else NULL_VERSION

    @property
    def legal_hold_status(self) -> str | None:
        """ "ON", "OFF" (set, then taken off or put OFF), or None (never set): HeadObject and
        GetObject leave their header out for a version that never had a legal hold, and
        GetObjectLegalHold answers NoSuchObjectLockConfiguration."""
        if self.legal_hold:
            return "ON"
        return "OFF" if self.legal_hold_set else None

    def to_row(self) -> dict[str, Any]:
        """The row of `objects` (a current version; never a delete marker)."""
        return {
            "bucket": self.bucket,
            "key": self.key.encode("utf-8"),
            "version_id": self.version_id,
            "size": self.size,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "owner_id": self.owner_id,
            "headers": compact_json(self.headers),
            "acl": self.acl,
            "checksum_algorithm": self.checksum_algorithm,
            "checksum_value": self.checksum_value,
            "checksum_type": self.checksum_type,
            "parts": json.dumps(self.parts) if self.parts is not None else None,
            "inline_data": self.inline,
            "tags": encode_tags(self.tags),
            "versioned": self.versioned,
            "lock_mode": self.lock_mode,
            "lock_until": self.lock_until,
            "legal_hold": self.legal_hold,
            "legal_hold_set": self.legal_hold_set,
        }

    @classmethod
    def from_row(cls, row: Any) -> ObjectVersion:
        return cls.from_mapping(row._mapping)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> ObjectVersion:
        return cls(
            bucket=m["bucket"],
            key=bytes(m["key"]).decode("utf-8"),
            version_id=m["version_id"],
            size=m["size"],
            etag=m["etag"],
            last_modified=m["last_modified"],
            owner_id=m["owner_id"],
            headers=json.loads(m["headers"]),
            acl=m["acl"],
            checksum_algorithm=m["checksum_algorithm"],
            checksum_value=m["checksum_value"],
            checksum_type=m["checksum_type"],
            parts=json.loads(m["parts"]) if m["parts"] else None,
            inline=m.get("inline_data"),
            tags=decode_tags(m.get("tags")),
            versioned=bool(m.get("versioned", False)),
            delete_marker=bool(m.get("delete_marker", False)),
            lock_mode=m.get("lock_mode"),
            lock_until=m.get("lock_until"),
            legal_hold=bool(m.get("legal_hold", False)),
            legal_hold_set=bool(m.get("legal_hold_set", False)),
        )


def version_reader(names: tuple[str, ...]) -> Callable[[Sequence[Any]], ObjectVersion]:
    """ObjectVersions from rows of these columns (names in select order), read by position:
    for listings, a thousand rows a page, where Row mappings and their .get fallbacks for
    absent columns cost more than the query. `delete_marker` and `inline_data` may be left
    out (False, None)."""
    i = {name: n for n, name in enumerate(names)}
    bucket, key, vid, size, etag = i["bucket"], i["key"], i["version_id"], i["size"], i["etag"]
    modified, owner, headers, acl = i["last_modified"], i["owner_id"], i["headers"], i["acl"]
    algo, value, ctype = i["checksum_algorithm"], i["checksum_value"], i["checksum_type"]
    parts, tags, versioned = i["parts"], i["tags"], i["versioned"]
    mode, until, hold = i["lock_mode"], i["lock_until"], i["legal_hold"]
    hold_set = i["legal_hold_set"]
    marker, data = i.get("delete_marker"), i.get("inline_data")
    loads = json.loads

    def make(r: Sequence[Any]) -> ObjectVersion:
        return ObjectVersion(
            bucket=r[bucket],
            key=bytes(r[key]).decode("utf-8"),
            version_id=r[vid],
            size=r[size],
            etag=r[etag],
            last_modified=r[modified],
            owner_id=r[owner],
            headers=loads(r[headers]),
            acl=r[acl],
            checksum_algorithm=r[algo],
            checksum_value=r[value],
            checksum_type=r[ctype],
            parts=loads(r[parts]) if r[parts] else None,
            inline=r[data] if data is not None else None,
            tags=decode_tags(r[tags]),
            versioned=bool(r[versioned]),
            delete_marker=bool(r[marker]) if marker is not None else False,
            lock_mode=r[mode],
            lock_until=r[until],
            legal_hold=bool(r[hold]),
            legal_hold_set=bool(r[hold_set]),
        )

    return make


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str
    owner_id: str
    created_at: float
    region: str
    acl: str | None = None
    policy: str | None = None
    public_access_block: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def policy_users(self) -> Mapping[str, str] | None:
        """Each user the policy names by ARN, bound to the canonical id of the user who had
        that name when the policy was stored (None: a policy stored before bindings)."""
        users = self.settings.get(POLICY_USERS)
        return None if users is None else dict(users)

    @property
    def versioning(self) -> str | None:
        """ "Enabled", "Suspended", or None (never versioned: S3 has no way back)."""
        state = self.settings.get("versioning")
        return str(state) if state else None

    @classmethod
    def from_row(cls, row: Any) -> Bucket:
        return cls.from_mapping(row._mapping)

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> Bucket:
        return cls(
            name=m["name"],
            owner_id=m["owner_id"],
            created_at=m["created_at"],
            region=m["region"],
            acl=m["acl"],
            policy=m["policy"],
            public_access_block=m["public_access_block"],
            settings=json.loads(m["settings"]) if m["settings"] else {},
        )


# The bucket setting binding each user its policy names by ARN to that user's canonical
# id when the policy was stored: {name: canonical id}.
POLICY_USERS = "policy_users"


@dataclass(frozen=True, slots=True)
class User:
    """A user. `secret_key` is the secret in the clear (as the metadata store hands it
    out: store/user_secrets.py), None when its sealed value does not open (its keys are
    refused); only inside the store's queries does it hold the stored, sealed value."""

    canonical_id: str
    name: str
    access_key: str
    secret_key: str | None
    is_root: bool
    created_at: float
    disabled: bool = False
    is_admin: bool = False

    @property
    def administers(self) -> bool:
        """May use the admin API (users, torrents, every bucket's reports)."""
        return (self.is_root or self.is_admin) and not self.disabled

    @classmethod
    def from_row(cls, row: Any) -> User:
        m = row._mapping
        return cls(
            canonical_id=m["canonical_id"],
            name=m["name"],
            access_key=m["access_key"],
            secret_key=m["secret_key"],
            is_root=bool(m["is_root"]),
            created_at=m["created_at"],
            disabled=bool(m["disabled"]),
            is_admin=bool(m["is_admin"]),
        )


@dataclass(frozen=True, slots=True)
class Replaced:
    """The version a write replaced or a delete removed."""

    version_id: str
    has_blob: bool  # False when its bytes lived in its row (nothing to delete after)
    kept: bool = False
    """True when it stays stored as a noncurrent version (a versioned bucket): its blob
    stays, only its torrent goes."""


@dataclass(frozen=True, slots=True)
class Committed:
    """A write's commit: the version as stored (versioned or null, lock settings applied)
    and the version it replaced as its key's current one."""

    version: ObjectVersion
    replaced: Replaced | None
    freed: tuple[str, ...] = ()
    """Blobs no row references any more (a replaced null or unversioned version's)."""


@dataclass(frozen=True, slots=True)
class Removed:
    """What a delete did: a delete marker it created, or a version it removed for good."""

    s3_version_id: str | None
    """The delete marker's or removed version's id as S3 names it (None: nothing to name,
    an unversioned bucket's delete)."""
    delete_marker: bool
    """The version created or removed is a delete marker."""
    revoked: Replaced | None
    """The key's current version before the delete, when the delete ended its being
    current (its torrent is revoked)."""
    promoted: ObjectVersion | None = None
    """The version that became current again (the current one was removed for good)."""
    freed: tuple[str, ...] = ()
    """Blobs no row references any more."""


# ---- multipart uploads ----

INITIATOR_HEADER = "X-Initiator"
"""Kept with an upload's headers: who created it, when not its object's owner-to-be (the
bucket owner, under BucketOwnerEnforced). Never carried to the completed object."""


@dataclass(frozen=True, slots=True)
class Upload:
    """A multipart upload in progress."""

    upload_id: str
    bucket: str
    key: str
    owner_id: str
    initiated: float
    headers: dict[str, str] = field(default_factory=dict)
    acl: str | None = None
    checksum_algorithm: str | None = None
    checksum_type: str | None = None
    tags: Tags = ()

    @classmethod
    def from_row(cls, row: Any) -> Upload:
        m = row._mapping
        return cls(
            upload_id=m["upload_id"],
            bucket=m["bucket"],
            key=bytes(m["key"]).decode("utf-8"),
            owner_id=m["owner_id"],
            initiated=m["initiated"],
            headers=json.loads(m["headers"]),
            acl=m["acl"],
            checksum_algorithm=m["checksum_algorithm"],
            checksum_type=m["checksum_type"],
            tags=decode_tags(m.get("tags")),
        )

    def is_at(self, bucket: str, key: str) -> bool:
        """Whether this is an upload of this bucket's key (an upload id names no other)."""
        return self.bucket == bucket and self.key == key

    @property
    def initiator_id(self) -> str:
        """Who created the upload (an upload kept before it was recorded: its owner)."""
        return self.headers.get(INITIATOR_HEADER, self.owner_id)


@dataclass(frozen=True, slots=True)
class Part:
    upload_id: str
    part_number: int
    blob_id: str
    size: int
    etag: str
    last_modified: float
    checksum_value: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> Part:
        m = row._mapping
        return cls(
            upload_id=m["upload_id"],
            part_number=m["part_number"],
            blob_id=m["blob_id"],
            size=m["size"],
            etag=m["etag"],
            last_modified=m["last_modified"],
            checksum_value=m["checksum_value"],
        )


@dataclass(frozen=True, slots=True)
class TorrentHashes:
    """A version's piece hashes as stored, with the swarm ids of its torrent in `fmt`."""

    version_id: str
    piece_length: int
    pieces_v1: bytes | None
    pieces_root: bytes | None
    piece_layer: bytes | None
    fmt: str | None = None
    swarm_v1: bytes | None = None
    swarm_v2: bytes | None = None


@dataclass(frozen=True, slots=True)
class UploadReceipt:
    """What a completed multipart upload answered, and for which part list."""

    upload_id: str
    bucket: str
    key: str
    parts_digest: str
    result: bytes
    # x-amz-version-id of the first answer (None: it had none), set in the commit.
    version_id: str | None = None
