"""Versioning through real tools: the AWS CLI (s3api) and rclone's --s3-versions listing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.api.test_cli_tools import aws, ok
from tests.conftest import LiveServer, rclone_env


def test_aws_cli_versioning_flow(server: LiveServer, s3: Any, bucket: str, tmp_path: Path) -> None:
    ok(aws(server, tmp_path, "s3api", "put-bucket-versioning", "--bucket", bucket,
           "--versioning-configuration", "Status=Enabled"))  # fmt: skip
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    body = tmp_path / "body"
    body.write_bytes(b"one")
    out = ok(aws(server, tmp_path, "s3api", "put-object", "--bucket", bucket, "--key", "k",
                 "--body", str(body)))  # fmt: skip
    ids = [
        json.loads(out)["VersionId"],
        s3.put_object(Bucket=bucket, Key="k", Body=b"two")["VersionId"],
    ]
    listed = json.loads(ok(aws(server, tmp_path, "s3api", "list-object-versions",
                               "--bucket", bucket)))  # fmt: skip
    assert [v["VersionId"] for v in listed["Versions"]] == ids[::-1]
    got = s3.get_object(Bucket=bucket, Key="k", VersionId=ids[0])["Body"].read()
    assert got == b"one"


@pytest.mark.skipif(
    not shutil.which("rclone") and not os.environ.get("S3TORRENT_REQUIRE_ENGINES"),
    reason="rclone is not installed (scripts/test.sh installs it and requires it)",
)
def test_rclone_lists_old_versions(server: LiveServer, s3: Any, bucket: str) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="dir/a.txt", Body=b"first")
    s3.put_object(Bucket=bucket, Key="dir/a.txt", Body=b"second!")
    s3.put_object(Bucket=bucket, Key="b.txt", Body=b"b")
    s3.delete_object(Bucket=bucket, Key="b.txt")
    env = rclone_env(server.endpoint)
    res = subprocess.run(
        ["rclone", "ls", "--s3-versions", f"s3t:{bucket}"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = sorted(line.split(None, 1) for line in res.stdout.splitlines())
    names = {name: int(size) for size, name in lines}
    assert names.pop("dir/a.txt") == 7
    (old,) = [n for n in names if n.startswith("dir/a-v")]
    assert re.fullmatch(r"dir/a-v\d{4}-\d\d-\d\d-\d{6}-\d{3}\.txt", old) and names[old] == 5
    # b.txt's only version is behind a delete marker: an old version, listed as such.
    assert any(n.startswith("b-v") for n in names) and "b.txt" not in names
