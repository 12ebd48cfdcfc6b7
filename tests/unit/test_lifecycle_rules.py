"""The lifecycle evaluator and rules: pure functions over rules, facts and a given time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3torrent.lifecycle.evaluate import (
    Expiry,
    ObjectFacts,
    VersionFacts,
    abort_upload_due,
    current_expiry,
    expire_current,
    matches,
    next_midnight,
    version_actions,
)
from s3torrent.lifecycle.rules import (
    Expiration,
    LifecycleConfiguration,
    LifecycleError,
    LifecycleRule,
    NoncurrentExpiration,
    RuleFilter,
    from_stored,
    to_stored,
    validate,
)

DAY = 86400.0


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def rule(rule_id: str = "r", **kw: object) -> LifecycleRule:
    kw.setdefault("filter", RuleFilter())
    kw.setdefault("enabled", True)
    return LifecycleRule(id=rule_id, **kw)  # type: ignore[arg-type]


def config(*rules: LifecycleRule) -> LifecycleConfiguration:
    return LifecycleConfiguration(tuple(rules))


def test_days_round_up_to_the_next_midnight_utc_as_s3_documents() -> None:
    # S3's example: created 2014-01-15 10:30 UTC, Days 3 -> expires 2014-01-19 00:00 UTC.
    assert next_midnight(ts(2014, 1, 15, 10, 30), 3, DAY) == ts(2014, 1, 19)
    # An object made exactly at midnight still waits for the next one after Days.
    assert next_midnight(ts(2014, 1, 15), 3, DAY) == ts(2014, 1, 19)


@given(st.floats(min_value=0, max_value=4e9), st.integers(1, 3650), st.sampled_from([1.0, DAY]))
def test_expiry_is_a_day_boundary_at_least_days_later(t: float, days: int, day: float) -> None:
    at = next_midnight(t, days, day)
    assert at % day == 0
    assert t + days * day < at <= t + (days + 1) * day


def test_filters_combine_prefix_tags_and_sizes() -> None:
    f = RuleFilter(prefix="logs/", tags=(("a", "1"), ("b", "2")), size_greater_than=10,
                   size_less_than=100, form="and")  # fmt: skip
    tags = (("b", "2"), ("a", "1"), ("c", "3"))
    assert matches(f, "logs/x", 50, tags)
    assert not matches(f, "log/x", 50, tags)
    assert not matches(f, "logs/x", 10, tags)  # greater than, strictly
    assert not matches(f, "logs/x", 100, tags)  # less than, strictly
    assert not matches(f, "logs/x", 50, (("a", "1"),))
    assert not matches(f, "logs/x", 50, (("a", "1"), ("b", "x")))
    assert matches(RuleFilter(), "anything", 0, ())


def test_earliest_matching_enabled_rule_wins() -> None:
    c = config(
        rule("late", expiration=Expiration(days=30)),
        rule("soon", filter=RuleFilter(prefix="tmp/"), expiration=Expiration(days=1)),
        rule("off", enabled=False, expiration=Expiration(days=0)),
        rule("dated", filter=RuleFilter(prefix="old/"), expiration=Expiration(date=ts(2020, 1, 1))),
    )
    made = ts(2024, 5, 1, 12)
    assert current_expiry(c, ObjectFacts("x", 1, made), DAY) == Expiry(ts(2024, 6, 1), "late")
    e = current_expiry(c, ObjectFacts("tmp/x", 1, made), DAY)
    assert e is not None and (e.at, e.rule_id) == (ts(2024, 5, 3), "soon")
    e = current_expiry(c, ObjectFacts("old/x", 1, made), DAY)
    assert e is not None and (e.at, e.rule_id) == (ts(2020, 1, 1), "dated")
    assert current_expiry(config(rule("off", enabled=False, expiration=Expiration(days=1))),
                          ObjectFacts("x", 1, made), DAY) is None  # fmt: skip


def test_expire_current_only_when_due() -> None:
    c = config(rule(expiration=Expiration(days=1)))
    obj = ObjectFacts("k", 1, ts(2024, 5, 1, 12))
    assert expire_current(c, obj, ts(2024, 5, 2, 23, 59), DAY) is None
    assert expire_current(c, obj, ts(2024, 5, 3), DAY) is not None
    # A rule with only noncurrent or upload actions never expires a current version.
    only_nc = config(rule(noncurrent_expiration=NoncurrentExpiration(1), abort_upload_days=1))
    assert expire_current(only_nc, obj, ts(2030, 1, 1), DAY) is None


def v(vid: str, latest: bool = False, marker: bool = False, since: float | None = None,
      **kw: object) -> VersionFacts:  # fmt: skip
    return VersionFacts(vid, latest, marker, since, **kw)  # type: ignore[arg-type]


def test_noncurrent_versions_expire_after_noncurrent_days_keeping_the_newest() -> None:
    c = config(rule(noncurrent_expiration=NoncurrentExpiration(2, newer_noncurrent_versions=1)))
    now = ts(2024, 6, 1)
    versions = [
        v("cur", latest=True, last_modified=ts(2024, 5, 31)),
        v("n1", since=ts(2024, 5, 1)),  # the newest noncurrent: kept
        v("n2", since=ts(2024, 4, 1)),
        v("n3", since=ts(2024, 5, 30, 12)),  # not old enough (due 2024-06-02)
    ]
    actions = version_actions(c, "k", versions, now, DAY)
    assert [(a.kind, a.version_id) for a in actions] == [("delete_noncurrent", "n2")]
    # Without NewerNoncurrentVersions every old enough one goes.
    c2 = config(rule(noncurrent_expiration=NoncurrentExpiration(2)))
    ids = [a.version_id for a in version_actions(c2, "k", versions, now, DAY)]
    assert ids == ["n1", "n2"]


def test_expired_object_delete_marker_is_removed_only_when_alone() -> None:
    c = config(rule(expiration=Expiration(expired_object_delete_marker=True)))
    now = ts(2024, 6, 1)
    alone = [v("dm", latest=True, marker=True)]
    assert [(a.kind, a.version_id) for a in version_actions(c, "k", alone, now, DAY)] == [
        ("remove_delete_marker", "dm")
    ]
    with_old = [v("dm", latest=True, marker=True), v("n1", since=ts(2024, 5, 1))]
    assert version_actions(c, "k", with_old, now, DAY) == []
    # ... unless the same evaluation deletes every noncurrent version.
    both = config(
        rule("m", expiration=Expiration(expired_object_delete_marker=True)),
        rule("n", noncurrent_expiration=NoncurrentExpiration(1)),
    )
    kinds = [a.kind for a in version_actions(both, "k", with_old, now, DAY)]
    assert kinds == ["delete_noncurrent", "remove_delete_marker"]
    # In an unversioned bucket (one current version, never a marker) there is nothing to do.
    assert version_actions(both, "k", [v("cur", latest=True)], now, DAY) == []


def test_latest_version_expires_through_version_actions() -> None:
    c = config(rule(expiration=Expiration(days=1)))
    latest = v("cur", latest=True, size=5, last_modified=ts(2024, 5, 1))
    actions = version_actions(c, "k", [latest], ts(2024, 6, 1), DAY)
    assert [(a.kind, a.version_id, a.rule_id) for a in actions] == [("expire_current", "cur", "r")]


def test_uploads_abort_after_days_after_initiation() -> None:
    c = config(rule("mpu", filter=RuleFilter(prefix="big/"), abort_upload_days=1))
    started = ts(2024, 5, 1, 8)
    assert abort_upload_due(c, "big/x", started, ts(2024, 5, 2, 23), DAY) is None
    assert abort_upload_due(c, "big/x", started, ts(2024, 5, 3), DAY) == "mpu"
    assert abort_upload_due(c, "small/x", started, ts(2024, 5, 9), DAY) is None


def test_accelerated_days_use_day_seconds() -> None:
    c = config(rule(expiration=Expiration(days=2)))
    assert expire_current(c, ObjectFacts("k", 1, 100.5), 103.0, 1.0) is not None
    assert expire_current(c, ObjectFacts("k", 1, 100.5), 102.9, 1.0) is None


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (config(), "MalformedXML"),
        (config(rule(expiration=Expiration(days=0))), "InvalidArgument"),
        (config(rule(expiration=Expiration(date=ts(2030, 1, 1, 0, 0, 1)))), "InvalidArgument"),
        (config(rule(), ), "InvalidRequest"),
        (config(rule(expiration=Expiration(days=1)), rule(expiration=Expiration(days=2))),
         "InvalidArgument"),
        (config(*(rule(f"r{i}", expiration=Expiration(days=1)) for i in range(1001))),
         "InvalidRequest"),
        (config(rule(noncurrent_expiration=NoncurrentExpiration(1, 101))), "InvalidArgument"),
        (config(rule(filter=RuleFilter(tags=(("a", "1"),)),
                     expiration=Expiration(expired_object_delete_marker=True))), "InvalidRequest"),
    ],
)  # fmt: skip
def test_validation_refuses_what_s3_refuses(bad: LifecycleConfiguration, code: str) -> None:
    with pytest.raises(LifecycleError) as exc:
        validate(bad)
    assert exc.value.code == code


def test_days_or_date_expiration_removes_a_lone_delete_marker_old_enough() -> None:
    """S3: with Expiration Days (or Date) "Amazon S3 automatically performs
    ExpiredObjectDeleteMarker cleanup when the delete markers are old enough to satisfy the
    age criteria"; a marker over versions, too young, or out of the filter stays."""
    made = ts(2024, 5, 1, 12)
    alone = [v("dm", latest=True, marker=True, last_modified=made)]
    days = config(rule("d", filter=RuleFilter(prefix="k"), expiration=Expiration(days=2)))
    assert version_actions(days, "k", alone, ts(2024, 5, 3), DAY) == []  # due 05-04
    assert [(a.kind, a.version_id, a.rule_id) for a in
            version_actions(days, "k", alone, ts(2024, 5, 4), DAY)] == [
        ("remove_delete_marker", "dm", "d")
    ]  # fmt: skip
    assert version_actions(days, "other", alone, ts(2024, 6, 1), DAY) == []
    with_old = [*alone, v("n1", since=made)]
    assert version_actions(days, "k", with_old, ts(2024, 6, 1), DAY) == []
    date = config(rule("t", expiration=Expiration(date=ts(2024, 5, 10))))
    assert version_actions(date, "k", alone, ts(2024, 5, 9), DAY) == []
    assert [a.kind for a in version_actions(date, "k", alone, ts(2024, 5, 10), DAY)] == [
        "remove_delete_marker"
    ]
    # A tag filter never selects a delete marker (it has no tags).
    tagged = config(rule(filter=RuleFilter(tags=(("a", "b"),)), expiration=Expiration(days=1)))
    assert version_actions(tagged, "k", alone, ts(2024, 6, 1), DAY) == []
    # Whether a versioned bucket's pass must read version lists for it.
    assert days.needs_versions(versioned=True)
    assert not days.needs_versions(versioned=False)


