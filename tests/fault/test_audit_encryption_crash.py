"""kill -9 during concurrent SSE-C writes (PutObject of every size, copies that change the
key, deletes) and in the middle of an SSE-C multipart upload: what was acknowledged reads
back with its customer key (and only with it), every visible version has its key record,
and an upload whose parts were acknowledged goes on after the restart with the same key."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import make_client, start_server
from tests.fault.test_crash import ABSENT, KEYS, POOL, History, kill9_amid

SSE_C_HTTP = {"S3TORRENT_ENCRYPTION__SSE_C_OVER_HTTP": "true"}
# Every write seals with one of these; what a key holds says which (kept in its outcome).
CUSTOMER_KEYS = [os.urandom(32), os.urandom(32)]


def _ssec(key: bytes, prefix: str = "SSECustomer") -> dict[str, Any]:
    return {f"{prefix}Algorithm": "AES256", f"{prefix}Key": key}


def _outcome(body: bytes, key_index: int) -> str:
    return f"{key_index}:{hashlib.sha256(body).hexdigest()}"


def _worker(endpoint: str, history: History, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    client = make_client(endpoint, connect_timeout=5, read_timeout=20)
    # This worker's last acknowledged write of a key: its bytes, customer key and ETag.
    bodies: dict[str, tuple[bytes, int, str]] = {}
    n = 0
    while not stop.is_set():
        key = rng.choice(KEYS)
        roll = rng.random()
        call: Any
        if roll < 0.2:
            op = history.begin(key, "delete", ABSENT)
            call = lambda k=key: client.delete_object(Bucket="crash", Key=k)  # noqa: E731
        elif roll < 0.35 and key in bodies:
            # This worker's own last write of the key copied onto itself under the other
            # customer key, only while it is still there (x-amz-copy-source-if-match).
            body, index, etag = bodies.pop(key)
            other = 1 - index
            op = history.begin(key, "rekey", _outcome(body, other))
            call = lambda k=key, i=index, o=other, e=etag: client.copy_object(  # noqa: E731
                Bucket="crash", Key=k, CopySource={"Bucket": "crash", "Key": k},
                CopySourceIfMatch=e,
                **_ssec(CUSTOMER_KEYS[o]), **_ssec(CUSTOMER_KEYS[i], "CopySourceSSECustomer"),
            )  # fmt: skip
        else:
            size = rng.choice([0, rng.randrange(1, 4096), rng.randrange(0, 2 * 1024 * 1024)])
            off = rng.randrange(0, len(POOL) - size + 1)
            tag = f"{seed}:{n}:".encode()[:size]
            body = tag + POOL[off + len(tag) : off + size]
            n += 1
            index = rng.randrange(2)
            bodies.pop(key, None)
            op = history.begin(key, "put", _outcome(body, index))
            call = lambda k=key, b=body, i=index: client.put_object(  # noqa: E731
                Bucket="crash", Key=k, Body=b, **_ssec(CUSTOMER_KEYS[i])
            )
        try:
            answer = call()
        except ClientError:
            # A copy whose source another worker replaced meanwhile (412, or 404): it wrote
            # nothing, and stays unacknowledged (which allows no less than the truth).
            continue
        except Exception:
            # Connection refused/reset at the kill: the op stays unacknowledged.
            if stop.is_set():
                return
            time.sleep(0.05)
            continue
        history.ack(op)
        if op.kind == "put":
            bodies[key] = (body, index, answer["ETag"])


def _state(client: Any, key: str) -> str:
    """What the key holds now, as an outcome: its bytes and the customer key that opens it."""
    for index, customer in enumerate(CUSTOMER_KEYS):
        try:
            got = client.get_object(Bucket="crash", Key=key, **_ssec(customer))
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "NoSuchKey":
                return ABSENT
            assert code == "AccessDenied", (key, code)  # the other key: refused, never opened
            continue
        return _outcome(got["Body"].read(), index)
    raise AssertionError(f"{key}: no customer key opens it")


@pytest.mark.parametrize("seed", [5])
def test_kill9_during_sse_c_writes_keeps_acknowledged_state(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed * 7919 + int(time.time()))
    srv = start_server(tmp_path, env=SSE_C_HTTP)
    try:
        client = make_client(srv.endpoint)
        client.create_bucket(Bucket="crash")
        # An SSE-C multipart upload with one acknowledged part, left open over the crash.
        first = os.urandom(5 * 1024 * 1024 + 17)
        uid = client.create_multipart_upload(Bucket="crash", Key="mp", **_ssec(CUSTOMER_KEYS[0]))[
            "UploadId"
        ]
        part1 = client.upload_part(
            Bucket="crash", Key="mp", UploadId=uid, PartNumber=1, Body=first,
            **_ssec(CUSTOMER_KEYS[0]),
        )["ETag"]  # fmt: skip
        history = History()
        kill9_amid(
            srv,
            history,
            lambda stop, s: _worker(srv.endpoint, history, stop, s),
            rng,
            seed,
            threads=6,
        )

        srv.start()
        client = make_client(srv.endpoint)
        for key in KEYS:
            assert _state(client, key) in history.allowed(key), key

        # The open upload: its key record survived, so parts go on and the object opens.
        with pytest.raises(ClientError) as exc:
            client.upload_part(
                Bucket="crash", Key="mp", UploadId=uid, PartNumber=2, Body=b"tail",
                **_ssec(CUSTOMER_KEYS[1]),
            )  # fmt: skip
        assert exc.value.response["Error"]["Code"] == "InvalidArgument"
        part2 = client.upload_part(
            Bucket="crash", Key="mp", UploadId=uid, PartNumber=2, Body=b"tail",
            **_ssec(CUSTOMER_KEYS[0]),
        )["ETag"]  # fmt: skip
        parts = [{"PartNumber": 1, "ETag": part1}, {"PartNumber": 2, "ETag": part2}]
        client.complete_multipart_upload(
            Bucket="crash", Key="mp", UploadId=uid, MultipartUpload={"Parts": parts}
        )
        got = client.get_object(Bucket="crash", Key="mp", **_ssec(CUSTOMER_KEYS[0]))
        assert got["Body"].read() == first + b"tail"

        db = sqlite3.connect(srv.data_dir / "metadata.sqlite3")
        try:
            rows = {r[0] for r in db.execute("SELECT version_id FROM objects")}
            records = {r[0] for r in db.execute("SELECT owner FROM sse_keys")}
        finally:
            db.close()
        assert rows <= records  # every visible version has its key record
        # No customer key was ever written down (database, WAL, blobs, the server's log).
        written = [p for p in tmp_path.rglob("*") if p.is_file()]
        for customer in CUSTOMER_KEYS:
            needles = (customer, base64.b64encode(customer), customer.hex().encode())
            assert not any(n in p.read_bytes() for p in written for n in needles)
    finally:
        srv.stop()
