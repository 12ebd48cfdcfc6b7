"""libtorrent downloads SSE-S3 objects from the seeder and from the web seed, which open
the sealed chunks they send: torrents of encrypted public objects work as plaintext ones."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LiveServer
from tests.interop.test_webseed import lt_download as lt_download_web_seed
from tests.interop.test_webseed import web_seed_only
from tests.seeding import (
    fetch_torrent,
    info_hash_v1,
    lt_download,
    seeder_stats,
    sha256,
    without_web_seed,
)

MiB = 1024 * 1024

pytestmark = pytest.mark.timeout(180)


def _put_sealed(s3: Any, bucket: str, key: str, size: int, *, multipart: bool = False) -> bytes:
    data = os.urandom(size)
    if not multipart:
        s3.put_object(
            Bucket=bucket, Key=key, Body=data, ACL="public-read", ServerSideEncryption="AES256"
        )
        return data
    # Joined from parts: hashed by the background job, which must open the chunks too.
    up = s3.create_multipart_upload(
        Bucket=bucket, Key=key, ACL="public-read", ServerSideEncryption="AES256"
    )
    cut = 5 * MiB
    parts = []
    for n, body in enumerate((data[:cut], data[cut:]), start=1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=body)
        parts.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": parts}
    )
    return data


@pytest.mark.parametrize("multipart", [False, True], ids=["put", "multipart"])
def test_libtorrent_downloads_an_sse_s3_object_from_the_seeder(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path, multipart: bool
) -> None:
    size = 6 * MiB + 12345
    data = _put_sealed(s3, bucket, "sealed.bin", size, multipart=multipart)
    assert s3.head_object(Bucket=bucket, Key="sealed.bin")["ServerSideEncryption"] == "AES256"
    torrent = without_web_seed(fetch_torrent(server.endpoint, bucket, "sealed.bin"))
    path = lt_download(torrent, tmp_path / "dl")
    assert sha256(path.read_bytes()) == sha256(data)
    sent = seeder_stats(server.endpoint)["torrents"][info_hash_v1(torrent).hex()]["bytes_sent"]
    assert size <= sent <= size + size // 10 + 16384


def test_libtorrent_downloads_an_sse_s3_object_from_the_web_seed(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    data = _put_sealed(s3, bucket, "web/sealed.bin", 3 * MiB + 777)
    torrent = web_seed_only(fetch_torrent(server.endpoint, bucket, "web/sealed.bin"))
    got = lt_download_web_seed(torrent, tmp_path / "lt")
    assert sha256(got.read_bytes()) == sha256(data)
