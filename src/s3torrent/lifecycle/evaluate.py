"""The lifecycle evaluator: rules + an object's (or a key's versions') facts + now -> what to
do. Pure: no clock (now is passed in), no store; `day_seconds` is the length of a lifecycle
"day" (86400, shortened in tests).

S3's arithmetic: a current version expires at the first midnight UTC after creation + Days;
a noncurrent one at the first midnight after it became noncurrent + NoncurrentDays; an
upload is aborted at the first midnight after initiation + DaysAfterInitiation. With
day_seconds != 86400 "midnight" is the next multiple of day_seconds since the epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from s3torrent.lifecycle.rules import (
    MAX_DAYS,
    LifecycleConfiguration,
    LifecycleRule,
    RuleFilter,
    Tags,
)


@dataclass(frozen=True, slots=True)
class ObjectFacts:
    """What a rule's filter and Expiration look at in a current version."""

    key: str
    size: int
    last_modified: float
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class VersionFacts:
    """One version of a key, newest first in a key's list. `noncurrent_since`: when a newer
    version replaced it (None while it is the latest)."""

    version_id: str
    is_latest: bool
    is_delete_marker: bool
    noncurrent_since: float | None
    size: int = 0
    last_modified: float = 0.0
    tags: Tags = ()


@dataclass(frozen=True, slots=True)
class Expiry:
    """When a version expires and the rule that says so."""

    at: float
    rule_id: str


ActionKind = Literal["expire_current", "delete_noncurrent", "remove_delete_marker"]


@dataclass(frozen=True, slots=True)
class VersionAction:
    """Something the worker must do to one version of a key."""

    kind: ActionKind
    version_id: str
    rule_id: str


def next_midnight(t: float, days: int, day_seconds: float) -> float:
    """The first "midnight" after t + days (S3 rounds every day count up this way).

    A count beyond MAX_DAYS (only in a configuration stored before that bound was checked)
    is taken as MAX_DAYS: both are never within the server's life, and only the bounded one
    gives a date x-amz-expiration and x-amz-abort-date can write."""
    return (math.floor(t / day_seconds) + min(days, MAX_DAYS) + 1) * day_seconds


def matches(f: RuleFilter, key: str, size: int, tags: Tags) -> bool:
    """Whether a filter selects an object with this key, size and tags."""
    if not key.startswith(f.prefix):
        return False
    if f.size_greater_than is not None and not size > f.size_greater_than:
        return False
    if f.size_less_than is not None and not size < f.size_less_than:
        return False
    if f.tags:
        have = dict(tags)
        return all(have.get(k) == v for k, v in f.tags)
    return True


def _rule_expiry(rule: LifecycleRule, obj: ObjectFacts, day_seconds: float) -> float | None:
    exp = rule.expiration
    if exp is None:
        return None
    if exp.days is not None:
        return next_midnight(obj.last_modified, exp.days, day_seconds)
    return exp.date


def current_expiry(
    config: LifecycleConfiguration, obj: ObjectFacts, day_seconds: float
) -> Expiry | None:
    """When the current version expires (the earliest of the matching enabled rules' Days
    or Date), as x-amz-expiration announces it; None: no rule expires it."""
    best: Expiry | None = None
    for rule in config.enabled_rules:
        if not matches(rule.filter, obj.key, obj.size, obj.tags):
            continue
        at = _rule_expiry(rule, obj, day_seconds)
        if at is not None and (best is None or at < best.at):
            best = Expiry(at, rule.id)
    return best


def expire_current(
    config: LifecycleConfiguration, obj: ObjectFacts, now: float, day_seconds: float
) -> Expiry | None:
    """The expiry that is due now for a current version, if any."""
    e = current_expiry(config, obj, day_seconds)
    return e if e is not None and e.at <= now else None


