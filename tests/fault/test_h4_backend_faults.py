"""Audit h4: s3torrent on an S3 blob backend (moto) behind a fault proxy that fails chosen
requests: reset, a 503 SlowDown answer, or the backend's reply lost after it did the work.
A failed write leaves no row and nothing in the backend past the orphan sweep's bound
(storage.orphan_grace and two sweeps), and every failure reaches the client bounded."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, free_port
from tests.scale import engines
from tests.scale.test_audit_blob_backend import FaultProxy
from tests.seeding import fetch_torrent, lt_add, lt_session, put_public, sha256, without_web_seed

MiB = 1024 * 1024
# The longest a client waits for a request failing at the backend: each backend call is
# bounded by blobs.max_attempts (2) x blobs.read_timeout (5 s), and a write makes a few.
BOUND = 45
GRACE = 5.0  # storage.orphan_grace and blobs.orphan_grace of these servers
SWEEP_EVERY = 0.5  # storage.upload_cleanup_interval
ERROR = (
    b"HTTP/1.1 %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n"
    b"Connection: close\r\n\r\n%s"
)
SLOW_DOWN_XML = b"<Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>"
NO_SUCH_UPLOAD_XML = (
    b"<Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist. The"
    b" upload ID may be invalid, or the upload may have been aborted or completed.</Message>"
    b"</Error>"
)
# Answers the proxy gives in the backend's place.
ANSWERS = {
    "slowdown": ERROR % (b"503 Slow Down", len(SLOW_DOWN_XML), SLOW_DOWN_XML),
    "nosuchupload": ERROR % (b"404 Not Found", len(NO_SUCH_UPLOAD_XML), NO_SUCH_UPLOAD_XML),
}


class RuleProxy(FaultProxy):
    """FaultProxy whose requests to the backend meet rules: each (bytes, action) applies to
    a request the bytes (a regular expression) are found in. `reset` resets it; `slowdown`
    answers 503 SlowDown without asking the backend (`nosuchupload`: 404 NoSuchUpload);
    `lost` lets the backend do it and drops its answer, resetting the connection (a reply
    lost on the way back); `hang` never answers; `short` relays half the answer's body,
    framed as whole; `done` lets the backend do it and answers NoSuchUpload in its place
    (what S3 answers a retried completion). An action ending in `_once` applies to the
    first such request only."""

    def __init__(self, target_port: int) -> None:
        self.rules: list[tuple[bytes, str]] = []
        self.hits: dict[bytes, int] = {}
        self._lose: set[socket.socket] = set()
        self._listing: set[socket.socket] = set()
        self._replace: set[socket.socket] = set()
        # When each multipart upload was started (by key): moto lists every upload as
        # initiated in 2010, so the grace period would spare none of them.
        self.initiated: dict[bytes, float] = {}
        super().__init__(target_port)

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not up:
                    if src in self._listing:
                        self._listing.discard(src)
                        data = self._dated(src, data)
                    if src in self._short:
                        self._send_short(src, dst, data)
                        return
                    if src in self._replace:
                        self._replace.discard(src)
                        self._whole(src, data)  # done by the backend; the client hears:
                        dst.sendall(ANSWERS["nosuchupload"])
                        self._reset(dst)
                        continue
                    if src in self._lose:
                        self._reset(dst)  # the backend's answer is read whole, and dropped
                        continue
                    dst.sendall(data)
                    continue
                self._note(data, dst)
                action = self._match(data)
                if action == "reset":
                    self._reset(src)
                    self._reset(dst)
                    return
                if action in ("slowdown", "nosuchupload"):
                    src.sendall(ANSWERS[action])
                    self._reset(dst)
                    with contextlib.suppress(OSError):
                        src.shutdown(socket.SHUT_RDWR)
                    return
                if action == "hang":
                    continue  # never answered
                if action == "short":
                    self._short.add(dst)
                if action == "lost":
                    self._lose.add(dst)
                if action == "done":
                    self._replace.add(dst)
                dst.sendall(data)

    def _note(self, request: bytes, upstream: socket.socket) -> None:
        created = re.match(rb"POST /[^/ ]+/([^ ?]+)\?uploads[ &=]", request)
        if created:
            self.initiated[created.group(1)] = time.time()
        if re.match(rb"GET /[^/ ?]+/?\?[^ ]*\buploads\b", request):
            self._listing.add(upstream)

    @staticmethod
    def _whole(src: socket.socket, data: bytes) -> bytes:
        """The backend's answer that begins with `data`, whole (by its Content-Length)."""
        while b"\r\n\r\n" not in data:
            data += src.recv(65536)
        found = re.search(rb"(?i)content-length: *(\d+)", data.partition(b"\r\n\r\n")[0])
        assert found is not None
        while len(data.partition(b"\r\n\r\n")[2]) < int(found.group(1)):
            data += src.recv(65536)
        return data

    def _dated(self, src: socket.socket, data: bytes) -> bytes:
        """A ListMultipartUploads answer with each upload's Initiated as the proxy saw it
        (the same length: Content-Length holds)."""
        data = self._whole(src, data)

        def dated(upload: re.Match[bytes]) -> bytes:
            key = re.search(rb"<Key>([^<]*)</Key>", upload.group(0))
            when = self.initiated.get(key.group(1) if key else b"", time.time())
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(when)).encode()
            return re.sub(
                rb"<Initiated>[^<]*</Initiated>",
                b"<Initiated>" + stamp + b"</Initiated>",
                upload.group(0),
            )

        return re.sub(rb"(?s)<Upload>.*?</Upload>", dated, data)

    def _match(self, data: bytes) -> str | None:
        for needle, action in list(self.rules):
            if re.search(needle, data):
                seen = self.hits.get(needle, 0)
                self.hits[needle] = seen + 1
                action, _, once = action.partition("_")
                if not (once and seen):
                    return action
        return None


