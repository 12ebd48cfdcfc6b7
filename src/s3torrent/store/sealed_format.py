"""The at-rest format of an encrypted object: chunked AES-256-GCM. Pure: bytes in, bytes out.

A blob holds one or more segments (one for PutObject and copies, one per part for multipart
uploads, joined end to end as plaintext parts are). A segment is the plaintext cut into
64 KiB chunks, each sealed on its own: ciphertext (same length) followed by a 16-byte tag.
The nonce is the segment's prefix (0, or the part number) and the chunk's index, so a data
key never sees one nonce twice; the tag makes a changed, swapped or truncated chunk fail
to open instead of decrypting to wrong bytes.

Why chunks and not one stream: a ranged GET, a web-seed range or a seeder block reads and
opens only the chunks under its bytes (at most 64 KiB of waste at each end), and every byte
sent was authenticated first, which AES-CTR alone cannot promise.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CHUNK = 64 * 1024
TAG = 16
SEALED_CHUNK = CHUNK + TAG
KEY_SIZE = 32
# Binds every chunk to this format (a blob of another format never opens as one of ours).
AAD = b"s3torrent sse chunk v1"


class TamperedBlob(Exception):
    """A chunk that does not open with its key: the blob was changed or truncated."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One independently sealed run of plaintext: its nonce prefix and plaintext size."""

    prefix: int
    size: int


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """Where one chunk lives: plaintext start, sealed offset in the blob, sizes, nonce."""

    prefix: int
    index: int
    plain_start: int
    plain_size: int
    sealed_offset: int

    @property
    def sealed_size(self) -> int:
        return self.plain_size + TAG


def sealed_size(plain_size: int) -> int:
    """A segment's size at rest."""
    return plain_size + TAG * -(-plain_size // CHUNK)


def nonce(prefix: int, index: int) -> bytes:
    return prefix.to_bytes(4, "big") + index.to_bytes(8, "big")


def chunk_refs(segments: Sequence[Segment], offset: int, length: int) -> Iterator[ChunkRef]:
    """The chunks that hold plaintext bytes [offset, offset + length), in order."""
    end = offset + length
    plain_base = sealed_base = 0
    for seg in segments:
        seg_end = plain_base + seg.size
        if seg_end > offset and plain_base < end:
            first = max(0, offset - plain_base) // CHUNK
            last = (min(end, seg_end) - plain_base - 1) // CHUNK
            for index in range(first, last + 1):
                start = index * CHUNK
                yield ChunkRef(
                    prefix=seg.prefix,
                    index=index,
                    plain_start=plain_base + start,
                    plain_size=min(CHUNK, seg.size - start),
                    sealed_offset=sealed_base + index * SEALED_CHUNK,
                )
        plain_base = seg_end
        sealed_base += sealed_size(seg.size)
        if plain_base >= end:
            return


def seal_chunk(
    aead: AESGCM, prefix: int, index: int, plain: bytes | bytearray | memoryview
) -> bytes:
    return aead.encrypt(nonce(prefix, index), plain, AAD)


def open_chunk(aead: AESGCM, ref: ChunkRef, sealed: bytes | memoryview) -> bytes:
    """The plaintext of one chunk; TamperedBlob if it is not what was sealed."""
    if len(sealed) != ref.sealed_size:
        raise TamperedBlob(f"chunk {ref.prefix}/{ref.index} is {len(sealed)} bytes")
    try:
        return aead.decrypt(nonce(ref.prefix, ref.index), sealed, AAD)
    except InvalidTag:
        raise TamperedBlob(f"chunk {ref.prefix}/{ref.index} fails its tag") from None


def seal(key: bytes, data: bytes, prefix: int = 0) -> bytes:
    """A whole segment at once (small objects kept in their metadata row)."""
    sealer = ChunkSealer(key, prefix)
    return bytes(sealer.update(data)) + sealer.finish()


def open_range(
    key: bytes, segments: Sequence[Segment], sealed: bytes, offset: int, length: int
) -> bytes:
    """Plaintext [offset, offset+length) of a sealed blob held in memory."""
    aead = AESGCM(key)
    out = bytearray()
    for ref in chunk_refs(segments, offset, length):
        plain = open_chunk(
            aead, ref, sealed[ref.sealed_offset : ref.sealed_offset + ref.sealed_size]
        )
        out += clip(ref, plain, offset, length)
    return bytes(out)


def clip(ref: ChunkRef, plain: bytes, offset: int, length: int) -> bytes:
    """The part of a chunk's plaintext inside [offset, offset + length)."""
    lo = max(0, offset - ref.plain_start)
    hi = min(ref.plain_size, offset + length - ref.plain_start)
    return plain if lo == 0 and hi == ref.plain_size else plain[lo:hi]


class ChunkSealer:
    """Seals a segment as its plaintext streams in: whole chunks out as soon as they fill."""

    def __init__(self, key: bytes, prefix: int = 0) -> None:
        self._aead = AESGCM(key)
        self._prefix = prefix
        self._index = 0
        self._buf = bytearray()

    def update(self, data: bytes | memoryview) -> bytes | bytearray:
        view = memoryview(data)
        if self._buf:
            take = min(CHUNK - len(self._buf), len(view))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) < CHUNK:
                return b""
        whole = len(view) // CHUNK
        # Sealed straight into one buffer: no copy per chunk.
        out = bytearray((whole + (1 if self._buf else 0)) * SEALED_CHUNK)
        into = memoryview(out)
        pos = 0
        if self._buf:
            self._seal_into(memoryview(self._buf), into[:SEALED_CHUNK])
            self._buf = bytearray()
            pos = SEALED_CHUNK
        for k in range(whole):
            self._seal_into(view[k * CHUNK : (k + 1) * CHUNK], into[pos : pos + SEALED_CHUNK])
            pos += SEALED_CHUNK
        self._buf += view[whole * CHUNK :]
        return out

    def finish(self) -> bytes:
        if not self._buf:
            return b""
        out = seal_chunk(self._aead, self._prefix, self._index, self._buf)
        self._index += 1
        self._buf = bytearray()
        return out

    def _seal_into(self, plain: memoryview, into: memoryview) -> None:
        self._aead.encrypt_into(nonce(self._prefix, self._index), plain, AAD, into)
        self._index += 1
