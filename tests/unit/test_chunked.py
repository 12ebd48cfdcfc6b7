"""aws-chunked decoding: botocore's own writer, AWS's published vectors, splits and fuzzing."""

from __future__ import annotations

import hashlib
import io
import itertools

import pytest
from botocore.httpchecksum import (
    AwsChunkedWrapper,
    CrtCrc32cChecksum,
    CrtCrc32Checksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.s3.checksums import ChecksumAlgorithm, new_checksum
from s3torrent.s3.chunked import AwsChunkedDecoder
from s3torrent.s3.errors import S3Error
from s3torrent.s3.sigv4 import (
    STREAMING_SIGNED_PAYLOAD,
    STREAMING_SIGNED_PAYLOAD_TRAILER,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    VerifiedAuth,
    chunk_string_to_sign,
    hmac_hex,
    signing_key,
    trailer_string_to_sign,
)

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
KEY = signing_key(SECRET, "20130524", "us-east-1")
SCOPE = "20130524/us-east-1/s3/aws4_request"
AMZ_DATE = "20130524T000000Z"


def auth_for(seed: str, payload_hash: str) -> VerifiedAuth:
    return VerifiedAuth(
        access_key="AKIAIOSFODNN7EXAMPLE",
        signing_key=KEY,
        scope=SCOPE,
        amz_date=AMZ_DATE,
        signature=seed,
        payload_hash=payload_hash,
        presigned=False,
    )


def decode(decoder: AwsChunkedDecoder, pieces: list[bytes]) -> bytes:
    out = bytearray()
    for piece in pieces:
        for part in decoder.feed(piece):
            out += part
    decoder.finish()
    return bytes(out)


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    edges = [0, *points, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(edges)]


# ---------------------------------------------------------------- test encoders (from the spec)


def encode_signed(
    data: bytes,
    chunk_size: int,
    seed: str,
    trailers: list[tuple[str, str]] | None = None,
) -> bytes:
    """Signed aws-chunked body following AWS's chunked-upload and trailing-header pages."""
    out = bytearray()
    previous = seed
    chunks = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] + [b""]
    for chunk in chunks:
        sts = chunk_string_to_sign(AMZ_DATE, SCOPE, previous, hashlib.sha256(chunk).hexdigest())
        previous = hmac_hex(KEY, sts)
        out += b"%x;chunk-signature=%s\r\n" % (len(chunk), previous.encode())
        if chunk:
            out += chunk + b"\r\n"
    if trailers is None:
        return bytes(out + b"\r\n")
    canonical = "".join(f"{n}:{v}\n" for n, v in trailers)
    sts = trailer_string_to_sign(
        AMZ_DATE, SCOPE, previous, hashlib.sha256(canonical.encode()).hexdigest()
    )
    for name, value in trailers:
        out += f"{name}:{value}\r\n".encode()
    out += f"x-amz-trailer-signature:{hmac_hex(KEY, sts)}\r\n\r\n".encode()
    return bytes(out)


def botocore_body(data: bytes, checksum_cls: type, name: str, chunk_size: int) -> bytes:
    wrapper = AwsChunkedWrapper(
        io.BytesIO(data), checksum_cls=checksum_cls, checksum_name=name, chunk_size=chunk_size
    )
    return bytes(wrapper.read())


SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
AWS_EXAMPLE_BODY = (
    b"10000;chunk-signature=ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n"
    + b"a" * 65536
    + b"\r\n400;chunk-signature=0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    b"\r\n" + b"a" * 1024 + b"\r\n"
    b"0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"
)
TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
AWS_TRAILER_EXAMPLE_BODY = (
    b"10000;chunk-signature=b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n"
    + b"a" * 65536
    + b"\r\n400;chunk-signature=1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"
    b"\r\n" + b"a" * 1024 + b"\r\n"
    b"0;chunk-signature=2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n"
    b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
    b"x-amz-trailer-signature:63bddb248ad2590c92712055f51b8e78ab024eead08276b24f010b0efd74843f"
    b"\r\n\r\n"
)