@pytest.fixture(scope="module")
def moto() -> Iterator[engines.Engine]:
    try:
        engine = engines.start_moto()
    except RuntimeError as exc:
        pytest.skip(f"moto_server unavailable: {exc}")
    yield engine
    engine.stop()


@pytest.fixture
def proxy(moto: engines.Engine) -> Iterator[RuleProxy]:
    p = RuleProxy(moto.port)
    yield p
    p.close()


def _backend(moto: engines.Engine) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=moto.url,
        aws_access_key_id="moto",
        aws_secret_access_key="moto",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}),
    )


def _node_env(proxy: RuleProxy, bucket: str) -> dict[str, str]:
    return {
        "S3TORRENT_BLOBS_URL": f"s3://{bucket}/d",
        "S3TORRENT_BLOBS__ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}",
        "S3TORRENT_BLOBS__ACCESS_KEY": "moto",
        "S3TORRENT_BLOBS__SECRET_KEY": "moto",
        "S3TORRENT_BLOBS__CONNECT_TIMEOUT": "1",
        "S3TORRENT_BLOBS__READ_TIMEOUT": "5",
        "S3TORRENT_BLOBS__MAX_ATTEMPTS": "2",
        "S3TORRENT_STORAGE__ORPHAN_GRACE": str(GRACE),
        "S3TORRENT_BLOBS__ORPHAN_GRACE": str(GRACE),
        "S3TORRENT_STORAGE__UPLOAD_CLEANUP_INTERVAL": str(SWEEP_EVERY),
    }


def _node(tmp_path: Path, proxy: RuleProxy, bucket: str, name: str) -> LiveServer:
    srv = LiveServer(
        data_dir=tmp_path / name,
        port=free_port(),
        peer_port=free_port(),
        env=_node_env(proxy, bucket),
    )
    (tmp_path / name).mkdir()
    srv.start(timeout=60)
    return srv


@pytest.fixture
def bucket(tmp_path: Path) -> str:
    return f"h4-{os.getpid()}-{tmp_path.name[-10:].lower().replace('_', '-')}"


@pytest.fixture
def node(tmp_path: Path, proxy: RuleProxy, bucket: str) -> Iterator[LiveServer]:
    srv = _node(tmp_path, proxy, bucket, "n")
    try:
        yield srv
    finally:
        srv.stop(timeout=20)


def _client(srv: LiveServer) -> Any:
    """A client that tries each request once (make_client's legacy-mode max_attempts=1
    still retries once): the time a request takes is one server answer's."""
    return boto3.client(
        "s3",
        endpoint_url=srv.endpoint,
        aws_access_key_id=ROOT_AK,
        aws_secret_access_key=ROOT_SK,
        region_name="us-east-1",
        config=Config(read_timeout=60, retries={"total_max_attempts": 1, "mode": "standard"}),
    )


