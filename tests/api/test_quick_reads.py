"""GETs, HEADs and small PUTs answered by the quick path (s3/quick.py) against the real
server: the same answers as through aiohttp, hand-overs in order, revocation, metering
counted once."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import time
from typing import Any

import pytest

from tests.api.test_metering import admin_totals, eventually
from tests.conftest import LiveServer, sign_request

SMALL = os.urandom(4096)
BIG = os.urandom(300_000)  # stored as a file: its body is streamed by aiohttp


def read_answer(sock: socket.socket, buffer: bytearray, head_only: bool) -> tuple[bytes, bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before an answer"
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if head_only or head.startswith(b"HTTP/1.1 304"):
        length = 0
    while len(buffer) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a body"
        buffer += chunk
    body = bytes(buffer[:length])
    del buffer[:length]
    return head, body


def exchange(
    srv: LiveServer, requests: list[tuple[str, str, dict[str, str]]], bodies: Any = None
) -> list[Any]:
    """Send every request on one connection at once (pipelined; each with its body from
    `bodies`, if given, and a Content-Length); their answers, in order."""
    data = b""
    for i, (method, target, headers) in enumerate(requests):
        body = bodies[i] if bodies is not None else None
        lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{srv.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        data += ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=15) as sock:
        sock.sendall(data)
        buffer = bytearray()
        return [read_answer(sock, buffer, m == "HEAD") for m, _, _ in requests]


VOLATILE = (b"date:", b"x-amz-request-id:", b"x-amz-id-2:")


def comparable(answer: tuple[bytes, bytes]) -> tuple[list[bytes], bytes]:
    head, body = answer
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(VOLATILE) and line]
    return sorted(lines), re.sub(rb"<RequestId>\w+</RequestId>", b"", body)


def target_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


@pytest.fixture
def objects(s3: Any, bucket: str) -> str:
    s3.put_object(Bucket=bucket, Key="small", Body=SMALL, ContentType="text/plain")
    s3.put_object(Bucket=bucket, Key="big", Body=BIG)
    return bucket


@pytest.mark.parametrize("signing", ["s3", "s3v4"])
def test_quick_answers_equal_aiohttp_answers(
    server: LiveServer, s3: Any, objects: str, signing: str, request: pytest.FixtureRequest
) -> None:
    etag = s3.head_object(Bucket=objects, Key="small")["ETag"]
    signer = request.getfixturevalue(signing)  # SigV2 and SigV4 presigned URLs

    def presigned(key: str, method: str = "get_object", **extra: Any) -> str:
        params = {"Bucket": objects, "Key": key, **extra}
        return target_of(signer.generate_presigned_url(method, Params=params))

    cases: list[tuple[str, str, dict[str, str]]] = [
        ("GET", presigned("small"), {}),
        ("HEAD", presigned("small", "head_object"), {}),
        ("GET", presigned("small"), {"Range": "bytes=10-99"}),
        ("GET", presigned("small"), {"Range": "bytes=9000-"}),  # 416
        ("GET", presigned("small"), {"If-None-Match": etag}),  # 304
        ("GET", presigned("small"), {"If-Match": '"nope"'}),  # 412
        ("GET", presigned("small", ResponseContentType="image/png"), {}),
        ("GET", presigned("missing"), {}),  # NoSuchKey: the owner may list
        ("GET", presigned("small")[:-4] + "0000", {}),  # a forged signature
        ("GET", f"/{objects}/small", {}),  # anonymous, private: AccessDenied
        ("HEAD", f"/{objects}/small", {}),
        ("GET", presigned("small", VersionId="nosuchversion"), {}),
        ("GET", "/no-such-bucket-here/k", {}),
    ]
    for case in cases:
        (quick,) = exchange(server, [case])
        # Through aiohttp: the same request behind one the quick path never takes.
        _, through_aiohttp = exchange(server, [("GET", "/_health", {}), case])
        assert comparable(quick) == comparable(through_aiohttp), case
    statuses = [exchange(server, [c])[0][0].split(b" ")[1] for c in cases]
    assert statuses == [
        b"200",
        b"200",
        b"206",
        b"416",
        b"304",
        b"412",
        b"200",
        b"404",
        b"403",
        b"403",
        b"403",
        b"400",
        b"404",
    ]


def test_pipelined_reads_and_writes_keep_their_order(
    server: LiveServer, s3: Any, objects: str
) -> None:
    body = os.urandom(1000)
    put = s3.generate_presigned_url("put_object", Params={"Bucket": objects, "Key": "new"})
    get_small = s3.generate_presigned_url("get_object", Params={"Bucket": objects, "Key": "small"})
    get_big = s3.generate_presigned_url("get_object", Params={"Bucket": objects, "Key": "big"})
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        host = f"Host: 127.0.0.1:{server.port}\r\n"
        sock.sendall(
            f"GET {target_of(get_small)} HTTP/1.1\r\n{host}\r\n".encode()
            + f"GET {target_of(get_big)} HTTP/1.1\r\n{host}\r\n".encode()
            + f"PUT {target_of(put)} HTTP/1.1\r\n{host}Content-Length: 1000\r\n\r\n".encode()
            + body
            + f"GET {target_of(get_small)} HTTP/1.1\r\n{host}\r\n".encode()
        )
        buffer = bytearray()
        answers = [read_answer(sock, buffer, False) for _ in range(4)]
    assert [a[0].split(b" ")[1] for a in answers] == [b"200", b"200", b"200", b"200"]
    assert answers[0][1] == SMALL and answers[1][1] == BIG and answers[3][1] == SMALL
    assert s3.get_object(Bucket=objects, Key="new")["Body"].read() == body


def test_curl_reads_many_objects_on_one_connection(
    server: LiveServer, s3: Any, objects: str, tmp_path: Any
) -> None:
    urls = [
        s3.generate_presigned_url("get_object", Params={"Bucket": objects, "Key": key})
        for key in ("small", "big", "small")
    ]
    outs = [tmp_path / f"o{i}" for i in range(3)]
    args = ["curl", "-sS", "--fail"]
    for url, out in zip(urls, outs, strict=True):
        args += ["-o", str(out), url]
    subprocess.run(args, check=True, timeout=60)
    got = [hashlib.sha256(o.read_bytes()).digest() for o in outs]
    assert got == [hashlib.sha256(x).digest() for x in (SMALL, BIG, SMALL)]


def test_revoking_public_read_stops_the_next_quick_read(
    server: LiveServer, s3: Any, objects: str
) -> None:
    s3.put_object_acl(Bucket=objects, Key="small", ACL="public-read")
    anonymous = ("GET", f"/{objects}/small", {})
    (answer,) = exchange(server, [anonymous])
    assert answer[0].startswith(b"HTTP/1.1 200") and answer[1] == SMALL
    s3.put_object_acl(Bucket=objects, Key="small", ACL="private")
    (answer,) = exchange(server, [anonymous])
    assert answer[0].startswith(b"HTTP/1.1 403")
    # The time in the decision is the request's own: a policy that expired is expired.
    s3.put_bucket_policy(
        Bucket=objects,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{objects}/*",
                        "Condition": {"DateLessThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
                    }
                ],
            }
        ),
    )
    (answer,) = exchange(server, [anonymous])
    assert answer[0].startswith(b"HTTP/1.1 403")


def test_each_read_is_metered_once_whoever_answers_it(
    server: LiveServer, s3: Any, objects: str
) -> None:
    before = admin_totals(server, objects).get(("GetObject", "Requests-Tier2"), 0)
    small = s3.generate_presigned_url("get_object", Params={"Bucket": objects, "Key": "small"})
    big = s3.generate_presigned_url("get_object", Params={"Bucket": objects, "Key": "big"})
    # Two quick, one handed over (and then answered by aiohttp), one through aiohttp.
    answers = exchange(server, [("GET", target_of(small), {})] * 2)
    answers += exchange(server, [("GET", target_of(big), {}), ("GET", target_of(small), {})])
    assert all(a[0].startswith(b"HTTP/1.1 200") for a in answers)
    expected = before + 4
    got = eventually(
        lambda: admin_totals(server, objects).get(("GetObject", "Requests-Tier2"), 0), expected
    )
    assert got == expected
    time.sleep(1.5)  # a second flush adds nothing
    assert admin_totals(server, objects).get(("GetObject", "Requests-Tier2"), 0) == expected


def test_a_request_line_refused_once_is_refused_every_time(
    server: LiveServer, s3: Any, objects: str
) -> None:
    """What routing makes of a GET's request line is kept only once every check passed
    (S3Application._routed): a bad key or parameter is refused again each time, and, as
    before, is nobody's usage (refused before its bucket was looked up)."""
    before = admin_totals(server, objects).get(("GetObject", "Requests-Tier2"), 0)
    small = target_of(
        s3.generate_presigned_url("get_object", Params={"Bucket": objects, "Key": "small"})
    )
    refused = [
        ("GET", f"/{objects}/small?partNumber=abc", {}),  # parameters: before the signature
        ("GET", f"/{objects}/{'k' * 1100}", {}),  # a key longer than S3 allows
    ]
    answers = exchange(server, refused * 3 + [("GET", small, {})] * 2)
    codes = [re.search(rb"<Code>(\w+)</Code>", body) for _, body in answers[:6]]
    assert [c.group(1) if c else None for c in codes] == [
        b"InvalidArgument",
        b"KeyTooLongError",
    ] * 3
    assert [head.split(b" ")[1] for head, _ in answers] == [b"400"] * 6 + [b"200"] * 2
    assert answers[-1][1] == SMALL
    expected = before + 2
    got = eventually(
        lambda: admin_totals(server, objects).get(("GetObject", "Requests-Tier2"), 0), expected
    )
    assert got == expected


