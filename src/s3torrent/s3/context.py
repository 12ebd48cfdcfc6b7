"""What the S3 handlers may use: a narrow context, not the whole composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from s3torrent.anonymous_reads import AnonymousReads
from s3torrent.config import Settings
from s3torrent.store.metastore import MetadataStore
from s3torrent.store.objects import ObjectStore
from s3torrent.store.users import UserDirectory
from s3torrent.torrent.catalog import TorrentCatalog
from s3torrent.torrent.jobs import HashJobs


@dataclass(frozen=True, slots=True)
class S3Context:
    """The services behind the S3 API: settings, metadata, blobs, users and torrents."""

    settings: Settings
    meta: MetadataStore
    store: ObjectStore
    users: UserDirectory
    torrents: TorrentCatalog
    hash_jobs: HashJobs
    # Anonymous GETs in flight, so that a revocation can cut them (None: not tracked).
    anonymous_reads: AnonymousReads | None = None
    # Waits (bounded) for this process's decision on publishing a version, if one is under
    # way (PublicTorrents.settled); None: nothing to wait for.
    publication_settled: Callable[[str, str, str, float], Awaitable[None]] | None = None

    def display_name(self, canonical_id: str) -> str:
        user = self.users.by_id(canonical_id)
        return user.name if user else ""