def _until(probe: Callable[[], object], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def _backend_state(moto: engines.Engine, bucket: str) -> tuple[list[str], list[str]]:
    """The backend's blob keys and its unfinished multipart uploads' keys."""
    backend = _backend(moto)
    keys = [o["Key"] for o in backend.list_objects_v2(Bucket=bucket).get("Contents", [])]
    uploads = [u["Key"] for u in backend.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    return keys, uploads


def _put_failing(s3: Any, bucket: str, key: str, body: bytes) -> float:
    started = time.monotonic()
    with pytest.raises((ClientError, BotoCoreError)) as failed:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    if isinstance(failed.value, ClientError):
        code = failed.value.response["Error"]["Code"]
        assert code in ("ServiceUnavailable", "InternalError", "SlowDown"), code
    return time.monotonic() - started


# The sweep's bound: the grace, then two sweeps in a row; plus a margin for a loaded machine.
SWEPT_WITHIN = GRACE + 4 * SWEEP_EVERY + 15


def test_a_failed_write_whose_abort_also_failed_is_swept_while_serving(
    node: LiveServer, proxy: RuleProxy, moto: engines.Engine, bucket: str
) -> None:
    """The second part of a 12 MiB PUT fails at the backend, and so does the abort of its
    multipart upload. Before, what the write left (an unfinished multipart upload holding
    its first 8 MiB part) was aborted only at a fresh start of the whole server: a server
    that ran on kept paying for it. Now the periodic sweep aborts it past the grace."""
    s3 = _client(node)
    s3.create_bucket(Bucket="bkt")
    proxy.rules = [(b"partNumber=2", "reset"), (b"DELETE ", "reset")]
    took = _put_failing(s3, "bkt", "k", os.urandom(12 * MiB))
    assert took < BOUND
    assert proxy.hits.get(b"DELETE "), "the writer never tried to abort its upload"
    assert _backend_state(moto, bucket)[1], "the proxy failed to keep the upload alive"
    proxy.rules = []
    with pytest.raises(ClientError):
        s3.head_object(Bucket="bkt", Key="k")
    _until(lambda: not _backend_state(moto, bucket)[1], "the upload's abort", SWEPT_WITHIN)
    # Its part's LastModified has whole seconds: a second earlier than it was sent at most.
    assert time.time() - max(proxy.initiated.values()) >= GRACE - 1, "swept within the grace"


COMPLETE = rb"^POST [^ ]*\?uploadId="  # CompleteMultipartUpload (not CreateMultipartUpload)
SINGLE_PUT = rb"^PUT [^ ?]* "  # a PutObject (not a part)


def _swept(moto: engines.Engine, bucket: str) -> Callable[[], bool]:
    """Whether the backend holds nothing but the blobs rows name: none here."""
    return lambda: _backend_state(moto, bucket) == ([], [])


@pytest.mark.parametrize(("size", "needle"), [(12 * MiB, COMPLETE), (100_000, SINGLE_PUT)])
def test_a_write_whose_backend_reply_was_lost_is_whole_or_absent_and_swept(
    node: LiveServer, proxy: RuleProxy, moto: engines.Engine, bucket: str, size: int, needle: bytes
) -> None:
    """The backend completes the blob's upload (or PUT) and its answer is lost: the client
    gets its object whole, or an error, no row, and the blob is gone within the bound."""
    s3 = _client(node)
    s3.create_bucket(Bucket="lost")
    data = os.urandom(size)
    proxy.rules = [(needle, "lost")]
    started = time.monotonic()
    try:
        s3.put_object(Bucket="lost", Key="k", Body=data)
        acknowledged = True
    except (ClientError, BotoCoreError):
        acknowledged = False
    assert time.monotonic() - started < BOUND
    assert proxy.hits.get(needle), "the proxy lost no reply"
    proxy.rules = []
    if acknowledged:
        assert s3.get_object(Bucket="lost", Key="k")["Body"].read() == data
        return
    with pytest.raises(ClientError):
        s3.head_object(Bucket="lost", Key="k")
    _until(_swept(moto, bucket), "the orphan blob's sweep", SWEPT_WITHIN)


@pytest.mark.parametrize("needle", [rb"^GET ", rb"^PUT "])
def test_a_backend_answering_slow_down_is_a_bounded_retryable_error(
    node: LiveServer, proxy: RuleProxy, needle: bytes
) -> None:
    s3 = _client(node)
    s3.create_bucket(Bucket="slow")
    old = os.urandom(2 * MiB)
    s3.put_object(Bucket="slow", Key="k", Body=old)
    proxy.rules = [(needle, "slowdown")]
    started = time.monotonic()
    with pytest.raises(ClientError) as failed:
        if needle == rb"^GET ":
            s3.get_object(Bucket="slow", Key="k")["Body"].read()
        else:
            s3.put_object(Bucket="slow", Key="k", Body=os.urandom(2 * MiB))
    assert time.monotonic() - started < BOUND
    assert proxy.hits[needle] >= 2, "the backend client did not retry a SlowDown"
    error = failed.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 503, error
    assert error["Error"]["Code"] in ("SlowDown", "ServiceUnavailable"), error
    proxy.rules = []
    assert s3.get_object(Bucket="slow", Key="k")["Body"].read() == old


@pytest.mark.parametrize("action", ["reset", "lost"])
def test_a_copy_failing_midway_leaves_the_old_object_whole(
    node: LiveServer, proxy: RuleProxy, moto: engines.Engine, bucket: str, action: str
) -> None:
    """CopyObject of a 12 MiB object over an existing key fails midway at the backend: its
    read of the source at 6 MiB, its upload's second part, its completion."""
    s3 = _client(node)
    s3.create_bucket(Bucket="copy")
    src, old = os.urandom(12 * MiB), os.urandom(7 * MiB)
    s3.put_object(Bucket="copy", Key="src", Body=src)
    s3.put_object(Bucket="copy", Key="dst", Body=old)
    before = set(_backend_state(moto, bucket)[0])
    for needle in (rb"(?i)range: bytes=6291456-", rb"partNumber=2", COMPLETE):
        proxy.rules = [(needle, action)]
        started = time.monotonic()
        try:
            s3.copy_object(Bucket="copy", Key="dst", CopySource={"Bucket": "copy", "Key": "src"})
            copied = True
        except (ClientError, BotoCoreError):
            copied = False
        assert time.monotonic() - started < BOUND
        assert proxy.hits.get(needle), f"the proxy met no {needle!r}"
        proxy.rules = []
        got = s3.get_object(Bucket="copy", Key="dst")["Body"].read()
        if copied:
            assert got == src
            return
        assert got == old, "a failed copy changed the object"
        assert s3.get_object(Bucket="copy", Key="src")["Body"].read() == src
    _until(
        lambda: (
            set(_backend_state(moto, bucket)[0]) == before and not _backend_state(moto, bucket)[1]
        ),
        "the failed copies' leftovers swept",
        SWEPT_WITHIN,
    )


@pytest.mark.parametrize("action", ["reset", "lost"])
def test_a_completion_failing_midway_keeps_the_upload_and_a_retry_completes_it(
    node: LiveServer, proxy: RuleProxy, moto: engines.Engine, bucket: str, action: str
) -> None:
    """CompleteMultipartUpload joins the parts inside the backend (UploadPartCopy): the
    second part's copy fails or its reply is lost. The client gets an error and no object,
    the upload stays complete-able, and a retry gives the whole object."""
    s3 = _client(node)
    s3.create_bucket(Bucket="mpu")
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(MiB)]
    up = s3.create_multipart_upload(Bucket="mpu", Key="k")["UploadId"]
    done = {
        "Parts": [
            {
                "PartNumber": n,
                "ETag": s3.upload_part(Bucket="mpu", Key="k", UploadId=up, PartNumber=n, Body=body)[
                    "ETag"
                ],
            }
            for n, body in enumerate(parts, start=1)
        ]
    }
    needle = rb"(?s)partNumber=2.*(?i:x-amz-copy-source)"
    proxy.rules = [(needle, action)]
    started = time.monotonic()
    try:
        s3.complete_multipart_upload(Bucket="mpu", Key="k", UploadId=up, MultipartUpload=done)
        completed = True
    except (ClientError, BotoCoreError):
        completed = False
    assert time.monotonic() - started < BOUND
    assert proxy.hits.get(needle), "the proxy met no part copy"
    proxy.rules = []
    if not completed:
        with pytest.raises(ClientError):
            s3.head_object(Bucket="mpu", Key="k")
        s3.complete_multipart_upload(Bucket="mpu", Key="k", UploadId=up, MultipartUpload=done)
    assert s3.get_object(Bucket="mpu", Key="k")["Body"].read() == b"".join(parts)
    # One blob for the object, the parts' blobs gone, no upload left once swept.
    _until(
        lambda: len(_backend_state(moto, bucket)[0]) == 1 and not _backend_state(moto, bucket)[1],
        "the failed completion's leftovers swept",
        SWEPT_WITHIN,
    )


@pytest.mark.timeout(240)
@pytest.mark.parametrize("action", ["short", "reset", "hang", "slowdown"])
def test_the_seeder_never_sends_a_bad_block_and_recovers_with_the_backend(
    node: LiveServer, proxy: RuleProxy, tmp_path: Path, action: str
) -> None:
    """libtorrent downloads a public object from the seeder alone while the backend fails
    every read of the object's third MiB (the seeder's aligned 1 MiB read-ahead block).
    No piece may fail its hash, the download stalls short of that block, and once the
    backend answers again the same download completes with the object's bytes."""
    import libtorrent as lt

    s3 = _client(node)
    s3.create_bucket(Bucket="seed")
    data = os.urandom(6 * MiB + 4321)
    put_public(s3, "seed", "obj", data)
    torrent = without_web_seed(fetch_torrent(node.endpoint, "seed", "obj"))
    needle = rb"(?i)range: bytes=2097152-"
    proxy.rules = [(needle, action)]
    session = lt_session(alert_mask=lt.alert.category_t.all_categories)
    handle = lt_add(session, tmp_path / "dl", torrent=torrent)
    failed: list[str] = []

    def progress() -> Any:
        for alert in session.pop_alerts():
            if isinstance(alert, lt.hash_failed_alert):
                failed.append(alert.message())
        return handle.status()

    try:
        _until(lambda: proxy.hits.get(needle, 0) >= 1, "the seeder's failing reads", 60)
        status = progress()
        assert not status.is_seeding, "the download finished without the failing block"
        proxy.rules = []
        seeder = ("127.0.0.1", node.peer_port)
        deadline = time.monotonic() + 120
        while not (status := progress()).is_seeding:
            assert time.monotonic() < deadline, f"no recovery: {status.progress:.2f} done"
            if not status.num_peers:
                handle.connect_peer(seeder)  # as a re-announce would hand it back
            time.sleep(0.3)
        assert not failed, failed
        assert status.total_failed_bytes == 0
        got = (tmp_path / "dl" / status.name).read_bytes()
        assert sha256(got) == sha256(data)
    finally:
        session.remove_torrent(handle)


def test_an_upload_still_receiving_parts_outlives_the_grace(
    moto: engines.Engine, bucket: str
) -> None:
    """A write in flight longer than the grace (a slow client's large PUT) still uploads a
    part every part_size bytes. Before, the clean-up aborted every unfinished upload
    started before the grace, so a node starting (and, with the sweep, every sweep) cut
    another's long upload; now only one that received no part within the grace."""
    from s3torrent.store.blobs.s3 import S3BlobStore, S3Location

    backend = _backend(moto)
    backend.create_bucket(Bucket=bucket)
    where = S3Location.parse(f"s3://{bucket}/d")
    writer = S3BlobStore(backend, where).new_writer("a1")
    writer.write(os.urandom(8 * MiB))  # one part sent; moto dates the upload 2010

    def sweep_at(later: float) -> int:
        store = S3BlobStore(backend, where, orphan_grace=60, clock=lambda: time.time() + later)
        return store.clean_temporary()

    assert sweep_at(30) == 0, "an upload whose last part is 30 s old was aborted"
    writer.write(os.urandom(MiB))
    writer.commit("a1")
    assert backend.head_object(Bucket=bucket, Key="d/blobs/a1")["ContentLength"] == 9 * MiB
    idle = S3BlobStore(backend, where).new_writer("a2")
    idle.write(os.urandom(8 * MiB))
    assert sweep_at(120) == 1, "an upload idle past the grace was left"
    assert not _backend_state(moto, bucket)[1]


def test_a_completion_whose_reply_was_lost_once_is_acknowledged(
    node: LiveServer, proxy: RuleProxy, moto: engines.Engine, bucket: str
) -> None:
    """The backend completes the blob's multipart upload, and the answer the writer gets
    is NoSuchUpload: what S3 answers the retry of a completion whose answer was lost (moto
    completes it again). Before, the write failed (500 InternalError), though the blob
    was whole in the backend, and the blob stayed until the sweep; now the writer finds
    its blob there, whole (the multipart ETag of exactly its parts): acknowledged."""
    s3 = _client(node)
    s3.create_bucket(Bucket="once")
    data = os.urandom(12 * MiB)
    proxy.rules = [(COMPLETE, "done_once")]
    s3.put_object(Bucket="once", Key="k", Body=data)
    assert proxy.hits.get(COMPLETE), "the proxy met no completion"
    proxy.rules = []
    assert s3.get_object(Bucket="once", Key="k")["Body"].read() == data
    assert len(_backend_state(moto, bucket)[0]) == 1


def test_a_lost_create_multipart_answer_doubles_no_write_and_its_twin_is_swept(
    node: LiveServer, proxy: RuleProxy, moto: engines.Engine, bucket: str
) -> None:
    """CreateMultipartUpload is not idempotent: the backend started an upload, its answer
    was lost, and the retry started a second one. The write goes on with the second; the
    first, never to receive a part, is aborted within the sweep's bound."""
    s3 = _client(node)
    s3.create_bucket(Bucket="twin")
    data = os.urandom(12 * MiB)
    create = rb"^POST [^ ]*\?uploads"
    proxy.rules = [(create, "lost_once")]
    s3.put_object(Bucket="twin", Key="k", Body=data)
    assert proxy.hits.get(create, 0) >= 2, "the creation was not tried again"
    proxy.rules = []
    assert s3.get_object(Bucket="twin", Key="k")["Body"].read() == data
    _until(
        lambda: len((state := _backend_state(moto, bucket))[0]) == 1 and not state[1],
        "the lost upload's abort",
        SWEPT_WITHIN,
    )
    assert s3.get_object(Bucket="twin", Key="k")["Body"].read() == data


@pytest.fixture(scope="module")
def shared_engines() -> Iterator[tuple[engines.Engine, engines.Engine]]:
    try:
        postgres = engines.start_postgres()
    except RuntimeError as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        redis = engines.start_redis()
    except RuntimeError as exc:
        postgres.stop()
        pytest.skip(f"Redis unavailable: {exc}")
    yield postgres, redis
    redis.stop()
    postgres.stop()


@pytest.mark.timeout(240)
def test_the_read_cache_of_two_nodes_never_serves_a_replaced_or_failed_block(
    tmp_path: Path,
    proxy: RuleProxy,
    bucket: str,
    shared_engines: tuple[engines.Engine, engines.Engine],
) -> None:
    """Two nodes on one database and one backend bucket, each with its read cache (1 MiB
    blocks by version id). Node b caches a block; node a overwrites the object, then
    deletes it; a read of b failing at the backend (short, framed as whole) in between.
    b never answers with a replaced version's bytes, nor a failed read's, nor a deleted
    object's."""
    from tests.scale.test_nodes import Cluster

    postgres, redis = shared_engines
    pg_url = engines.create_database(postgres, f"h4_{os.getpid()}_{tmp_path.name[-6:]}")
    env = dict(_node_env(proxy, bucket))
    env["S3TORRENT_METADATA_URL"] = pg_url
    env["S3TORRENT_REDIS_URL"] = f"redis://127.0.0.1:{redis.port}/0"
    cluster = Cluster(tmp_path, env)
    try:
        a, b = (_client(cluster.start(name)) for name in ("a", "b"))
        a.create_bucket(Bucket="two")
        span = "bytes=100-16483"  # a seeder-sized read: served from the 1 MiB block cache
        old = os.urandom(3 * MiB)
        a.put_object(Bucket="two", Key="k", Body=old)
        assert b.get_object(Bucket="two", Key="k", Range=span)["Body"].read() == old[100:16484]
        new = os.urandom(3 * MiB)
        a.put_object(Bucket="two", Key="k", Body=new)
        proxy.rules = [(rb"(?i)range: bytes=0-", "short")]
        with pytest.raises(ClientError):
            b.get_object(Bucket="two", Key="k", Range=span)["Body"].read()
        proxy.rules = []
        assert b.get_object(Bucket="two", Key="k", Range=span)["Body"].read() == new[100:16484]
        assert b.get_object(Bucket="two", Key="k")["Body"].read() == new
        a.delete_object(Bucket="two", Key="k")
        with pytest.raises(ClientError) as gone:
            b.get_object(Bucket="two", Key="k", Range=span)
        assert gone.value.response["Error"]["Code"] == "NoSuchKey"
    finally:
        cluster.stop()