@pytest.mark.parametrize("signing", ["s3", "s3v4"])
def test_quick_puts_equal_aiohttp_puts(
    server: LiveServer, s3: Any, objects: str, signing: str, request: pytest.FixtureRequest
) -> None:
    """A small PUT whose body comes with its head is answered by the quick path; behind a
    request the quick path never takes, the same bytes are answered by aiohttp. Every
    refusal (signature, access, digests, checksums, conditions, unsigned headers) and
    every write must come out the same."""
    signer = request.getfixturevalue(signing)
    body = os.urandom(3000)
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()

    def presigned(key: str, **extra: Any) -> str:
        params = {"Bucket": objects, "Key": key, **extra}
        return target_of(signer.generate_presigned_url("put_object", Params=params))

    url = f"http://127.0.0.1:{server.port}/{objects}/signed"

    def signed(headers: dict[str, str], payload_hash: str | None = None) -> dict[str, str]:
        return sign_request("PUT", url, headers, body, payload_hash=payload_hash)

    wrong_md5 = base64.b64encode(b"0" * 16).decode()
    cases: list[tuple[str, str, dict[str, str]]] = [
        ("PUT", presigned("written"), {}),
        ("PUT", presigned("small"), {"If-None-Match": "*"}),  # 412: it exists
        ("PUT", presigned("written"), {"x-amz-acl": "public-read"}),  # not signed
        ("PUT", presigned("written")[:-4] + "0000", {}),  # a forged signature
        ("PUT", f"/{objects}/anonymous", {}),  # anonymous, private bucket
        ("PUT", "/no-such-bucket-here/k", {}),
        ("PUT", f"/{objects}/signed", signed({"Content-Type": "text/plain", "Content-MD5": md5})),
        ("PUT", f"/{objects}/signed", signed({"Content-MD5": wrong_md5})),
        ("PUT", f"/{objects}/signed", signed({"x-amz-checksum-crc32": "AAAAAA=="})),
        ("PUT", f"/{objects}/signed", signed({"x-amz-checksum-sha512": "AAAA"})),
        ("PUT", f"/{objects}/signed", signed({}, payload_hash="0" * 64)),
    ]
    for case in cases:
        (quick,) = exchange(server, [case], [body])
        _, through_aiohttp = exchange(server, [("GET", "/_health", {}), case], [None, body])
        assert comparable(quick) == comparable(through_aiohttp), case
    answers = [exchange(server, [c], [body])[0] for c in cases]
    codes = [re.findall(rb"<Code>(\w+)</Code>", a[1]) for a in answers]
    assert [a[0].split(b" ")[1] for a in answers] == [
        b"200",
        b"412",
        b"403",
        b"403",
        b"403",
        b"404",
        b"200",
        b"400",
        b"400",
        b"400",
        b"400",
    ], codes
    assert codes[7:] == [
        [b"BadDigest"],
        [b"BadDigest"],
        [b"InvalidRequest"],
        [b"XAmzContentSHA256Mismatch"],
    ]
    for key in ("written", "signed"):
        got = s3.get_object(Bucket=objects, Key=key)
        assert got["Body"].read() == body
    assert s3.get_object_acl(Bucket=objects, Key="written")["Grants"][0]["Permission"] == (
        "FULL_CONTROL"
    )  # the unsigned x-amz-acl did nothing