def signed_decoder(**kwargs: int) -> AwsChunkedDecoder:
    return AwsChunkedDecoder.for_request(auth_for(SEED, STREAMING_SIGNED_PAYLOAD), **kwargs)


# ---------------------------------------------------------------- published vectors


def test_aws_documented_signed_chunks_decode() -> None:
    decoder = signed_decoder()
    assert decode(decoder, [AWS_EXAMPLE_BODY]) == b"a" * 66560
    assert decoder.done
    assert decoder.decoded_length == 66560
    assert decoder.trailers == {}


def test_aws_documented_signed_trailer_example_decodes() -> None:
    auth = auth_for(TRAILER_SEED, STREAMING_SIGNED_PAYLOAD_TRAILER)
    decoder = AwsChunkedDecoder.for_request(auth)
    assert decode(decoder, [AWS_TRAILER_EXAMPLE_BODY]) == b"a" * 66560
    assert decoder.trailers == {"x-amz-checksum-crc32c": "sOO8/Q=="}
    checksum = new_checksum(ChecksumAlgorithm.CRC32C)
    checksum.update(b"a" * 66560)
    assert checksum.b64() == "sOO8/Q=="


def test_blank_line_before_signed_trailers_is_tolerated() -> None:
    body = AWS_TRAILER_EXAMPLE_BODY.replace(b"\r\nx-amz-checksum", b"\r\n\r\nx-amz-checksum")
    auth = auth_for(TRAILER_SEED, STREAMING_SIGNED_PAYLOAD_TRAILER)
    assert decode(AwsChunkedDecoder.for_request(auth), [body]) == b"a" * 66560


def test_altered_trailer_value_fails_trailer_signature() -> None:
    body = AWS_TRAILER_EXAMPLE_BODY.replace(b"sOO8/Q==", b"AAAAAA==")
    auth = auth_for(TRAILER_SEED, STREAMING_SIGNED_PAYLOAD_TRAILER)
    with pytest.raises(S3Error) as info:
        decode(AwsChunkedDecoder.for_request(auth), [body])
    assert info.value.code == "SignatureDoesNotMatch"


def test_signed_trailer_body_without_trailer_signature_is_incomplete() -> None:
    body = AWS_TRAILER_EXAMPLE_BODY.split(b"x-amz-trailer-signature")[0]
    auth = auth_for(TRAILER_SEED, STREAMING_SIGNED_PAYLOAD_TRAILER)
    with pytest.raises(S3Error) as info:
        decode(AwsChunkedDecoder.for_request(auth), [body])
    assert info.value.code == "IncompleteBody"


def test_signed_chunk_with_wrong_seed_is_rejected() -> None:
    decoder = AwsChunkedDecoder.for_request(auth_for("0" * 64, STREAMING_SIGNED_PAYLOAD))
    with pytest.raises(S3Error) as info:
        decoder.feed(AWS_EXAMPLE_BODY)
    assert info.value.code == "SignatureDoesNotMatch"
    assert info.value.status == 403


@pytest.mark.parametrize("offset", [100, 30000, 65620, 66000])
def test_flipped_payload_byte_fails_chunk_signature(offset: int) -> None:
    body = bytearray(AWS_EXAMPLE_BODY)
    assert body[offset] == ord("a")
    body[offset] = ord("b")
    with pytest.raises(S3Error) as info:
        decode(signed_decoder(), [bytes(body)])
    assert info.value.code == "SignatureDoesNotMatch"


def test_signed_chunk_is_withheld_until_its_signature_verifies() -> None:
    decoder = signed_decoder()
    assert decoder.feed(AWS_EXAMPLE_BODY[:60000]) == []
    first = decoder.feed(AWS_EXAMPLE_BODY[60000:65700])
    assert sum(len(p) for p in first) == 65536


