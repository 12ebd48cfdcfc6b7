"""Object checksums S3 clients may send or ask for: CRC32, CRC32C, CRC64NVME, SHA-1, SHA-256."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Protocol

from awscrt import checksums as crt

from s3torrent.s3.errors import S3Error

Buffer = bytes | bytearray | memoryview

_UNSUPPORTED = (
    "Checksum algorithm provided is unsupported. Please try again with any of the valid types: "
    "[CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"
)
_CHECKSUM_PREFIX = "x-amz-checksum-"


class ChecksumAlgorithm(StrEnum):
    CRC32 = "CRC32"
    CRC32C = "CRC32C"
    CRC64NVME = "CRC64NVME"
    SHA1 = "SHA1"
    SHA256 = "SHA256"

    @property
    def header(self) -> str:
        """The request/response header carrying this checksum, e.g. ``x-amz-checksum-crc32``."""
        return _CHECKSUM_PREFIX + self.value.lower()

    @property
    def digest_size(self) -> int:
        return _DIGEST_SIZE[self]

    @property
    def is_crc(self) -> bool:
        return self in _CRC_PARAMETERS

    @classmethod
    def from_header_value(cls, value: str) -> ChecksumAlgorithm:
        """Parse an ``x-amz-checksum-algorithm`` / ``x-amz-sdk-checksum-algorithm`` value."""
        try:
            return cls(value.strip().upper())
        except ValueError:
            raise S3Error("InvalidRequest", _UNSUPPORTED) from None

    @classmethod
    def from_checksum_header(cls, name: str) -> ChecksumAlgorithm | None:
        """The algorithm whose checksum header is ``name`` (any case), or None."""
        lowered = name.strip().lower()
        if not lowered.startswith(_CHECKSUM_PREFIX):
            return None
        try:
            return cls(lowered[len(_CHECKSUM_PREFIX) :].upper())
        except ValueError:
            return None


# What S3 stores with an object written without a checksum (PutObject, a POST form, a
# CopyObject of a source that has none), since December 2024: the object's full CRC64NVME.
DEFAULT_ALGORITHM = ChecksumAlgorithm.CRC64NVME

# x-amz-checksum-* headers that carry no checksum value.
_NOT_A_VALUE = frozenset({"algorithm", "type", "mode"})
_BY_SUFFIX: dict[str, ChecksumAlgorithm] = {a.value.lower(): a for a in ChecksumAlgorithm}


def checksum_headers(headers: Iterable[str]) -> tuple[ChecksumAlgorithm, ...]:
    """The algorithms whose x-amz-checksum-<algorithm> value the named headers carry, each
    once, in one pass over the names. A checksum header of an algorithm not implemented here
    (S3 also knows SHA512, MD5 and the XXHASH family) is refused, as S3 refuses an algorithm
    it does not know: accepted, it would be an integrity check the client asked for and
    never got."""
    present: tuple[ChecksumAlgorithm, ...] = ()
    for name in headers:
        lowered = name.lower()
        if lowered.startswith(_CHECKSUM_PREFIX):
            suffix = lowered[len(_CHECKSUM_PREFIX) :]
            alg = _BY_SUFFIX.get(suffix)
            if alg is not None:
                if alg not in present:
                    present += (alg,)
            elif suffix not in _NOT_A_VALUE:
                raise S3Error("InvalidRequest", _UNSUPPORTED)
    return present


_DIGEST_SIZE: dict[ChecksumAlgorithm, int] = {
    ChecksumAlgorithm.CRC32: 4,
    ChecksumAlgorithm.CRC32C: 4,
    ChecksumAlgorithm.CRC64NVME: 8,
    ChecksumAlgorithm.SHA1: 20,
    ChecksumAlgorithm.SHA256: 32,
}


class Checksum(Protocol):
    """A running checksum; ``digest`` may be called at any point without ending the stream."""

    @property
    def algorithm(self) -> ChecksumAlgorithm: ...

    def update(self, data: Buffer) -> None: ...

    def digest(self) -> bytes: ...

    def b64(self) -> str: ...


class CrcChecksum:
    """A CRC kept as an integer and extended with awscrt's native CRC routines."""

    __slots__ = ("_algorithm", "_crc", "_extend", "_width")

    def __init__(self, algorithm: ChecksumAlgorithm) -> None:
        self._algorithm = algorithm
        self._extend, _, self._width = _CRC_PARAMETERS[algorithm]
        self._crc = 0

    @property
    def algorithm(self) -> ChecksumAlgorithm:
        return self._algorithm

    @property
    def value(self) -> int:
        return self._crc

    def update(self, data: Buffer) -> None:
        if data:
            self._crc = self._extend(data, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(self._width // 8, "big")

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


class HashChecksum:
    """A SHA family checksum backed by hashlib."""

    __slots__ = ("_algorithm", "_hash")

    def __init__(self, algorithm: ChecksumAlgorithm) -> None:
        self._algorithm = algorithm
        self._hash = hashlib.sha1() if algorithm is ChecksumAlgorithm.SHA1 else hashlib.sha256()

    @property
    def algorithm(self) -> ChecksumAlgorithm:
        return self._algorithm

    def update(self, data: Buffer) -> None:
        self._hash.update(data)

    def digest(self) -> bytes:
        return self._hash.digest()

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


def new_checksum(algorithm: ChecksumAlgorithm) -> CrcChecksum | HashChecksum:
    """A fresh running checksum for ``algorithm``."""
    if algorithm.is_crc:
        return CrcChecksum(algorithm)
    return HashChecksum(algorithm)


def without_part_count(value: str) -> str:
    """A COMPOSITE multipart checksum without its "-N" (the checksum of the parts' checksums
    alone, as GetObjectAttributes answers it); any other value as it is. Base64 has no
    "-", so only a part count can follow one."""
    head, dash, count = value.rpartition("-")
    return head if dash and count.isdigit() else value


def decode_checksum(algorithm: ChecksumAlgorithm, b64_value: str) -> bytes:
    """Decode a client-sent base64 checksum, rejecting bad base64 or the wrong digest length."""
    try:
        raw = base64.b64decode(b64_value.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    if len(raw) != algorithm.digest_size:
        raise S3Error("InvalidRequest", f"Value for {algorithm.header} header is invalid.")
    return raw


# Reflected polynomials; all three CRCs start from and finish with all ones, which is what
# lets combine_crc drop the affine terms (they cancel between crc(A) and crc(B)).
_CRC_PARAMETERS: dict[ChecksumAlgorithm, tuple[Callable[[Buffer, int], int], int, int]] = {
    ChecksumAlgorithm.CRC32: (crt.crc32, 0xEDB88320, 32),
    ChecksumAlgorithm.CRC32C: (crt.crc32c, 0x82F63B78, 32),
    ChecksumAlgorithm.CRC64NVME: (crt.crc64nvme, 0x9A6C9329AC4BC9B5, 64),
}


def _multiply_mod_p(a: int, b: int, poly: int, width: int) -> int:
    """a*b modulo the CRC polynomial, both in reflected form (the top bit is x^0)."""
    top = 1 << (width - 1)
    product = 0
    while a:
        if a & top:
            product ^= b
        a = (a << 1) & ((1 << width) - 1)
        b = (b >> 1) ^ poly if b & 1 else b >> 1
    return product


def _x_pow_8n_mod_p(n: int, poly: int, width: int) -> int:
    """x^(8n) mod P by square-and-multiply, so combining costs O(log n), not O(n)."""
    result = 1 << (width - 1)  # x^0
    base = 1 << (width - 9)  # x^8
    while n:
        if n & 1:
            result = _multiply_mod_p(result, base, poly, width)
        base = _multiply_mod_p(base, base, poly, width)
        n >>= 1
    return result


def combine_crc(algorithm: ChecksumAlgorithm, crc_a: int, crc_b: int, len_b: int) -> int:
    """CRC of A||B from CRC(A), CRC(B) and len(B), without touching the bytes."""
    if not algorithm.is_crc:
        raise ValueError(f"{algorithm} is not a CRC")
    if len_b < 0:
        raise ValueError("len_b must be non-negative")
    _, poly, width = _CRC_PARAMETERS[algorithm]
    shift = _x_pow_8n_mod_p(len_b, poly, width)
    return _multiply_mod_p(shift, crc_a, poly, width) ^ crc_b
