"""Usage and savings reports from the stored usage counters: records and their formats.

The usage report follows the columns of the AWS S3 usage report (Service, Operation,
UsageType, Resource, StartTime, EndTime, UsageValue) with S3's usage type names; the channel
shows in Operation (GetObject, GetObjectTorrent, GetObject-BitTorrent). Times are UTC, in
ISO 8601; EndTime is exclusive.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from s3torrent.log_output import printable
from s3torrent.metering.meter import OP_BITTORRENT, OP_GET, OP_STORAGE, OP_TORRENT, OP_WEBSEED
from s3torrent.store.usage_rows import HourlyUsage, Traffic

if TYPE_CHECKING:
    from s3torrent.store.meta_usage import UsageMetadata

SERVICE = "s3torrent"
COLUMNS = ("Service", "Operation", "UsageType", "Resource", "StartTime", "EndTime", "UsageValue")
Granularity = Literal["hour", "day"]
PERIOD: dict[str, int] = {"hour": 3600, "day": 86400}
GIB = 1 << 30  # egress is priced per GB of 2^30 bytes, as AWS bills it

REQUESTS_TIER1 = "Requests-Tier1"
REQUESTS_TIER2 = "Requests-Tier2"
BYTES_OUT = "DataTransfer-Out-Bytes"
BYTES_IN = "DataTransfer-In-Bytes"
STORAGE = "TimedStorage-ByteHrs"
USAGE_TYPE_ORDER = (REQUESTS_TIER1, REQUESTS_TIER2, BYTES_OUT, BYTES_IN, STORAGE)

# PUT, COPY, POST and LIST requests; everything else (GET, HEAD, DELETE, ...) is Tier 2.
TIER1_OPERATIONS = frozenset({
    "PutObject", "CopyObject", "CreateMultipartUpload", "UploadPart", "UploadPartCopy",
    "CompleteMultipartUpload", "CreateBucket", "PutBucketAcl", "PutObjectAcl",
    "PutBucketPolicy", "PutPublicAccessBlock", "DeleteObjects", "PostObject", "PutBucketCors",
    "ListBuckets", "ListObjects", "ListObjectsV2", "ListObjectVersions",
    "ListMultipartUploads", "ListParts",
})  # fmt: skip


class ReportError(ValueError):
    """A report parameter is not acceptable; the message says which and why."""


def request_tier(operation: str) -> str:
    return REQUESTS_TIER1 if operation in TIER1_OPERATIONS else REQUESTS_TIER2


def parse_time(value: str) -> int:
    """An ISO 8601 date or date-time (UTC unless it says otherwise) as epoch seconds."""
    text = value.strip()
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(
            f"{value!r} is not a date or time (use YYYY-MM-DD or YYYY-MM-DDTHH:MM, UTC)"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    try:
        # Reports name their period in UTC (iso): a time outside its calendar cannot be.
        t = t.astimezone(UTC)
    except OverflowError:
        raise ReportError(f"{value!r} is outside the years 1 to 9999 in UTC") from None
    return int(t.timestamp())


def iso(epoch: int) -> str:
    """Epoch seconds as ISO 8601 in UTC, with a four-digit year (strftime's %Y is not)."""
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None).isoformat("T", "seconds") + "Z"


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """Which usage to report: [start, end) in epoch seconds, buckets (None: all), period."""

    start: int | None = None
    end: int | None = None
    buckets: frozenset[str] | None = None
    by: Granularity = "day"
    # Usage is stored by bucket name, and a deleted bucket's name may be taken by another
    # user: per name, the created_at of the bucket that has it now, whose stored counts
    # alone a user's report shows (each row says which bucket of its name it counts,
    # `bucket_created`). None: every bucket of the name (root and admins, whose reports
    # cover the name's whole history).
    created: Mapping[str, float] | None = None

    def shows(self, bucket: str, created: float) -> bool:
        """Whether counts of the bucket `bucket` created at `created` belong in this report."""
        return self.created is None or self.created.get(bucket) == created

    def __post_init__(self) -> None:
        if self.by not in PERIOD:
            raise ReportError(f"by must be 'hour' or 'day', not {self.by!r}")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ReportError("the end of the period must be after its start")


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One line of the usage report."""

    operation: str
    usage_type: str
    resource: str
    start: int
    end: int
    value: float

    def columns(self) -> dict[str, str]:
        return {
            "Service": SERVICE,
            "Operation": self.operation,
            "UsageType": self.usage_type,
            "Resource": self.resource,
            "StartTime": iso(self.start),
            "EndTime": iso(self.end),
            "UsageValue": number(self.value),
        }

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = self.columns()
        row["UsageValue"] = int(self.value) if float(self.value).is_integer() else self.value
        return row


def number(value: float) -> str:
    """A usage value as text: integers exactly, fractions to six decimals."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".")


