"""HTTP validators (RFC 9110 section 8.8) as conditional reads compare them: an object's
ETag and Last-Modified against If-Match, If-None-Match, the dates and If-Range."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from s3torrent.store import rows as md

_WEAK = "W/"


def parse_http_date(value: str) -> float | None:
    """The time an HTTP date names; None for anything that is not a date (ignored, as RFC
    9110 asks of If-Modified-Since and If-Unmodified-Since). A date without a zone (the
    asctime form RFC 9110 5.6.7 has recipients accept, or `-0000`) is GMT, as every HTTP
    date is: the email parser leaves it naive, which Python reads in the server's zone."""
    try:
        moment = parsedate_to_datetime(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def etag_matches(header: str, etag: str, *, weak: bool = False) -> bool:
    """Whether a list of entity tags (or `*`) names `etag` (a tag without its quotes is
    taken as S3 takes it). The strong comparison (If-Match: a weak tag `W/"..."` never
    matches) unless `weak` (If-None-Match: `W/"x"` matches `"x"`, RFC 9110 8.8.3.2)."""
    bare = etag.strip('"')
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        if tag.startswith(_WEAK):
            if not weak:
                continue
            tag = tag[len(_WEAK) :]
        if tag.strip('"') == bare:
            return True
    return False


def if_range_holds(value: str, etag: str, last_modified: float) -> bool:
    """RFC 9110 13.1.5: whether a Range may be served under this If-Range. An entity tag
    compares strongly; a date holds only when it is the object's Last-Modified, to the
    second (the resolution Last-Modified is sent with); anything else does not hold, so the
    whole object is sent rather than a range of what may be another one."""
    value = value.strip()
    if value.startswith(('"', _WEAK)):
        return not value.startswith(_WEAK) and value.strip('"') == etag.strip('"')
    when = parse_http_date(value)
    return when is not None and int(when) == int(last_modified)


def requested_range(headers: Mapping[str, str], obj: md.ObjectVersion) -> str | None:
    """The Range a GET or HEAD of `obj` is to be answered with: none when an If-Range does
    not hold for it (RFC 9110 13.1.5; S3 honours If-Range), so a client resuming a download
    of a version that has since changed gets the whole new object, never its bytes from
    the offset it had reached spliced onto the old one's."""
    rng = headers.get("Range")
    if_range = headers.get("If-Range")
    if rng is None or if_range is None:
        return rng
    return rng if if_range_holds(if_range, obj.etag, obj.last_modified) else None
