"""The AWS CLI (v1) against the server: aws s3 cp/ls/rm/sync and aws s3api object calls."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer


def aws(server: LiveServer, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ROOT_AK,
        "AWS_SECRET_ACCESS_KEY": ROOT_SK,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "aws-credentials"),
        "AWS_MAX_ATTEMPTS": "1",
    }
    return subprocess.run(
        ["aws", "--endpoint-url", server.endpoint, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, f"rc={res.returncode}\nstdout={res.stdout}\nstderr={res.stderr}"
    return res.stdout


def test_aws_s3_cp_of_20_mib_file_round_trips_with_multipart(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(20 * 1024 * 1024))
    ok(aws(server, tmp_path, "s3", "cp", str(src), f"s3://{bucket}/big.bin"))
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == src.stat().st_size
    assert head["ETag"].endswith('-3"')  # 8 MiB parts: a multipart ETag
    dst = tmp_path / "back.bin"
    ok(aws(server, tmp_path, "s3", "cp", f"s3://{bucket}/big.bin", str(dst)))
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()


def test_aws_s3_cp_ls_rm_of_small_file(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "small.txt"
    src.write_bytes(b"hello from the cli\n")
    ok(aws(server, tmp_path, "s3", "cp", str(src), f"s3://{bucket}/dir/small.txt"))
    assert s3.get_object(Bucket=bucket, Key="dir/small.txt")["Body"].read() == src.read_bytes()
    listing = ok(aws(server, tmp_path, "s3", "ls", f"s3://{bucket}/"))
    assert "PRE dir/" in listing
    listing = ok(aws(server, tmp_path, "s3", "ls", "--recursive", f"s3://{bucket}/"))
    assert "dir/small.txt" in listing
    assert " 19 " in listing
    buckets = ok(aws(server, tmp_path, "s3", "ls"))
    assert bucket in buckets
    ok(aws(server, tmp_path, "s3", "rm", f"s3://{bucket}/dir/small.txt"))
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_aws_s3_sync_uploads_a_directory_and_is_idempotent(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    src = tmp_path / "tree"
    files = {
        "a.txt": b"a",
        "sub/b.txt": b"bb" * 100,
        "sub/deeper/c with space.bin": os.urandom(70_000),
        "empty": b"",
    }
    for rel, data in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    ok(aws(server, tmp_path, "s3", "sync", str(src), f"s3://{bucket}/mirror"))
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="mirror/")
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(f"mirror/{k}" for k in files)
    for rel, data in files.items():
        assert s3.get_object(Bucket=bucket, Key=f"mirror/{rel}")["Body"].read() == data
    again = ok(aws(server, tmp_path, "s3", "sync", str(src), f"s3://{bucket}/mirror"))
    assert "upload:" not in again
    down = tmp_path / "down"
    ok(aws(server, tmp_path, "s3", "sync", f"s3://{bucket}/mirror", str(down)))
    for rel, data in files.items():
        assert (down / rel).read_bytes() == data
    ok(aws(server, tmp_path, "s3", "rm", "--recursive", f"s3://{bucket}/mirror"))
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_aws_s3api_put_get_head_object(server: LiveServer, bucket: str, tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(b'{"k": 1}')
    put = json.loads(
        ok(
            aws(
                server,
                tmp_path,
                "s3api",
                "put-object",
                "--bucket",
                bucket,
                "--key",
                "api/obj.json",
                "--body",
                str(body),
                "--content-type",
                "application/json",
                "--metadata",
                "origin=cli",
            )
        )
    )
    assert put["ETag"] == f'"{hashlib.md5(body.read_bytes()).hexdigest()}"'
    head = json.loads(
        ok(
            aws(
                server,
                tmp_path,
                "s3api",
                "head-object",
                "--bucket",
                bucket,
                "--key",
                "api/obj.json",
            )
        )
    )
    assert head["ContentLength"] == len(body.read_bytes())
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"origin": "cli"}
    out = tmp_path / "out.json"
    got = json.loads(
        ok(
            aws(
                server,
                tmp_path,
                "s3api",
                "get-object",
                "--bucket",
                bucket,
                "--key",
                "api/obj.json",
                str(out),
            )
        )
    )
    assert got["ETag"] == put["ETag"]
    assert out.read_bytes() == body.read_bytes()
    missing = aws(server, tmp_path, "s3api", "head-object", "--bucket", bucket, "--key", "nope")
    assert missing.returncode != 0
    assert "404" in missing.stderr
