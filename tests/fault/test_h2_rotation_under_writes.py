"""`key rotate` run twice back to back, again and again, by the real CLI while a server with
two workers takes SSE-S3 writes of every kind: PUTs in parallel, multipart uploads (their
parts sealed with the upload's data key; some started before the rotations and completed
after them), copies of sealed objects, and new users (their secrets sealed by the server,
and by the offline CLI). Afterwards every acknowledged object reads back byte for byte and
every user's keys work, on the running server and after kill -9 and a new start; every
master key a record or a secret names is in the key file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, make_client, start_server

MIB = 1024 * 1024
BUCKET = "rot"


def _remote_user_add(srv: LiveServer, name: str, cwd: Path) -> dict[str, str]:
    """A user made by the running server (the admin API, through the CLI's --endpoint)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3TORRENT_"))}
    env.update(
        AWS_ACCESS_KEY_ID=ROOT_AK,
        AWS_SECRET_ACCESS_KEY=ROOT_SK,
        AWS_SHARED_CREDENTIALS_FILE=str(cwd / "none"),
        AWS_CONFIG_FILE=str(cwd / "none"),
    )
    res = subprocess.run(
        [sys.executable, "-m", "s3torrent.cli", "--endpoint", srv.endpoint, "user", "add", name],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )
    return _keys(res)


def _keys(res: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert res.returncode == 0, res.stderr
    return dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)


class Load:
    """The writes run while the rotations do: what each acknowledged, and what failed."""

    def __init__(self, srv: LiveServer, tmp: Path) -> None:
        self.srv = srv
        self.tmp = tmp
        self.objects: dict[str, bytes] = {}
        self.users: dict[str, tuple[str, str]] = {}
        self.errors: list[BaseException] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def _run(self, work: Any) -> None:
        try:
            work()
        except BaseException as exc:  # reported by check()
            with self.lock:
                self.errors.append(exc)

    def start(self) -> list[threading.Thread]:
        jobs = [lambda n=n: self._puts(n) for n in range(4)]
        jobs += [self._multipart, self._copies, self._users]
        threads = [threading.Thread(target=self._run, args=(job,)) for job in jobs]
        for t in threads:
            t.start()
        return threads

    def acked(self, key: str, body: bytes) -> None:
        with self.lock:
            self.objects[key] = body

    def _puts(self, n: int) -> None:
        s3 = make_client(self.srv.endpoint, read_timeout=30)
        i = 0
        while not self.stop.is_set():
            body = os.urandom(100 + (i * 7919) % 70_000)
            key = f"put/{n}/{i:05d}"
            s3.put_object(Bucket=BUCKET, Key=key, Body=body, ServerSideEncryption="AES256")
            self.acked(key, body)
            i += 1

    def _multipart(self) -> None:
        s3 = make_client(self.srv.endpoint, read_timeout=60)
        i = 0
        while not self.stop.is_set():
            key = f"mpu/{i:03d}"
            parts = [os.urandom(5 * MIB), os.urandom(1000 + i)]
            up = s3.create_multipart_upload(Bucket=BUCKET, Key=key, ServerSideEncryption="AES256")
            done = []
            for number, body in enumerate(parts, 1):
                got = s3.upload_part(
                    Bucket=BUCKET, Key=key, UploadId=up["UploadId"], PartNumber=number, Body=body
                )
                done.append({"PartNumber": number, "ETag": got["ETag"]})
            s3.complete_multipart_upload(
                Bucket=BUCKET, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": done}
            )
            self.acked(key, b"".join(parts))
            i += 1

    def _copies(self) -> None:
        s3 = make_client(self.srv.endpoint, read_timeout=30)
        i = 0
        while not self.stop.is_set():
            with self.lock:
                sources = sorted(self.objects)[:50]
            if not sources:
                self.stop.wait(0.05)
                continue
            src = sources[i % len(sources)]
            key = f"copy/{i:05d}"
            s3.copy_object(
                Bucket=BUCKET,
                Key=key,
                CopySource={"Bucket": BUCKET, "Key": src},
                ServerSideEncryption="AES256",
            )
            with self.lock:
                body = self.objects[src]
            self.acked(key, body)
            i += 1

    def _users(self) -> None:
        i = 0
        while not self.stop.is_set():
            name = f"u{i:03d}"
            if i % 2:  # the offline CLI seals it with its own key ring
                made = _keys(self.srv.cli("user", "add", name))
            else:
                made = _remote_user_add(self.srv, name, self.tmp)
            with self.lock:
                self.users[name] = (made["access_key"], made["secret_key"])
            i += 1


def _check(srv: LiveServer, load: Load) -> None:
    s3 = make_client(srv.endpoint, read_timeout=60)
    for key, body in sorted(load.objects.items()):
        got = s3.get_object(Bucket=BUCKET, Key=key)
        assert got["ServerSideEncryption"] == "AES256", key
        assert got["Body"].read() == body, key
    for name, (ak, sk) in sorted(load.users.items()):
        try:
            make_client(srv.endpoint, ak, sk).list_buckets()
        except ClientError as exc:
            pytest.fail(f"user {name}'s keys are refused: {exc}")


def _named_keys(srv: LiveServer) -> set[str]:
    """Every master key a stored data key or user secret names."""
    db = sqlite3.connect(srv.data_dir / "metadata.sqlite3")
    try:
        named = {r[0] for r in db.execute("SELECT key_id FROM sse_keys WHERE key_id IS NOT NULL")}
        for (value,) in db.execute("SELECT secret_key FROM users"):
            if value.startswith("s3ts1:"):
                named.add(value.split(":")[1])
    finally:
        db.close()
    return named


@pytest.mark.timeout(600)
def test_back_to_back_rotations_amid_sealed_writes_lose_nothing(tmp_path: Path) -> None:
    srv = start_server(tmp_path, workers=2)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket=BUCKET)
        # An upload begun before any rotation and completed after them all.
        early = os.urandom(5 * MIB) + b"tail"
        up = s3.create_multipart_upload(Bucket=BUCKET, Key="early", ServerSideEncryption="AES256")
        first = s3.upload_part(
            Bucket=BUCKET, Key="early", UploadId=up["UploadId"], PartNumber=1, Body=early[: 5 * MIB]
        )
        load = Load(srv, tmp_path)
        threads = load.start()
        try:
            for _ in range(3):
                for _ in range(2):  # back to back
                    res = srv.cli("key", "rotate")
                    assert res.returncode == 0, res.stderr
        finally:
            load.stop.set()
            for t in threads:
                t.join(120)
        assert not any(t.is_alive() for t in threads)
        assert not load.errors, load.errors
        last = s3.upload_part(
            Bucket=BUCKET, Key="early", UploadId=up["UploadId"], PartNumber=2, Body=b"tail"
        )
        s3.complete_multipart_upload(
            Bucket=BUCKET,
            Key="early",
            UploadId=up["UploadId"],
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": first["ETag"]},
                    {"PartNumber": 2, "ETag": last["ETag"]},
                ]
            },
        )
        load.acked("early", early)
        assert len(load.objects) > 50 and load.users
        _check(srv, load)
        ring = json.loads((srv.data_dir / "sse-master-keys.json").read_text())
        assert _named_keys(srv) <= set(ring["keys"])
        srv.kill9()
        srv.start()
        _check(srv, load)
    finally:
        srv.stop()


