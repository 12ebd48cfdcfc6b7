"""HTTP validators (RFC 9110 section 8.8) as conditional reads compare them: an object's
ETag and Last-Modified against If-Match, If-None-Match, the dates and If-Range."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Literal

from s3torrent.s3.errors import S3Error

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


Condition = Literal["If-Match", "If-Unmodified-Since", "If-None-Match", "If-Modified-Since"]
# The conditions whose failure is 412 Precondition Failed on a read; the other two are 304.
PRECONDITIONS: frozenset[Condition] = frozenset({"If-Match", "If-Unmodified-Since"})


def failed_condition(
    headers: Mapping[str, str], etag: str, last_modified: float | None, prefix: str = ""
) -> Condition | None:
    """The condition of a request that does not hold for a representation with these
    validators, in RFC 9110 13.2.2's order (S3's): If-Match, else If-Unmodified-Since;
    then If-None-Match, else If-Modified-Since. None when all hold. `headers` is read
    case-insensitively under `prefix` (CopyObject's `x-amz-copy-source-`).

    If-None-Match compares weakly, If-Match strongly (RFC 9110 13.1.1, 13.1.2); a date
    that does not parse is no condition, and neither date is one for a representation
    without a Last-Modified (`last_modified` None: RFC 9110 13.1.3, 13.1.4)."""
    if_match = headers.get(prefix + "If-Match")
    if if_match is not None:
        if not etag_matches(if_match, etag):
            return "If-Match"
    elif _modified_since(headers.get(prefix + "If-Unmodified-Since"), last_modified):
        return "If-Unmodified-Since"
    if_none = headers.get(prefix + "If-None-Match")
    if if_none is not None:
        if etag_matches(if_none, etag, weak=True):
            return "If-None-Match"
    elif _modified_since(headers.get(prefix + "If-Modified-Since"), last_modified) is False:
        return "If-Modified-Since"
    return None


def raise_failed_condition(
    headers: Mapping[str, str],
    etag: str,
    last_modified: float | None,
    not_modified: Callable[[], Mapping[str, str]],
) -> None:
    """A read's conditions (GetObject, HeadObject, the web seed, `?torrent`): 412
    PreconditionFailed naming the condition, or 304 NotModified with the headers
    `not_modified()` gives (the validators, and what a cache takes from a 304)."""
    failed = failed_condition(headers, etag, last_modified)
    if failed is None:
        return
    if failed in PRECONDITIONS:
        raise S3Error("PreconditionFailed", extra={"Condition": failed})
    raise S3Error("NotModified", headers=dict(not_modified()))


def _modified_since(value: str | None, last_modified: float | None) -> bool | None:
    """Whether a representation changed after an HTTP date (to the second, the resolution
    Last-Modified is sent with); None when there is no date to compare."""
    when = parse_http_date(value) if value else None
    if when is None or last_modified is None:
        return None
    return int(last_modified) > when


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
