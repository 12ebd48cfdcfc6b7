"""Bucket controls that take ACLs out of play close an object's torrent channels within a
second: IgnorePublicAcls (a public-read object is no longer public) and BucketOwnerEnforced
(ACLs stop counting at all); lifting either opens them again."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.test_tracker_http import (
    announce,
    announce_query,
    failure_within,
    http_get,
    peer_id,
    publish,
)
from tests.conftest import LiveServer, make_client, start_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(
        tmp_path_factory.mktemp("h8-controls"),
        env={
            # failure_within announces every 20 ms from one address.
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_PER_IP": "100000",
            "S3TORRENT_TRACKER__ANNOUNCE_RATE_BURST": "100000",
        },
    )
    yield server
    server.stop()


@pytest.fixture
def client_bucket(srv: LiveServer) -> tuple[Any, str]:
    client = make_client(srv.endpoint)
    name = f"h8-ctl-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    client.create_bucket(Bucket=name)
    return client, name


def _served(srv: LiveServer, bucket: str, key: str, info_hash: bytes) -> bool:
    answer = announce(srv, announce_query(info_hash, peer_id(1), 6001))
    return b"peers" in answer and http_get(f"{srv.endpoint}/{bucket}/{key}")[0] == 200


def test_ignore_public_acls_closes_the_torrent_channels(
    srv: LiveServer, client_bucket: tuple[Any, str]
) -> None:
    s3, bucket = client_bucket
    info_hash = publish(srv, s3, bucket, "ignored")
    assert _served(srv, bucket, "ignored", info_hash)
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration={"IgnorePublicAcls": True}
    )
    assert failure_within(srv, info_hash) == "unregistered torrent"
    assert http_get(f"{srv.endpoint}/{bucket}/ignored")[0] == 403
    assert http_get(f"{srv.endpoint}/{bucket}/ignored?torrent")[0] == 403
    s3.delete_public_access_block(Bucket=bucket)
    assert _served(srv, bucket, "ignored", info_hash)


def test_bucket_owner_enforced_closes_the_torrent_channels(
    srv: LiveServer, client_bucket: tuple[Any, str]
) -> None:
    s3, bucket = client_bucket
    info_hash = publish(srv, s3, bucket, "enforced")
    assert _served(srv, bucket, "enforced", info_hash)
    s3.put_bucket_ownership_controls(
        Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    )
    assert failure_within(srv, info_hash) == "unregistered torrent"
    assert http_get(f"{srv.endpoint}/{bucket}/enforced")[0] == 403
    assert http_get(f"{srv.endpoint}/{bucket}/enforced?torrent")[0] == 403
    s3.delete_bucket_ownership_controls(Bucket=bucket)
    assert _served(srv, bucket, "enforced", info_hash)
