"""LifecycleConfiguration XML <-> lifecycle.rules values (the S3 edge's half of lifecycle).

Structural faults (an element S3's schema does not have, or has once given twice, a
non-integer Days, a Filter with two conditions outside And) are MalformedXML here; S3's
semantic rules are `lifecycle.rules.validate`'s. Transitions are refused with
NotImplemented: this server has one storage class.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any

from s3torrent.lifecycle.rules import (
    MIN_SIZE_DEFAULT,
    Expiration,
    FilterForm,
    LifecycleConfiguration,
    LifecycleError,
    LifecycleRule,
    NoncurrentExpiration,
    RuleFilter,
    validate,
)
from s3torrent.s3 import xml as s3xml
from s3torrent.s3.errors import S3Error

_TRANSITIONS = ("Transition", "NoncurrentVersionTransition")

# S3's schema (botocore's model: tests/unit/test_audit_xml_schemas.py). Anything else is
# MalformedXML, never skipped: a misspelt condition or action dropped silently would make a
# rule expire more than it says. Transitions are in it so that they get NotImplemented.
_TAG_SCHEMA: s3xml.Schema = {"Key": None, "Value": None}
_CONDITIONS_SCHEMA: s3xml.Schema = {
    "Prefix": None,
    "Tag": _TAG_SCHEMA,
    "ObjectSizeGreaterThan": None,
    "ObjectSizeLessThan": None,
}
LIFECYCLE_SCHEMA: s3xml.Schema = {
    "Rule": {
        "ID": None,
        "Filter": {**_CONDITIONS_SCHEMA, "And": _CONDITIONS_SCHEMA},
        "Prefix": None,
        "Status": None,
        "Expiration": {"Days": None, "Date": None, "ExpiredObjectDeleteMarker": None},
        "NoncurrentVersionExpiration": {"NoncurrentDays": None, "NewerNoncurrentVersions": None},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": None},
        "Transition": {"Date": None, "Days": None, "StorageClass": None},
        "NoncurrentVersionTransition": {
            "NoncurrentDays": None,
            "NewerNoncurrentVersions": None,
            "StorageClass": None,
        },
    }
}
# What an element holds at most once (s3xml.check_once); the rest (Rule, And's Tag) repeat.
_ONCE_IN_RULE = ("ID", "Filter", "Prefix", "Status", "Expiration",
                 "NoncurrentVersionExpiration", "AbortIncompleteMultipartUpload")  # fmt: skip
_ONCE_IN_FILTER = ("Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan", "And")
_ONCE_IN_AND = ("Prefix", "ObjectSizeGreaterThan", "ObjectSizeLessThan")
_ONCE_IN_TAG = ("Key", "Value")
_ONCE_IN_EXPIRATION = ("Days", "Date", "ExpiredObjectDeleteMarker")
_ONCE_IN_NONCURRENT = ("NoncurrentDays", "NewerNoncurrentVersions")
_ONCE_IN_ABORT = ("DaysAfterInitiation",)


def _malformed(why: str) -> S3Error:
    return S3Error(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published "
        f"schema ({why})",
    )


def _int(el: ET.Element, name: str) -> int | None:
    raw = s3xml.text(el, name)
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        raise _malformed(f"{name} must be an integer") from None


def _date(raw: str) -> float:
    try:
        dt = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise S3Error("InvalidArgument", "'Date' must be in ISO 8601 format") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _tag(el: ET.Element) -> tuple[str, str]:
    s3xml.check_once(el, _ONCE_IN_TAG)
    key, value = s3xml.text(el, "Key"), s3xml.text(el, "Value")
    if key is None or value is None:
        raise _malformed("a Tag needs a Key and a Value")
    return key, value


def _conditions(el: ET.Element, once: tuple[str, ...]) -> dict[str, Any]:
    s3xml.check_once(el, once)
    prefix = s3xml.text(el, "Prefix")
    return {
        "prefix": prefix,
        "tags": tuple(_tag(t) for t in s3xml.children(el, "Tag")),
        "gt": _int(el, "ObjectSizeGreaterThan"),
        "lt": _int(el, "ObjectSizeLessThan"),
    }


def _filter(rule: ET.Element) -> RuleFilter:
    legacy = s3xml.text(rule, "Prefix")
    el = s3xml.child(rule, "Filter")
    if el is None:
        form: FilterForm = "none" if legacy is None else "prefix"
        return RuleFilter(prefix=legacy or "", form=form)
    if legacy is not None:
        raise _malformed("a Rule has either Prefix or Filter, not both")
    and_el = s3xml.child(el, "And")
    if and_el is not None:
        if len(el) != 1:
            raise _malformed("Filter holds And alone")
        c = _conditions(and_el, _ONCE_IN_AND)
        form = "and"
    else:
        c = _conditions(el, _ONCE_IN_FILTER)
        given = (c["prefix"] is not None) + len(c["tags"]) + (c["gt"] is not None)
        if given + (c["lt"] is not None) > 1:
            raise _malformed("a Filter with several conditions needs And")
        form = "filter"
    return RuleFilter(
        prefix=c["prefix"] or "",
        tags=c["tags"],
        size_greater_than=c["gt"],
        size_less_than=c["lt"],
        form=form,
    )


def _expiration(el: ET.Element) -> Expiration:
    s3xml.check_once(el, _ONCE_IN_EXPIRATION)
    days = _int(el, "Days")
    raw_date = s3xml.text(el, "Date")
    marker = s3xml.text(el, "ExpiredObjectDeleteMarker")
    if marker is not None and marker.strip().lower() not in ("true", "false"):
        raise _malformed("ExpiredObjectDeleteMarker is true or false")
    given = (days is not None) + (raw_date is not None) + (marker is not None)
    if given != 1:
        raise _malformed("Expiration has exactly one of Days, Date, ExpiredObjectDeleteMarker")
    return Expiration(
        days=days,
        date=_date(raw_date) if raw_date is not None else None,
        expired_object_delete_marker=(marker.strip().lower() == "true") if marker else None,
    )


def _rule(el: ET.Element) -> LifecycleRule:
    for c in el:
        name = s3xml.local(c.tag)
        if name in _TRANSITIONS:
            raise S3Error(
                "NotImplemented",
                f"Lifecycle {name} is not implemented: this server has one storage class "
                "(STANDARD), so there is nothing to transition to.",
            )
    s3xml.check_once(el, _ONCE_IN_RULE)
    status = s3xml.text(el, "Status")
    if status not in ("Enabled", "Disabled"):
        raise _malformed("Status is Enabled or Disabled")
    exp = s3xml.child(el, "Expiration")
    nc = s3xml.child(el, "NoncurrentVersionExpiration")
    noncurrent: NoncurrentExpiration | None = None
    if nc is not None:
        s3xml.check_once(nc, _ONCE_IN_NONCURRENT)
        days = _int(nc, "NoncurrentDays")
        if days is None:
            raise _malformed("NoncurrentVersionExpiration needs NoncurrentDays")
        noncurrent = NoncurrentExpiration(days, _int(nc, "NewerNoncurrentVersions"))
    abort = s3xml.child(el, "AbortIncompleteMultipartUpload")
    abort_days: int | None = None
    if abort is not None:
        s3xml.check_once(abort, _ONCE_IN_ABORT)
        abort_days = _int(abort, "DaysAfterInitiation")
        if abort_days is None:
            raise _malformed("AbortIncompleteMultipartUpload needs DaysAfterInitiation")
    rule_id = s3xml.text(el, "ID")
    return LifecycleRule(
        # S3 names a rule sent without an ID.
        id=rule_id if rule_id else secrets.token_urlsafe(36)[:48],
        enabled=status == "Enabled",
        filter=_filter(el),
        expiration=_expiration(exp) if exp is not None else None,
        noncurrent_expiration=noncurrent,
        abort_upload_days=abort_days,
    )


def parse(body: bytes, transition_min_size: str = MIN_SIZE_DEFAULT) -> LifecycleConfiguration:
    """A PutBucketLifecycleConfiguration body (and its transition minimum size header) as a
    validated configuration (or S3's error)."""
    root = s3xml.parse(body)
    s3xml.check_document(root, "LifecycleConfiguration", LIFECYCLE_SCHEMA)
    config = LifecycleConfiguration(
        tuple(_rule(r) for r in s3xml.children(root, "Rule")), transition_min_size
    )
    try:
        return validate(config)
    except LifecycleError as exc:
        raise S3Error(exc.code, exc.message) from None


def _filter_xml(f: RuleFilter) -> dict[str, Any]:
    tags = [{"Key": k, "Value": v} for k, v in f.tags]
    if f.form == "and":
        return {
            "And": {
                "Prefix": f.prefix or None,
                "Tag": tags,
                "ObjectSizeGreaterThan": f.size_greater_than,
                "ObjectSizeLessThan": f.size_less_than,
            }
        }
    if tags:
        return {"Tag": tags[0]}
    if f.size_greater_than is not None:
        return {"ObjectSizeGreaterThan": f.size_greater_than}
    if f.size_less_than is not None:
        return {"ObjectSizeLessThan": f.size_less_than}
    return {"Prefix": f.prefix}


def _rule_xml(r: LifecycleRule) -> dict[str, Any]:
    out: dict[str, Any] = {"ID": r.id}
    if r.filter.form == "prefix":
        out["Prefix"] = r.filter.prefix
    elif r.filter.form != "none":
        out["Filter"] = _filter_xml(r.filter)
    out["Status"] = "Enabled" if r.enabled else "Disabled"
    e = r.expiration
    if e is not None:
        out["Expiration"] = {
            "Date": s3xml.iso8601(e.date) if e.date is not None else None,
            "Days": e.days,
            "ExpiredObjectDeleteMarker": e.expired_object_delete_marker,
        }
    n = r.noncurrent_expiration
    if n is not None:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": n.noncurrent_days,
            "NewerNoncurrentVersions": n.newer_noncurrent_versions,
        }
    if r.abort_upload_days is not None:
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": r.abort_upload_days}
    return out


def render(config: LifecycleConfiguration) -> bytes:
    """GetBucketLifecycleConfiguration's body."""
    return s3xml.render("LifecycleConfiguration", [("Rule", _rule_xml(r)) for r in config.rules])
