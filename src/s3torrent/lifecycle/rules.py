"""A bucket's lifecycle configuration as values, S3's validation of it, and its stored form.

The S3 edge parses the XML into these values (structural faults are its MalformedXML);
`validate` then applies S3's semantic rules and raises `LifecycleError` with S3's code and
message, which the edge renders. The stored form is compact JSON text in the bucket's
settings: text, so the request path can cache its parse by value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

MAX_RULES = 1000
MAX_ID_LENGTH = 255
MAX_PREFIX_LENGTH = 1024
MAX_NEWER_NONCURRENT = 100
DAY = 86400
MAX_DAYS = 1_000_000
"""The most days an action may count (about 2,700 years): creation + days must stay a date
that x-amz-expiration and x-amz-abort-date can write (before the year 10000)."""

Tags = tuple[tuple[str, str], ...]
FilterForm = Literal["none", "prefix", "filter", "and"]


class LifecycleError(Exception):
    """A configuration S3 refuses: its error code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class RuleFilter:
    """Which objects a rule applies to: every condition given must hold."""

    prefix: str = ""
    tags: Tags = ()
    size_greater_than: int | None = None
    size_less_than: int | None = None
    # How the rule said it (legacy top-level Prefix, a Filter with one condition, an And),
    # so GetBucketLifecycleConfiguration answers in the shape it was given.
    form: FilterForm = "filter"


@dataclass(frozen=True, slots=True)
class Expiration:
    """Expire current versions `days` after creation, or on `date` (epoch seconds at a UTC
    midnight); or remove delete markers left without noncurrent versions."""

    days: int | None = None
    date: float | None = None
    expired_object_delete_marker: bool | None = None


@dataclass(frozen=True, slots=True)
class NoncurrentExpiration:
    """Delete a version `noncurrent_days` after it stopped being current, keeping the
    `newer_noncurrent_versions` newest noncurrent versions whatever their age."""

    noncurrent_days: int
    newer_noncurrent_versions: int | None = None


@dataclass(frozen=True, slots=True)
class LifecycleRule:
    id: str
    enabled: bool
    filter: RuleFilter
    expiration: Expiration | None = None
    noncurrent_expiration: NoncurrentExpiration | None = None
    abort_upload_days: int | None = None
    """AbortIncompleteMultipartUpload's DaysAfterInitiation."""


MIN_SIZE_DEFAULT = "all_storage_classes_128K"
MIN_SIZE_VALUES = (MIN_SIZE_DEFAULT, "varies_by_storage_class")
"""x-amz-transition-default-minimum-object-size's values, S3's default first. It only
governs transitions, which this server refuses: it is kept and answered, as S3 does."""


@dataclass(frozen=True, slots=True)
class LifecycleConfiguration:
    rules: tuple[LifecycleRule, ...]
    transition_min_size: str = MIN_SIZE_DEFAULT

    @property
    def enabled_rules(self) -> tuple[LifecycleRule, ...]:
        return tuple(r for r in self.rules if r.enabled)

    @property
    def acts_on_versions(self) -> bool:
        """Whether some enabled rule needs a key's version list (not only its current)."""
        return any(
            r.noncurrent_expiration is not None
            or (r.expiration is not None and r.expiration.expired_object_delete_marker)
            for r in self.enabled_rules
        )

    def needs_versions(self, *, versioned: bool) -> bool:
        """Whether a pass must read keys with all their versions: for noncurrent versions and
        delete markers, and, in a bucket that has had versioning, for the lone delete markers
        an Expiration Days or Date rule removes once they are old enough (as S3 does)."""
        return self.acts_on_versions or (
            versioned
            and any(
                r.expiration is not None
                and (r.expiration.days is not None or r.expiration.date is not None)
                for r in self.enabled_rules
            )
        )

    @property
    def object_rules(self) -> tuple[LifecycleRule, ...]:
        """The enabled rules that act on object versions (not only on uploads)."""
        return tuple(
            r
            for r in self.enabled_rules
            if r.expiration is not None or r.noncurrent_expiration is not None
        )

    @property
    def scan_prefix(self) -> str:
        """The longest prefix every key an object rule may select starts with: a pass reads
        only the keys under it."""
        prefixes = [r.filter.prefix for r in self.object_rules]
        if not prefixes:
            return ""
        # Character by character, not by path component: keys are not paths.
        shortest = min(prefixes, key=len)
        for i, ch in enumerate(shortest):
            if any(p[i] != ch for p in prefixes):
                return shortest[:i]
        return shortest

    @property
    def aborts_uploads(self) -> bool:
        return any(r.abort_upload_days is not None for r in self.enabled_rules)


