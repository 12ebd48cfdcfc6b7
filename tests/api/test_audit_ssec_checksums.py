"""Audit of the checksums of SSE-C objects: S3 keeps them encrypted with the customer's key
(a HEAD, GetObjectAttributes or ListParts of an SSE-C object or upload needs the key). Kept
in the clear in the metadata database, they let whoever holds the database (a backup, a
replica) test guesses of a low-entropy object offline: they are sealed under the version's
(or upload's) data key, which only the customer's key derives."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from s3torrent.s3 import sse
from tests.api.test_encryption import SSE_C_HTTP, _code, _form_post, _ssec, _ssec_fields
from tests.conftest import LiveServer, make_client, start_server

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(tmp_path_factory.mktemp("audit-ssec-sums"), env=SSE_C_HTTP)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cs3(srv: LiveServer) -> Any:
    return make_client(srv.endpoint)


def _database(srv: LiveServer) -> bytes:
    """Every byte of the SQLite metadata database (its WAL included)."""
    return b"".join(p.read_bytes() for p in sorted(srv.data_dir.glob("metadata.sqlite3*")))


def _sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _values(d: dict[str, Any]) -> set[str]:
    """The checksum values in a response (any Checksum<ALG> field)."""
    return {
        v
        for k, v in d.items()
        if k.startswith("Checksum") and k not in ("ChecksumType", "ChecksumAlgorithm")
    }


def test_checksums_of_sse_c_plaintext_are_sealed_in_the_database(srv: LiveServer, cs3: Any) -> None:
    """PutObject (with a SHA-256, and with none: S3's default CRC64NVME is kept), a multipart
    upload (COMPOSITE SHA-256 and the default's combined CRC64NVME), CopyObject and
    UploadPartCopy into SSE-C: every checksum the customer reads back with its key (HEAD with
    ChecksumMode, GetObjectAttributes, ListParts, the writes' answers) is right, and none is
    in the database, where each was in the clear."""
    bucket = f"audit-ssec-sums-{os.getpid()}"
    cs3.create_bucket(Bucket=bucket)
    key = os.urandom(32)
    c = _ssec(key)
    # ListParts and GetObjectAttributes: botocore encodes no key for them; sent as S3 reads it.
    encoded = {
        "SSECustomerAlgorithm": "AES256",
        "SSECustomerKey": base64.b64encode(key).decode(),
        "SSECustomerKeyMD5": base64.b64encode(hashlib.md5(key).digest()).decode(),
    }
    seen: set[str] = set()
    small = b"salary: 123456"
    put = cs3.put_object(Bucket=bucket, Key="sha", Body=small, ChecksumAlgorithm="SHA256", **c)
    assert put["ChecksumSHA256"] == _sha256_b64(small)
    seen.add(put["ChecksumSHA256"])
    cs3.put_object(Bucket=bucket, Key="default", Body=b"password=hunter2", **c)
    big = os.urandom(5 * MiB) + b"tail"
    for alg in ("SHA256", None):
        name = f"mp-{alg}"
        created = cs3.create_multipart_upload(
            Bucket=bucket, Key=name, **({"ChecksumAlgorithm": alg} if alg else {}), **c
        )
        upload_id = created["UploadId"]
        parts = []
        for number, chunk in ((1, big[: 5 * MiB]), (2, big[5 * MiB :])):
            sent = cs3.upload_part(
                Bucket=bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=chunk,
                **({"ChecksumAlgorithm": alg} if alg else {}), **c,
            )  # fmt: skip
            named = {k: v for k, v in sent.items() if k == "ChecksumSHA256"}
            parts.append({"PartNumber": number, "ETag": sent["ETag"], **named})
            seen |= _values(sent)
        listed = cs3.list_parts(Bucket=bucket, Key=name, UploadId=upload_id, **encoded)
        for part in listed["Parts"]:
            seen |= _values(part)
        if alg:
            assert {p["ChecksumSHA256"] for p in listed["Parts"]} == {
                _sha256_b64(big[: 5 * MiB]), _sha256_b64(big[5 * MiB :])
            }  # fmt: skip
        done = cs3.complete_multipart_upload(
            Bucket=bucket, Key=name, UploadId=upload_id, MultipartUpload={"Parts": parts}, **c
        )
        seen |= _values(done)
    cs3.copy_object(
        Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "sha"},
        CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey=key, **c,
    )  # fmt: skip
    # A form upload (POST Object), its SHA-256 named as a field.
    fields = {**_ssec_fields(key), "x-amz-checksum-sha256": _sha256_b64(b"form body")}
    presigned = cs3.generate_presigned_post(
        bucket, "form", Fields=fields, Conditions=[{k: v} for k, v in fields.items()]
    )
    assert _form_post(presigned, b"form body").status_code == 204
    for name in ("sha", "default", "mp-SHA256", "mp-None", "copy", "form"):
        head = cs3.head_object(Bucket=bucket, Key=name, ChecksumMode="ENABLED", **c)
        assert _values(head), name
        seen |= _values(head)
        attrs = cs3.get_object_attributes(
            Bucket=bucket, Key=name, ObjectAttributes=["Checksum", "ObjectParts"], **encoded
        )
        seen |= _values(attrs.get("Checksum", {}))
        for part in attrs.get("ObjectParts", {}).get("Parts", []):
            seen |= _values(part)
    head = cs3.head_object(Bucket=bucket, Key="sha", ChecksumMode="ENABLED", **c)
    assert head["ChecksumSHA256"] == _sha256_b64(small)
    for name, body in (("copy", small), ("form", b"form body")):
        got = cs3.head_object(Bucket=bucket, Key=name, ChecksumMode="ENABLED", **c)
        assert got["ChecksumSHA256"] == _sha256_b64(body), name
    whole = cs3.get_object_attributes(
        Bucket=bucket, Key="mp-SHA256", ObjectAttributes=["ObjectParts"], **encoded
    )["ObjectParts"]["Parts"]
    assert [p["ChecksumSHA256"] for p in whole] == [
        _sha256_b64(big[: 5 * MiB]), _sha256_b64(big[5 * MiB :])
    ]  # fmt: skip
    assert len(seen) >= 8, seen
    # Without the key, S3 tells nothing of them.
    with pytest.raises(ClientError) as exc:
        cs3.head_object(Bucket=bucket, Key="sha", ChecksumMode="ENABLED")
    assert _code(exc)[1] == 400
    database = _database(srv)
    for value in seen:
        bare = value.rpartition("-")[0] if "-" in value else value
        assert value.encode() not in database and bare.encode() not in database, value


def test_a_checksum_stored_in_the_clear_before_is_still_read() -> None:
    """Versions written before kept their checksums in the clear; they are read as they are
    (a sealed value is told from a plain one by its prefix, which base64 never has)."""
    data_key = os.urandom(32)
    plain = _sha256_b64(b"x")
    assert sse.open_checksum(data_key, plain) == plain
    sealed = sse.seal_checksum(data_key, plain)
    assert sealed != plain and plain not in sealed and len(sealed) <= 128
    assert sse.open_checksum(data_key, sealed) == plain
    assert sse.open_checksum(None, sealed) is None
    composite = _sha256_b64(b"y") + "-10000"  # the longest value kept
    assert len(sse.seal_checksum(data_key, composite)) <= 128
