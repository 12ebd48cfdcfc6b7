"""aws-chunked request bodies (S3 streaming uploads), decoded without I/O.

Framing, per AWS's chunked-upload documentation::

    <hex size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n      repeated
    0[;chunk-signature=<sig>]\\r\\n                          the final, empty chunk
    \\r\\n                                                   without trailers, or
    name:value\\r\\n ... [x-amz-trailer-signature:<sig>\\r\\n] \\r\\n   with trailers

Errors: SignatureDoesNotMatch for a chunk or trailer signature that does not verify,
InvalidChunkSizeError for a chunk above ``max_chunk_size``, IncompleteBody for a body that ends
early or whose decoded length disagrees with ``x-amz-decoded-content-length``,
MalformedTrailerError for trailers that differ from the ones ``x-amz-trailer`` declared, and
InvalidRequest for any other malformed framing.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Collection

from s3torrent.s3.errors import S3Error
from s3torrent.s3.sigv4 import (
    VerifiedAuth,
    chunk_string_to_sign,
    hmac_hex,
    trailer_string_to_sign,
)

DEFAULT_MAX_CHUNK_SIZE = 16 * 1024 * 1024
DEFAULT_MAX_TRAILER_BYTES = 16 * 1024
# Pieces of a signed chunk at least this long are held as views of the reads they came in;
# shorter ones are copied together (AwsChunkedDecoder._hold).
_HOLD_AS_IS = 16 * 1024
MAX_CHUNK_LINE_BYTES = 4096
TRAILER_SIGNATURE = "x-amz-trailer-signature"

_HEX_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
_SIGNATURE = re.compile(rb"chunk-signature=([0-9a-f]{64})")
_TRAILER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")
_CRLF = b"\r\n"
# The chunk line of an unsigned chunk, extensions ignored; bounded like any chunk line
# (hex size, ";", extensions, CRLF within MAX_CHUNK_LINE_BYTES).
_UNSIGNED_CHUNK_LINE = re.compile(
    rb"([0-9a-fA-F]{1,16})(?:;[^\r\n]{0,%d})?\r\n" % (MAX_CHUNK_LINE_BYTES - 19)
)


class _State(enum.Enum):
    CHUNK_LINE = enum.auto()
    DATA = enum.auto()
    DATA_CRLF = enum.auto()
    FINAL_CRLF = enum.auto()
    TRAILERS = enum.auto()
    DONE = enum.auto()


def _malformed(detail: str) -> S3Error:
    return S3Error("InvalidRequest", f"Malformed aws-chunked body: {detail}")


def _malformed_trailer(name: str) -> S3Error:
    return S3Error(
        "MalformedTrailerError",
        "The request contained trailing data that was not well-formed or did not conform "
        "to our published schema.",
        extra={"TrailerHeader": name},
    )


class AwsChunkedDecoder:
    """Feed raw body bytes in, get payload slices out; ``finish`` at end of body.

    Unsigned chunks are emitted as they arrive. Signed chunks are held until their signature
    verifies, so at most one chunk (``max_chunk_size``) is buffered, as S3 itself does.
    Returned slices are memoryviews over the fed bytes: zero-copy, valid indefinitely.
    """

    def __init__(
        self,
        *,
        signed: bool,
        trailer: bool,
        auth: VerifiedAuth | None = None,
        max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE,
        max_trailer_bytes: int = DEFAULT_MAX_TRAILER_BYTES,
        expected_length: int | None = None,
        declared_trailers: Collection[str] | None = None,
    ) -> None:
        """``declared_trailers`` are the names ``x-amz-trailer`` announced: exactly those must
        arrive. None leaves the trailer set unchecked (the caller checks what it needs)."""
        if signed and auth is None:
            raise ValueError("signed aws-chunked decoding needs the request's VerifiedAuth")
        self._signed = signed
        self._trailer = trailer
        self._auth = auth
        self._previous_signature = auth.signature if auth is not None else ""
        self._max_chunk_size = max_chunk_size
        self._max_trailer_bytes = max_trailer_bytes
        self._expected_length = expected_length
        self._declared_trailers = (
            None
            if declared_trailers is None
            else frozenset(name.strip().lower() for name in declared_trailers)
        )
        if self._declared_trailers and not trailer:
            # The body's framing has no trailer section, so the declared one can never arrive.
            raise _malformed_trailer(min(self._declared_trailers))

        self._state = _State.CHUNK_LINE
        self._line = bytearray()
        self._crlf_matched = 0
        self._remaining = 0
        self._chunk_signature = ""
        self._chunk_hash = hashlib.sha256()
        self._pending: list[memoryview] = []
        self._small = bytearray()  # small pieces of the chunk, copied together (_hold)
        self._trailer_bytes = 0
        self._trailer_lines: list[tuple[str, str]] = []
        self._trailer_signature_verified = False
        self._trailers: dict[str, str] = {}
        self._decoded_length = 0

    @classmethod
    def for_request(
        cls,
        auth: VerifiedAuth,
        *,
        max_chunk_size: int = DEFAULT_MAX_CHUNK_SIZE,
        max_trailer_bytes: int = DEFAULT_MAX_TRAILER_BYTES,
        expected_length: int | None = None,
        declared_trailers: Collection[str] | None = None,
    ) -> AwsChunkedDecoder:
        """A decoder for the STREAMING-* flavour named by the request's x-amz-content-sha256."""
        if not auth.chunked:
            raise ValueError(f"{auth.payload_hash!r} is not an aws-chunked payload")
        return cls(
            signed=auth.chunks_signed,
            trailer=auth.has_trailer,
            auth=auth,
            max_chunk_size=max_chunk_size,
            max_trailer_bytes=max_trailer_bytes,
            expected_length=expected_length,
            declared_trailers=declared_trailers,
        )

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    @property
    def trailers(self) -> dict[str, str]:
        """Trailing headers by lowercase name (the trailer signature itself excluded)."""
        return dict(self._trailers)

    @property
    def decoded_length(self) -> int:
        """Payload bytes decoded (and, for signed chunks, verified) so far."""
        return self._decoded_length

    # ------------------------------------------------------------ input

    def feed(self, data: bytes | bytearray | memoryview) -> list[memoryview]:
        """Consume the next piece of the body; return the payload slices it completed."""
        # Slices outlive this call, so they must view bytes nobody can mutate.
        raw = data if isinstance(data, bytes) else bytes(data)
        buffer = memoryview(raw)
        out: list[memoryview] = []
        pos = 0
        end = len(buffer)
        while pos < end:
            state = self._state
            if state is _State.DATA:
                pos = self._take_data(buffer, pos, out)
            elif state is _State.CHUNK_LINE or state is _State.TRAILERS:
                if state is _State.CHUNK_LINE and not self._signed and not self._line:
                    pos = self._take_whole_chunks(raw, buffer, pos, out)
                    if pos == end:
                        break
                line, pos = self._take_line(raw, pos)
                if line is None:
                    break
                if state is _State.CHUNK_LINE:
                    self._on_chunk_line(line)
                else:
                    self._on_trailer_line(line)
            elif state is _State.DATA_CRLF or state is _State.FINAL_CRLF:
                pos = self._take_crlf(buffer, pos)
            else:
                raise _malformed("data after the end of the body")
        return out

    def finish(self) -> None:
        """Declare end of body; raise IncompleteBody unless the body was complete."""
        state = self._state
        if state is _State.FINAL_CRLF:
            # The closing CRLF is pure framing; everything it would close is already checked.
            self._state = _State.DONE
        elif state is _State.TRAILERS and not self._line and self._trailers_complete():
            self._close_trailers()
        if self._state is not _State.DONE:
            raise S3Error("IncompleteBody", "The aws-chunked body ended before its final chunk.")
        if self._expected_length is not None and self._decoded_length != self._expected_length:
            raise S3Error(
                "IncompleteBody",
                "The decoded body length does not match x-amz-decoded-content-length.",
            )

    # ------------------------------------------------------------ framing steps

    def _take_whole_chunks(
        self, raw: bytes, buffer: memoryview, pos: int, out: list[memoryview]
    ) -> int:
        """Unsigned chunks whose line, data and CRLF have all arrived, taken in one step each.

        Tiny chunks would otherwise cost one trip through the state machine per framing
        element; a 1 MB body of one-byte chunks must stay cheap. Anything else (a frame split
        across feeds, the final chunk, bad framing) is left to the state path, which decides.
        """
        match = _UNSIGNED_CHUNK_LINE.match
        limit = self._max_chunk_size
        # Bounded by x-amz-decoded-content-length when declared; the state path reports it.
        room = (
            self._expected_length - self._decoded_length
            if self._expected_length is not None
            else limit * len(raw)
        )
        end = len(raw)
        taken = 0
        while True:
            line = match(raw, pos)
            if line is None:
                break
            size = int(line[1], 16)
            start = line.end()
            stop = start + size
            if (
                not 0 < size <= limit
                or taken + size > room
                or stop + 2 > end
                or raw[stop : stop + 2] != _CRLF
            ):
                break
            out.append(buffer[start:stop])
            taken += size
            pos = stop + 2
        self._decoded_length += taken
        return pos

    def _take_line(self, raw: bytes, pos: int) -> tuple[bytes | None, int]:
        """The next CRLF-terminated line (without CRLF), or None if it is not complete yet."""
        newline = raw.find(b"\n", pos)
        stop = len(raw) if newline < 0 else newline + 1
        taken = stop - pos
        if self._state is _State.TRAILERS:
            self._trailer_bytes += taken
            if self._trailer_bytes > self._max_trailer_bytes:
                raise _malformed("trailing headers are too large")
        elif len(self._line) + taken > MAX_CHUNK_LINE_BYTES:
            raise _malformed("chunk header line is too long")
        self._line += raw[pos:stop]
        if newline < 0:
            return None, stop
        line = bytes(self._line)
        self._line.clear()
        if not line.endswith(_CRLF):
            raise _malformed("line not terminated by CRLF")
        return line[:-2], stop

    def _take_crlf(self, buffer: memoryview, pos: int) -> int:
        while pos < len(buffer) and self._crlf_matched < 2:
            if buffer[pos] != _CRLF[self._crlf_matched]:
                raise _malformed("chunk data not followed by CRLF")
            self._crlf_matched += 1
            pos += 1
        if self._crlf_matched == 2:
            self._crlf_matched = 0
            self._state = _State.CHUNK_LINE if self._state is _State.DATA_CRLF else _State.DONE
        return pos

    def _take_data(self, buffer: memoryview, pos: int, out: list[memoryview]) -> int:
        stop = min(len(buffer), pos + self._remaining)
        piece = buffer[pos:stop]
        self._remaining -= len(piece)
        if self._signed:
            self._chunk_hash.update(piece)
            self._hold(piece)
        else:
            self._emit(piece, out)
        if self._remaining == 0:
            if self._signed:
                self._verify_chunk()
                self._hold_small()
                for held in self._pending:
                    self._emit(held, out)
                self._pending.clear()
            self._state = _State.DATA_CRLF
        return stop

    def _hold(self, piece: memoryview) -> None:
        """Keep a piece of a signed chunk until its signature is checked. A large piece is
        kept as it came (a view, no copy); small ones are copied together, since a view
        of each would keep its own read alive: a chunk sent a byte at a time held about
        350 times its size."""
        if len(piece) >= _HOLD_AS_IS:
            self._hold_small()
            self._pending.append(piece)
            return
        self._small += piece
        if len(self._small) >= _HOLD_AS_IS:
            self._hold_small()

    def _hold_small(self) -> None:
        if self._small:
            self._pending.append(memoryview(bytes(self._small)))
            self._small.clear()

    def _emit(self, piece: memoryview, out: list[memoryview]) -> None:
        self._decoded_length += len(piece)
        if self._expected_length is not None and self._decoded_length > self._expected_length:
            raise S3Error(
                "IncompleteBody",
                "The decoded body is longer than x-amz-decoded-content-length.",
            )
        out.append(piece)

    def _on_chunk_line(self, line: bytes) -> None:
        size_text, _, extensions = line.partition(b";")
        if not _HEX_SIZE.fullmatch(size_text):
            raise _malformed("invalid chunk size")
        size = int(size_text, 16)
        if size > self._max_chunk_size:
            raise S3Error(
                "InvalidChunkSizeError",
                f"Chunk size {size} exceeds the maximum of {self._max_chunk_size} bytes.",
            )
        if self._signed:
            match = _SIGNATURE.fullmatch(extensions)
            if match is None:
                raise _malformed("chunk-signature missing or malformed")
            self._chunk_signature = match.group(1).decode("ascii")
            self._chunk_hash = hashlib.sha256()
        self._remaining = size
        if size:
            self._state = _State.DATA
            return
        if self._signed:
            self._verify_chunk()
        self._state = _State.TRAILERS if self._trailer else _State.FINAL_CRLF

    def _on_trailer_line(self, line: bytes) -> None:
        if not line:
            if self._trailer_lines or self._trailer_signature_verified or not self._signed:
                if not self._trailers_complete():
                    raise _malformed("trailer signature missing")
                self._close_trailers()
            # A signed body may carry a blank line between the final chunk and its trailers.
            return
        if self._trailer_signature_verified:
            raise _malformed("trailing header after the trailer signature")
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise _malformed("non-ASCII trailing header") from None
        name, sep, value = text.partition(":")
        name = name.strip().lower()
        value = value.strip()
        if not sep or not _TRAILER_NAME.fullmatch(name):
            raise _malformed("invalid trailing header line")
        if name == TRAILER_SIGNATURE:
            if not self._signed:
                raise _malformed("trailer signature on an unsigned body")
            self._verify_trailer(value)
            return
        if name in self._trailers:
            raise _malformed(f"repeated trailing header {name}")
        self._trailer_lines.append((name, value))
        self._trailers[name] = value

    def _trailers_complete(self) -> bool:
        return self._trailer_signature_verified or not self._signed

    def _close_trailers(self) -> None:
        """End of the trailer section: what arrived must be what x-amz-trailer declared."""
        declared = self._declared_trailers
        if declared is not None:
            missing = sorted(declared - self._trailers.keys())
            if missing:
                raise _malformed_trailer(missing[0])
            undeclared = sorted(self._trailers.keys() - declared)
            if undeclared:
                raise _malformed_trailer(undeclared[0])
        self._state = _State.DONE

    # ------------------------------------------------------------ signatures

    def _verify_chunk(self) -> None:
        auth = self._auth
        assert auth is not None  # guaranteed by __init__ when signed
        string_to_sign = chunk_string_to_sign(
            auth.amz_date, auth.scope, self._previous_signature, self._chunk_hash.hexdigest()
        )
        self._check_signature(string_to_sign, self._chunk_signature)

    def _verify_trailer(self, provided: str) -> None:
        auth = self._auth
        assert auth is not None
        canonical = "".join(f"{name}:{value}\n" for name, value in self._trailer_lines)
        string_to_sign = trailer_string_to_sign(
            auth.amz_date,
            auth.scope,
            self._previous_signature,
            hashlib.sha256(canonical.encode("ascii")).hexdigest(),
        )
        # AWS's published trailer example was signed with the chunk algorithm name in place of
        # AWS4-HMAC-SHA256-TRAILER (SDKs use the latter). Accepting both costs nothing: the
        # two five-line strings cannot collide with a six-line chunk string to sign.
        documented_variant = string_to_sign.replace(
            "AWS4-HMAC-SHA256-TRAILER", "AWS4-HMAC-SHA256-PAYLOAD", 1
        )
        self._check_signature(string_to_sign, provided, alternative=documented_variant)
        self._trailer_signature_verified = True

    def _check_signature(
        self, string_to_sign: str, provided: str, alternative: str | None = None
    ) -> None:
        auth = self._auth
        assert auth is not None
        given = provided.encode("ascii", "replace")
        candidates = [string_to_sign] if alternative is None else [string_to_sign, alternative]
        if not any(
            hmac.compare_digest(hmac_hex(auth.signing_key, candidate).encode("ascii"), given)
            for candidate in candidates
        ):
            raise S3Error(
                "SignatureDoesNotMatch",
                extra={
                    "AWSAccessKeyId": auth.access_key,
                    "StringToSign": string_to_sign,
                    "SignatureProvided": provided,
                },
            )
        self._previous_signature = provided