async def load_usage(meta: UsageMetadata, q: UsageQuery) -> list[UsageRecord]:
    """The usage records of q, from the stored hourly counters."""
    return usage_records(await meta.hourly_usage(q.start, q.end, q.buckets), q)


def usage_records(hours: Iterable[HourlyUsage], q: UsageQuery) -> list[UsageRecord]:
    """The usage records of q, one per period, bucket, operation and usage type."""
    period = PERIOD[q.by]
    sums: dict[tuple[int, str, str], list[float]] = {}
    for h in hours:
        if not q.shows(h.bucket, h.bucket_created):
            continue
        start = h.hour - h.hour % period
        acc = sums.setdefault((start, h.bucket, h.operation), [0, 0, 0, 0.0])
        acc[0] += h.requests
        acc[1] += h.bytes_out
        acc[2] += h.bytes_in
        acc[3] += h.byte_hours
    records: list[UsageRecord] = []
    for (start, bucket, op), (reqs, out, in_, byte_hours) in sorted(sums.items()):
        end = start + period
        if op == OP_STORAGE:
            records.append(UsageRecord(op, STORAGE, bucket, start, end, byte_hours))
            continue
        if reqs:
            records.append(UsageRecord(op, request_tier(op), bucket, start, end, reqs))
        if out:
            records.append(UsageRecord(op, BYTES_OUT, bucket, start, end, out))
        if in_:
            records.append(UsageRecord(op, BYTES_IN, bucket, start, end, in_))
    return records


def totals(records: Iterable[UsageRecord]) -> dict[str, float]:
    """Sum of UsageValue per usage type, in report order."""
    out: dict[str, float] = dict.fromkeys(USAGE_TYPE_ORDER, 0)
    for r in records:
        out[r.usage_type] = out.get(r.usage_type, 0) + r.value
    return out


def usage_csv(records: Iterable[UsageRecord]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow(r.columns())
    return buf.getvalue()


def usage_json(records: list[UsageRecord], q: UsageQuery) -> dict[str, Any]:
    return {
        "from": iso(q.start) if q.start is not None else None,
        "to": iso(q.end) if q.end is not None else None,
        "by": q.by,
        "rows": [r.to_json() for r in records],
        "totals": {k: int(v) if float(v).is_integer() else v for k, v in totals(records).items()},
    }


def human_bytes(n: float) -> str:
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    value = float(n)
    for unit in units:
        if abs(value) < 1024 or unit == units[-1]:
            return f"{int(value)} B" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_value(usage_type: str, value: float) -> str:
    if usage_type in (BYTES_OUT, BYTES_IN):
        return human_bytes(value)
    if usage_type == STORAGE:
        return human_bytes(value) + "-h"
    return f"{int(value):,}"


def table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    """Aligned text columns; the columns in `right` are right-aligned."""
    # Object keys are a bucket owner's to choose: no control character reaches a terminal.
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: list[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)]) + "\n"


