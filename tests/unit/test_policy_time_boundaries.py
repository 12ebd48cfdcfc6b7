"""facts.policy_time_boundaries: the instants at which a bucket policy's time conditions may
decide differently. Publication re-decides its torrents there and the tracker's cached
decisions end there, so an instant missed (or found late) leaves the torrent channels
serving after REST stopped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from s3torrent.access import ANONYMOUS, RequestContext
from s3torrent.access.facts import may, next_time_boundary, policy_time_boundaries

START = datetime(2026, 12, 7, 13, 0, 0, tzinfo=UTC)
EPOCH = int(START.timestamp())


class _Bucket:
    name = "b"
    owner_id = "owner"
    acl = None
    public_access_block = None
    region = "us-east-1"
    policy_users = None

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self.settings: dict[str, Any] = {}


def _policy(condition: dict[str, Any]) -> str:
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::b/*",
        "Condition": condition,
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.mark.parametrize(
    "condition",
    [
        {"NumericLessThan": {"aws:EpochTime": EPOCH + 5}},
        {"NumericLessThan": {"aws:EpochTime": EPOCH + 5.5}},
        {"NumericGreaterThanEquals": {"aws:EpochTime": f"{EPOCH + 3.25}"}},
        {"NumericLessThanEquals": {"aws:EpochTime": f"{(EPOCH + 4) / 1e9}e9"}},
        {"NumericEquals": {"aws:EpochTime": str(EPOCH + 2)}},
        {"DateLessThan": {"aws:CurrentTime": "2026-12-07T13:00:05Z"}},
        {"DateLessThan": {"aws:CurrentTime": "2026-12-07T13:00:05.900Z"}},
        {"DateGreaterThan": {"aws:CurrentTime": "2026-12-07T13:00:03.100+00:00"}},
        {"DateLessThan": {"aws:EpochTime": str(EPOCH + 6)}},
    ],
)
def test_every_change_of_decision_is_at_a_boundary(condition: dict[str, Any]) -> None:
    text = _policy(condition)
    bucket = _Bucket(text)
    boundaries = set(policy_time_boundaries(text, "b"))
    changes = 0
    before = None
    # Every tenth of a second over the window: the decision may change only at a boundary.
    for tenth in range(-20, 120):
        now = START + timedelta(seconds=tenth / 10)
        allowed = may(ANONYMOUS, "s3:GetObject", bucket, "k", None, RequestContext(now)).allowed
        if before is not None and allowed != before:
            changes += 1
            assert now in boundaries, (now, sorted(boundaries))
        before = allowed
    assert changes >= 1


@pytest.mark.parametrize(
    "condition",
    [
        {"StringLike": {"aws:CurrentTime": "2026-12-07T13:00:0?Z"}},
        {"StringNotLike": {"aws:CurrentTime": "*:0?Z"}},
        {"StringLike": {"aws:EpochTime": f"{str(EPOCH)[:-1]}?"}},
    ],
)
def test_a_time_matched_as_text_is_decided_again_every_second(condition: dict[str, Any]) -> None:
    # No date in it names the second its answer changes: until 2026-12-07 such a policy had
    # no boundary, and a decision cached by the tracker or the seeder never expired.
    bucket = _Bucket(_policy(condition))
    changes = 0
    before = None
    boundary = None
    for tenth in range(-20, 160):
        now = START + timedelta(seconds=tenth / 10)
        allowed = may(ANONYMOUS, "s3:GetObject", bucket, "k", None, RequestContext(now)).allowed
        if before is not None and allowed != before:
            changes += 1
            assert boundary is not None and boundary <= now, (now, boundary)
        before = allowed
        boundary = next_time_boundary(bucket, now)
    assert changes >= 1


def test_a_time_key_tested_for_presence_is_not_decided_again() -> None:
    bucket = _Bucket(_policy({"Null": {"aws:CurrentTime": "false"}}))
    assert next_time_boundary(bucket, START) is None
