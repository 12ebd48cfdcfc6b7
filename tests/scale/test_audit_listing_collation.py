"""Bucket order on a PostgreSQL database whose collation is not byte order: glibc's
en_US.UTF-8, which most installations' initdb picks, ignores punctuation at first (so
"a1" < "a-b" < "ab"); ICU's en-US with alternate=shifted collates alike, and needs no
system locale. ListBuckets pages by names compared in Python (max-buckets, its
continuation token), so the store must give them in byte order whatever the database
collates, as S3 lists them."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from s3torrent.events import EventBus
from s3torrent.store.metastore import open_metadata_store
from tests.scale.engines import Engine


@pytest.mark.timeout(120)
def test_buckets_are_listed_in_byte_order_under_a_linguistic_collation(
    postgres: Engine,
) -> None:
    with psycopg.connect(
        f"host=127.0.0.1 port={postgres.port} user=s3t dbname=postgres", autocommit=True
    ) as conn:
        conn.execute(
            "CREATE DATABASE audit_listing_icu TEMPLATE template0 ENCODING 'UTF8' "
            "LOCALE_PROVIDER icu ICU_LOCALE 'en-US-u-ka-shifted' LOCALE 'C.utf8'"
        )
    url = f"postgresql+psycopg://s3t@127.0.0.1:{postgres.port}/audit_listing_icu"
    store = open_metadata_store(url, EventBus())
    names = ["ab", "a-c", "a.d", "a1", "b", "a-b-c"]

    async def scenario() -> list[str]:
        for name in names:
            await store.create_bucket(name, "owner", "us-east-1", None)
        return [b.name for b in await store.list_buckets(None)]

    try:
        assert asyncio.run(scenario()) == sorted(names, key=str.encode)
    finally:
        store.close()
