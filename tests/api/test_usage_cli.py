"""`s3torrent usage` and `s3torrent savings`: empty database, a week of hourly data, bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from s3torrent.cli import cli
from s3torrent.store import metadata as md
from s3torrent.store.database import Database

DAY0 = 1_714_521_600  # 2024-05-01T00:00:00Z
WEEK = 7 * 24


def run(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A week of hourly usage for two buckets, storage included, and some object traffic."""
    data = tmp_path_factory.mktemp("week")
    db = Database(f"sqlite:///{data / 'metadata.sqlite3'}")

    # fmt: off
    def seed(c: Any) -> None:
        rows = []
        for h in range(WEEK):
            hour = DAY0 + h * 3600
            rows += [
                {
                    "hour": hour,
                    "bucket": "alpha",
                    "operation": "GetObject",
                    "requests": 10,
                    "bytes_out": 1000,
                    "bytes_in": 0,
                    "byte_hours": 0.0,
                },
                {
                    "hour": hour,
                    "bucket": "alpha",
                    "operation": "PutObject",
                    "requests": 2,
                    "bytes_out": 0,
                    "bytes_in": 500,
                    "byte_hours": 0.0,
                },
                {
                    "hour": hour,
                    "bucket": "alpha",
                    "operation": "GetObject-BitTorrent",
                    "requests": 4,
                    "bytes_out": 65536,
                    "bytes_in": 0,
                    "byte_hours": 0.0,
                },
                {
                    "hour": hour,
                    "bucket": "alpha",
                    "operation": "StandardStorage",
                    "requests": 0,
                    "bytes_out": 0,
                    "bytes_in": 0,
                    "byte_hours": 1.5e9,
                },
                {
                    "hour": hour,
                    "bucket": "beta",
                    "operation": "ListObjectsV2",
                    "requests": 1,
                    "bytes_out": 300,
                    "bytes_in": 0,
                    "byte_hours": 0.0,
                },
            ]
        c.execute(md.usage_hourly.insert(), rows)
        c.execute(
            md.usage_objects.insert(),
            [
                {
                    "bucket": "alpha",
                    "key": b"movie.mkv",
                    "operation": "GetObject",
                    "requests": 3,
                    "bytes_out": 3 << 30,
                },
                {
                    "bucket": "alpha",
                    "key": b"movie.mkv",
                    "operation": "GetObject-BitTorrent",
                    "requests": 64,
                    "bytes_out": 1 << 30,
                },
                {
                    "bucket": "beta",
                    "key": b"plain",
                    "operation": "GetObject",
                    "requests": 1,
                    "bytes_out": 10,
                },
            ],
        )
        c.execute(
            md.usage_swarms.insert(),
            [
                {
                    "hour": DAY0 + h * 3600,
                    "info_hash": "ab" * 20,
                    "bucket": "alpha",
                    "key": b"movie.mkv",
                    "completed": 1,
                    "uploaded": 0,
                    "downloaded": 1 << 30,
                }
                for h in range(14)
            ],
        )


    db.write_sync(seed)
    db.close()
    return data


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# ---- empty database ----


def test_usage_on_an_empty_database(tmp_path: Path) -> None:
    res = run(tmp_path, "usage")
    assert res.exit_code == 0
    assert res.output == "Service,Operation,UsageType,Resource,StartTime,EndTime,UsageValue\n"
    res = run(tmp_path, "usage", "--format", "json")
    assert json.loads(res.output)["rows"] == []
    res = run(tmp_path, "usage", "--format", "table")
    assert res.output == "No usage recorded for this period.\n"


def test_savings_on_an_empty_database(tmp_path: Path) -> None:
    assert run(tmp_path, "savings").output == "No object traffic recorded.\n"
    body = json.loads(run(tmp_path, "savings", "--format", "json").output)
    assert body["objects"] == [] and body["total_cost_avoided"] == 0


# ---- a week of data ----


def test_usage_by_day_sums_each_day(week: Path) -> None:
    res = run(week, "usage", "--by", "day")
    assert res.exit_code == 0
    rows = csv_rows(res.output)
    assert len(rows) == 7 * 9  # per day: alpha 7 lines, beta 2
    first = [r for r in rows if r["StartTime"] == "2024-05-01T00:00:00Z"]
    assert [(r["Resource"], r["Operation"], r["UsageType"], r["UsageValue"]) for r in first] == [
        ("alpha", "GetObject", "Requests-Tier2", "240"),
        ("alpha", "GetObject", "DataTransfer-Out-Bytes", "24000"),
        ("alpha", "GetObject-BitTorrent", "Requests-Tier2", "96"),
        ("alpha", "GetObject-BitTorrent", "DataTransfer-Out-Bytes", "1572864"),
        ("alpha", "PutObject", "Requests-Tier1", "48"),
        ("alpha", "PutObject", "DataTransfer-In-Bytes", "12000"),
        ("alpha", "StandardStorage", "TimedStorage-ByteHrs", "36000000000"),
        ("beta", "ListObjectsV2", "Requests-Tier1", "24"),
        ("beta", "ListObjectsV2", "DataTransfer-Out-Bytes", "7200"),
    ]
    assert all(r["Service"] == "s3torrent" for r in rows)
    assert {r["EndTime"] for r in first} == {"2024-05-02T00:00:00Z"}