def usage_table(records: list[UsageRecord], q: UsageQuery) -> str:
    if not records:
        return "No usage recorded for this period.\n"
    fmt = "%Y-%m-%d %H:00" if q.by == "hour" else "%Y-%m-%d"
    rows = [
        [
            datetime.fromtimestamp(r.start, UTC).strftime(fmt),
            r.resource or "-",
            r.operation,
            r.usage_type,
            human_value(r.usage_type, r.value),
        ]
        for r in records
    ]
    text = table(["Period (UTC)", "Bucket", "Operation", "UsageType", "Usage"], rows, {4})
    total_rows = [[k, human_value(k, v)] for k, v in totals(records).items() if v]
    return text + "\nTotals\n" + table(["UsageType", "Usage"], total_rows, {1})


# ---- savings ----


@dataclass(frozen=True, slots=True)
class ObjectSavings:
    """What the origin sent of one object, by channel, and what its swarm delivered."""

    bucket: str
    key: str
    rest_requests: int  # GetObject
    rest_bytes: int
    torrent_file_requests: int  # GetObjectTorrent
    seeder_requests: int  # GetObject-BitTorrent: pieces the seeder sent
    seeder_bytes: int
    swarm_completed: int
    swarm_downloaded: int  # what the swarm's peers reported downloading, from any source
    swarm_uploaded: int
    price_per_gb: float
    web_seed_requests: int = 0  # GetObject-WebSeed: range GETs of torrent clients and browsers
    web_seed_bytes: int = 0

    @property
    def origin_bytes(self) -> int:
        return self.rest_bytes + self.web_seed_bytes + self.seeder_bytes

    @property
    def offloaded_bytes(self) -> int:
        """Bytes peers delivered that the origin did not send (a lower bound).

        Plain GETs may have gone to someone outside the swarm; every origin byte of the
        object is assumed to have gone to the swarm all the same.
        """
        return max(0, self.swarm_downloaded - self.origin_bytes)

    @property
    def offload_ratio(self) -> float:
        delivered = self.offloaded_bytes + self.origin_bytes
        return self.offloaded_bytes / delivered if delivered else 0.0

    @property
    def cost_avoided(self) -> float:
        return self.offloaded_bytes / GIB * self.price_per_gb

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            origin_bytes=self.origin_bytes,
            offloaded_bytes=self.offloaded_bytes,
            offload_ratio=round(self.offload_ratio, 6),
            cost_avoided=round(self.cost_avoided, 6),
        )
        return d


async def load_savings(
    meta: UsageMetadata,
    *,
    buckets: frozenset[str] | None = None,
    key: str | None = None,
    price_per_gb: float = 0.09,
    current_only: bool = False,
    created: Mapping[str, float] | None = None,
) -> list[ObjectSavings]:
    """One entry per object with origin or swarm traffic, in bucket and key order;
    `current_only`: only keys that are objects now; `created`: per bucket name, only the
    counts of the bucket created then (a user's report: a reused bucket name's earlier
    objects, their keys and their traffic, were another owner's)."""
    if price_per_gb < 0:
        raise ReportError("the price per GB cannot be negative")
    return savings(await meta.traffic(buckets, key, current_only), price_per_gb, created)


def savings(
    traffic: Traffic, price_per_gb: float, created: Mapping[str, float] | None = None
) -> list[ObjectSavings]:
    """The savings of each object in traffic, in bucket and key order; with `created`,
    of the counts of those buckets (name: created_at) only, else of every bucket a name had."""
    acc: dict[tuple[str, str], dict[str, int]] = {}

    def add(e: dict[str, int], name: str, value: int) -> None:
        e[name] = e.get(name, 0) + value

    for t in traffic.objects:
        if created is None or created.get(t.bucket) == t.bucket_created:
            e = acc.setdefault((t.bucket, t.key), {})
            add(e, t.operation + ".requests", t.requests)
            add(e, t.operation + ".bytes", t.bytes_out)
    for w in traffic.swarms:
        if created is None or created.get(w.bucket) == w.bucket_created:
            e = acc.setdefault((w.bucket, w.key), {})
            add(e, "completed", w.completed)
            add(e, "downloaded", w.downloaded)
            add(e, "uploaded", w.uploaded)
    return [
        ObjectSavings(
            bucket=bucket,
            key=k,
            rest_requests=e.get(OP_GET + ".requests", 0),
            rest_bytes=e.get(OP_GET + ".bytes", 0),
            torrent_file_requests=e.get(OP_TORRENT + ".requests", 0),
            seeder_requests=e.get(OP_BITTORRENT + ".requests", 0),
            seeder_bytes=e.get(OP_BITTORRENT + ".bytes", 0),
            swarm_completed=e.get("completed", 0),
            swarm_downloaded=e.get("downloaded", 0),
            swarm_uploaded=e.get("uploaded", 0),
            price_per_gb=price_per_gb,
            web_seed_requests=e.get(OP_WEBSEED + ".requests", 0),
            web_seed_bytes=e.get(OP_WEBSEED + ".bytes", 0),
        )
        for (bucket, k), e in sorted(acc.items())
    ]


