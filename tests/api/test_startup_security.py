"""What the server refuses at start, and what it keeps private on disk."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LiveServer, free_port


def serve_once(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Start `s3torrent serve` with these root-key variables; it must exit on its own."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("S3TORRENT_ROOT_")}
    full.update(env)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "s3torrent.cli",
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--peer-listen",
            f"127.0.0.1:{free_port()}",
        ],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"S3TORRENT_ROOT_ACCESS_KEY": "ROOTKEY0000000000001"}, "set both"),
        ({"S3TORRENT_ROOT_SECRET_KEY": "a-long-enough-secret"}, "set both"),
        (
            {
                "S3TORRENT_ROOT_ACCESS_KEY": "ROOTKEY0000000000001",
                "S3TORRENT_ROOT_SECRET_KEY": "short",
            },
            "at least 8 characters",
        ),
    ],
)
def test_half_or_weak_root_keys_are_refused_at_start(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = serve_once(tmp_path, env)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    # Nothing was generated or printed before the refusal.
    assert "AWS_SECRET_ACCESS_KEY" not in result.stdout
    assert not (tmp_path / "data" / "root-credentials.json").exists()


def test_data_dir_and_metadata_database_are_owner_only(server: LiveServer) -> None:
    assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
    db = server.data_dir / "metadata.sqlite3"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    for suffix in ("-wal", "-shm"):
        side = db.with_name(db.name + suffix)
        if side.exists():
            assert stat.S_IMODE(side.stat().st_mode) & 0o077 == 0