@pytest.mark.timeout(120)
def test_a_sealed_put_outlasting_the_key_record_sweep_grace_keeps_its_key(
    tmp_path: Path,
) -> None:
    """A sealed PUT still sending its body when the hourly sweep of key records of gone
    versions runs more than an hour after the PUT began (the sweep is called here as the
    server calls it then). Before, the PUT stored its record when it began, the sweep took
    it for one of a write that died, and the PUT then committed a version with no key: an
    acknowledged object that never read back."""
    import asyncio
    import http.client
    import time
    from urllib.parse import urlsplit

    from s3torrent.events import EventBus
    from s3torrent.store.metastore import open_metadata_store

    srv = start_server(tmp_path)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_encryption(
            Bucket=BUCKET,
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        body = os.urandom(3 * MIB)
        url = urlsplit(
            s3.generate_presigned_url(
                "put_object", Params={"Bucket": BUCKET, "Key": "slow"}, ExpiresIn=600
            )
        )
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        conn.putrequest("PUT", f"{url.path}?{url.query}")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        conn.send(body[:MIB])
        # The server is writing the blob (its temporary file is there).
        deadline = time.monotonic() + 20
        while not any((srv.data_dir / "tmp").iterdir()):
            assert time.monotonic() < deadline, "the write did not begin"
            time.sleep(0.05)
        db = srv.data_dir / "metadata.sqlite3"
        meta = open_metadata_store(f"sqlite:///{db}", EventBus())
        try:  # the sweep an hour later
            asyncio.run(meta.drop_unreferenced_seal_records(time.time() + 1))
        finally:
            meta.close()
        conn.send(body[MIB:])
        answer = conn.getresponse()
        assert answer.status == 200, answer.read()
        conn.close()
        got = s3.get_object(Bucket=BUCKET, Key="slow")
        assert got["ServerSideEncryption"] == "AES256"
        assert got["Body"].read() == body
    finally:
        srv.stop()


@pytest.mark.timeout(180)
def test_a_sealed_completion_outlasting_the_key_record_sweep_grace_keeps_its_key(
    tmp_path: Path,
) -> None:
    """As above for CompleteMultipartUpload: the sweep runs (as an hour later) while the
    completion joins the parts. Before, the joined version's record was stored before the
    parts were joined (which, for a large object without reflinks, is a copy of all of it),
    and the sweep could take it for a dead write's."""
    import asyncio
    import time

    from s3torrent.events import EventBus
    from s3torrent.store.metastore import open_metadata_store

    srv = start_server(tmp_path)
    try:
        s3 = make_client(srv.endpoint, read_timeout=120)
        s3.create_bucket(Bucket=BUCKET)
        up = s3.create_multipart_upload(Bucket=BUCKET, Key="big", ServerSideEncryption="AES256")
        part = os.urandom(5 * MIB)
        parts = []
        for number in range(1, 41):  # 200 MiB to join
            got = s3.upload_part(
                Bucket=BUCKET, Key="big", UploadId=up["UploadId"], PartNumber=number, Body=part
            )
            parts.append({"PartNumber": number, "ETag": got["ETag"]})
        meta = open_metadata_store(f"sqlite:///{srv.data_dir / 'metadata.sqlite3'}", EventBus())
        tmp = srv.data_dir / "tmp"
        answered = threading.Event()

        def complete() -> None:
            try:
                s3.complete_multipart_upload(
                    Bucket=BUCKET,
                    Key="big",
                    UploadId=up["UploadId"],
                    MultipartUpload={"Parts": parts},
                )
            finally:
                answered.set()

        worker = threading.Thread(target=complete)
        try:
            worker.start()
            deadline = time.monotonic() + 60
            while not any(tmp.iterdir()):  # the joined blob is being written
                if answered.is_set():
                    pytest.skip("the join was too quick to sweep amid it (reflinks?)")
                assert time.monotonic() < deadline, "no join seen"
            asyncio.run(meta.drop_unreferenced_seal_records(time.time() + 1))
            assert not answered.is_set(), "the join ended before the sweep: nothing tested"
        finally:
            worker.join(120)
            meta.close()
        assert not worker.is_alive()
        got = s3.get_object(Bucket=BUCKET, Key="big")
        assert got["ServerSideEncryption"] == "AES256"
        assert got["Body"].read() == part * 40
    finally:
        srv.stop()
