"""Server access logging to a target bucket (PutBucketLogging): the lines of requests to a
logged bucket, delivered in batches as objects `TARGETPREFIX YYYY-mm-DD-HH-MM-SS-UNIQUE`
into the target bucket, as S3 names them.

The request path pays for one line in a list, only for buckets with logging on. Deliveries
are internal writes, not requests: they are not logged themselves (no loop when a bucket
logs into itself). A delivery goes only into a bucket that still exists and still has the
source bucket's owner; otherwise its lines are dropped with a warning, as S3 drops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import web

from s3torrent.metering.meter import S3_REQUEST
from s3torrent.s3.access_log import format_s3, record_of, s3_stamp
from s3torrent.s3.ops.logging import logging_target
from s3torrent.store import metadata as md

if TYPE_CHECKING:
    from s3torrent.store.metastore import MetadataStore
    from s3torrent.store.objects import ObjectStore

log = logging.getLogger(__name__)

# (target bucket, target prefix, source bucket owner)
_Destination = tuple[str, str, str]


# S3's names for operations in server access logs (REST.METHOD.RESOURCE); others are named
# REST.METHOD.OBJECT or REST.METHOD.BUCKET by their scope.
AWS_OPERATIONS = {
    "ListObjects": "REST.GET.BUCKET",
    "ListObjectsV2": "REST.GET.BUCKET",
    "ListObjectVersions": "REST.GET.BUCKETVERSIONS",
    "GetBucketLocation": "REST.GET.LOCATION",
    "GetBucketVersioning": "REST.GET.VERSIONING",
    "GetBucketLogging": "REST.GET.LOGGING_STATUS",
    "PutBucketLogging": "REST.PUT.LOGGING_STATUS",
    "GetBucketAcl": "REST.GET.ACL",
    "PutBucketAcl": "REST.PUT.ACL",
    "GetObjectAcl": "REST.GET.ACL",
    "PutObjectAcl": "REST.PUT.ACL",
    "GetBucketPolicy": "REST.GET.BUCKETPOLICY",
    "PutBucketPolicy": "REST.PUT.BUCKETPOLICY",
    "DeleteBucketPolicy": "REST.DELETE.BUCKETPOLICY",
    "GetBucketPolicyStatus": "REST.GET.BUCKETPOLICYSTATUS",
    "GetPublicAccessBlock": "REST.GET.PUBLIC_ACCESS_BLOCK",
    "PutPublicAccessBlock": "REST.PUT.PUBLIC_ACCESS_BLOCK",
    "DeletePublicAccessBlock": "REST.DELETE.PUBLIC_ACCESS_BLOCK",
    "DeleteObjects": "REST.POST.MULTI_OBJECT_DELETE",
    "CopyObject": "REST.COPY.OBJECT",
    "CreateMultipartUpload": "REST.POST.UPLOADS",
    "UploadPart": "REST.PUT.PART",
    "UploadPartCopy": "REST.COPY.PART",
    "CompleteMultipartUpload": "REST.POST.UPLOAD",
    "AbortMultipartUpload": "REST.DELETE.UPLOAD",
    "ListParts": "REST.GET.UPLOAD",
    "ListMultipartUploads": "REST.GET.UPLOADS",
    "GetObjectTagging": "REST.GET.OBJECT_TAGGING",
    "PutObjectTagging": "REST.PUT.OBJECT_TAGGING",
    "DeleteObjectTagging": "REST.DELETE.OBJECT_TAGGING",
    "GetBucketTagging": "REST.GET.TAGGING",
    "PutBucketTagging": "REST.PUT.TAGGING",
    "DeleteBucketTagging": "REST.DELETE.TAGGING",
    "GetObjectTorrent": "REST.GET.TORRENT",
}


def aws_operation(op: str, method: str, scope: str) -> str:
    named = AWS_OPERATIONS.get(op)
    if named is not None:
        return named
    return f"REST.{method}.{'OBJECT' if scope == 'object' else 'BUCKET'}"


def aws_line(access_line: str, owner: str, s3req: Any) -> str:
    """An access log line (s3 format) as S3 writes it into a target bucket: the bucket owner
    first, S3's operation names, and the fields after the user agent (version id, host id,
    signature version, cipher, authentication type, Host header, TLS version, access point,
    ACL required)."""
    # The first eight fields hold no spaces but the time's: split off the operation there.
    parts = access_line.rstrip("\n").split(" ", 8)
    endpoint = s3req.endpoint
    parts[0] = owner
    parts[7] = aws_operation(endpoint.op, s3req.http.method, endpoint.scope)
    auth = s3req.auth
    if auth is None:
        signature, auth_type = "-", "-"
    else:
        signature = "SigV2" if not auth.scope else "SigV4"
        auth_type = "QueryString" if auth.presigned else "AuthHeader"
    host = s3req.http.headers.get("Host", "") or "-"
    host = host if host.isprintable() and " " not in host else "-"
    tls = "-"
    transport = s3req.http.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is not None:
        tls = ssl_object.version() or "-"
    rid = s3req.request_id
    return f"{' '.join(parts)} - {rid} {signature} - {auth_type} {host} {tls} - -\n"


def log_key(prefix: str, now: float) -> str:
    """S3's key for a log object: prefix, UTC time to the second, a unique string."""
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(now))
    return f"{prefix}{stamp}-{secrets.token_hex(8).upper()}"


