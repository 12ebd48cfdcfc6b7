"""An anonymous GET streaming when its access is taken away is cut within about a second,
on whichever worker serves it (`serve` runs two by default), whether or not that worker
ever published the object's torrent, and when a policy's time condition stops matching.

Until 2026-12-07 a GET was re-decided only when its own worker revoked a torrent it had
published itself: with two workers, the GETs the other worker served (about half) ran to
their end after the object was made private, and so did every GET of an object whose
policy expired on a worker that had no timer for it."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import LiveServer, make_client, start_server

SIZE = 64 * 1024 * 1024
READERS = 6


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(tmp_path_factory.mktemp("get-cut"), workers=2)
    yield live
    live.stop()


def _slow_readers(url: str) -> tuple[list[int], list[float | None], list[threading.Thread]]:
    got = [0] * READERS
    ended: list[float | None] = [None] * READERS

    def reader(i: int) -> None:
        try:
            # A new connection each: the kernel spreads them over both workers.
            with urllib.request.urlopen(url, timeout=30) as r:
                while chunk := r.read(64 * 1024):
                    got[i] += len(chunk)
                    time.sleep(0.01)  # a slow client: ~6 MB/s
        except Exception:
            pass
        ended[i] = time.monotonic()

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(READERS)]
    for t in threads:
        t.start()
    return got, ended, threads


def _all_cut(
    got: list[int], ended: list[float | None], threads: list[threading.Thread], at: float
) -> None:
    for t in threads:
        t.join(10)
    late = [
        (i, got[i], None if e is None else round(e - at, 2))
        for i, e in enumerate(ended)
        if e is None or e - at > 1.5 or got[i] >= SIZE
    ]
    assert not late, late


def test_making_an_object_private_cuts_its_gets_on_every_worker(srv: LiveServer) -> None:
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket="cut-acl")
    s3.put_object(Bucket="cut-acl", Key="big.bin", Body=os.urandom(SIZE), ACL="public-read")
    # Its torrent published (by whichever worker answers this).
    urllib.request.urlopen(f"{srv.endpoint}/cut-acl/big.bin?torrent", timeout=30).read()
    got, ended, threads = _slow_readers(f"{srv.endpoint}/cut-acl/big.bin")
    time.sleep(1.0)
    assert all(got), got
    s3.put_object_acl(Bucket="cut-acl", Key="big.bin", ACL="private")
    _all_cut(got, ended, threads, time.monotonic())


def test_an_expiring_policy_cuts_its_gets_on_every_worker(srv: LiveServer) -> None:
    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket="cut-time")
    s3.put_object(Bucket="cut-time", Key="big.bin", Body=os.urandom(SIZE))
    until = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    statement = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::cut-time/*",
        "Condition": {"DateLessThan": {"aws:CurrentTime": until.strftime("%Y-%m-%dT%H:%M:%SZ")}},
    }
    # An earlier boundary that changes nothing for these GETs: each must still be asked again
    # at the next one.
    earlier = (until - timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    unrelated = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::cut-time",
        "Condition": {"DateGreaterThan": {"aws:CurrentTime": earlier}},
    }
    s3.put_bucket_policy(
        Bucket="cut-time",
        Policy=json.dumps({"Version": "2012-10-17", "Statement": [unrelated, statement]}),
    )
    got, ended, threads = _slow_readers(f"{srv.endpoint}/cut-time/big.bin")
    time.sleep(1.0)
    assert all(got), got
    _all_cut(got, ended, threads, until.timestamp() - time.time() + time.monotonic())
