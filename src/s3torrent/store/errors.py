"""The metadata store's own errors; the S3 edge maps each to its S3 error."""

from __future__ import annotations

import sys


class StoreError(Exception):
    """A metadata change that cannot be made as asked."""


class BucketAlreadyExists(StoreError):
    def __init__(self, name: str, owner_id: str) -> None:
        super().__init__(name)
        self.name = name
        self.owner_id = owner_id


class BucketNotEmpty(StoreError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class NoSuchBucket(StoreError):
    """The bucket was deleted while a write into it was in flight."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class NoSuchUpload(StoreError):
    def __init__(self, upload_id: str) -> None:
        super().__init__(upload_id)
        self.upload_id = upload_id


class PartChanged(StoreError):
    """A part of an upload being completed was replaced or removed meanwhile."""

    def __init__(self, part_number: int) -> None:
        super().__init__(str(part_number))
        self.part_number = part_number


class PreconditionFailed(StoreError):
    """A conditional write or delete whose condition the current version does not meet."""

    def __init__(self, condition: str) -> None:
        super().__init__(condition)
        self.condition = condition


class ConditionalConflict(StoreError):
    """A conditional write lost to a concurrent write of the same key between its check
    and its commit (S3's 409 ConditionalRequestConflict): the caller may retry."""

    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(f"{bucket}/{key}")
        self.bucket = bucket
        self.key = key


class ObjectMissing(StoreError):
    """A write or delete conditional on an existing object found none."""

    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(f"{bucket}/{key}")
        self.bucket = bucket
        self.key = key


class StorageFull(StoreError):
    """The disk (or quota) holding blobs or metadata is full: no new data until space returns."""

    def __init__(self) -> None:
        super().__init__("storage full")


class ObjectLocked(StoreError):
    """A version under object lock (retention until a date, or a legal hold) that was to be
    removed or replaced: no one, root included, may do that before its date."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoSuchUser(StoreError):
    """A bucket policy names a user (by ARN) that does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def engine_unreachable(exc: BaseException) -> bool:
    """Whether exc means a shared engine could not be reached or dropped the connection: the
    PostgreSQL server (psycopg's OperationalError, as SQLAlchemy wraps it: refused, reset,
    shut down) or the S3 blob backend (botocore's connection and timeout errors, and its
    5xx answers once the client's retries ran out: 503 SlowDown, 500 InternalError). A
    condition of the service, not of the request: the client may try again."""
    if getattr(exc, "connection_invalidated", False):
        return True  # SQLAlchemy found the connection gone (its dialect's is_disconnect)
    inner = getattr(exc, "orig", None)
    if inner is not None and type(inner).__module__.startswith("psycopg"):
        import psycopg

        return isinstance(inner, psycopg.OperationalError)
    botocore_errors = sys.modules.get("botocore.exceptions")
    if botocore_errors is None:
        return False
    if isinstance(exc, botocore_errors.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return isinstance(status, int) and status >= 500
    return isinstance(exc, botocore_errors.ConnectionError | botocore_errors.HTTPClientError)
