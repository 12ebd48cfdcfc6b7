"""Write conditions: what a conditional write or delete requires of the key's current version.

A condition travels into the metadata store as a value and is decided in the same
transaction that commits the write, under the row lock: two racing `If-None-Match: *`
writes can never both win.
"""

from __future__ import annotations

from dataclasses import dataclass

from s3torrent.store.errors import NoSuchBucket, ObjectMissing, PreconditionFailed
from s3torrent.store.rows import Bucket


def _bare(etag: str) -> str:
    return etag.strip().strip('"')


@dataclass(frozen=True, slots=True)
class WriteCondition:
    """`If-None-Match: *` (the key must have no object) and/or `If-Match: <etag>` (the
    current object must have this ETag; "*": any object). `if_version` (no S3 header: the
    lifecycle worker's delete) requires exactly this version to be current, or none.

    `bucket_created` (no S3 header either: every request's own) requires the bucket to be
    the one the request was authorized against, created at that time: bucket names are
    global, and one deleted while a write to it was under way (its body still arriving)
    may have been created again by another owner, whom the write must not reach. It is
    not a condition on the key: it leaves `bool()` alone."""

    if_none_match: bool = False
    if_match: str | None = None
    if_version: str | None = None
    bucket_created: float | None = None

    def __bool__(self) -> bool:
        return self.if_none_match or self.if_match is not None or self.if_version is not None

    def check_bucket(self, name: str, bucket: Bucket | None) -> Bucket:
        """The bucket, read in the write's transaction; NoSuchBucket if it is gone or is
        not the one this condition was made for."""
        if bucket is None or (
            self.bucket_created is not None and bucket.created_at != self.bucket_created
        ):
            raise NoSuchBucket(name)
        return bucket

    def check(
        self, bucket: str, key: str, current_etag: str | None, current_version: str | None = None
    ) -> None:
        """Raise unless the key's current version (its ETag, None: absent) satisfies this."""
        if (
            self.if_version is not None
            and current_etag is not None
            and current_version != self.if_version
        ):
            # Overwritten since it was evaluated: the new version is not what expired.
            raise PreconditionFailed("version")
        if current_etag is None:
            if self.if_match is not None:
                # S3: a condition on an object that is not there is NoSuchKey, not 412.
                raise ObjectMissing(bucket, key)
            return
        if self.if_none_match:
            raise PreconditionFailed("If-None-Match")
        if (
            self.if_match is not None
            and self.if_match.strip() != "*"
            and _bare(self.if_match) != _bare(current_etag)
        ):
            raise PreconditionFailed("If-Match")


NO_CONDITION = WriteCondition()