SAVINGS_COLUMNS = (
    "Bucket", "Key", "GetObjectBytes", "WebSeedBytes", "BitTorrentBytes", "SwarmDownloadedBytes",
    "OffloadedBytes", "OffloadRatio", "CostAvoided",
)  # fmt: skip


# What makes a spreadsheet read a cell as a formula (OWASP's "CSV injection" list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """A cell a spreadsheet opens as text: one that would start a formula (an object key
    such as `=cmd|' /C calc'!A0`) gets a leading apostrophe, which spreadsheets read as
    "this is text" and do not show."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def savings_csv(items: Iterable[ObjectSavings]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SAVINGS_COLUMNS)
    for i in items:
        w.writerow([
            csv_text(i.bucket), csv_text(i.key), i.rest_bytes, i.web_seed_bytes, i.seeder_bytes,
            i.swarm_downloaded, i.offloaded_bytes, f"{i.offload_ratio:.4f}",
            f"{i.cost_avoided:.6f}",
        ])  # fmt: skip
    return buf.getvalue()


def savings_json(items: list[ObjectSavings], price_per_gb: float) -> dict[str, Any]:
    return {
        "price_per_gb": price_per_gb,
        "objects": [i.to_json() for i in items],
        "total_offloaded_bytes": sum(i.offloaded_bytes for i in items),
        "total_origin_bytes": sum(i.origin_bytes for i in items),
        "total_cost_avoided": round(sum(i.cost_avoided for i in items), 6),
    }


def savings_table(items: list[ObjectSavings], price_per_gb: float) -> str:
    if not items:
        return "No object traffic recorded.\n"
    rows = [
        [
            f"{i.bucket}/{i.key}",
            human_bytes(i.rest_bytes),
            human_bytes(i.web_seed_bytes),
            human_bytes(i.seeder_bytes),
            human_bytes(i.swarm_downloaded),
            human_bytes(i.offloaded_bytes),
            f"{i.offload_ratio:.1%}",
            f"${i.cost_avoided:,.2f}",
        ]
        for i in items
    ]
    offloaded = sum(i.offloaded_bytes for i in items)
    origin = sum(i.origin_bytes for i in items)
    ratio = offloaded / (offloaded + origin) if offloaded + origin else 0.0
    rows.append(
        [
            "TOTAL",
            human_bytes(sum(i.rest_bytes for i in items)),
            human_bytes(sum(i.web_seed_bytes for i in items)),
            human_bytes(sum(i.seeder_bytes for i in items)),
            human_bytes(sum(i.swarm_downloaded for i in items)),
            human_bytes(offloaded),
            f"{ratio:.1%}",
            f"${sum(i.cost_avoided for i in items):,.2f}",
        ]
    )
    headers = [
        "Object", "GetObject", "Web seed", "BitTorrent", "Swarm got", "Offloaded", "Ratio",
        "Avoided",
    ]  # fmt: skip
    note = f"Egress priced at ${price_per_gb:g} per GB (2^30 bytes); offload is a lower bound.\n"
    return table(headers, rows, {1, 2, 3, 4, 5, 6, 7}) + note
