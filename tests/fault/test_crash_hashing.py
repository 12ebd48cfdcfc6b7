"""kill -9 right after a multipart completion: the restarted node takes its hashing job back
at once (its claim is its own), so `?torrent` does not wait for the claim to expire."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

from tests.conftest import make_client, start_server


def test_restarted_node_reclaims_its_own_hashing_claim_at_once(tmp_path: Path) -> None:
    env = {
        # A dead claim would block ?torrent for this long; the answer must come far sooner.
        "S3TORRENT_JOBS__CLAIM_TTL": "120",
        "S3TORRENT_TORRENT__HASH_WAIT_TIMEOUT": "60",
        "S3TORRENT_TORRENT__FORMAT": "hybrid",
    }
    srv = start_server(tmp_path, env=env)
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="crash")
        part = os.urandom(1024 * 1024) * 64  # 64 MiB
        up = s3.create_multipart_upload(Bucket="crash", Key="big.bin", ACL="public-read")
        uid = up["UploadId"]
        parts = []
        for n in range(1, 5):
            etag = s3.upload_part(
                Bucket="crash", Key="big.bin", UploadId=uid, PartNumber=n, Body=part
            )
            parts.append({"PartNumber": n, "ETag": etag["ETag"]})
        s3.complete_multipart_upload(
            Bucket="crash", Key="big.bin", UploadId=uid, MultipartUpload={"Parts": parts}
        )
        # Acknowledged: its hashing job (256 MiB) is claimed and running. Crash now.
        srv.kill9()
        srv.start()
        started = time.monotonic()
        with urllib.request.urlopen(f"{srv.endpoint}/crash/big.bin?torrent", timeout=90) as r:
            assert r.status == 200
            body = r.read()
        waited = time.monotonic() - started
        assert body.startswith(b"d")
        assert waited < 20, f"?torrent waited {waited:.1f} s for a dead claim"
    finally:
        srv.stop()
