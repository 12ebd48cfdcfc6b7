"""ListObjects' and ListObjectVersions' keyset pages against a plain model of S3's
listing, on a real database: random keys (multi-byte characters, characters above U+FFFF
next to U+E000-U+FFFF ones, delimiters of one and several characters), random prefixes,
delimiters, start places and page sizes; and whole listings paged to the end."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3torrent.events import EventBus
from s3torrent.store.listing import common_prefix
from s3torrent.store.metastore import SqlMetadataStore, open_metadata_store
from s3torrent.store.rows import ObjectVersion
from tests.conftest import metadata_env

ALPHABET = ["a", "b", "/", "-", "é", "\ue000", "\U0001f600", "z"]


@pytest.fixture
def meta(tmp_path: Path) -> Iterator[SqlMetadataStore]:
    url = metadata_env().get("S3TORRENT_METADATA_URL", f"sqlite:///{tmp_path / 'm.sqlite3'}")
    store = open_metadata_store(url, EventBus())
    yield store
    store.close()


def _word(rng: random.Random, longest: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, longest)))


def _model(
    keys: list[str], prefix: str, delimiter: str, after: str | None, max_keys: int
) -> tuple[list[str], bool]:
    """S3's page: keys under the prefix after `after` in UTF-8 byte order (all of a common
    prefix's keys when `after` is that common prefix), grouped; at most max_keys."""
    skip = after if after is not None and common_prefix(after, prefix, delimiter) == after else None
    entries: list[str] = []
    for key in sorted(keys, key=str.encode):
        if not key.startswith(prefix):
            continue
        if after is not None and key.encode() <= after.encode():
            continue
        if skip is not None and key.startswith(skip):
            continue
        entry = common_prefix(key, prefix, delimiter) or key
        if not entries or entries[-1] != entry:
            entries.append(entry)
    # max-keys=0 is an empty page that is not truncated (ceph's s3-tests, recorded from S3).
    return entries[:max_keys], 0 < max_keys < len(entries)


def test_pages_match_the_model(meta: SqlMetadataStore) -> None:
    rng = random.Random(2026)
    keys = sorted({_word(rng, 6) for _ in range(700)})

    async def scenario() -> None:
        await meta.create_bucket("bk", "owner", "us-east-1", None)
        for i, key in enumerate(keys):
            await meta.commit_version(
                ObjectVersion("bk", key, f"{i:032x}", 0, '"e"', time.time(), "owner")
            )
        for _ in range(300):
            prefix = rng.choice(["", _word(rng, 2)])
            delimiter = rng.choice(["", "/", "-", "/a", "\U0001f600"])
            after = rng.choice([None, _word(rng, 4), rng.choice(keys)])
            max_keys = rng.choice([0, 1, 2, 7, 300, 1000])
            page = await meta.list_page("bk", prefix, delimiter, after, max_keys)
            got = sorted([o.key for o in page.objects] + page.prefixes, key=str.encode)
            want = _model(keys, prefix, delimiter, after, max_keys)
            assert (got, page.truncated) == want, (prefix, delimiter, after, max_keys)
            # One (null) version a key: ListObjectVersions' page is the same entries.
            versions = await meta.list_versions_page(
                "bk", prefix, delimiter, after or "", None, max_keys
            )
            got = [v.key for v, _ in versions.versions] + versions.prefixes
            assert (sorted(got, key=str.encode), versions.truncated) == want
        # Whole listings, page after page from each page's last entry.
        for delimiter in ("", "/", "-"):
            for size in (1, 3, 250):
                seen: list[str] = []
                after = None
                for _ in range(len(keys) + 2):
                    page = await meta.list_page("bk", "", delimiter, after, size)
                    seen += sorted([o.key for o in page.objects] + page.prefixes, key=str.encode)
                    if not page.truncated:
                        break
                    after = page.last
                assert seen == _model(keys, "", delimiter, None, 10**6)[0], (delimiter, size)

    asyncio.run(scenario())
