"""Request bodies: plain or aws-chunked, with every integrity check S3 makes on them.

`RequestBody.chunks()` yields the decoded payload; once it is exhausted, `verify()` checks
Content-MD5, x-amz-content-sha256 and the x-amz-checksum-* value (header or trailer) and
returns the checksum to store.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from aiohttp import web

from s3torrent.s3 import checksums
from s3torrent.s3.chunked import AwsChunkedDecoder
from s3torrent.s3.errors import S3Error
from s3torrent.s3.numbers import ascii_int
from s3torrent.s3.sigv4 import VerifiedAuth, is_sha256_hex, parse_payload_hash

READ_SIZE = 256 * 1024
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
UNSIGNED = "UNSIGNED-PAYLOAD"
_SDK_WITHOUT_CHECKSUM = (
    "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* or "
    "x-amz-trailer headers were found."
)
_SDK_OTHER = "Value for x-amz-sdk-checksum-algorithm header is invalid."
_LENGTH_DIGITS = 19  # a 64-bit byte count


def ascii_length(raw: str) -> int | None:
    """A byte count sent in a header, if it is one: ASCII digits only (int() also reads
    "1_0", "+10" and other scripts' digits)."""
    return ascii_int(raw.strip(), _LENGTH_DIGITS)


def has_integrity_header(headers: Mapping[str, str]) -> bool:
    """Whether the request carries something that checks its body: Content-MD5, an
    x-amz-checksum-<algorithm> value, or a checksum announced for a trailer (x-amz-trailer,
    which the body's decoder requires and RequestBody.verify checks). x-amz-checksum-type,
    -algorithm and -mode name no value and check nothing (they counted), and
    x-amz-sdk-checksum-algorithm only names the algorithm of one of these (a request with
    it alone is refused by RequestBody)."""
    names = [name.lower() for name in headers]
    if "content-md5" in names or "x-amz-trailer" in names:
        return True
    return bool(checksums.checksum_headers(names))


def require_integrity_header(headers: Mapping[str, str]) -> None:
    """The integrity header S3 requires on some configuration writes (DeleteObjects,
    PutBucketCors, PutBucketLifecycleConfiguration): has_integrity_header. The SDKs and the
    CLI send one by themselves; RequestBody.verify checks its value."""
    if not has_integrity_header(headers):
        raise S3Error(
            "InvalidRequest",
            "Missing required header for this request: Content-MD5 or x-amz-checksum-*",
        )


def payload_hash_of(request: web.Request, auth: VerifiedAuth | None) -> str:
    """What the request says of its body: a signed request's payload hash, else its
    x-amz-content-sha256 classified as a signed one's (a hex digest lower case), else
    UNSIGNED-PAYLOAD."""
    if auth is not None:
        return auth.payload_hash
    return parse_payload_hash(request.headers.get("x-amz-content-sha256", UNSIGNED).strip())


def decode_content_md5(value: str) -> bytes:
    """A Content-MD5 value's 16 bytes (header or form field); InvalidDigest if it is not."""
    try:
        expected = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise S3Error("InvalidDigest") from exc
    if len(expected) != 16:
        raise S3Error("InvalidDigest")
    return expected


def check_md5(expected: bytes, md5: bytes | None) -> None:
    """BadDigest unless the body's MD5 is the one the client sent."""
    if md5 != expected:
        raise S3Error("BadDigest", "The Content-MD5 you specified did not match what we received.")


def sha256_mismatch(claimed: str, computed: str) -> S3Error:
    return S3Error(
        "XAmzContentSHA256Mismatch",
        extra={"ClientComputedContentSHA256": claimed, "S3ComputedContentSHA256": computed},
    )


@dataclass(frozen=True, slots=True)
class StoredChecksum:
    algorithm: str
    value: str  # base64, as S3 returns it


class RequestBody:
    """One request's body, decoded and verified as it streams."""

    def __init__(
        self,
        request: web.Request,
        auth: VerifiedAuth | None,
        *,
        max_chunk_size: int,
        read_timeout: float,
        default_checksum: checksums.ChecksumAlgorithm | None = None,
    ) -> None:
        """`default_checksum`: computed (and returned by `verify`, to be stored) when the
        request names no checksum: an object's body, which S3 gives a CRC64NVME."""
        self._request = request
        self._auth = auth
        self._read_timeout = read_timeout
        headers = request.headers
        payload_hash = payload_hash_of(request, auth)
        self.payload_hash = payload_hash
        self.aws_chunked = payload_hash.startswith("STREAMING-")
        self._declared_trailer = headers.get("x-amz-trailer", "").strip().lower() or None
        self._decoder: AwsChunkedDecoder | None = None
        if self.aws_chunked:
            signed = payload_hash in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER)
            if signed and auth is None:
                raise S3Error("AccessDenied", "A signed streaming payload needs a signed request.")
            self._decoder = AwsChunkedDecoder(
                signed=signed,
                trailer=payload_hash.endswith("-TRAILER"),
                auth=auth if signed else None,
                max_chunk_size=max_chunk_size,
                declared_trailers=()
                if self._declared_trailer is None
                else (self._declared_trailer,),
            )
        self.length = self._declared_length()
        self._sha256 = hashlib.sha256() if is_sha256_hex(payload_hash) else None
        self._checksum_alg = self._requested_checksum() or default_checksum
        self._checksum = (
            checksums.new_checksum(self._checksum_alg) if self._checksum_alg is not None else None
        )
        self._md5_buffered: bytes | None = None
        self.received = 0

    def _declared_length(self) -> int | None:
        """The payload length: x-amz-decoded-content-length for aws-chunked, else Content-Length."""
        h = self._request.headers
        name = "x-amz-decoded-content-length" if self.aws_chunked else "content-length"
        raw = h.get(name)
        if raw is None:
            return None
        length = ascii_length(raw)
        if length is None:
            raise S3Error("InvalidArgument", f"Invalid {name}: {raw[:32]!r}")
        return length

    def _requested_checksum(self) -> checksums.ChecksumAlgorithm | None:
        h = self._request.headers
        present = list(checksums.checksum_headers(h))
        trailer = self._declared_trailer
        if trailer:
            if not self.aws_chunked:
                raise S3Error("InvalidRequest", "x-amz-trailer needs an aws-chunked body.")
            trailed = [a for a in checksums.ChecksumAlgorithm if a.header == trailer]
            if not trailed:
                raise S3Error("InvalidRequest", f"The trailer {trailer!r} is not supported.")
            present += trailed
        if len(present) > 1:
            raise S3Error(
                "InvalidRequest",
                "Expecting a single x-amz-checksum- header. "
                "Multiple checksum Types are not allowed.",
            )
        # x-amz-sdk-checksum-algorithm names the checksum the request carries, as a header
        # or a trailer: S3 refuses it without one, or naming another algorithm, rather than
        # compute a checksum nobody sent (the client believes its bytes were checked).
        sdk = h.get("x-amz-sdk-checksum-algorithm")
        if sdk is not None and (
            not present or checksums.ChecksumAlgorithm.from_header_value(sdk) is not present[0]
        ):
            raise S3Error("InvalidRequest", _SDK_WITHOUT_CHECKSUM if not present else _SDK_OTHER)
        if present:
            return present[0]
        algo = h.get("x-amz-checksum-algorithm")
        if algo:
            return checksums.ChecksumAlgorithm.from_header_value(algo)
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        stream = self._request.content
        while True:
            try:
                # What has arrived already is taken without a suspension (a small PUT's
                # body usually comes with its headers); otherwise wait, bounded.
                data = stream.read_nowait(READ_SIZE)
                if not data and not stream.at_eof():
                    async with asyncio.timeout(self._read_timeout):
                        data = await stream.read(READ_SIZE)
            except TimeoutError as exc:
                raise S3Error("RequestTimeout") from exc
            except web.RequestPayloadError as exc:
                # A body aiohttp cannot read (bad framing, a client that went away) is the
                # client's fault: 400, never a 500 with a traceback.
                raise S3Error("IncompleteBody", str(exc).strip() or None) from exc
            if not data:
                break
            if self._decoder is not None:
                for piece in self._decoder.feed(data):
                    yield self._account(piece)
            else:
                yield self._account(data)
        if self._decoder is not None:
            self._decoder.finish()
        if self.length is not None and self.received != self.length:
            raise S3Error("IncompleteBody")

    def _account(self, data: bytes | memoryview) -> bytes:
        b = bytes(data)
        self.received += len(b)
        if self.length is not None and self.received > self.length:
            raise S3Error("IncompleteBody", "The body is longer than its declared length.")
        # The checksums below run on the event loop only for small bodies (XML, parts of
        # small PUTs); the object write path feeds its own hashers off the loop instead.
        return b

    def observers(self) -> list[object]:
        """The hashers the object write path must feed with every payload byte."""
        return [h for h in (self._sha256, self._checksum) if h is not None]

    def verify(self, *, md5: bytes | None) -> StoredChecksum | None:
        """After the body is consumed: check every digest the client sent.

        md5 is the body's MD5 when the caller computed it (the object write path does, for
        the ETag); for bodies read with read_all it is computed here.
        """
        h = self._request.headers
        if md5 is None:
            md5 = self._md5_buffered
        if "content-md5" in h:
            check_md5(decode_content_md5(h["content-md5"]), md5)
        if self._sha256 is not None and self._sha256.hexdigest() != self.payload_hash:
            raise sha256_mismatch(self.payload_hash, self._sha256.hexdigest())
        if self._checksum_alg is None or self._checksum is None:
            return None
        alg = self._checksum_alg
        sent = h.get(alg.header)
        if sent is None and self._decoder is not None:
            sent = self._decoder.trailers.get(alg.header)
        if sent is None and self._declared_trailer is not None:
            # The decoder refuses a missing declared trailer; this keeps an unverified
            # checksum from being stored should a body ever bypass it.
            raise S3Error(
                "MalformedTrailerError",
                "The request contained trailing data that was not well-formed or did not "
                "conform to our published schema.",
                extra={"TrailerHeader": self._declared_trailer},
            )
        computed = self._checksum.b64()
        if sent is not None:
            checksums.decode_checksum(alg, sent)
            if sent != computed:
                raise S3Error(
                    "BadDigest",
                    f"The {alg.value} you specified did not match the calculated checksum.",
                )
        return StoredChecksum(algorithm=alg.value, value=computed)

    async def read_all(self, limit: int) -> bytes:
        """A small body (XML) in memory; MaxMessageLengthExceeded beyond limit."""
        if self.length is not None and self.length > limit:
            raise S3Error("MaxMessageLengthExceeded")
        out = bytearray()
        async for chunk in self.chunks():
            out += chunk
            if len(out) > limit:
                raise S3Error("MaxMessageLengthExceeded")
        data = bytes(out)
        for obs in self.observers():
            obs.update(data)  # type: ignore[attr-defined]
        self._md5_buffered = hashlib.md5(data).digest()
        return data
