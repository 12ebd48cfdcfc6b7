"""Audit of bucket lifecycle: the configuration's XML shape (an element S3's schema does not
have, or one given twice, is S3's MalformedXML, never silently dropped so that a rule acts
on more objects than it says), and the evaluator's edge cases."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3torrent.config import LifecycleSettings
from s3torrent.events import EventBus
from s3torrent.lifecycle.rules import (
    Expiration,
    LifecycleConfiguration,
    LifecycleRule,
    NoncurrentExpiration,
    RuleFilter,
    to_stored,
)
from s3torrent.lifecycle.worker import LifecycleWorker
from s3torrent.s3 import lifecycle_xml
from s3torrent.s3.errors import S3Error
from s3torrent.store import lifecycle_queries
from s3torrent.store.blobs.local import LocalBlobStore
from s3torrent.store.metastore import SqlMetadataStore, open_metadata_store
from s3torrent.store.objects import ObjectStore
from s3torrent.store.rows import ObjectVersion
from tests.conftest import metadata_env


def body(rule_inner: str, outer: str = "") -> bytes:
    return (
        f"<LifecycleConfiguration><Rule><ID>r</ID><Status>Enabled</Status>{rule_inner}"
        f"</Rule>{outer}</LifecycleConfiguration>"
    ).encode()


DAYS = "<Expiration><Days>1</Days></Expiration>"


@pytest.mark.parametrize(
    "xml",
    [
        # A misspelt condition: dropped, the rule would expire the whole bucket.
        body(f"<Filter><prefix>logs/</prefix></Filter>{DAYS}"),
        body(f"<Filter><Tags><Key>a</Key><Value>b</Value></Tags></Filter>{DAYS}"),
        body(
            "<Filter><And><Prefix>logs/</Prefix><Tags><Key>a</Key><Value>b</Value></Tags>"
            f"<Prefix2>x</Prefix2></And></Filter>{DAYS}"
        ),
        # Given twice: one of them was silently ignored.
        body(f"<Filter><Prefix>logs/</Prefix></Filter><Filter><Prefix>x/</Prefix></Filter>{DAYS}"),
        body(
            f"<Filter><Prefix>logs/</Prefix></Filter>{DAYS}<Expiration><Days>9</Days></Expiration>"
        ),
        body(
            "<Filter><And><Prefix>logs/</Prefix><Prefix>x/</Prefix>"
            f"<Tag><Key>a</Key><Value>b</Value></Tag></And></Filter>{DAYS}"
        ),
        body(f"<Filter><Prefix>a</Prefix></Filter>{DAYS}<Status>Disabled</Status>"),
        body(f"<ID>s</ID><Filter><Prefix>a</Prefix></Filter>{DAYS}"),
        # Unknown elements inside an action or a tag.
        body("<Filter><Prefix>a</Prefix></Filter><Expiration><Days>1</Days><Foo/></Expiration>"),
        body(
            "<Filter><Prefix>a</Prefix></Filter><NoncurrentVersionExpiration>"
            "<NoncurrentDays>1</NoncurrentDays><NewerNoncurrentVersion>3"
            "</NewerNoncurrentVersion></NoncurrentVersionExpiration>"
        ),
        body(
            "<Filter><Prefix>a</Prefix></Filter><AbortIncompleteMultipartUpload>"
            "<DaysAfterInitiation>1</DaysAfterInitiation><DaysAfterInitiation>2"
            "</DaysAfterInitiation></AbortIncompleteMultipartUpload>"
        ),
        body(f"<Filter><Tag><Key>a</Key><Value>b</Value><Value>c</Value></Tag></Filter>{DAYS}"),
        # A value holding elements (its text was read as empty, or its first part only).
        body(f"<Filter><Prefix>logs/<x/>more</Prefix></Filter>{DAYS}"),
        body("<Filter><Prefix>a</Prefix></Filter><Expiration><Days>1<x/></Days></Expiration>"),
        body(
            f"<Filter><Prefix>a</Prefix></Filter>{DAYS}".replace("<Filter>", "<Filter>", 1)
        ).replace(b"<ID>r</ID>", b"<ID>" + b"<a>" * 1000 + b"</a>" * 1000 + b"</ID>"),
        # An unknown element beside the rules.
        body(f"<Filter><Prefix>a</Prefix></Filter>{DAYS}", outer="<Rules/>"),
    ],
)
def test_elements_outside_s3s_schema_are_malformed_xml(xml: bytes) -> None:
    with pytest.raises(S3Error) as exc:
        lifecycle_xml.parse(xml)
    assert exc.value.code == "MalformedXML", xml


def test_the_well_formed_shapes_are_still_accepted() -> None:
    config = lifecycle_xml.parse(
        body(
            "<Filter><And><Prefix>logs/</Prefix><Tag><Key>a</Key><Value>b</Value></Tag>"
            "<Tag><Key>c</Key><Value>d</Value></Tag><ObjectSizeGreaterThan>1"
            "</ObjectSizeGreaterThan><ObjectSizeLessThan>9</ObjectSizeLessThan></And></Filter>"
            "<Expiration><Days>1</Days></Expiration><NoncurrentVersionExpiration>"
            "<NoncurrentDays>2</NoncurrentDays><NewerNoncurrentVersions>3"
            "</NewerNoncurrentVersions></NoncurrentVersionExpiration>"
        )
        + b""
    )
    (r,) = config.rules
    assert r.filter.prefix == "logs/" and r.filter.tags == (("a", "b"), ("c", "d"))
    assert (r.filter.size_greater_than, r.filter.size_less_than) == (1, 9)
    # Namespaced, as boto3 sends it.
    ns = lifecycle_xml.parse(
        b'<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule>'
        b"<ID>r</ID><Filter><Prefix>p/</Prefix></Filter><Status>Enabled</Status>"
        b"<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>"
    )
    assert ns.rules[0].filter.prefix == "p/"


# ---- the worker: one bucket that cannot be processed does not stop the others ----

T0 = 1_700_000_000.0
DAY = 10.0


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[SqlMetadataStore]:
    url = metadata_env().get("S3TORRENT_METADATA_URL", f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store = open_metadata_store(url, EventBus())
    yield store
    store.close()


@pytest.fixture
def store(meta: SqlMetadataStore, tmp_path: Path) -> Iterator[ObjectStore]:
    pool = concurrent.futures.ThreadPoolExecutor(2)
    yield ObjectStore(meta, LocalBlobStore(tmp_path / "blobs"), executor=pool)
    pool.shutdown()


def test_a_bucket_whose_rules_fail_does_not_stop_the_pass_for_the_others(
    meta: SqlMetadataStore, store: ObjectStore
) -> None:
    """Bucket "aa" holds rules its evaluation cannot read (a day count that is not a number,
    as a damaged or hand-edited setting may hold): evaluating them raises. Before, the
    exception ended the pass, and every pass after it, at that bucket: the buckets after it
    were never processed again."""
    days_rule = LifecycleRule("r", True, RuleFilter(), Expiration(days=1))
    broken = json.loads(to_stored(LifecycleConfiguration((days_rule,))))
    broken[0]["exp"]["days"] = "forever"

    async def scenario() -> None:
        for name in ("aa", "bk"):
            await meta.create_bucket(name, "owner", "us-east-1", None)
            await meta.commit_version(
                ObjectVersion(name, "k", name * 16, 1, '"e"', T0, "owner", inline=b"x")
            )
        await meta.set_bucket_setting("aa", "lifecycle", json.dumps(broken))
        await meta.set_bucket_setting(
            "bk", "lifecycle", to_stored(LifecycleConfiguration((days_rule,)))
        )
        settings = LifecycleSettings(day_seconds=DAY, interval=1.0)
        worker = LifecycleWorker(store, settings, "n1", lambda: T0 + 3 * DAY)
        assert await worker.run_pass()
        assert await meta.object("bk", "k") is None  # expired
        assert await meta.object("aa", "k") is not None
        assert worker.progress.buckets_failed == 1

    asyncio.run(scenario())


# ---- a key with very many versions: a page reads a bounded number of them ----


def vobj(bucket: str, key: str, i: int, made: float) -> ObjectVersion:
    vid = f"{i:032d}"
    return ObjectVersion(bucket, key, vid, 1, f'"{vid}"', made, "o", inline=b"x", versioned=True)


async def versioned_bucket(meta: SqlMetadataStore, *rules: LifecycleRule) -> None:
    await meta.create_bucket("bk", "o", "us-east-1", None)
    await meta.set_bucket_setting("bk", "versioning", "Enabled")
    await meta.set_bucket_setting("bk", "lifecycle", to_stored(LifecycleConfiguration(rules)))


def test_a_page_reads_a_bounded_number_of_versions(
    meta: SqlMetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key with more versions than a page holds is read newest first up to the bound, and
    the page ends before the next key (it comes in the next page); before, every version of
    every key of a page was read into memory at once, a million for a key put a million times."""
    monkeypatch.setattr(lifecycle_queries, "MAX_PAGE_VERSIONS", 20, raising=False)

    async def scenario() -> None:
        await versioned_bucket(meta, LifecycleRule("r", True, RuleFilter(), Expiration(days=1)))
        for i in range(3):
            await meta.commit_version(vobj("bk", "a", i, T0 + i))
        for i in range(60):
            await meta.commit_version(vobj("bk", "big", 100 + i, T0 + i))
        for i in range(3):
            await meta.commit_version(vobj("bk", "c", 200 + i, T0 + i))
        await meta.commit_version(vobj("bk", "d", 300, T0))
        seen: list[tuple[str, int]] = []
        after: str | None = None
        while True:
            page = await meta.key_versions_page("bk", "", after, 10)
            assert sum(len(vs) for _, vs in page.keys) <= 20 + 1  # + the current version
            seen += [(k, len(vs)) for k, vs in page.keys]
            if not page.truncated:
                break
            after = page.last
        assert [k for k, _ in seen] == ["a", "big", "c", "d"]
        counts = dict(seen)
        assert counts["a"] == 3 and counts["c"] == 3 and counts["d"] == 1
        # The newest versions of "big", the current one first.
        assert 20 <= counts["big"] <= 21

    asyncio.run(scenario())


