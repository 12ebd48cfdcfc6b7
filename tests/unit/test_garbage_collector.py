"""A server process's garbage collector once its node has started (issue #21)."""

from __future__ import annotations

import gc


def test_a_started_node_freezes_its_startup_heap() -> None:
    from s3torrent.app import settle_garbage_collector

    thresholds = gc.get_threshold()
    try:
        settle_garbage_collector()
        assert gc.get_freeze_count() > 0  # what startup built is out of the collector's sight
        assert gc.get_threshold() == thresholds
    finally:
        gc.unfreeze()
