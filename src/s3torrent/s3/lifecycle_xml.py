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

# S3's schema, element by element: the children each may hold and how many times (None: any
# number). Anything else is MalformedXML, never skipped: a misspelt or repeated condition
# or action dropped silently would make a rule expire more than it says.
Shape = dict[str, int | None]
_ROOT: Shape = {"Rule": None}
_RULE: Shape = {
    "ID": 1,
    "Filter": 1,
    "Prefix": 1,
    "Status": 1,
    "Expiration": 1,
    "NoncurrentVersionExpiration": 1,
    "AbortIncompleteMultipartUpload": 1,
}
_CONDITIONS: Shape = {
    "Prefix": 1,
    "Tag": None,
    "ObjectSizeGreaterThan": 1,
    "ObjectSizeLessThan": 1,
}
_FILTER: Shape = {**_CONDITIONS, "And": 1}
_TAG: Shape = {"Key": 1, "Value": 1}
_EXPIRATION: Shape = {"Days": 1, "Date": 1, "ExpiredObjectDeleteMarker": 1}
_NONCURRENT: Shape = {"NoncurrentDays": 1, "NewerNoncurrentVersions": 1}
_ABORT: Shape = {"DaysAfterInitiation": 1}
_CONTAINERS = frozenset(
    {
        "Rule",
        "Filter",
        "And",
        "Tag",
        "Expiration",
        "NoncurrentVersionExpiration",
        "AbortIncompleteMultipartUpload",
    }
)
"""The elements that hold elements; every other one holds a value (text) only."""


def _malformed(why: str) -> S3Error:
    return S3Error(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published "
        f"schema ({why})",
    )


def _shaped(el: ET.Element, shape: Shape) -> ET.Element:
    """The element, if its children are ones `shape` allows, each at most as often."""
    seen: dict[str, int] = {}
    for c in el:
        name = s3xml.local(c.tag)
        if name not in shape:
            raise _malformed(f"unknown element {name} in {s3xml.local(el.tag)}")
        seen[name] = seen.get(name, 0) + 1
        most = shape[name]
        if most is not None and seen[name] > most:
            raise _malformed(f"{name} given more than once in {s3xml.local(el.tag)}")
        if len(c) and name not in _CONTAINERS:
            raise _malformed(f"{name} holds a value, not elements")
    return el


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
    _shaped(el, _TAG)
    key, value = s3xml.text(el, "Key"), s3xml.text(el, "Value")
    if key is None or value is None:
        raise _malformed("a Tag needs a Key and a Value")
    return key, value


def _conditions(el: ET.Element) -> dict[str, Any]:
    _shaped(el, _CONDITIONS)
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
    _shaped(el, _FILTER)
    and_el = s3xml.child(el, "And")
    if and_el is not None:
        if len(el) != 1:
            raise _malformed("Filter holds And alone")
        c = _conditions(and_el)
        form = "and"
    else:
        c = _conditions(el)
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
    _shaped(el, _EXPIRATION)
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
    _shaped(el, _RULE)
    status = s3xml.text(el, "Status")
    if status not in ("Enabled", "Disabled"):
        raise _malformed("Status is Enabled or Disabled")
    exp = s3xml.child(el, "Expiration")
    nc = s3xml.child(el, "NoncurrentVersionExpiration")
    noncurrent: NoncurrentExpiration | None = None
    if nc is not None:
        _shaped(nc, _NONCURRENT)
        days = _int(nc, "NoncurrentDays")
        if days is None:
            raise _malformed("NoncurrentVersionExpiration needs NoncurrentDays")
        noncurrent = NoncurrentExpiration(days, _int(nc, "NewerNoncurrentVersions"))
    abort = s3xml.child(el, "AbortIncompleteMultipartUpload")
    abort_days: int | None = None
    if abort is not None:
        _shaped(abort, _ABORT)
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
    if s3xml.local(root.tag) != "LifecycleConfiguration":
        raise _malformed("the root element is LifecycleConfiguration")
    _shaped(root, _ROOT)
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
