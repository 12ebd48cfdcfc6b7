"""Checksums: published check values, streaming equals one-shot, CRC combination, validation."""

from __future__ import annotations

import base64
import hashlib

import pytest
from awscrt import checksums as crt
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from s3torrent.s3.checksums import (
    ChecksumAlgorithm,
    checksum_headers,
    combine_crc,
    decode_checksum,
    new_checksum,
)
from s3torrent.s3.errors import S3Error

CRCS = [ChecksumAlgorithm.CRC32, ChecksumAlgorithm.CRC32C, ChecksumAlgorithm.CRC64NVME]
ONE_SHOT_CRC = {
    ChecksumAlgorithm.CRC32: crt.crc32,
    ChecksumAlgorithm.CRC32C: crt.crc32c,
    ChecksumAlgorithm.CRC64NVME: crt.crc64nvme,
}


@pytest.mark.parametrize(
    ("algorithm", "check"),
    [
        (ChecksumAlgorithm.CRC32, 0xCBF43926),
        (ChecksumAlgorithm.CRC32C, 0xE3069283),
        (ChecksumAlgorithm.CRC64NVME, 0xAE8B14860A799888),
    ],
)
def test_crc_check_values_of_123456789(algorithm: ChecksumAlgorithm, check: int) -> None:
    checksum = new_checksum(algorithm)
    checksum.update(b"123456789")
    assert checksum.digest() == check.to_bytes(algorithm.digest_size, "big")
    assert base64.b64decode(checksum.b64()) == checksum.digest()


@pytest.mark.parametrize(
    ("algorithm", "reference"),
    [(ChecksumAlgorithm.SHA1, hashlib.sha1), (ChecksumAlgorithm.SHA256, hashlib.sha256)],
)
def test_sha_checksums_match_hashlib(algorithm: ChecksumAlgorithm, reference: type) -> None:
    checksum = new_checksum(algorithm)
    checksum.update(b"abc")
    assert checksum.digest() == reference(b"abc").digest()
    assert len(checksum.digest()) == algorithm.digest_size


def test_empty_crc32_is_zero_and_encodes_like_s3() -> None:
    assert new_checksum(ChecksumAlgorithm.CRC32).b64() == "AAAAAA=="


@settings(max_examples=100, deadline=None)
@given(
    algorithm=st.sampled_from(list(ChecksumAlgorithm)),
    pieces=st.lists(st.binary(max_size=300), max_size=8),
)
def test_incremental_updates_equal_one_shot(
    algorithm: ChecksumAlgorithm, pieces: list[bytes]
) -> None:
    incremental = new_checksum(algorithm)
    for piece in pieces:
        incremental.update(memoryview(piece))
    whole = new_checksum(algorithm)
    whole.update(b"".join(pieces))
    assert incremental.digest() == whole.digest()
    assert incremental.b64() == whole.b64()


@settings(max_examples=150, deadline=None)
@given(algorithm=st.sampled_from(CRCS), a=st.binary(max_size=500), b=st.binary(max_size=500))
def test_combined_crc_equals_crc_of_concatenation(
    algorithm: ChecksumAlgorithm, a: bytes, b: bytes
) -> None:
    crc = ONE_SHOT_CRC[algorithm]
    assert combine_crc(algorithm, crc(a), crc(b), len(b)) == crc(a + b)


@pytest.mark.parametrize("algorithm", CRCS)
def test_combining_across_a_large_part_matches_awscrt(algorithm: ChecksumAlgorithm) -> None:
    a, b = b"part one" * 1000, bytes(range(256)) * 4096
    crc = ONE_SHOT_CRC[algorithm]
    assert combine_crc(algorithm, crc(a), crc(b), len(b)) == crc(a + b)


def test_combining_a_sha_is_refused() -> None:
    with pytest.raises(ValueError):
        combine_crc(ChecksumAlgorithm.SHA256, 0, 0, 0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("crc32", ChecksumAlgorithm.CRC32),
        ("CRC32C", ChecksumAlgorithm.CRC32C),
        ("Crc64Nvme", ChecksumAlgorithm.CRC64NVME),
        (" sha1 ", ChecksumAlgorithm.SHA1),
        ("SHA256", ChecksumAlgorithm.SHA256),
    ],
)
def test_algorithm_header_values_parse_case_insensitively(
    value: str, expected: ChecksumAlgorithm
) -> None:
    assert ChecksumAlgorithm.from_header_value(value) is expected


@pytest.mark.parametrize("value", ["md5", "", "crc", "xxhash64"])
def test_unknown_algorithm_is_invalid_request(value: str) -> None:
    with pytest.raises(S3Error) as info:
        ChecksumAlgorithm.from_header_value(value)
    assert info.value.code == "InvalidRequest"


def test_checksum_headers_map_to_algorithms() -> None:
    assert ChecksumAlgorithm.CRC64NVME.header == "x-amz-checksum-crc64nvme"
    assert ChecksumAlgorithm.from_checksum_header("X-Amz-Checksum-CRC32C") is (
        ChecksumAlgorithm.CRC32C
    )
    assert ChecksumAlgorithm.from_checksum_header("x-amz-checksum-type") is None
    assert ChecksumAlgorithm.from_checksum_header("content-md5") is None


def test_checksum_headers_names_each_algorithm_once_and_refuses_unknown_ones() -> None:
    sent = CIMultiDict(
        [
            ("X-Amz-Checksum-CRC32", "a"),
            ("x-amz-checksum-crc32", "b"),  # the same header twice: one algorithm
            ("x-amz-checksum-type", "FULL_OBJECT"),
            ("x-amz-checksum-algorithm", "CRC32"),
            ("x-amz-checksum-mode", "ENABLED"),
            ("Content-Type", "text/plain"),
        ]
    )
    assert checksum_headers(sent) == (ChecksumAlgorithm.CRC32,)
    both = checksum_headers(["x-amz-checksum-sha256", "X-AMZ-CHECKSUM-CRC64NVME"])
    assert set(both) == {ChecksumAlgorithm.SHA256, ChecksumAlgorithm.CRC64NVME}
    assert checksum_headers(["host", "content-length"]) == ()
    for unknown in ("x-amz-checksum-sha512", "X-Amz-Checksum-XXHASH64", "x-amz-checksum-"):
        with pytest.raises(S3Error) as info:
            checksum_headers(["host", unknown])
        assert info.value.code == "InvalidRequest"


def test_valid_checksum_value_decodes() -> None:
    assert decode_checksum(ChecksumAlgorithm.CRC32, "y/Q5Jg==") == bytes.fromhex("cbf43926")


@pytest.mark.parametrize(
    ("algorithm", "value"),
    [
        (ChecksumAlgorithm.CRC32, "not base64!"),
        (ChecksumAlgorithm.CRC32, "AAAAAAAAAAA="),  # 8 bytes: a CRC64's length
        (ChecksumAlgorithm.CRC64NVME, "AAAAAA=="),
        (ChecksumAlgorithm.SHA256, ""),
        (ChecksumAlgorithm.SHA1, "é"),
        (ChecksumAlgorithm.CRC32C, "AAAAAA"),  # missing padding
    ],
)
def test_invalid_checksum_values_are_rejected_naming_the_header(
    algorithm: ChecksumAlgorithm, value: str
) -> None:
    with pytest.raises(S3Error) as info:
        decode_checksum(algorithm, value)
    assert info.value.code == "InvalidRequest"
    assert info.value.message == f"Value for {algorithm.header} header is invalid."