def version_actions(
    config: LifecycleConfiguration,
    key: str,
    versions: Sequence[VersionFacts],
    now: float,
    day_seconds: float,
) -> list[VersionAction]:
    """What is due for a key's versions (newest first): expire the latest (the delete path
    then adds a delete marker in a versioned bucket), delete noncurrent versions past
    NoncurrentDays beyond the NewerNoncurrentVersions kept, and remove a delete marker
    left alone (ExpiredObjectDeleteMarker, or Expiration Days/Date once it is old enough)."""
    actions: list[VersionAction] = []
    latest = next((v for v in versions if v.is_latest), None)
    if latest is not None and not latest.is_delete_marker:
        facts = ObjectFacts(key, latest.size, latest.last_modified, latest.tags)
        due = expire_current(config, facts, now, day_seconds)
        if due is not None:
            actions.append(VersionAction("expire_current", latest.version_id, due.rule_id))
    noncurrent = [v for v in versions if not v.is_latest]
    deleted = _noncurrent_due(config, key, noncurrent, now, day_seconds)
    actions += deleted
    if latest is not None and latest.is_delete_marker and len(deleted) == len(noncurrent):
        rule_id = _lone_marker_rule(config, key, latest, now, day_seconds)
        if rule_id is not None:
            actions.append(VersionAction("remove_delete_marker", latest.version_id, rule_id))
    return actions


def _lone_marker_rule(
    config: LifecycleConfiguration, key: str, marker: VersionFacts, now: float, day_seconds: float
) -> str | None:
    """The rule that removes a delete marker left as its key's only version: one with
    ExpiredObjectDeleteMarker at once, or, as S3 does, one whose Expiration Days or Date the
    marker (the key's current version) is old enough for."""
    for rule in config.enabled_rules:
        exp = rule.expiration
        if exp is None or not matches(rule.filter, key, 0, ()):
            continue
        if exp.expired_object_delete_marker:
            return rule.id
        at = _rule_expiry(rule, ObjectFacts(key, 0, marker.last_modified), day_seconds)
        if at is not None and at <= now:
            return rule.id
    return None


def _noncurrent_due(
    config: LifecycleConfiguration,
    key: str,
    noncurrent: Sequence[VersionFacts],
    now: float,
    day_seconds: float,
) -> list[VersionAction]:
    due: dict[str, VersionAction] = {}
    for rule in config.enabled_rules:
        nc = rule.noncurrent_expiration
        if nc is None:
            continue
        # The newest N noncurrent versions this rule selects are kept whatever their age.
        newer = 0
        for v in noncurrent:
            if not matches(rule.filter, key, v.size, v.tags):
                continue
            keep = nc.newer_noncurrent_versions is not None and newer < nc.newer_noncurrent_versions
            newer += 1
            if keep or v.noncurrent_since is None or v.version_id in due:
                continue
            if next_midnight(v.noncurrent_since, nc.noncurrent_days, day_seconds) <= now:
                due[v.version_id] = VersionAction("delete_noncurrent", v.version_id, rule.id)
    # In the key's order (newest first), whichever rule found each.
    return [due[v.version_id] for v in noncurrent if v.version_id in due]


def upload_abort_expiry(
    config: LifecycleConfiguration, key: str, initiated: float, day_seconds: float
) -> Expiry | None:
    """When an upload of `key` initiated at `initiated` becomes due for abort (the earliest of
    the matching enabled rules), as x-amz-abort-date announces it; None: no rule aborts it."""
    best: Expiry | None = None
    for rule in config.enabled_rules:
        days = rule.abort_upload_days
        if days is None or not key.startswith(rule.filter.prefix):
            continue
        at = next_midnight(initiated, days, day_seconds)
        if best is None or at < best.at:
            best = Expiry(at, rule.id)
    return best


def abort_upload_due(
    config: LifecycleConfiguration, key: str, initiated: float, now: float, day_seconds: float
) -> str | None:
    """The id of a rule that aborts an upload of `key` initiated at `initiated`, if due."""
    due = upload_abort_expiry(config, key, initiated, day_seconds)
    return due.rule_id if due is not None and due.at <= now else None