def test_stored_form_round_trips() -> None:
    c = config(
        rule("a", filter=RuleFilter(prefix="p/", form="prefix"), expiration=Expiration(days=3),
             abort_upload_days=2),
        rule("b", enabled=False, filter=RuleFilter("x", (("k", "v"),), 1, 9, "and"),
             expiration=Expiration(date=ts(2030, 1, 1)),
             noncurrent_expiration=NoncurrentExpiration(4, 2)),
        rule("c", filter=RuleFilter(form="none"),
             expiration=Expiration(expired_object_delete_marker=True)),
    )  # fmt: skip
    assert from_stored(to_stored(c)) == c
    # The default transition minimum size keeps the list form (what older releases wrote
    # and read); the other value is stored with the rules.
    assert to_stored(c).startswith("[")
    varies = LifecycleConfiguration(c.rules, "varies_by_storage_class")
    assert from_stored(to_stored(varies)) == varies


def test_a_pass_reads_only_the_keys_object_rules_may_select() -> None:
    c = config(
        rule("a", filter=RuleFilter(prefix="logs/2024/"), expiration=Expiration(days=1)),
        rule("b", filter=RuleFilter(prefix="logs/2023/"), expiration=Expiration(days=1)),
        rule("c", filter=RuleFilter(prefix="tmp/"), abort_upload_days=1),  # uploads only
        rule("d", enabled=False, expiration=Expiration(days=1)),
    )
    assert c.scan_prefix == "logs/202"
    assert [r.id for r in c.object_rules] == ["a", "b"]
    assert config(rule(abort_upload_days=1)).object_rules == ()
