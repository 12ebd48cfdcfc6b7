"""The README's operations table is the router's: every endpoint is reachable by a probed
request and the README shows exactly what `markdown_table()` renders."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3torrent.s3.errors import S3Error
from s3torrent.s3.operations import NOTES, README_END, README_START, markdown_table, shapes
from s3torrent.s3.routing import NEVER_CONFIGURED, Endpoint, Target, route

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_is_the_code_table() -> None:
    text = README.read_text()
    assert README_START in text and README_END in text
    shown = text[text.index(README_START) + len(README_START) : text.index(README_END)]
    assert shown == markdown_table()


def test_every_endpoint_is_reachable_by_some_request() -> None:
    found, _ = shapes()
    assert set(found) == set(Endpoint)


def test_refused_sub_resources_are_not_routed_ones() -> None:
    found, refused = shapes()
    routed = {(s.path, s.query) for s in found.values()}
    assert refused
    assert all((s.path, s.query) not in routed for s in refused)
    assert any(s.query == "?select" for s in refused)


def test_notes_name_only_real_operations() -> None:
    assert set(NOTES) <= {e.op for e in Endpoint}


def test_never_configured_features_are_read_and_their_put_refused() -> None:
    bucket = Target(bucket="b", key=None, virtual_host=False)
    for sub in NEVER_CONFIGURED:
        assert route("GET", bucket, {sub: ""}, {}).scope == "bucket"
        if sub == "notification":
            # Routed: an empty configuration is accepted, a destination refused (its body).
            assert (
                route("PUT", bucket, {sub: ""}, {}) is Endpoint.PutBucketNotificationConfiguration
            )
            continue
        with pytest.raises(S3Error) as exc:
            route("PUT", bucket, {sub: ""}, {})
        assert exc.value.code == "NotImplemented"