def test_reordered_signed_chunks_are_rejected() -> None:
    data = bytes(range(256)) * 64
    body = encode_signed(data, 4096, SEED)
    first_end = body.index(b"\r\n", body.index(b"\r\n") + 2) + 2
    second_end = body.index(b"\r\n", body.index(b"\r\n", first_end) + 2) + 2
    swapped = body[first_end:second_end] + body[:first_end] + body[second_end:]
    with pytest.raises(S3Error) as info:
        decode(signed_decoder(), [swapped])
    assert info.value.code == "SignatureDoesNotMatch"


# ---------------------------------------------------------------- botocore's writer


@pytest.mark.parametrize(
    ("checksum_cls", "algorithm"),
    [
        (CrtCrc32Checksum, ChecksumAlgorithm.CRC32),
        (CrtCrc32cChecksum, ChecksumAlgorithm.CRC32C),
        (CrtCrc64NvmeChecksum, ChecksumAlgorithm.CRC64NVME),
        (Sha1Checksum, ChecksumAlgorithm.SHA1),
        (Sha256Checksum, ChecksumAlgorithm.SHA256),
    ],
)
@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 5000])
def test_botocore_aws_chunked_bodies_decode_with_their_checksum_trailer(
    checksum_cls: type, algorithm: ChecksumAlgorithm, size: int
) -> None:
    data = bytes((i * 7) % 251 for i in range(size))
    body = botocore_body(data, checksum_cls, algorithm.header, chunk_size=1024)
    decoder = AwsChunkedDecoder(signed=False, trailer=True, expected_length=size)
    assert decode(decoder, [body]) == data
    ours = new_checksum(algorithm)
    ours.update(data)
    assert decoder.trailers == {algorithm.header: ours.b64()}


def test_unsigned_chunks_stream_out_before_the_chunk_ends() -> None:
    body = botocore_body(b"x" * 5000, CrtCrc32Checksum, "x-amz-checksum-crc32", 4096)
    decoder = AwsChunkedDecoder(signed=False, trailer=True)
    head = body.index(b"\r\n") + 2
    assert b"".join(decoder.feed(body[: head + 100])) == b"x" * 100


def test_unsigned_trailer_body_without_trailers_is_accepted() -> None:
    decoder = AwsChunkedDecoder(signed=False, trailer=True)
    assert decode(decoder, [b"3\r\nabc\r\n0\r\n\r\n"]) == b"abc"
    assert decoder.trailers == {}


@settings(max_examples=150, deadline=None)
@given(
    data=st.binary(max_size=3000),
    chunk_size=st.integers(1, 700),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_unsigned_body_decodes_identically_at_any_split(
    data: bytes, chunk_size: int, cuts: list[int]
) -> None:
    body = botocore_body(data, CrtCrc32Checksum, "x-amz-checksum-crc32", chunk_size)
    decoder = AwsChunkedDecoder(signed=False, trailer=True, expected_length=len(data))
    assert decode(decoder, split(body, cuts)) == data
    assert "x-amz-checksum-crc32" in decoder.trailers


@settings(max_examples=120, deadline=None)
@given(
    data=st.binary(max_size=3000),
    chunk_size=st.integers(1, 900),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    with_trailer=st.booleans(),
)
def test_signed_body_decodes_identically_at_any_split(
    data: bytes, chunk_size: int, cuts: list[int], with_trailer: bool
) -> None:
    trailers = [("x-amz-checksum-sha256", "dGVzdA==")] if with_trailer else None
    body = encode_signed(data, chunk_size, SEED, trailers)
    payload = STREAMING_SIGNED_PAYLOAD_TRAILER if with_trailer else STREAMING_SIGNED_PAYLOAD
    decoder = AwsChunkedDecoder.for_request(auth_for(SEED, payload))
    assert decode(decoder, split(body, cuts)) == data
    assert decoder.trailers == dict(trailers or [])


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=1, max_size=600), chunk_size=st.integers(1, 200), st_data=st.data())
def test_truncated_body_is_incomplete(data: bytes, chunk_size: int, st_data: st.DataObject) -> None:
    body = encode_signed(data, chunk_size, SEED)
    # The last two bytes are the closing CRLF, which S3-style leniency lets a client omit.
    cut = st_data.draw(st.integers(0, len(body) - 3))
    decoder = signed_decoder()
    decoder.feed(body[:cut])
    with pytest.raises(S3Error) as info:
        decoder.finish()
    assert info.value.code == "IncompleteBody"


