"""Query parameters parsed per endpoint, before any handler runs.

Handlers receive typed values; a malformed number or header override is refused here with
S3's error, the same way for every endpoint. Numbers are ASCII digits only, and bounded in
length: `str.isdigit()` accepts Unicode digits (`²`) and Python refuses to convert very long
digit strings, and neither may reach a handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from s3torrent.s3.errors import S3Error
from s3torrent.s3.numbers import ascii_int
from s3torrent.s3.routing import Endpoint
from s3torrent.s3.versioning import parse_version_id

MAX_PARTS = 10_000

RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def capped_int(query: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    """A count or marker parameter (query or header): default when absent, InvalidArgument
    when not a non-negative integer, at most `maximum` (S3 pages larger ones by it)."""
    raw = query.get(name)
    if raw is None:
        return default
    value = ascii_int(raw)
    if value is None:
        raise S3Error(
            "InvalidArgument",
            f"Provided {name} not an integer or within integer range",
            extra={"ArgumentName": name, "ArgumentValue": raw[:64]},
        )
    return min(value, maximum)


def _part_number(raw: str) -> int:
    value = ascii_int(raw)
    if value is None or not 1 <= value <= MAX_PARTS:
        raise S3Error(
            "InvalidArgument",
            f"Part number must be an integer between 1 and {MAX_PARTS}, inclusive",
            extra={"ArgumentName": "partNumber", "ArgumentValue": raw[:64]},
        )
    return value


def _url_encoding(query: Mapping[str, str]) -> bool:
    enc = query.get("encoding-type")
    if enc is not None and enc != "url":
        raise S3Error(
            "InvalidArgument",
            "Invalid Encoding Method specified in Request",
            extra={"ArgumentName": "encoding-type", "ArgumentValue": enc[:64]},
        )
    return enc == "url"


@dataclass(frozen=True, slots=True)
class NoParams:
    """An endpoint that takes no query parameters of its own."""


@dataclass(frozen=True, slots=True)
class ListParams:
    """ListObjects v1/v2, ListObjectVersions, ListBuckets."""

    prefix: str = ""
    delimiter: str = ""
    max_keys: int = 1000
    url_encode: bool = False
    marker: str = ""
    continuation_token: str | None = None
    start_after: str = ""
    fetch_owner: bool = False
    key_marker: str = ""
    version_id_marker: str | None = None
    max_keys_asked: int = 1000
    """max-keys as sent (ListObjectVersions echoes it; a page holds at most max_keys)."""
    delimiter_sent: bool = False
    """delimiter= was in the query, if empty (ListObjectVersions echoes <Delimiter/>)."""


@dataclass(frozen=True, slots=True)
class BucketListParams:
    """ListBuckets."""

    prefix: str = ""
    max_buckets: int | None = None
    continuation_token: str | None = None
    bucket_region: str | None = None


@dataclass(frozen=True, slots=True)
class UploadParams:
    """An operation on one multipart upload (parts, complete, abort, list parts)."""

    upload_id: str
    part_number: int | None = None
    part_number_marker: int = 0
    max_parts: int = 1000


@dataclass(frozen=True, slots=True)
class UploadListParams:
    """ListMultipartUploads."""

    prefix: str
    delimiter: str
    key_marker: str
    upload_id_marker: str
    max_uploads: int
    url_encode: bool


@dataclass(frozen=True, slots=True)
class ObjectReadParams:
    """GetObject, HeadObject and GetObjectTorrent."""

    part_number: int | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    """Response header -> value, from the response-* parameters."""
    torrent_format: str | None = None
    magnet_form: str | None = None
    """GetObjectTorrent with format=magnet: which info-hashes the magnet names (`magnet=`)."""


Params = (
    NoParams | BucketListParams | ListParams | UploadParams | UploadListParams | ObjectReadParams
)

NO_PARAMS = NoParams()


_INT32_MAX = 2**31 - 1


def _version_id_marker(query: Mapping[str, str]) -> None:
    """ListObjectVersions' version-id-marker, checked as S3 checks it (after max-keys,
    before encoding-type): it needs a key-marker, which may be empty; it may not be."""
    vid_marker = query.get("version-id-marker")
    if vid_marker is None:
        return
    extra = {"ArgumentName": "version-id-marker", "ArgumentValue": vid_marker[:64]}
    if "key-marker" not in query:
        raise S3Error(
            "InvalidArgument",
            "A version-id marker cannot be specified without a key marker.",
            extra=extra,
        )
    if vid_marker == "":
        raise S3Error("InvalidArgument", "A version-id marker cannot be empty.", extra=extra)
    parse_version_id(vid_marker, "version-id-marker")


def _list_params(query: Mapping[str, str], max_keys_limit: int, versions: bool) -> ListParams:
    raw_max = query.get("max-keys", "1000")
    if versions and raw_max == "":
        raw_max = "1000"  # ListObjectVersions takes max-keys= as absent (recorded from AWS)
    max_keys = ascii_int(raw_max)
    negative = raw_max.startswith("-") and ascii_int(raw_max[1:]) is not None
    if versions and negative:
        # ListObjectVersions words it so (recorded from AWS), naming no value.
        raise S3Error(
            "InvalidArgument", "max-keys cannot be negative", extra={"ArgumentName": "max-keys"}
        )
    if versions and max_keys is not None and max_keys > _INT32_MAX:
        max_keys = None
    if max_keys is None:
        if negative:
            raise S3Error(
                "InvalidArgument",
                "Argument maxKeys must be an integer between 0 and 2147483647",
                extra={"ArgumentName": "maxKeys", "ArgumentValue": raw_max},
            )
        raise S3Error(
            "InvalidArgument",
            "Provided max-keys not an integer or within integer range",
            extra={"ArgumentName": "max-keys", "ArgumentValue": raw_max[:64]},
        )
    # An empty continuation-token starts at the beginning, as if none was sent, and is
    # echoed as sent (as S3 does).
    token = query.get("continuation-token")
    key_marker = query.get("key-marker", "")
    vid_marker = query.get("version-id-marker")
    if versions:
        _version_id_marker(query)
    elif vid_marker and not key_marker:
        raise S3Error(
            "InvalidArgument", "A version-id marker cannot be specified without a key marker."
        )
    url_encode = _url_encoding(query)
    if versions:
        # After encoding-type, as S3 checks them (recorded from AWS).
        for name in ("key-marker", "prefix"):
            if "\x00" in query.get(name, ""):
                raise S3Error(
                    "InvalidArgument",
                    "Value must be a sequence of Unicode characters and cannot include Null.",
                    extra={"ArgumentName": name, "ArgumentValue": query[name][:64]},
                )
    return ListParams(
        prefix=query.get("prefix", ""),
        delimiter=query.get("delimiter", ""),
        max_keys=min(max_keys, max_keys_limit),
        url_encode=url_encode,
        marker=query.get("marker", ""),
        continuation_token=token,
        start_after=query.get("start-after", ""),
        fetch_owner=query.get("fetch-owner", "false").lower() == "true",
        key_marker=key_marker,
        version_id_marker=vid_marker,
        max_keys_asked=max_keys,
        delimiter_sent="delimiter" in query,
    )


MAX_BUCKETS = 10_000


def _bucket_list_params(query: Mapping[str, str]) -> BucketListParams:
    max_buckets = None
    if "max-buckets" in query:
        raw = query["max-buckets"]
        max_buckets = ascii_int(raw)
        if max_buckets is None or not 1 <= max_buckets <= MAX_BUCKETS:
            raise S3Error(
                "InvalidArgument",
                f"max-buckets must be an integer between 1 and {MAX_BUCKETS}",
                extra={"ArgumentName": "max-buckets", "ArgumentValue": raw[:64]},
            )
    return BucketListParams(
        prefix=query.get("prefix", ""),
        max_buckets=max_buckets,
        continuation_token=query.get("continuation-token") or None,
        bucket_region=query.get("bucket-region") or None,
    )


def _upload_params(endpoint: Endpoint, query: Mapping[str, str]) -> UploadParams:
    number = None
    if endpoint in (Endpoint.UploadPart, Endpoint.UploadPartCopy):
        number = _part_number(query.get("partNumber", ""))
    return UploadParams(
        upload_id=query.get("uploadId", ""),
        part_number=number,
        part_number_marker=capped_int(query, "part-number-marker", 0, MAX_PARTS),
        max_parts=capped_int(query, "max-parts", 1000, 1000),
    )


def _object_read_params(query: Mapping[str, str]) -> ObjectReadParams:
    number = None
    if "partNumber" in query:
        raw = query["partNumber"]
        number = ascii_int(raw)
        if number is None:
            raise S3Error(
                "InvalidArgument",
                "Part number must be an integer between 1 and 10000, inclusive",
                extra={"ArgumentName": "partNumber", "ArgumentValue": raw[:64]},
            )
    overrides: dict[str, str] = {}
    for name, header in RESPONSE_OVERRIDES.items():
        value = query.get(name)
        if value is None:
            continue
        if "\r" in value or "\n" in value:
            # A header value may not hold a line break: it would end the header.
            raise S3Error(
                "InvalidArgument",
                f"Header value cannot be represented using ISO-8859-1: {name}",
                extra={"ArgumentName": name},
            )
        overrides[header] = value
    return ObjectReadParams(
        part_number=number,
        overrides=overrides,
        torrent_format=query.get("format"),
        magnet_form=query.get("magnet"),
    )


# The paging parameters of one ListObjects version, which the other does not take: each was
# dropped there, and a client paging by it got its first page again (a V1 listing "after"
# a key by start-after, a V2 one by marker). S3 refuses them with these messages, naming
# the parameter and no value, continuation-token before start-after (recorded from AWS).
_V2_ONLY = "only supported in REST.GET.BUCKET with list-type=2"
_NOT_IN_THIS_LISTING: Mapping[Endpoint, tuple[tuple[str, str], ...]] = {
    Endpoint.ListObjects: (
        ("continuation-token", f"continuation-token {_V2_ONLY}"),
        ("start-after", f"startAfter {_V2_ONLY}"),
    ),
    Endpoint.ListObjectsV2: (("marker", "Marker unsupported with REST.GET.BUCKET in list-type=2"),),
}


def _refuse_other_listing_parameters(endpoint: Endpoint, query: Mapping[str, str]) -> None:
    for name, message in _NOT_IN_THIS_LISTING.get(endpoint, ()):
        if name in query:
            raise S3Error("InvalidArgument", message, extra={"ArgumentName": name})


def parse_params(endpoint: Endpoint, query: Mapping[str, str], max_keys_limit: int) -> Params:
    """The typed parameters of one request to `endpoint`."""
    if endpoint in _LIST_ENDPOINTS:
        _refuse_other_listing_parameters(endpoint, query)
        return _list_params(query, max_keys_limit, endpoint is Endpoint.ListObjectVersions)
    if endpoint is Endpoint.ListBuckets:
        return _bucket_list_params(query)
    if endpoint in _UPLOAD_ENDPOINTS:
        return _upload_params(endpoint, query)
    if endpoint in _OBJECT_READ_ENDPOINTS:
        return _object_read_params(query)
    if endpoint is Endpoint.ListMultipartUploads:
        return UploadListParams(
            prefix=query.get("prefix", ""),
            delimiter=query.get("delimiter", ""),
            key_marker=query.get("key-marker", ""),
            upload_id_marker=query.get("upload-id-marker", ""),
            max_uploads=capped_int(query, "max-uploads", 1000, 1000),
            url_encode=_url_encoding(query),
        )
    return NO_PARAMS


_LIST_ENDPOINTS = frozenset(
    {Endpoint.ListObjects, Endpoint.ListObjectsV2, Endpoint.ListObjectVersions}
)
_UPLOAD_ENDPOINTS = frozenset(
    {
        Endpoint.UploadPart,
        Endpoint.UploadPartCopy,
        Endpoint.CompleteMultipartUpload,
        Endpoint.AbortMultipartUpload,
        Endpoint.ListParts,
    }
)
_OBJECT_READ_ENDPOINTS = frozenset(
    {Endpoint.GetObject, Endpoint.HeadObject, Endpoint.GetObjectTorrent}
)


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """x-amz-copy-source → (bucket, key, versionId or None); URL-encoded, leading / optional."""
    path, _, query = value.partition("?")
    try:
        path = unquote(path, errors="strict")
    except UnicodeDecodeError as exc:
        raise S3Error(
            "InvalidArgument",
            "Invalid copy source encoding",
            extra={"ArgumentName": "x-amz-copy-source"},
        ) from exc
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket or not key:
        raise S3Error(
            "InvalidArgument",
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            extra={"ArgumentName": "x-amz-copy-source", "ArgumentValue": value},
        )
    return bucket, key, _copy_source_version(query, value)


def _copy_source_version(query: str, value: str) -> str | None:
    """The versionId a copy source's query names, its one parameter: any other (a misspelt
    `versionid`, a second parameter) is refused rather than dropped, since dropping it
    copies the current version instead of the one asked for. An empty versionId is kept
    for parse_version_id to refuse."""
    if not query:
        return None
    pairs = parse_qsl(query, keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "versionId":
        raise S3Error(
            "InvalidArgument",
            "The copy source may name a version (?versionId=) and nothing else",
            extra={"ArgumentName": "x-amz-copy-source", "ArgumentValue": value},
        )
    return pairs[0][1]