class BucketLogDelivery:
    """Collects lines per destination; writes each destination's batch as one object."""

    def __init__(
        self,
        meta: MetadataStore,
        store: ObjectStore,
        *,
        interval: float = 60.0,
        inline_max_size: int = 32 * 1024,
        max_batch_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.meta = meta
        self.store = store
        self.interval = interval
        self.inline_max_size = inline_max_size
        self.max_batch_bytes = max_batch_bytes
        self._pending: dict[_Destination, list[str]] = {}
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self.delivered = 0

    def hook(
        self, request: web.Request, response: web.StreamResponse | None, status: int, seconds: float
    ) -> None:
        """The S3 application's finished hook: a line if the request's bucket is logged."""
        try:  # indexed: an aiohttp request's .get is Mapping's, several times the cost
            s3req: Any = request[S3_REQUEST]
        except KeyError:
            return
        bucket = s3req.bucket
        if bucket is None or not bucket.settings:
            return
        target = logging_target(bucket.settings)
        if target is None:
            return
        r = record_of(request, response, status, seconds)
        line = aws_line(format_s3(r, s3_stamp(r.at)), bucket.owner_id, s3req)
        self._pending.setdefault((target[0], target[1], bucket.owner_id), []).append(line)
        self._pending_bytes += len(line)
        if self._pending_bytes >= self.max_batch_bytes:
            self._wake.set()

    async def run(self) -> None:
        """Deliver every `interval` seconds (sooner when a batch grows large), until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            await self.deliver()

    async def deliver(self) -> None:
        """Write every pending batch now."""
        pending, self._pending, self._pending_bytes = self._pending, {}, 0
        for destination, lines in pending.items():
            try:
                await self._write(destination, "".join(lines).encode("utf-8"))
            except Exception as exc:  # a failed delivery must not stop the next ones
                log.warning(
                    "bucket log delivery to %s failed (%d lines dropped): %s",
                    destination[0],
                    len(lines),
                    exc,
                )

    async def _write(self, destination: _Destination, data: bytes) -> None:
        target_name, prefix, source_owner = destination
        target = await self.meta.bucket(target_name)
        if target is None or target.owner_id != source_owner:
            log.warning(
                "bucket log lines for %s dropped: the target bucket is gone or changed owner",
                target_name,
            )
            return
        now = time.time()
        inline: bytes | None = data
        version_id = self.store.new_version_id()
        md5 = hashlib.md5(data).hexdigest()
        if len(data) > self.inline_max_size:
            inline = None

            async def chunks() -> AsyncIterator[bytes]:
                yield data

            version_id, stored, _ = await self.store.write_blob(
                chunks(), [], max_size=len(data), on_too_large=lambda: ValueError("grew")
            )
            md5 = stored.md5.hex()
        obj = md.ObjectVersion(
            bucket=target_name,
            key=log_key(prefix, now),
            version_id=version_id,
            size=len(data),
            etag=f'"{md5}"',
            last_modified=now,
            owner_id=target.owner_id,
            headers={"content-type": "text/plain"},
            inline=inline,
        )
        await self.store.publish_version(obj)
        self.delivered += 1