def test_usage_by_hour_with_a_range_and_a_bucket(week: Path) -> None:
    res = run(week, "usage", "--by", "hour", "--bucket", "beta",
              "--from", "2024-05-03T10:00", "--to", "2024-05-03T13")  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = csv_rows(res.output)
    assert [(r["StartTime"], r["EndTime"], r["UsageType"], r["UsageValue"]) for r in rows] == [
        ("2024-05-03T10:00:00Z", "2024-05-03T11:00:00Z", "Requests-Tier1", "1"),
        ("2024-05-03T10:00:00Z", "2024-05-03T11:00:00Z", "DataTransfer-Out-Bytes", "300"),
        ("2024-05-03T11:00:00Z", "2024-05-03T12:00:00Z", "Requests-Tier1", "1"),
        ("2024-05-03T11:00:00Z", "2024-05-03T12:00:00Z", "DataTransfer-Out-Bytes", "300"),
        ("2024-05-03T12:00:00Z", "2024-05-03T13:00:00Z", "Requests-Tier1", "1"),
        ("2024-05-03T12:00:00Z", "2024-05-03T13:00:00Z", "DataTransfer-Out-Bytes", "300"),
    ]


def test_usage_json_totals_cover_the_week(week: Path) -> None:
    body = json.loads(run(week, "usage", "--format", "json").output)
    assert body["by"] == "day" and body["from"] is None
    assert body["totals"] == {
        "Requests-Tier1": WEEK * 3,
        "Requests-Tier2": WEEK * 14,
        "DataTransfer-Out-Bytes": WEEK * (1000 + 65536 + 300),
        "DataTransfer-In-Bytes": WEEK * 500,
        "TimedStorage-ByteHrs": WEEK * 1_500_000_000,
    }


def test_usage_table_is_aligned_with_human_units_and_totals(week: Path) -> None:
    out = run(week, "usage", "--format", "table", "--bucket", "alpha",
              "--from", "2024-05-01", "--to", "2024-05-02").output  # fmt: skip
    lines = out.splitlines()
    assert lines[0].split() == ["Period", "(UTC)", "Bucket", "Operation", "UsageType", "Usage"]
    assert "2024-05-01    alpha   GetObject             DataTransfer-Out-Bytes    23.44 KiB" in out
    assert "GetObject-BitTorrent  DataTransfer-Out-Bytes     1.50 MiB" in out
    assert "33.53 GiB-h" in out
    table_lines = lines[2:9]
    assert len({len(line) for line in table_lines}) == 1  # right-aligned usage column
    assert lines[lines.index("Totals") + 1].split() == ["UsageType", "Usage"]
    assert "Requests-Tier2                  336" in out


def test_savings_per_object(week: Path) -> None:
    body = json.loads(run(week, "savings", "--format", "json").output)
    movie, plain = body["objects"]
    assert (movie["bucket"], movie["key"]) == ("alpha", "movie.mkv")
    assert movie["rest_bytes"] == 3 << 30 and movie["seeder_bytes"] == 1 << 30
    assert movie["swarm_downloaded"] == 14 << 30 and movie["swarm_completed"] == 14
    assert movie["offloaded_bytes"] == 10 << 30
    assert movie["offload_ratio"] == round(10 / 14, 6)
    assert movie["cost_avoided"] == 0.9
    assert plain["offloaded_bytes"] == 0 and plain["rest_bytes"] == 10
    assert body["total_cost_avoided"] == 0.9
    only = json.loads(
        run(week, "savings", "--bucket", "alpha", "--key", "movie.mkv", "--price-per-gb", "0.05",
            "--format", "json").output
    )  # fmt: skip
    assert [o["key"] for o in only["objects"]] == ["movie.mkv"]
    assert only["total_cost_avoided"] == 0.5
    table = run(week, "savings").output
    assert "alpha/movie.mkv" in table and "$0.90" in table and "71.4%" in table
    assert csv_rows(run(week, "savings", "--format", "csv").output)[0]["OffloadedBytes"] == str(
        10 << 30
    )


# ---- bad arguments ----


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["usage", "--from", "yesterday"], "Invalid value for --from"),
        (["usage", "--to", "2024-13-01"], "Invalid value for --to"),
        (["usage", "--from", "2024-05-02", "--to", "2024-05-01"], "after its start"),
        (["usage", "--by", "week"], "Invalid value for '--by'"),
        (["usage", "--format", "xml"], "Invalid value for '--format'"),
        (["usage", "--bucket", "Not_A_Bucket"], "not a valid bucket name"),
        (["savings", "--key", "k"], "--key needs --bucket"),
        (["savings", "--price-per-gb", "-1"], "Invalid value for --price-per-gb"),
        (["savings", "--price-per-gb", "cheap"], "Invalid value for '--price-per-gb'"),
    ],
)
def test_bad_arguments_are_refused_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    res = CliRunner().invoke(cli, ["--data-dir", str(tmp_path), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output
