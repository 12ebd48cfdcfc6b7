"""Tag changes the first tag-condition test (test_tag_condition_torrents.py) does not make,
decided alike on every torrent channel (h9 audit, 2026-12-08): a tag on a non-current
version, a tag set by copying an object onto itself, and two tags whose keys differ only
in case. The tracker, the seeder and the web seed refuse within a second what REST refuses."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from fastbencode import bdecode  # type: ignore[attr-defined]

from tests.conftest import LiveServer, make_client, start_server
from tests.interop.test_tag_condition_torrents import (
    _announce_refused,
    _fetch,
    _handshake_refused,
    _info_hash,
    _policy,
)
from tests.seeding import wait_for

pytestmark = [pytest.mark.interop, pytest.mark.slow]

CONFIDENTIAL = {"StringEquals": {"s3:ExistingObjectTag/classification": "confidential"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # Two workers: the tag change may land on either, the tracker and seeder live in one.
    srv = start_server(tmp_path_factory.mktemp("h9-tag-torrents"), workers=2)
    yield srv
    srv.stop()


def _published(server: LiveServer, url: str) -> bytes:
    status, torrent = _fetch(url)
    assert status == 200, torrent
    assert not _announce_refused(server, _info_hash(torrent))
    return torrent


def _withheld_everywhere(server: LiveServer, torrent: bytes) -> None:
    info_hash = _info_hash(torrent)
    wait_for(lambda: _announce_refused(server, info_hash), "the tracker to refuse", 1.5)
    assert _handshake_refused(server, info_hash)


def _web_seed(torrent: bytes) -> str:
    meta = bdecode(torrent)
    return str(meta[b"url-list"][0].decode() + meta[b"info"][b"name"].decode())


def _withholding_bucket(s3: Any, name: str, *statements: dict[str, Any]) -> str:
    s3.create_bucket(Bucket=name)
    s3.put_bucket_policy(Bucket=name, Policy=_policy(name, *statements))
    return name


def test_tagging_a_non_current_version_withholds_that_version_alone(
    server: LiveServer,
) -> None:
    """Only a key's current version has a torrent (`?torrent&versionId=` is refused): a tag
    on an older version refuses that version's REST reads and leaves the current version's
    swarm served on every channel (its key's torrents are decided again, on their own
    tags)."""
    s3 = make_client(server.endpoint)
    bucket = _withholding_bucket(
        s3, "h9-old-version", {"Effect": "Allow"}, {"Effect": "Deny", "Condition": CONFIDENTIAL}
    )
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old = s3.put_object(Bucket=bucket, Key="r.bin", Body=os.urandom(600_000))["VersionId"]
    s3.put_object(Bucket=bucket, Key="r.bin", Body=os.urandom(600_000))
    base = f"{server.endpoint}/{bucket}/r.bin"
    assert _fetch(f"{base}?torrent&versionId={old}")[0] == 400
    current = _published(server, f"{base}?torrent")
    s3.put_object_tagging(
        Bucket=bucket,
        Key="r.bin",
        VersionId=old,
        Tagging={"TagSet": [{"Key": "classification", "Value": "confidential"}]},
    )
    assert _fetch(f"{base}?versionId={old}")[0] == 403
    # The current version keeps its own (no) tags: still served on every channel.
    assert _fetch(base)[0] == 200
    assert not _announce_refused(server, _info_hash(current))
    assert not _handshake_refused(server, _info_hash(current))
    assert _fetch(_web_seed(current))[0] == 200


def test_a_self_copy_that_tags_withholds_the_object_everywhere(server: LiveServer) -> None:
    s3 = make_client(server.endpoint)
    bucket = _withholding_bucket(
        s3, "h9-self-copy", {"Effect": "Allow"}, {"Effect": "Deny", "Condition": CONFIDENTIAL}
    )
    s3.put_object(Bucket=bucket, Key="r.bin", Body=os.urandom(600_000))
    base = f"{server.endpoint}/{bucket}/r.bin"
    torrent = _published(server, f"{base}?torrent")
    s3.copy_object(
        Bucket=bucket,
        Key="r.bin",
        CopySource={"Bucket": bucket, "Key": "r.bin"},
        TaggingDirective="REPLACE",
        Tagging="classification=confidential",
    )
    assert _fetch(base)[0] == 403
    assert _fetch(f"{base}?torrent")[0] == 403
    _withheld_everywhere(server, torrent)
    assert _fetch(_web_seed(torrent))[0] == 403


def test_an_allow_by_tag_is_not_met_by_a_case_variant_of_the_tag(server: LiveServer) -> None:
    """public=no beside Public=yes is not public: no channel carries it (the decision reads
    every value of the case-insensitive condition key; one had been enough for an Allow)."""
    s3 = make_client(server.endpoint)
    bucket = _withholding_bucket(
        s3,
        "h9-case-variant",
        {"Effect": "Allow", "Condition": {"StringEquals": {"s3:ExistingObjectTag/public": "yes"}}},
    )
    s3.put_object(Bucket=bucket, Key="r.bin", Body=os.urandom(600_000), Tagging="public=yes")
    base = f"{server.endpoint}/{bucket}/r.bin"
    torrent = _published(server, f"{base}?torrent")
    s3.put_object_tagging(
        Bucket=bucket,
        Key="r.bin",
        Tagging={"TagSet": [{"Key": "public", "Value": "no"}, {"Key": "Public", "Value": "yes"}]},
    )
    assert _fetch(base)[0] == 403
    assert _fetch(f"{base}?torrent")[0] == 403
    _withheld_everywhere(server, torrent)
    assert _fetch(_web_seed(torrent))[0] == 403
