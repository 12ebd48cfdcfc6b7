"""A handful of the core API tests again, with the server's metadata on PostgreSQL.

The whole suite runs on PostgreSQL with S3TORRENT_TEST_METADATA=postgres (tests/conftest.py);
this keeps a small, always-on slice of it in the default run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scale.engines import Engine

ROOT = Path(__file__).resolve().parents[2]
CORE = [
    "tests/api/test_objects.py::test_put_then_get_returns_same_bytes_and_md5_etag",
    "tests/api/test_objects.py::test_empty_object_round_trips",
    "tests/api/test_objects.py::test_overwrite_replaces_content",
    "tests/api/test_objects.py::test_delete_object_removes_it_and_is_idempotent",
    "tests/api/test_objects.py::test_delete_objects_reports_each_deleted_key",
    "tests/api/test_objects.py::test_reader_streaming_during_overwrite_gets_complete_old_version",
    "tests/api/test_listing.py::test_list_v2_returns_all_keys_in_byte_order",
    "tests/api/test_listing.py::test_list_orders_keys_by_utf8_bytes",
    "tests/api/test_listing.py::test_list_v2_continuation_pages_cover_keys_and_prefixes_once",
    "tests/api/test_multipart.py",
]


@pytest.mark.timeout(240)
def test_core_api_tests_pass_with_metadata_on_postgresql(postgres: Engine) -> None:
    # postgres only checks the engine can start here; the run starts its own server.
    env = {**os.environ, "S3TORRENT_TEST_METADATA": "postgres"}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *CORE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
