"""Object lock, decided in the metadata store: the one check every removal of a version
goes through (DeleteObject by version id, a null version replaced, and the lifecycle worker,
since they all remove versions through the store).

A version is locked while it is under a legal hold, or until its retain-until date: in
COMPLIANCE mode for everyone, root included; in GOVERNANCE mode for everyone but a request
that bypasses governance (x-amz-bypass-governance-retention with the permission
s3:BypassGovernanceRetention, checked at the S3 edge).
"""

from __future__ import annotations

import calendar
import dataclasses
from datetime import UTC, datetime

from s3torrent.store.errors import ObjectLocked
from s3torrent.store.rows import Bucket, ObjectVersion

GOVERNANCE = "GOVERNANCE"
COMPLIANCE = "COMPLIANCE"
MODES = (GOVERNANCE, COMPLIANCE)
DAY = 86400.0


def retain_until(t: float) -> float:
    """A retain-until date as it is kept: in whole milliseconds, rounded up, the precision
    every answer (GET and HEAD, GetObjectRetention) tells it in, so that a date read back
    and put again is the same date, never an earlier one (which COMPLIANCE refuses)."""
    micros = round(t * 1_000_000)
    return -(-micros // 1000) / 1000


def _millis(t: float) -> int:
    """The date in whole milliseconds, as an answer tells it (a date kept to the microsecond
    before retain_until is told to the millisecond below)."""
    return round(t * 1_000_000) // 1000


def check_removable(
    mode: str | None,
    until: float | None,
    legal_hold: bool,
    now: float,
    bypass_governance: bool,
) -> None:
    """Raise ObjectLocked unless a version with these lock settings may be removed now."""
    if legal_hold:
        raise ObjectLocked("legal hold")
    if mode is None or until is None or until <= now:
        return
    if mode == GOVERNANCE and bypass_governance:
        return
    raise ObjectLocked(f"{mode.lower()} retention")


def ensure_removable(version: ObjectVersion, now: float, bypass_governance: bool = False) -> None:
    """The store's check for one version (delete markers are never locked)."""
    if version.delete_marker:
        return
    check_removable(
        version.lock_mode, version.lock_until, version.legal_hold, now, bypass_governance
    )


@dataclasses.dataclass(frozen=True, slots=True)
class DefaultRetention:
    """A bucket's default retention rule: its mode and its period, in days or in years."""

    mode: str
    days: int | None
    years: int | None

    def until(self, now: float) -> float:
        """The retain-until date of a version written at `now`: `days` whole days later,
        or the same moment `years` calendar years later (a leap day counted where one
        falls, so that N years never end before the date N years on; 29 February goes to
        1 March of a year without one). It was 365 days a year: a rule of 4 years ended a
        day before the calendar date the owner asked for."""
        if self.days is not None:
            return now + self.days * DAY
        start = datetime.fromtimestamp(now, UTC)
        year = start.year + (self.years or 0)
        if start.month == 2 and start.day == 29 and not calendar.isleap(year):
            end = start.replace(year=year, month=3, day=1)
        else:
            end = start.replace(year=year)
        return end.timestamp()


# The bucket setting holding its object lock: enabled, and an optional default rule.
LOCK_SETTING = "object_lock"


def default_retention(bucket: Bucket) -> DefaultRetention | None:
    """The bucket's default retention rule, if it has one."""
    lock = bucket.settings.get(LOCK_SETTING)
    if not isinstance(lock, dict):
        return None
    rule = lock.get("default")
    if not isinstance(rule, dict):
        return None
    mode = rule.get("mode")
    days = rule.get("days")
    years = rule.get("years")
    if mode not in MODES:
        return None
    if isinstance(days, int):
        return DefaultRetention(str(mode), days, None)
    if isinstance(years, int):
        return DefaultRetention(str(mode), None, years)
    return None


def lock_enabled(bucket: Bucket) -> bool:
    lock = bucket.settings.get(LOCK_SETTING)
    return isinstance(lock, dict) and bool(lock.get("enabled"))


def with_default_retention(obj: ObjectVersion, bucket: Bucket, now: float) -> ObjectVersion:
    """A new version without its own retention gets the bucket's default, from now."""
    if obj.lock_mode is not None:
        return obj
    rule = default_retention(bucket)
    if rule is None:
        return obj
    return dataclasses.replace(obj, lock_mode=rule.mode, lock_until=retain_until(rule.until(now)))


def check_retention_change(
    version: ObjectVersion,
    mode: str | None,
    until: float | None,
    now: float,
    bypass_governance: bool,
) -> None:
    """May a version's retention become (mode, until)? Lengthening is always allowed; in
    COMPLIANCE mode nothing else, ever; in GOVERNANCE mode anything else (shorter, another
    mode, removed) only when governance is bypassed."""
    if version.lock_mode is None or version.lock_until is None or version.lock_until <= now:
        return
    extends = (
        mode == version.lock_mode
        and until is not None
        and _millis(until) >= _millis(version.lock_until)
    )
    if extends:
        return
    if version.lock_mode == GOVERNANCE and bypass_governance:
        return
    raise ObjectLocked(f"{version.lock_mode.lower()} retention")