def test_pipelined_quick_puts_and_gets_keep_their_order_and_bytes(
    server: LiveServer, s3: Any, objects: str
) -> None:
    bodies = [os.urandom(n) for n in (0, 1, 4096, 30_000, 40_000)]  # the last: a file
    puts = [
        target_of(
            s3.generate_presigned_url("put_object", Params={"Bucket": objects, "Key": f"p{i}"})
        )
        for i in range(len(bodies))
    ]
    gets = [
        target_of(
            s3.generate_presigned_url("get_object", Params={"Bucket": objects, "Key": f"p{i}"})
        )
        for i in range(len(bodies))
    ]
    requests: list[tuple[str, str, dict[str, str]]] = []
    sent: list[bytes | None] = []
    for put, get, body in zip(puts, gets, bodies, strict=True):
        requests += [("PUT", put, {}), ("GET", get, {})]
        sent += [body, None]
    answers = exchange(server, requests, sent)
    assert [a[0].split(b" ")[1] for a in answers] == [b"200"] * len(requests)
    assert [a[1] for a in answers[1::2]] == bodies
    etags = [line for a in answers[::2] for line in a[0].split(b"\r\n") if b"ETag" in line]
    assert etags == [f'ETag: "{hashlib.md5(b).hexdigest()}"'.encode() for b in bodies]