def _positive(value: int | None, what: str) -> None:
    if value is not None and value <= 0:
        raise LifecycleError("InvalidArgument", f"{what} must be a positive integer")


def _days(value: int | None, what: str) -> None:
    """A day count: positive, and small enough that the date it gives can be written."""
    _positive(value, what)
    if value is not None and value > MAX_DAYS:
        raise LifecycleError("InvalidArgument", f"{what} must not exceed {MAX_DAYS}")


def _validate_rule(rule: LifecycleRule) -> None:
    if len(rule.id) > MAX_ID_LENGTH:
        raise LifecycleError(
            "InvalidArgument", f"ID length should not exceed allowed limit of {MAX_ID_LENGTH}"
        )
    f = rule.filter
    if len(f.prefix.encode("utf-8")) > MAX_PREFIX_LENGTH:
        raise LifecycleError(
            "InvalidArgument", f"The prefix cannot be longer than {MAX_PREFIX_LENGTH} bytes"
        )
    if len({k for k, _ in f.tags}) != len(f.tags):
        raise LifecycleError("InvalidRequest", "Duplicate Tag Keys are not allowed.")
    if f.size_greater_than is not None and f.size_greater_than < 0:
        raise LifecycleError("InvalidArgument", "ObjectSizeGreaterThan must be non-negative")
    if f.size_less_than is not None and f.size_less_than <= 0:
        raise LifecycleError("InvalidArgument", "ObjectSizeLessThan must be a positive integer")
    if (
        f.size_greater_than is not None
        and f.size_less_than is not None
        and f.size_greater_than >= f.size_less_than
    ):
        raise LifecycleError(
            "InvalidRequest", "ObjectSizeGreaterThan must be less than ObjectSizeLessThan"
        )
    exp = rule.expiration
    if exp is None and rule.noncurrent_expiration is None and rule.abort_upload_days is None:
        raise LifecycleError(
            "InvalidRequest", "At least one action needs to be specified in a rule"
        )
    if exp is not None:
        _days(exp.days, "'Days' for Expiration action")
        if exp.date is not None and exp.date % DAY != 0:
            raise LifecycleError("InvalidArgument", "'Date' must be at midnight GMT")
        if exp.expired_object_delete_marker and f.tags:
            raise LifecycleError(
                "InvalidRequest", "ExpiredObjectDeleteMarker cannot be specified with Tags."
            )
    nc = rule.noncurrent_expiration
    if nc is not None:
        _days(nc.noncurrent_days, "'NoncurrentDays' for NoncurrentVersionExpiration action")
        n = nc.newer_noncurrent_versions
        if n is not None and not 0 < n <= MAX_NEWER_NONCURRENT:
            raise LifecycleError(
                "InvalidArgument",
                "'NewerNoncurrentVersions' for NoncurrentVersionExpiration action must be a "
                f"positive integer up to {MAX_NEWER_NONCURRENT}",
            )
    if rule.abort_upload_days is not None:
        _days(
            rule.abort_upload_days,
            "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action",
        )
        if f.tags:
            raise LifecycleError(
                "InvalidRequest", "AbortIncompleteMultipartUpload cannot be specified with Tags."
            )
        if f.size_greater_than is not None or f.size_less_than is not None:
            raise LifecycleError(
                "InvalidRequest",
                "AbortIncompleteMultipartUpload cannot be specified with an object size filter.",
            )


