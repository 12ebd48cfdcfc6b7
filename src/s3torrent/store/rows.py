"""The metadata's values: what a stored row means to the rest of the code."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Tags as (key, value) pairs in the order they were given (S3 returns them so).
Tags = tuple[tuple[str, str], ...]


def encode_tags(tags: Tags) -> str | None:
    return json.dumps([list(t) for t in tags], separators=(",", ":")) if tags else None


def decode_tags(text: str | None) -> Tags:
    return tuple((str(k), str(v)) for k, v in json.loads(text)) if text else ()


@dataclass(frozen=True, slots=True)
class ObjectVersion:
    """One stored object version (the current one for its key)."""

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

    def to_row(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key.encode("utf-8"),
            "version_id": self.version_id,
            "size": self.size,
            "etag": self.etag,
            "last_modified": self.last_modified,
            "owner_id": self.owner_id,
            "headers": json.dumps(self.headers, separators=(",", ":")),
            "acl": self.acl,
            "checksum_algorithm": self.checksum_algorithm,
            "checksum_value": self.checksum_value,
            "checksum_type": self.checksum_type,
            "parts": json.dumps(self.parts) if self.parts is not None else None,
            "inline_data": self.inline,
            "tags": encode_tags(self.tags),
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
        )


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


@dataclass(frozen=True, slots=True)
class User:
    canonical_id: str
    name: str
    access_key: str
    secret_key: str
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


# ---- multipart uploads ----


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