# ---------------------------------------------------------------- malformed framing


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"zz\r\nab\r\n0\r\n\r\n", "InvalidRequest"),
        (b"\r\nab\r\n0\r\n\r\n", "InvalidRequest"),
        (b"2\nab\r\n0\r\n\r\n", "InvalidRequest"),
        (b"2\r\nabc\r\n0\r\n\r\n", "InvalidRequest"),
        (b"2\r\nab0\r\n\r\n", "InvalidRequest"),
        (b"2\r\nab\r\n0\r\n\r\nextra", "InvalidRequest"),
        (b"1000001\r\n", "InvalidChunkSizeError"),
        (b"2\r\nab", "IncompleteBody"),
        (b"", "IncompleteBody"),
    ],
)
def test_malformed_unsigned_framing_gets_s3_errors(body: bytes, code: str) -> None:
    decoder = AwsChunkedDecoder(signed=False, trailer=False)
    with pytest.raises(S3Error) as info:
        decode(decoder, [body])
    assert info.value.code == code


def test_signed_body_without_chunk_signature_is_malformed() -> None:
    with pytest.raises(S3Error) as info:
        decode(signed_decoder(), [b"2\r\nab\r\n0\r\n\r\n"])
    assert info.value.code == "InvalidRequest"


def test_chunk_larger_than_limit_is_rejected_before_buffering() -> None:
    decoder = signed_decoder(max_chunk_size=1024)
    with pytest.raises(S3Error) as info:
        decoder.feed(b"401;chunk-signature=" + b"0" * 64 + b"\r\n")
    assert info.value.code == "InvalidChunkSizeError"


def test_endless_chunk_header_line_is_rejected() -> None:
    decoder = AwsChunkedDecoder(signed=False, trailer=False)
    decoder.feed(b"1;" + b"x" * 4000)
    with pytest.raises(S3Error) as info:
        decoder.feed(b"x" * 200)
    assert info.value.code == "InvalidRequest"


def test_oversized_trailers_are_rejected() -> None:
    decoder = AwsChunkedDecoder(signed=False, trailer=True, max_trailer_bytes=100)
    with pytest.raises(S3Error) as info:
        decoder.feed(b"0\r\nx-amz-meta:" + b"v" * 200 + b"\r\n\r\n")
    assert info.value.code == "InvalidRequest"


@pytest.mark.parametrize("expected", [4, 6])
def test_decoded_length_must_match_declared_length(expected: int) -> None:
    decoder = AwsChunkedDecoder(signed=False, trailer=False, expected_length=expected)
    with pytest.raises(S3Error) as info:
        decode(decoder, [b"5\r\nhello\r\n0\r\n\r\n"])
    assert info.value.code == "IncompleteBody"


def test_signed_decoder_requires_auth() -> None:
    with pytest.raises(ValueError):
        AwsChunkedDecoder(signed=True, trailer=False)
    with pytest.raises(ValueError):
        AwsChunkedDecoder.for_request(auth_for(SEED, "UNSIGNED-PAYLOAD"))