def validate(config: LifecycleConfiguration) -> LifecycleConfiguration:
    """The configuration if S3 would accept it; else LifecycleError with S3's answer."""
    if not config.rules:
        raise LifecycleError("MalformedXML", "A lifecycle configuration needs at least one Rule")
    if len(config.rules) > MAX_RULES:
        raise LifecycleError(
            "InvalidRequest",
            f"The number of lifecycle rules must not exceed the allowed limit of {MAX_RULES} rules",
        )
    seen: set[str] = set()
    for rule in config.rules:
        if rule.id in seen:
            raise LifecycleError(
                "InvalidArgument", "Rule ID must be unique. Found same ID for more than one rule"
            )
        seen.add(rule.id)
        _validate_rule(rule)
    return config


# ---- the stored form (JSON text in the bucket's settings) ----


def _rule_to_json(r: LifecycleRule) -> dict[str, Any]:
    f = r.filter
    out: dict[str, Any] = {"id": r.id, "on": r.enabled, "form": f.form, "prefix": f.prefix}
    if f.tags:
        out["tags"] = [list(t) for t in f.tags]
    if f.size_greater_than is not None:
        out["gt"] = f.size_greater_than
    if f.size_less_than is not None:
        out["lt"] = f.size_less_than
    if r.expiration is not None:
        e = r.expiration
        out["exp"] = {"days": e.days, "date": e.date, "eodm": e.expired_object_delete_marker}
    if r.noncurrent_expiration is not None:
        n = r.noncurrent_expiration
        out["nc"] = {"days": n.noncurrent_days, "keep": n.newer_noncurrent_versions}
    if r.abort_upload_days is not None:
        out["abort"] = r.abort_upload_days
    return out


def _rule_from_json(d: dict[str, Any]) -> LifecycleRule:
    exp = d.get("exp")
    nc = d.get("nc")
    return LifecycleRule(
        id=str(d["id"]),
        enabled=bool(d["on"]),
        filter=RuleFilter(
            prefix=str(d.get("prefix", "")),
            tags=tuple((str(k), str(v)) for k, v in d.get("tags", ())),
            size_greater_than=d.get("gt"),
            size_less_than=d.get("lt"),
            form=d.get("form", "filter"),
        ),
        expiration=(
            Expiration(days=exp["days"], date=exp["date"], expired_object_delete_marker=exp["eodm"])
            if exp is not None
            else None
        ),
        noncurrent_expiration=(
            NoncurrentExpiration(noncurrent_days=nc["days"], newer_noncurrent_versions=nc["keep"])
            if nc is not None
            else None
        ),
        abort_upload_days=d.get("abort"),
    )


def to_stored(config: LifecycleConfiguration) -> str:
    """The bucket setting's value: the list of rules, or, with a transition minimum size
    other than the default, an object holding both."""
    rules: list[dict[str, Any]] = [_rule_to_json(r) for r in config.rules]
    if config.transition_min_size == MIN_SIZE_DEFAULT:
        return json.dumps(rules, separators=(",", ":"))
    return json.dumps(
        {"rules": rules, "min_size": config.transition_min_size}, separators=(",", ":")
    )


@lru_cache(maxsize=1024)
def from_stored(text: str) -> LifecycleConfiguration:
    """The configuration a bucket setting holds (cached: every GET of the bucket asks)."""
    data = json.loads(text)
    if isinstance(data, dict):
        return LifecycleConfiguration(
            tuple(_rule_from_json(d) for d in data["rules"]),
            str(data.get("min_size", MIN_SIZE_DEFAULT)),
        )
    return LifecycleConfiguration(tuple(_rule_from_json(d) for d in data))


SETTING = "lifecycle"
"""The bucket setting (store: set_bucket_setting) that holds the stored form."""


def of_bucket(settings: dict[str, Any]) -> LifecycleConfiguration | None:
    """A bucket's configuration, from its settings (None: it has none)."""
    text = settings.get(SETTING)
    return from_stored(text) if isinstance(text, str) else None
