"""HTTP Range for GetObject, as S3 reads it: one range of bytes, or the whole object."""

from __future__ import annotations

import re
from dataclasses import dataclass

from s3torrent.s3.errors import S3Error

# ASCII: \d would take any script's digits (int() reads them), which no client sends.
_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.ASCII)


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The satisfiable range a Range header asks for; None means the whole object.

    Syntax S3 does not understand (several ranges, other units, garbage) is ignored and the
    whole object is served, as RFC 9110 allows; a well-formed range that starts past the end
    is 416 InvalidRange.
    """
    if header is None:
        return None
    m = _RANGE.match(header)
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if len(first) > 20 or len(last) > 20:
        return None
    unsatisfiable = S3Error(
        "InvalidRange",
        extra={"RangeRequested": header.strip(), "ActualObjectSize": str(size)},
        headers={"Content-Range": f"bytes */{size}"},
    )
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        raise unsatisfiable
    end = int(last) if last != "" else size - 1
    return ByteRange(start, min(end, size - 1))