# ---------------------------------------------------------------- fuzzing


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.binary(max_size=64), max_size=8),
    signed=st.booleans(),
    trailer=st.booleans(),
)
def test_garbage_never_raises_anything_but_s3_error(
    pieces: list[bytes], signed: bool, trailer: bool
) -> None:
    payload = STREAMING_SIGNED_PAYLOAD_TRAILER if trailer else STREAMING_SIGNED_PAYLOAD
    decoder = AwsChunkedDecoder(
        signed=signed, trailer=trailer, auth=auth_for(SEED, payload), max_chunk_size=4096
    )
    try:
        for piece in pieces:
            decoder.feed(piece)
        decoder.finish()
    except S3Error:
        pass


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300),
    position=st.integers(0, 10_000),
    replacement=st.binary(min_size=0, max_size=3),
    signed=st.booleans(),
)
def test_mutated_valid_bodies_never_raise_anything_but_s3_error(
    data: bytes, position: int, replacement: bytes, signed: bool
) -> None:
    if signed:
        body = encode_signed(data, 64, SEED, [("x-amz-checksum-crc32", "AAAAAA==")])
        decoder = AwsChunkedDecoder.for_request(auth_for(SEED, STREAMING_SIGNED_PAYLOAD_TRAILER))
    else:
        body = botocore_body(data, CrtCrc32Checksum, "x-amz-checksum-crc32", 64)
        decoder = AwsChunkedDecoder.for_request(auth_for(SEED, STREAMING_UNSIGNED_PAYLOAD_TRAILER))
    at = position % (len(body) + 1)
    mutated = body[:at] + replacement + body[at + len(replacement) :]
    try:
        out = decode(decoder, [mutated])
    except S3Error:
        return
    if signed:
        # Whatever got through a signed body's checks must be exactly what was signed.
        assert out == data


# ---------------------------------------------------------------- declared trailers


def _trailer_error(decoder: AwsChunkedDecoder, body: bytes) -> S3Error:
    with pytest.raises(S3Error) as info:
        decode(decoder, [body])
    return info.value


@pytest.mark.parametrize("signed", [False, True])
def test_declared_trailer_that_never_arrives_is_malformed_trailer(signed: bool) -> None:
    if signed:
        auth = auth_for(SEED, STREAMING_SIGNED_PAYLOAD_TRAILER)
        body = encode_signed(b"abc", 2, SEED, trailers=[])
        decoder = AwsChunkedDecoder.for_request(auth, declared_trailers=["x-amz-checksum-crc32"])
    else:
        body = b"3\r\nabc\r\n0\r\n\r\n"
        decoder = AwsChunkedDecoder(
            signed=False, trailer=True, declared_trailers=["x-amz-checksum-crc32"]
        )
    err = _trailer_error(decoder, body)
    assert (err.code, err.status) == ("MalformedTrailerError", 400)
    assert err.extra["TrailerHeader"] == "x-amz-checksum-crc32"


def test_body_ending_right_after_final_chunk_misses_its_declared_trailer() -> None:
    decoder = AwsChunkedDecoder(
        signed=False, trailer=True, declared_trailers=["x-amz-checksum-crc32"]
    )
    assert _trailer_error(decoder, b"3\r\nabc\r\n0\r\n").code == "MalformedTrailerError"


def test_other_trailer_than_the_declared_one_is_malformed_trailer() -> None:
    body = botocore_body(b"abc", Sha256Checksum, "x-amz-checksum-sha256", 1024)
    decoder = AwsChunkedDecoder(
        signed=False, trailer=True, declared_trailers=["x-amz-checksum-crc32"]
    )
    err = _trailer_error(decoder, body)
    assert err.code == "MalformedTrailerError"
    assert err.extra["TrailerHeader"] == "x-amz-checksum-crc32"


def test_undeclared_trailer_is_malformed_trailer() -> None:
    body = botocore_body(b"abc", CrtCrc32Checksum, "x-amz-checksum-crc32", 1024)
    decoder = AwsChunkedDecoder(signed=False, trailer=True, declared_trailers=())
    err = _trailer_error(decoder, body)
    assert err.extra["TrailerHeader"] == "x-amz-checksum-crc32"


