"""parse_range: S3's reading of an HTTP Range header against an object size."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3torrent.s3.errors import S3Error
from s3torrent.s3.ranges import ByteRange, parse_range

sizes = st.integers(min_value=0, max_value=10**12)
offsets = st.integers(min_value=0, max_value=10**13)


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, ByteRange(0, 0)),
        ("bytes=0-9", 10, ByteRange(0, 9)),
        ("bytes=0-100", 10, ByteRange(0, 9)),
        ("bytes=3-", 10, ByteRange(3, 9)),
        ("bytes=9-", 10, ByteRange(9, 9)),
        ("bytes=-1", 10, ByteRange(9, 9)),
        ("bytes=-10", 10, ByteRange(0, 9)),
        ("bytes=-11", 10, ByteRange(0, 9)),
        (" bytes = 2 - 4 ", 10, ByteRange(2, 4)),
    ],
)
def test_satisfiable_ranges(header: str, size: int, expected: ByteRange) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    "header",
    [None, "", "bytes=", "bytes=-", "bytes=5-2", "bytes=0-1,3-4", "items=0-1", "bytes=a-b",
     "bytes=0-1-2", "bytes=" + "9" * 21 + "-"],
)  # fmt: skip
def test_unusable_headers_mean_the_whole_object(header: str | None) -> None:
    assert parse_range(header, 10) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=10-", 10), ("bytes=10-20", 10), ("bytes=-0", 10), ("bytes=0-", 0), ("bytes=-5", 0)],
)
def test_unsatisfiable_ranges_are_invalid_range(header: str, size: int) -> None:
    with pytest.raises(S3Error) as exc:
        parse_range(header, size)
    assert exc.value.code == "InvalidRange"
    assert exc.value.status == 416
    assert exc.value.headers["Content-Range"] == f"bytes */{size}"


@given(size=sizes, start=offsets, end=offsets)
def test_first_last_range_is_within_object_or_refused(size: int, start: int, end: int) -> None:
    header = f"bytes={start}-{end}"
    try:
        r = parse_range(header, size)
    except S3Error as exc:
        assert exc.code == "InvalidRange"
        assert start >= size and end >= start
        return
    if end < start:
        assert r is None
        return
    assert r is not None
    assert r.start == start
    assert r.end == min(end, size - 1)
    assert 1 <= r.length <= size


@given(size=sizes, start=offsets)
def test_open_ended_range_runs_to_the_end(size: int, start: int) -> None:
    try:
        r = parse_range(f"bytes={start}-", size)
    except S3Error:
        assert start >= size
        return
    assert r == ByteRange(start, size - 1)


@given(size=sizes, suffix=offsets)
def test_suffix_range_is_the_last_bytes(size: int, suffix: int) -> None:
    try:
        r = parse_range(f"bytes=-{suffix}", size)
    except S3Error:
        assert suffix == 0 or size == 0
        return
    assert r is not None
    assert r.end == size - 1
    assert r.length == min(suffix, size)


@given(header=st.text(max_size=60), size=sizes)
def test_any_text_gives_a_range_none_or_invalid_range(header: str, size: int) -> None:
    try:
        r = parse_range(header, size)
    except S3Error as exc:
        assert exc.code == "InvalidRange"
        return
    if r is not None:
        assert 0 <= r.start <= r.end < size