def test_noncurrent_versions_of_a_key_beyond_a_page_all_expire_pass_after_pass(
    meta: SqlMetadataStore, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lifecycle_queries, "MAX_PAGE_VERSIONS", 20, raising=False)
    rule = LifecycleRule("nc", True, RuleFilter(), noncurrent_expiration=NoncurrentExpiration(1, 2))

    async def scenario() -> None:
        await versioned_bucket(meta, rule)
        for i in range(70):
            await meta.commit_version(vobj("bk", "big", i, T0 + i))
        await meta.commit_version(vobj("bk", "z", 500, T0))
        await meta.commit_version(vobj("bk", "z", 501, T0 + 1))
        settings = LifecycleSettings(day_seconds=DAY, interval=1.0)
        worker = LifecycleWorker(store, settings, "n1", lambda: T0 + 20 * DAY)
        for _ in range(10):
            assert await worker.run_pass()
        # The current version and the 2 newest noncurrent ones stay; the 67 others went.
        assert [v.version_id for v in await meta.key_versions("bk", "big")] == [
            f"{i:032d}" for i in (69, 68, 67)
        ]
        assert worker.progress.noncurrent_versions_expired == 67, worker.progress
        assert len(await meta.key_versions("bk", "z")) == 2  # one noncurrent, kept

    asyncio.run(scenario())


@pytest.mark.parametrize("days", [2_147_483_647, 10**18])
def test_a_day_count_stored_before_its_bound_still_gives_writable_dates(days: int) -> None:
    # Configurations stored before MAX_DAYS was checked may hold any S3 Integer; their
    # x-amz-expiration and x-amz-abort-date must still be writable (an InternalError on
    # every GET, HEAD and PUT of the bucket otherwise).
    from s3torrent.lifecycle.evaluate import ObjectFacts, current_expiry, upload_abort_expiry
    from s3torrent.lifecycle.rules import from_stored
    from s3torrent.s3.xml import http_date

    stored = json.dumps(
        [
            {
                "id": "r",
                "on": True,
                "form": "filter",
                "prefix": "",
                "exp": {"days": days, "date": None, "eodm": None},
                "abort": days,
            }
        ]
    )
    config = from_stored(stored)
    expiry = current_expiry(config, ObjectFacts("k", 1, 1_765_000_000.0), 86400)
    assert expiry is not None
    assert http_date(expiry.at).endswith("GMT")
    due = upload_abort_expiry(config, "k", 1_765_000_000.0, 86400)
    assert due is not None
    assert http_date(due.at).endswith("GMT")
