"""Audit h5: `aws s3 sync` and `rclone sync` over a tree of awkward names, both ways.

A sync tool decides what to transfer from listings alone (keys, sizes, ETags, times): a key
listed wrongly encoded, twice, or not at all is a file transferred again on every run, or
never. Each tool must round-trip the tree byte for byte, and a second run must transfer
nothing."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer, aws_cli, rclone_env

pytestmark = [pytest.mark.interop, pytest.mark.timeout(600)]

# Names a sync tool must carry through its own escaping and the listing's url-encoding.
_NAMES = (
    "sp ace",
    "plus+sign",
    "per%cent",
    "per%20cent",
    "hash#tag",
    "q?mark",
    "uni-é",
    "emoji-\U0001f600",
    "amp&eq=",
    "tilde~",
    "semi;colon",
    "quote'",
    "[br]",
    "{cu}",
    "comma,",
    "at@",
)


def _tree(root: Path, count: int) -> dict[str, bytes]:
    rnd = random.Random(5)
    files: dict[str, bytes] = {}
    for i in range(count):
        top, sub = _NAMES[i % len(_NAMES)], _NAMES[(i // len(_NAMES)) % len(_NAMES)]
        rel = f"{top}/{sub} {i % 7}/{_NAMES[(i * 7) % len(_NAMES)]}-{i}.bin"
        data = rnd.randbytes(i % 61)
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files[rel] = data
    return files


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _keys(s3: Any, bucket: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


@pytest.mark.skipif(shutil.which("aws") is None, reason="no AWS CLI")
def test_aws_s3_sync_round_trips_awkward_names_and_a_second_run_is_idle(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    want = _tree(tmp_path / "src", 400)
    target = f"s3://{bucket}/"
    up = aws_cli(server.endpoint, "s3", "sync", "--only-show-errors", str(tmp_path / "src"), target)
    assert up.returncode == 0, up.stderr
    assert sorted(_keys(s3, bucket)) == sorted(want)
    again = aws_cli(server.endpoint, "s3", "sync", str(tmp_path / "src"), target)
    assert again.returncode == 0 and again.stdout == "", again.stdout[-2000:]
    back = tmp_path / "back"
    down = aws_cli(server.endpoint, "s3", "sync", "--only-show-errors", target, str(back))
    assert down.returncode == 0, down.stderr
    assert _files(back) == want
    idle = aws_cli(server.endpoint, "s3", "sync", target, str(back))
    assert idle.returncode == 0 and idle.stdout == "", idle.stdout[-2000:]


def _rclone(server: LiveServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = rclone_env(server.endpoint)
    return subprocess.run(
        ["rclone", "--retries", "1", "--low-level-retries", "1", "--stats", "0", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _transfers(log: str) -> list[str]:
    """The lines of an `rclone -v` log that say a file was copied, updated or deleted."""
    verbs = ("Copied", "Updated", "Deleted")
    return [line for line in log.splitlines() if any(v in line for v in verbs)]


@pytest.mark.skipif(shutil.which("rclone") is None, reason="no rclone")
def test_rclone_sync_round_trips_awkward_names_and_a_second_run_is_idle(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    want = _tree(tmp_path / "src", 400)
    up = _rclone(server, "sync", str(tmp_path / "src"), f"s3t:{bucket}")
    assert up.returncode == 0, up.stderr
    assert sorted(_keys(s3, bucket)) == sorted(want)
    again = _rclone(server, "sync", "-v", str(tmp_path / "src"), f"s3t:{bucket}")
    assert again.returncode == 0 and _transfers(again.stderr) == [], again.stderr[-2000:]
    back = tmp_path / "back"
    down = _rclone(server, "sync", f"s3t:{bucket}", str(back))
    assert down.returncode == 0, down.stderr
    assert _files(back) == want
    idle = _rclone(server, "sync", "-v", f"s3t:{bucket}", str(back))
    assert idle.returncode == 0 and _transfers(idle.stderr) == [], idle.stderr[-2000:]
    listed = _rclone(server, "lsf", "-R", "--files-only", f"s3t:{bucket}")
    assert sorted(listed.stdout.splitlines()) == sorted(want)
