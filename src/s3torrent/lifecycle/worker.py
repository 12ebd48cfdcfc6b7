"""The lifecycle worker: applies buckets' lifecycle rules in the background.

One node at a time runs a pass (the "lifecycle" lease in the metadata store, renewed every
batch; a node that loses it stops, and whoever takes it over goes on from the cursor). A pass
walks each bucket that has rules in key order, a batch at a time, saving the last key it
evaluated (so a restart or another node resumes there), and then its multipart uploads.
Rules that act on noncurrent versions or delete markers walk every key that has any version
(a key whose latest version is a delete marker included), each with all its versions; rules
that only expire current versions walk the current versions.

Every action goes through the same paths as a user's request: expiring a current version is
the store's DeleteObject (in a versioned bucket it adds a delete marker and the version
stays, noncurrent; either way it publishes ObjectDeleted, which revokes the torrent),
conditioned on the very version that was evaluated, so a concurrent overwrite is never
expired; a noncurrent version or a delete marker goes through the store's delete of one
version, where object lock is checked (a locked version is counted as refused and stays),
and only while it is still noncurrent; an upload is aborted as AbortMultipartUpload does it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

from s3torrent.config import LifecycleSettings
from s3torrent.lifecycle import rules
from s3torrent.lifecycle.evaluate import (
    ObjectFacts,
    VersionAction,
    VersionFacts,
    abort_upload_due,
    expire_current,
    version_actions,
)
from s3torrent.lifecycle.rules import LifecycleConfiguration
from s3torrent.store.conditions import WriteCondition
from s3torrent.store.errors import PreconditionFailed, StoreError
from s3torrent.store.meta_lifecycle import KeyVersion
from s3torrent.store.objects import ObjectStore
from s3torrent.store.rows import Bucket, ObjectVersion, Upload

log = logging.getLogger(__name__)

LEASE = "lifecycle"
# Deletes issued together share group commits (as DeleteObjects' do); few enough that one
# group commit's statements (run on the event loop with SQLite) keep requests waiting only
# a few milliseconds.
WAVE = 16
# Objects evaluated between two yields to the event loop.
EVALUATE_STEP = 100
# A yield that took this long means other work was waiting for the loop (requests).
WAITING = 0.0005
UPLOAD_PAGE = 1000


@dataclass(slots=True)
class LifecycleProgress:
    """Counters since this process started (exported on /metrics)."""

    passes: int = 0
    objects_scanned: int = 0
    objects_expired: int = 0
    noncurrent_versions_expired: int = 0
    delete_markers_removed: int = 0
    uploads_aborted: int = 0
    skipped_changed: int = 0
    """Due, but overwritten (or deleted) since it was evaluated: left alone."""
    refused: int = 0
    """Due, but the store refused the delete (object lock, ...)."""
    buckets_failed: int = 0
    """Buckets a pass could not go through (an error, logged): the pass went on without."""
    last_pass_seconds: float = 0.0
    last_pass_finished: float = 0.0

    def snapshot(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Due:
    """An action due on one version of a key; `s3_version_id` names the version to the
    store's delete of one version ("null" for a null version), `action.version_id` is the
    store's own id, which pins exactly the version evaluated."""

    key: str
    action: VersionAction
    s3_version_id: str = ""


def version_facts(v: KeyVersion) -> VersionFacts:
    o = v.obj
    return VersionFacts(
        version_id=v.version_id,
        is_latest=v.is_latest,
        is_delete_marker=v.is_delete_marker,
        noncurrent_since=v.noncurrent_since,
        size=o.size if o is not None else 0,
        last_modified=o.last_modified if o is not None else v.last_modified,
        tags=o.tags if o is not None else (),
    )