def test_declared_trailer_on_a_body_without_trailer_section_is_refused_up_front() -> None:
    with pytest.raises(S3Error) as info:
        AwsChunkedDecoder.for_request(
            auth_for(SEED, STREAMING_SIGNED_PAYLOAD), declared_trailers=["x-amz-checksum-crc32"]
        )
    assert info.value.code == "MalformedTrailerError"


def test_declared_trailer_that_arrives_is_accepted_in_any_case() -> None:
    body = botocore_body(b"abc", CrtCrc32Checksum, "x-amz-checksum-crc32", 1024)
    decoder = AwsChunkedDecoder(
        signed=False, trailer=True, declared_trailers=["X-Amz-Checksum-CRC32"]
    )
    assert decode(decoder, [body]) == b"abc"
    auth = auth_for(TRAILER_SEED, STREAMING_SIGNED_PAYLOAD_TRAILER)
    signed = AwsChunkedDecoder.for_request(auth, declared_trailers=["x-amz-checksum-crc32c"])
    assert decode(signed, [AWS_TRAILER_EXAMPLE_BODY]) == b"a" * 66560


# ---------------------------------------------------------------- many small chunks in one feed


def test_many_small_chunks_in_one_feed_decode_like_any_split() -> None:
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (n, bytes([97 + n % 26]) * n) for n in range(1, 40))
    body += b"0\r\n\r\n"
    expected = b"".join(bytes([97 + n % 26]) * n for n in range(1, 40))
    whole = AwsChunkedDecoder(signed=False, trailer=False, expected_length=len(expected))
    assert decode(whole, [body]) == expected
    bytewise = AwsChunkedDecoder(signed=False, trailer=False)
    assert decode(bytewise, [body[i : i + 1] for i in range(len(body))]) == expected


def test_many_small_chunks_beyond_declared_length_are_refused() -> None:
    decoder = AwsChunkedDecoder(signed=False, trailer=False, expected_length=5)
    with pytest.raises(S3Error) as info:
        decoder.feed(b"1\r\na\r\n" * 10 + b"0\r\n\r\n")
    assert info.value.code == "IncompleteBody"
    assert decoder.decoded_length <= 6


def test_oversized_chunk_after_small_ones_is_refused() -> None:
    decoder = AwsChunkedDecoder(signed=False, trailer=False, max_chunk_size=1)
    with pytest.raises(S3Error) as info:
        decoder.feed(b"1\r\na\r\n" * 3 + b"2\r\nbb\r\n0\r\n\r\n")
    assert info.value.code == "InvalidChunkSizeError"


def test_small_chunk_without_its_crlf_is_malformed() -> None:
    decoder = AwsChunkedDecoder(signed=False, trailer=False)
    with pytest.raises(S3Error) as info:
        decoder.feed(b"1\r\na\r\n1\r\nbXX0\r\n\r\n")
    assert info.value.code == "InvalidRequest"


@pytest.mark.parametrize("read_size", [1, 100, 1460, 65536])
def test_a_signed_chunk_sent_in_small_reads_holds_about_its_own_size(read_size: int) -> None:
    """Until its signature is checked a chunk is held; in reads of a byte each it once held
    about 350 times its size (a view and a bytes object per read)."""
    import tracemalloc

    data = bytes(range(256)) * 1024  # one 256 KiB chunk
    body = encode_signed(data, len(data), SEED)
    decoder = AwsChunkedDecoder.for_request(auth_for(SEED, STREAMING_SIGNED_PAYLOAD))
    out = bytearray()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        last_data_byte = body.index(b"\r\n") + 2 + len(data) - 1
        for at in range(0, last_data_byte, read_size):
            # A fresh bytes object per read, as recv() gives.
            for part in decoder.feed(
                bytes(bytearray(body[at : min(at + read_size, last_data_byte)]))
            ):
                out += part
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert not out  # nothing is given out before the signature is checked
    assert held < 1.3 * len(data) + 2 * read_size, (held, len(data))
    for part in decoder.feed(body[last_data_byte:]):
        out += part
    decoder.finish()
    assert bytes(out) == data
