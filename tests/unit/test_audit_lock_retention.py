"""Retain-until dates are kept and compared in the milliseconds every answer tells them in:
a date read back is never taken for a shorter one, a shorter one by a millisecond still is."""

from __future__ import annotations

import pytest

from s3torrent.s3.versioning import parse_lock_date
from s3torrent.store.errors import ObjectLocked
from s3torrent.store.retention import COMPLIANCE, check_retention_change, retain_until
from s3torrent.store.rows import ObjectVersion

NOW = 1_765_000_000.0


def _version(until: float) -> ObjectVersion:
    return ObjectVersion(
        "bk", "k", "v" * 32, 1, '"e"', NOW, "o", lock_mode=COMPLIANCE, lock_until=until
    )


def test_a_date_is_kept_in_whole_milliseconds_rounded_up() -> None:
    assert retain_until(NOW + 0.789001) == NOW + 0.790
    assert retain_until(NOW + 0.789) == NOW + 0.789
    assert parse_lock_date("2025-12-06T05:46:40.123456Z") == parse_lock_date(
        "2025-12-06T05:46:40.124Z"
    )


@pytest.mark.parametrize("kept", [NOW + 86400.789654, NOW + 86400.789])
def test_the_date_told_can_be_put_back_and_a_shorter_one_cannot(kept: float) -> None:
    told = parse_lock_date("2025-12-07T05:46:40.789Z")  # as GetObjectRetention tells `kept`
    assert told == NOW + 86400.789
    check_retention_change(_version(kept), COMPLIANCE, told, NOW, bypass_governance=True)
    shorter = parse_lock_date("2025-12-07T05:46:40.788Z")
    with pytest.raises(ObjectLocked):
        check_retention_change(_version(kept), COMPLIANCE, shorter, NOW, bypass_governance=True)