def test_curl_uploads_through_a_presigned_url(
    server: LiveServer, s3: Any, objects: str, tmp_path: Any
) -> None:
    """curl sends a small upload's head and body together (no Expect under 1 MiB)."""
    body = os.urandom(5000)
    source = tmp_path / "up"
    source.write_bytes(body)
    url = s3.generate_presigned_url("put_object", Params={"Bucket": objects, "Key": "curl"})
    subprocess.run(["curl", "-sS", "--fail", "-T", str(source), url], check=True, timeout=60)
    assert s3.get_object(Bucket=objects, Key="curl")["Body"].read() == body


def test_each_put_is_metered_once_whoever_answers_it(
    server: LiveServer, s3: Any, objects: str
) -> None:
    # The fixture's two PUTs (boto3's: through aiohttp, after 100-continue).
    count, bytes_in = 2, len(SMALL) + len(BIG)
    put = target_of(
        s3.generate_presigned_url("put_object", Params={"Bucket": objects, "Key": "metered"})
    )
    # Two quick, one handed over whole (too large to be quick), one behind /_health.
    answers = exchange(server, [("PUT", put, {})] * 2, [b"a" * 100, b"b" * 200])
    answers += exchange(server, [("PUT", put, {})], [b"c" * 70_000])
    answers += exchange(server, [("GET", "/_health", {}), ("PUT", put, {})], [None, b"d" * 300])
    assert all(a[0].startswith(b"HTTP/1.1 200") for a in answers)
    expected = (count + 4, bytes_in + 100 + 200 + 70_000 + 300)

    def totals() -> tuple[float, float]:
        now = admin_totals(server, objects)
        return (
            now.get(("PutObject", "Requests-Tier1"), 0),
            now.get(("PutObject", "DataTransfer-In-Bytes"), 0),
        )

    assert eventually(totals, expected) == expected
    time.sleep(1.5)  # a second flush adds nothing
    assert totals() == expected


def test_which_puts_the_quick_path_answers(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the server itself: a small PUT that comes whole is answered by the quick path;
    boto3's (Expect: 100-continue), a large one and one whose body is late are aiohttp's,
    and each stores exactly its bytes."""
    import asyncio

    from s3torrent.s3 import quick
    from tests.conftest import make_client, node_in_process

    answered: list[str] = []
    answer = quick.QuickReads.answer

    async def counted(self: Any, head: Any, conn: Any, body: bytes = b"") -> Any:
        answered.append(f"{head.method} {head.target.partition('?')[0]} {len(body)}")
        return await answer(self, head, conn, body)

    monkeypatch.setattr(quick.QuickReads, "answer", counted)

    async def scenario() -> None:
        async with node_in_process(tmp_path / "data") as (_node, endpoint):
            s3 = make_client(endpoint)
            port = int(endpoint.rsplit(":", 1)[1])

            def client_side() -> None:
                s3.create_bucket(Bucket="quick")
                s3.put_object(Bucket="quick", Key="boto", Body=b"b" * 10)

                def presigned(key: str) -> str:
                    params = {"Bucket": "quick", "Key": key}
                    return target_of(s3.generate_presigned_url("put_object", Params=params))

                def head(key: str, length: int) -> bytes:
                    return (
                        f"PUT {presigned(key)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        f"Content-Length: {length}\r\n\r\n"
                    ).encode()

                with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
                    buffer = bytearray()
                    sock.sendall(head("whole", 5) + b"hello")
                    assert read_answer(sock, buffer, False)[0].startswith(b"HTTP/1.1 200")
                with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
                    buffer = bytearray()
                    sock.sendall(head("late", 5) + b"he")
                    time.sleep(0.3)
                    sock.sendall(b"llo")
                    assert read_answer(sock, buffer, False)[0].startswith(b"HTTP/1.1 200")
                with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
                    buffer = bytearray()
                    sock.sendall(head("large", 40_000) + b"L" * 40_000)
                    assert read_answer(sock, buffer, False)[0].startswith(b"HTTP/1.1 200")
                for key, data in (("boto", b"b" * 10), ("whole", b"hello"), ("late", b"hello")):
                    assert s3.get_object(Bucket="quick", Key=key)["Body"].read() == data
                assert s3.get_object(Bucket="quick", Key="large")["Body"].read() == b"L" * 40_000

            await asyncio.get_running_loop().run_in_executor(None, client_side)

    asyncio.run(scenario())
    puts = [a for a in answered if a.startswith("PUT")]
    # CreateBucket (no body) is taken too, and handed back at routing: aiohttp made it.
    assert puts == ["PUT /quick 0", "PUT /quick/whole 5"]