class LifecycleWorker:
    """Runs lifecycle passes every `settings.interval` seconds while this node holds the lease."""

    def __init__(
        self,
        store: ObjectStore,
        settings: LifecycleSettings,
        node_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.meta = store.meta
        self.settings = settings
        self.node_id = node_id
        self.clock = clock
        self.progress = LifecycleProgress()

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_pass()
            except Exception:
                log.exception("lifecycle pass failed")
            await asyncio.sleep(self.settings.interval)

    async def _hold_lease(self) -> bool:
        return await self.meta.hold_lease(
            LEASE, self.node_id, self.clock(), self.settings.lease_ttl
        )

    async def run_pass(self) -> bool:
        """One pass over every bucket with rules; False if another node holds the lease (or
        took it over during the pass)."""
        if not await self._hold_lease():
            return False
        started = time.monotonic()
        before = self.progress.snapshot()
        buckets = 0
        for bucket in await self.meta.list_buckets(None):
            config = rules.of_bucket(bucket.settings)
            if config is None or not config.enabled_rules:
                continue
            buckets += 1
            if not await self._bucket(bucket, config):
                log.info("lifecycle: lease lost to another node; it goes on from the cursor")
                return False
        p = self.progress
        p.passes += 1
        p.last_pass_seconds = time.monotonic() - started
        p.last_pass_finished = self.clock()
        done = {k: int(v - before[k]) for k, v in p.snapshot().items()}
        log.info(
            "lifecycle pass: %d buckets, %d objects scanned, %d expired, %d noncurrent "
            "versions and %d delete markers removed, %d uploads aborted, %d left (changed "
            "since evaluated), %d refused, in %.2f s",
            buckets,
            done["objects_scanned"],
            done["objects_expired"],
            done["noncurrent_versions_expired"],
            done["delete_markers_removed"],
            done["uploads_aborted"],
            done["skipped_changed"],
            done["refused"],
            p.last_pass_seconds,
        )
        return True

    async def _bucket(self, bucket: Bucket, config: LifecycleConfiguration) -> bool:
        """One bucket's part of a pass; False if the lease was lost. An error in one bucket
        (its rules, its rows) is logged and the pass goes on with the next: otherwise it would
        end every pass at that bucket, and the buckets after it would never be processed."""
        try:
            if config.object_rules and not await self._objects(bucket):
                return False
            if config.aborts_uploads:
                await self._uploads(bucket)
        except Exception:
            self.progress.buckets_failed += 1
            log.exception("lifecycle: bucket %s failed; the pass goes on", bucket.name)
        return True

    async def _in_force(self, walked: Bucket) -> tuple[Bucket, LifecycleConfiguration] | None:
        """The bucket a pass walks and its rules as they are now, read again before every
        batch: a rule removed or changed meanwhile stops or changes the walk at once (S3
        does not act on what a removed rule had scheduled), and a bucket deleted and made
        again under the name (perhaps by another owner) is never walked under the rules of
        the one that was. None: nothing more to do in it."""
        now = await self.meta.bucket(walked.name)
        if now is None or now.created_at != walked.created_at:
            return None
        config = rules.of_bucket(now.settings)
        if config is None or not config.enabled_rules:
            return None
        return now, config

    async def _objects(self, bucket: Bucket) -> bool:
        name = bucket.name
        after = await self.meta.lifecycle_cursor(name)
        while True:
            if not await self._hold_lease():
                return False
            found = await self._in_force(bucket)
            if found is None or not found[1].object_rules:
                await self.meta.save_lifecycle_cursor(name, None)
                return True
            bucket, config = found
            started = time.monotonic()
            prefix, batch = config.scan_prefix, self.settings.batch_size
            if config.needs_versions(versioned=bucket.versioning is not None):
                page = await self.meta.key_versions_page(name, prefix, after, batch)
                actions = await self._evaluate_versions(config, page.keys)
                scanned, truncated, last = len(page.keys), page.truncated, page.last
            else:
                current = await self.meta.list_page(name, prefix, "", after, batch)
                actions = await self._evaluate(config, current.objects)
                scanned, truncated, last = len(current.objects), current.truncated, current.last
            await self._pace(started)
            for i in range(0, len(actions), WAVE):
                started = time.monotonic()
                wave = actions[i : i + WAVE]
                await asyncio.gather(*(self._apply(bucket, due) for due in wave))
                await self._pace(started)
            self.progress.objects_scanned += scanned
            if not truncated or last is None:
                await self.meta.save_lifecycle_cursor(name, None)
                return True
            after = last
            await self.meta.save_lifecycle_cursor(name, after)

    async def _pace(self, started: float) -> None:
        """Give way to requests: when others were waiting for the event loop, rest long
        enough that a pass keeps at most `max_loop_share` of it (an idle server's pass
        runs at full speed)."""
        busy = time.monotonic() - started
        before = time.monotonic()
        await asyncio.sleep(0)
        if time.monotonic() - before < WAITING:
            return
        share = self.settings.max_loop_share
        await asyncio.sleep(busy * (1 - share) / share)

    async def _evaluate(
        self, config: LifecycleConfiguration, objs: Sequence[ObjectVersion]
    ) -> list[Due]:
        """Current versions only: what Expiration (Days or Date) makes due."""
        now, day = self.clock(), self.settings.day_seconds
        actions: list[Due] = []
        for n, obj in enumerate(objs):
            if n % EVALUATE_STEP == EVALUATE_STEP - 1:
                await asyncio.sleep(0)  # the requests waiting on this loop go first
            due = expire_current(
                config, ObjectFacts(obj.key, obj.size, obj.last_modified, obj.tags), now, day
            )
            if due is not None:
                action = VersionAction("expire_current", obj.version_id, due.rule_id)
                actions.append(Due(obj.key, action, obj.s3_version_id))
        return actions

    async def _evaluate_versions(
        self, config: LifecycleConfiguration, keys: Sequence[tuple[str, list[KeyVersion]]]
    ) -> list[Due]:
        """Keys with all their versions: what every rule makes due."""
        now, day = self.clock(), self.settings.day_seconds
        actions: list[Due] = []
        for n, (key, versions) in enumerate(keys):
            if n % EVALUATE_STEP == EVALUATE_STEP - 1:
                await asyncio.sleep(0)
            s3_ids = {v.version_id: v.s3_version_id for v in versions}
            facts = [version_facts(v) for v in versions]
            for a in version_actions(config, key, facts, now, day):
                actions.append(Due(key, a, s3_ids[a.version_id]))
        return actions

    async def _apply(self, bucket: Bucket, due: Due) -> None:
        p = self.progress
        action = due.action
        try:
            if action.kind == "expire_current":
                done = await self._expire_current(bucket, due.key, action.version_id)
            else:
                done = await self._delete_version(
                    bucket, due.key, due.s3_version_id, action.version_id
                )
        except PreconditionFailed:
            p.skipped_changed += 1
            return
        except StoreError as exc:  # ObjectLocked among them
            p.refused += 1
            log.info(
                "lifecycle: %s/%s version %s not removed (rule %s): %s",
                bucket.name,
                due.key,
                due.s3_version_id,
                action.rule_id,
                exc,
            )
            return
        if not done:
            p.skipped_changed += 1
        elif action.kind == "expire_current":
            p.objects_expired += 1
        elif action.kind == "delete_noncurrent":
            p.noncurrent_versions_expired += 1
        else:
            p.delete_markers_removed += 1

    async def _expire_current(self, bucket: Bucket, key: str, version_id: str) -> bool:
        """A user's DeleteObject of the key, on the condition that the version evaluated is
        still current: in a versioned bucket the delete path adds a delete marker (owned by
        the bucket's owner) and the version stays, noncurrent; in an unversioned one it
        goes. False: it is current no more (overwritten or deleted meanwhile). Only in the
        bucket that was evaluated, never in one made again under its name."""
        condition = WriteCondition(if_version=version_id, bucket_created=bucket.created_at)
        removed = await self.store.delete(bucket.name, key, condition, bucket.owner_id)
        return removed.revoked is not None

    async def _delete_version(
        self, bucket: Bucket, key: str, s3_version_id: str, version_id: str
    ) -> bool:
        """Remove exactly one noncurrent version, or a delete marker left alone, for good:
        the store's delete of one version (object lock checked there: ObjectLocked), only
        while the version with this store id is still noncurrent (a lone marker: while it
        is the key's only version). False: it is not (any more)."""
        removed = await self.store.delete_version(
            bucket.name,
            key,
            s3_version_id,
            noncurrent=version_id,
            condition=WriteCondition(bucket_created=bucket.created_at),
        )
        return removed.s3_version_id is not None

    async def _uploads(self, bucket: Bucket) -> None:
        key_marker = upload_marker = ""
        while True:
            found = await self._in_force(bucket)
            if found is None or not found[1].aborts_uploads:
                return
            config = found[1]
            entries, truncated = await self.meta.scan_uploads(
                bucket.name, "", "", key_marker, upload_marker, UPLOAD_PAGE
            )
            now = self.clock()
            for up in entries:
                if not isinstance(up, Upload):
                    continue
                key_marker, upload_marker = up.key, up.upload_id
                if abort_upload_due(config, up.key, up.initiated, now, self.settings.day_seconds):
                    await self._abort(up)
            if not truncated:
                return

    async def _abort(self, up: Upload) -> None:
        """As AbortMultipartUpload does it: the upload's rows, then its part blobs."""
        blob_ids = await self.meta.abort_upload(up.upload_id)
        if blob_ids is None:
            return  # completed or aborted meanwhile
        await self.store.delete_blobs(blob_ids)
        self.progress.uploads_aborted += 1
