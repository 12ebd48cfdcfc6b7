"""GetObjectTorrent (`GET /bucket/key?torrent`) against a live server.

Oracles are independent of our own metainfo code where it matters: piece hashes are
checked with hashlib against the uploaded bytes (v1), libtorrent verifies v2/hybrid
hashes against a file on disk, and `transmission-show` reads v1 torrents.
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import hashlib
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_from_bytes, unquote

import pytest
from botocore.exceptions import ClientError
from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, make_client, start_server

MiB = 1024 * 1024


# ---- helpers ----


def http(method: str, url: str, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """An anonymous request (no auth at all); returns status, headers, body."""
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers.items()), e.read()


def object_url(endpoint: str, bucket: str, key: str) -> str:
    return f"{endpoint}/{bucket}/{quote(key, safe='/')}"


def torrent_url(endpoint: str, bucket: str, key: str) -> str:
    return object_url(endpoint, bucket, key) + "?torrent"


def get_torrent(endpoint: str, bucket: str, key: str) -> bytes:
    status, headers, body = http("GET", torrent_url(endpoint, bucket, key))
    assert status == 200, body
    assert headers["Content-Type"] == "application/x-bittorrent"
    return body


def error_code(body: bytes) -> str:
    start = body.index(b"<Code>") + len(b"<Code>")
    return body[start : body.index(b"</Code>")].decode()


def info_bytes(torrent: bytes) -> bytes:
    """The raw bencoded info dict, cut out of the file (not re-encoded)."""
    start = torrent.index(b"4:infod") + len(b"4:info")
    # Our files put "info" after all other keys but "piece layers"/"url-list" may follow.
    decoded = bdecode(torrent)
    from fastbencode import bencode  # type: ignore[attr-defined]

    raw: bytes = bencode(decoded[b"info"])
    assert torrent[start : start + len(raw)] == raw, "info dict is not canonical bencode"
    return raw


def v1_info_hash(torrent: bytes) -> bytes:
    return hashlib.sha1(info_bytes(torrent)).digest()


def check_v1_pieces(torrent: bytes, data: bytes) -> int:
    """Every SHA-1 piece hash against the bytes; returns the piece length used."""
    info = bdecode(torrent)[b"info"]
    piece_length = info[b"piece length"]
    pieces = info[b"pieces"]
    assert info[b"length"] == len(data)
    count = -(-len(data) // piece_length)
    assert len(pieces) == 20 * count
    for i in range(count):
        want = hashlib.sha1(data[i * piece_length : (i + 1) * piece_length]).digest()
        assert pieces[20 * i : 20 * i + 20] == want, f"piece {i} of {count}"
    return int(piece_length)


def lt_session() -> Any:
    import libtorrent as lt

    return lt.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "alert_mask": 0,
        }
    )


def lt_verify(torrent: bytes, data: bytes, tmp: Path) -> Any:
    """libtorrent checks `data` (saved under the torrent's name) against every hash."""
    import libtorrent as lt

    stripped = dict(bdecode(torrent))
    for k in (b"announce", b"announce-list", b"url-list"):
        stripped.pop(k, None)
    ti = lt.torrent_info(lt.bdecode(lt.bencode(stripped)))
    save = tmp / "lt-verify"
    save.mkdir(parents=True, exist_ok=True)
    (save / ti.name()).write_bytes(data)
    ses = lt_session()
    atp = lt.add_torrent_params()
    atp.ti = ti
    atp.save_path = str(save)
    h = ses.add_torrent(atp)
    deadline = time.monotonic() + 30
    st = h.status()
    while time.monotonic() < deadline:
        st = h.status()
        if st.errc.value() != 0:
            break
        if (
            st.state
            not in (
                lt.torrent_status.checking_files,
                lt.torrent_status.checking_resume_data,
            )
            and st.has_metadata
        ):
            break
        time.sleep(0.05)
    assert st.errc.value() == 0, st.errc.message()
    assert st.is_seeding, f"libtorrent rejected the hashes: state={st.state} pieces={st.pieces}"
    assert all(st.pieces) and len(st.pieces) == ti.num_pieces()
    ses.remove_torrent(h)
    return ti


def announce(endpoint: str, info_hash: bytes) -> dict[bytes, Any]:
    peer_id = b"-TS0001-" + os.urandom(6).hex().encode()[:12]
    url = (
        f"{endpoint}/_tracker/announce?info_hash={quote_from_bytes(info_hash)}"
        f"&peer_id={quote_from_bytes(peer_id)}&port=6881&uploaded=0&downloaded=0&left=0"
        "&compact=1&event=started"
    )
    status, _, body = http("GET", url)
    assert status == 200
    decoded: dict[bytes, Any] = bdecode(body)
    return decoded


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def multipart_put(s3: Any, bucket: str, key: str, parts: list[bytes], acl: str) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key=key, ACL=acl)
    done = []
    for n, part in enumerate(parts, 1):
        r = s3.upload_part(Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=n, Body=part)
        done.append({"PartNumber": n, "ETag": r["ETag"]})
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=up["UploadId"], MultipartUpload={"Parts": done}
    )


# ---- servers with other settings ----


@pytest.fixture(scope="module")
def hybrid_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("hybrid"), env={"S3TORRENT_TORRENT__FORMAT": "hybrid"}
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("limited"),
        env={
            "S3TORRENT_TORRENT__MAX_OBJECT_SIZE": "1000",
            "S3TORRENT_TORRENT__DISABLED_BUCKETS": '["no-torrents"]',
            "S3TORRENT_TORRENT__EXTRA_TRACKERS": '["udp://tracker.example:1337/announce"]',
            "S3TORRENT_TORRENT__WEB_SEED": "false",
        },
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def disabled_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = start_server(
        tmp_path_factory.mktemp("disabled"), env={"S3TORRENT_TORRENT__ENABLED": "false"}
    )
    yield srv
    srv.stop()


# ---- the response ----


def test_torrent_response_headers(server: LiveServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="dir/report.pdf", Body=b"%PDF-1.4 x", ACL="public-read")
    status, h, body = http("GET", torrent_url(server.endpoint, bucket, "dir/report.pdf"))
    assert status == 200
    assert h["Content-Type"] == "application/x-bittorrent"
    assert h["Content-Disposition"] == 'attachment; filename="report.pdf.torrent"'
    assert int(h["Content-Length"]) == len(body) > 0
    assert h["ETag"] == '"' + hashlib.md5(body).hexdigest() + '"'
    assert h["x-amz-request-id"]

    hs, hh, hbody = http("HEAD", torrent_url(server.endpoint, bucket, "dir/report.pdf"))
    assert hs == 200
    assert hbody == b""
    for name in ("Content-Type", "Content-Disposition", "Content-Length", "ETag"):
        assert hh[name] == h[name], name
    assert hh["x-amz-request-id"]


def test_non_ascii_key_uses_filename_star(server: LiveServer, s3: Any, bucket: str) -> None:
    key = "photos/naïve café €.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"bonjour", ACL="public-read")
    status, h, body = http("GET", torrent_url(server.endpoint, bucket, key))
    assert status == 200, body
    cd = h["Content-Disposition"]
    assert cd.startswith('attachment; filename="')
    ascii_part = cd.split('filename="', 1)[1].split('"', 1)[0]
    assert ascii_part.isascii() and ascii_part.endswith(".torrent")
    star = cd.split("filename*=", 1)[1]
    assert star.startswith("UTF-8''")
    assert unquote(star[len("UTF-8''") :]) == "naïve café €.txt.torrent"
    assert bdecode(body)[b"info"][b"name"].decode() == "naïve café €.txt"


def test_owner_signed_boto3_and_aws_cli(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(40_000)
    s3.put_object(Bucket=bucket, Key="signed.bin", Body=data, ACL="public-read")
    anon = get_torrent(server.endpoint, bucket, "signed.bin")
    via_boto = s3.get_object_torrent(Bucket=bucket, Key="signed.bin")["Body"].read()
    assert via_boto == anon

    out = tmp_path / "cli.torrent"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": ROOT_AK,
        "AWS_SECRET_ACCESS_KEY": ROOT_SK,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    res = subprocess.run(
        [
            "aws", "s3api", "get-object-torrent", "--endpoint-url", server.endpoint,
            "--bucket", bucket, "--key", "signed.bin", str(out),
        ],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert out.read_bytes() == anon
    check_v1_pieces(anon, data)


def test_private_object_anonymous_is_denied(server: LiveServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="secret.txt", Body=b"private bytes")
    status, _, body = http("GET", torrent_url(server.endpoint, bucket, "secret.txt"))
    assert status == 403
    assert error_code(body) == "AccessDenied"


def test_private_object_owner_gets_no_such_key(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="secret.txt", Body=b"private bytes")
    with pytest.raises(ClientError) as exc:
        s3.get_object_torrent(Bucket=bucket, Key="secret.txt")
    err = exc.value.response["Error"]
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert err["Code"] == "NoSuchKey"
    assert "not anonymously readable" in err["Message"]


def test_missing_key_is_no_such_key(server: LiveServer, s3: Any, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object_torrent(Bucket=bucket, Key="nothing-here")
    assert exc.value.response["Error"]["Code"] == "NoSuchKey"


def test_acl_change_to_private_refuses_again(server: LiveServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="flip.txt", Body=b"now you see me", ACL="public-read")
    torrent = get_torrent(server.endpoint, bucket, "flip.txt")
    assert b"failure reason" not in announce(server.endpoint, v1_info_hash(torrent))

    s3.put_object_acl(Bucket=bucket, Key="flip.txt", ACL="private")
    status, _, body = http("GET", torrent_url(server.endpoint, bucket, "flip.txt"))
    assert status == 403 and error_code(body) == "AccessDenied"
    assert b"failure reason" in announce(server.endpoint, v1_info_hash(torrent))

    s3.put_object_acl(Bucket=bucket, Key="flip.txt", ACL="public-read")
    assert get_torrent(server.endpoint, bucket, "flip.txt") == torrent


def test_overwrite_changes_info_hash_and_revokes_old(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    s3.put_object(Bucket=bucket, Key="v.txt", Body=b"version one", ACL="public-read")
    old = get_torrent(server.endpoint, bucket, "v.txt")
    old_hash = v1_info_hash(old)
    reply = announce(server.endpoint, old_hash)
    assert b"failure reason" not in reply, reply

    s3.put_object(Bucket=bucket, Key="v.txt", Body=b"version one", ACL="public-read")
    new = get_torrent(server.endpoint, bucket, "v.txt")
    new_hash = v1_info_hash(new)
    assert new_hash != old_hash  # identical bytes, new version: new swarm
    assert b"failure reason" in announce(server.endpoint, old_hash)
    assert b"failure reason" not in announce(server.endpoint, new_hash)


def test_delete_removes_torrent(server: LiveServer, s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="gone.txt", Body=b"bye", ACL="public-read")
    torrent = get_torrent(server.endpoint, bucket, "gone.txt")
    s3.delete_object(Bucket=bucket, Key="gone.txt")
    status, _, body = http("GET", torrent_url(server.endpoint, bucket, "gone.txt"))
    # Anonymous without s3:ListBucket learns nothing about absent keys: 403, as for GET.
    assert status == 403 and error_code(body) == "AccessDenied", body
    assert http("GET", object_url(server.endpoint, bucket, "gone.txt"))[0] == 403
    with pytest.raises(ClientError) as exc:
        s3.get_object_torrent(Bucket=bucket, Key="gone.txt")
    assert exc.value.response["Error"]["Code"] == "NoSuchKey"
    assert b"failure reason" in announce(server.endpoint, v1_info_hash(torrent))


def test_size_limit_is_an_s3_error(limited_server: LiveServer) -> None:
    s3 = make_client(limited_server.endpoint)
    s3.create_bucket(Bucket="limits")
    s3.put_object(Bucket="limits", Key="small", Body=b"x" * 1000, ACL="public-read")
    s3.put_object(Bucket="limits", Key="big", Body=b"x" * 1001, ACL="public-read")
    get_torrent(limited_server.endpoint, "limits", "small")
    status, _, body = http("GET", torrent_url(limited_server.endpoint, "limits", "big"))
    assert status == 400, body
    assert error_code(body) == "EntityTooLarge"
    assert b"<MaxSizeAllowed>1000</MaxSizeAllowed>" in body


def test_extra_trackers_and_web_seed_switch(limited_server: LiveServer) -> None:
    s3 = make_client(limited_server.endpoint)
    s3.create_bucket(Bucket="extras")
    s3.put_object(Bucket="extras", Key="k", Body=b"abc", ACL="public-read")
    t = bdecode(get_torrent(limited_server.endpoint, "extras", "k"))
    ours = f"{limited_server.endpoint}/announce".encode()
    assert t[b"announce"] == ours
    assert t[b"announce-list"][0][0] == ours
    assert t[b"announce-list"][-1] == [b"udp://tracker.example:1337/announce"]
    assert b"url-list" not in t  # torrent.web_seed = false
    status, _, body = http(
        "GET", torrent_url(limited_server.endpoint, "extras", "k") + "&format=magnet"
    )
    assert status == 200
    params = magnet_params(body.decode())
    assert ("tr", "udp://tracker.example:1337/announce") in params
    assert not [v for k, v in params if k == "ws"]


def test_disabled_bucket_is_not_implemented(limited_server: LiveServer) -> None:
    s3 = make_client(limited_server.endpoint)
    s3.create_bucket(Bucket="no-torrents")
    s3.put_object(Bucket="no-torrents", Key="k", Body=b"abc", ACL="public-read")
    status, _, body = http("GET", torrent_url(limited_server.endpoint, "no-torrents", "k"))
    assert status == 501, body
    assert error_code(body) == "NotImplemented"
    # The object itself stays readable.
    assert http("GET", object_url(limited_server.endpoint, "no-torrents", "k"))[2] == b"abc"


def test_torrents_disabled_is_not_implemented(disabled_server: LiveServer) -> None:
    s3 = make_client(disabled_server.endpoint)
    s3.create_bucket(Bucket="off")
    s3.put_object(Bucket="off", Key="k", Body=b"abc", ACL="public-read")
    status, _, body = http("GET", torrent_url(disabled_server.endpoint, "off", "k"))
    assert status == 501 and error_code(body) == "NotImplemented"
    with pytest.raises(ClientError) as exc:
        s3.get_object_torrent(Bucket="off", Key="k")
    assert exc.value.response["Error"]["Code"] == "NotImplemented"


# ---- magnets ----


def magnet_params(text: str) -> list[tuple[str, str]]:
    assert text.startswith("magnet:?")
    return parse_qsl(text.strip()[len("magnet:?") :], strict_parsing=True)


def test_magnet_v1(server: LiveServer, s3: Any, bucket: str) -> None:
    data = os.urandom(70_000)
    s3.put_object(Bucket=bucket, Key="m/file.bin", Body=data, ACL="public-read")
    torrent = get_torrent(server.endpoint, bucket, "m/file.bin")
    status, h, body = http(
        "GET", torrent_url(server.endpoint, bucket, "m/file.bin") + "&format=magnet"
    )
    assert status == 200
    assert h["Content-Type"].startswith("text/plain")
    params = magnet_params(body.decode())
    xt = [v for k, v in params if k == "xt"]
    assert xt == ["urn:btih:" + v1_info_hash(torrent).hex()]
    assert ("dn", "file.bin") in params
    assert ("xl", str(len(data))) in params
    assert ("tr", f"{server.endpoint}/announce") in params
    ws = f"{server.endpoint}/_webseed/{v1_info_hash(torrent).hex()}/"
    assert ("ws", ws) in params
    assert ("xs", torrent_url(server.endpoint, bucket, "m/file.bin")) in params


def test_magnet_hybrid_has_btmh(hybrid_server: LiveServer) -> None:
    s3 = make_client(hybrid_server.endpoint)
    s3.create_bucket(Bucket="hyb-magnet")
    s3.put_object(Bucket="hyb-magnet", Key="f.bin", Body=os.urandom(50_000), ACL="public-read")
    torrent = get_torrent(hybrid_server.endpoint, "hyb-magnet", "f.bin")
    raw_info = info_bytes(torrent)
    status, _, body = http(
        "GET",
        torrent_url(hybrid_server.endpoint, "hyb-magnet", "f.bin") + "&format=magnet&magnet=btmh",
    )
    assert status == 200
    xt = [v for k, v in magnet_params(body.decode()) if k == "xt"]
    assert "urn:btih:" + hashlib.sha1(raw_info).hexdigest() in xt
    assert "urn:btmh:1220" + hashlib.sha256(raw_info).hexdigest() in xt


# ---- the metainfo ----


def test_metainfo_fields_and_determinism(server: LiveServer, s3: Any, bucket: str) -> None:
    data = os.urandom(33_333)
    s3.put_object(Bucket=bucket, Key="a/b/c.dat", Body=data, ACL="public-read")
    first = get_torrent(server.endpoint, bucket, "a/b/c.dat")
    second = get_torrent(server.endpoint, bucket, "a/b/c.dat")
    assert first == second

    t = bdecode(first)
    announce_url = f"{server.endpoint}/announce".encode()
    assert t[b"announce"] == announce_url
    # One tier: our tracker by HTTP, then by UDP when that listener is on (same host), then
    # by WebSocket for browsers.
    [tier] = t[b"announce-list"]
    assert tier[0] == announce_url
    assert tier[-1] == f"ws{server.endpoint[4:]}/_tracker/ws".encode()
    assert all(u.startswith(b"udp://127.0.0.1:") for u in tier[1:-1]), tier
    # The web seed's own path (by swarm id), not the object's URL (see s3torrent.webseed).
    swarm_id = hashlib.sha1(bencode(t[b"info"])).hexdigest()
    assert t[b"url-list"] == [f"{server.endpoint}/_webseed/{swarm_id}/".encode()]
    info = t[b"info"]
    assert info[b"name"] == b"c.dat"
    assert info[b"x-amz-bucket"] == bucket.encode()
    assert info[b"x-amz-key"] == b"a/b/c.dat"
    assert info[b"x-s3torrent-version"]
    head = s3.head_object(Bucket=bucket, Key="a/b/c.dat")
    assert t[b"creation date"] == int(head["LastModified"].timestamp())
    _, h, _ = http("GET", object_url(server.endpoint, bucket, "a/b/c.dat"))
    lm = email.utils.parsedate_to_datetime(h["Last-Modified"])
    assert t[b"creation date"] == int(lm.timestamp())
    check_v1_pieces(first, data)


def test_same_bytes_other_key_other_info_hash(server: LiveServer, s3: Any, bucket: str) -> None:
    data = b"identical content" * 100
    s3.put_object(Bucket=bucket, Key="one", Body=data, ACL="public-read")
    s3.put_object(Bucket=bucket, Key="two", Body=data, ACL="public-read")
    a = get_torrent(server.endpoint, bucket, "one")
    b = get_torrent(server.endpoint, bucket, "two")
    assert bdecode(a)[b"info"][b"pieces"] == bdecode(b)[b"info"][b"pieces"]
    assert v1_info_hash(a) != v1_info_hash(b)


def boundary_sizes(piece: int) -> list[int]:
    return [1, piece - 1, piece, piece + 1, 5 * piece + 1234]


def test_v1_piece_hashes_at_boundaries(server: LiveServer, s3: Any, bucket: str) -> None:
    import libtorrent as lt

    s3.put_object(Bucket=bucket, Key="probe", Body=b"p", ACL="public-read")
    piece = bdecode(get_torrent(server.endpoint, bucket, "probe"))[b"info"][b"piece length"]
    for size in boundary_sizes(piece):
        data = os.urandom(size)
        key = f"sizes/{size}.bin"
        s3.put_object(Bucket=bucket, Key=key, Body=data, ACL="public-read")
        torrent = get_torrent(server.endpoint, bucket, key)
        used = check_v1_pieces(torrent, data)
        ti = lt.torrent_info(lt.bdecode(torrent))
        assert ti.total_size() == size
        assert ti.num_pieces() == -(-size // used)
        assert ti.piece_size(ti.num_pieces() - 1) == size - (ti.num_pieces() - 1) * used
        assert bytes.fromhex(str(ti.info_hashes().v1)) == v1_info_hash(torrent)


def test_hybrid_hashes_verified_by_libtorrent(hybrid_server: LiveServer, tmp_path: Path) -> None:
    s3 = make_client(hybrid_server.endpoint)
    s3.create_bucket(Bucket="hyb-sizes")
    s3.put_object(Bucket="hyb-sizes", Key="probe", Body=b"p", ACL="public-read")
    probe = bdecode(get_torrent(hybrid_server.endpoint, "hyb-sizes", "probe"))
    piece = probe[b"info"][b"piece length"]
    assert probe[b"info"][b"meta version"] == 2
    for size in boundary_sizes(piece):
        data = os.urandom(size)
        key = f"{size}.bin"
        s3.put_object(Bucket="hyb-sizes", Key=key, Body=data, ACL="public-read")
        torrent = get_torrent(hybrid_server.endpoint, "hyb-sizes", key)
        check_v1_pieces(torrent, data)
        t = bdecode(torrent)
        file_entry = t[b"info"][b"file tree"][key.encode()][b""]
        assert file_entry[b"length"] == size
        if size > piece:
            assert list(t[b"piece layers"]) == [file_entry[b"pieces root"]]
        else:
            assert b"piece layers" not in t or not t[b"piece layers"]
        ti = lt_verify(torrent, data, tmp_path / str(size))
        assert ti.info_hashes().has_v1() and ti.info_hashes().has_v2()


def test_empty_object_torrent(server: LiveServer, s3: Any, bucket: str) -> None:
    """A 0-byte object has no torrent: most clients refuse (libtorrent) or crash (lftp) on
    one of length 0, so `?torrent` says why instead (tests/api/test_torrent_client_fixes.py)."""
    s3.put_object(Bucket=bucket, Key="empty.txt", Body=b"", ACL="public-read")
    status, _, body = http("GET", torrent_url(server.endpoint, bucket, "empty.txt"))
    assert status == 400 and error_code(body) == "InvalidRequest"


def test_transmission_show_reads_v1(
    server: LiveServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    exe = shutil.which("transmission-show")
    assert exe is not None, "transmission-show (Debian transmission-cli) is required"
    data = os.urandom(3 * 16384 + 5)
    s3.put_object(Bucket=bucket, Key="tr/show me.bin", Body=data, ACL="public-read")
    torrent = get_torrent(server.endpoint, bucket, "tr/show me.bin")
    path = tmp_path / "t.torrent"
    path.write_bytes(torrent)
    res = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert v1_info_hash(torrent).hex() in out
    assert "show me.bin" in out
    assert f"{server.endpoint}/announce" in out
    pieces = -(-len(data) // bdecode(torrent)[b"info"][b"piece length"])
    assert f"Piece Count: {pieces}" in out


# ---- latency: hashes were computed during the upload ----


def test_torrent_after_large_put_is_immediate(server: LiveServer, s3: Any, bucket: str) -> None:
    """256 MiB PUT, then ?torrent at once: no re-read of the object may happen."""
    size = 256 * MiB
    data = os.urandom(MiB) * 256
    s3.put_object(Bucket=bucket, Key="large.bin", Body=data, ACL="public-read")
    url = torrent_url(server.endpoint, bucket, "large.bin")
    start = time.perf_counter()
    status, _, body = http("GET", url)
    elapsed_ms = (time.perf_counter() - start) * 1000
    print(f"\n?torrent after a {size // MiB} MiB PUT answered in {elapsed_ms:.1f} ms")
    assert status == 200
    assert elapsed_ms < 200
    info = bdecode(body)[b"info"]
    assert info[b"length"] == size
    # Spot-check first and last pieces (the full check is the boundary test's job).
    pl = info[b"piece length"]
    assert info[b"pieces"][:20] == hashlib.sha1(data[:pl]).digest()
    last = (size - 1) // pl
    assert info[b"pieces"][-20:] == hashlib.sha1(data[last * pl :]).digest()
    s3.delete_object(Bucket=bucket, Key="large.bin")


# ---- background hashing (multipart) ----


def test_multipart_torrent_waits_for_background_job(
    server: LiveServer, s3: Any, bucket: str
) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(777_777)]
    multipart_put(s3, bucket, "mp.bin", parts, "public-read")
    url = torrent_url(server.endpoint, bucket, "mp.bin")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(lambda _: http("GET", url), range(8)))
    assert all(status == 200 for status, _, _ in bodies), [b[2][:200] for b in bodies]
    assert len({body for _, _, body in bodies}) == 1
    check_v1_pieces(bodies[0][2], b"".join(parts))


def test_hash_jobs_are_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Concurrent `ensure` calls for one version share one job (one hashing pass)."""
    import asyncio

    from s3torrent.config import TorrentSettings
    from s3torrent.events import EventBus
    from s3torrent.store import metadata as md
    from s3torrent.store.blobs.local import LocalBlobStore
    from s3torrent.store.database import Database
    from s3torrent.store.metastore import SqlMetadataStore
    from s3torrent.torrent import jobs
    from s3torrent.torrent.catalog import TorrentCatalog

    data = os.urandom(300_000)
    calls: list[int] = []
    real = jobs.hash_file  # a local blob is hashed from its file

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        time.sleep(0.2)  # keep the job running while the others ask for it
        return real(*args, **kwargs)

    async def scenario() -> list[Any]:
        db = Database(f"sqlite:///{tmp_path / 'm.sqlite3'}")
        blobs = LocalBlobStore(tmp_path / "d", fsync=False)
        meta = SqlMetadataStore(db, EventBus())
        catalog = TorrentCatalog(TorrentSettings())
        hj = jobs.HashJobs(meta, blobs, catalog, workers=2)
        w = blobs.new_writer()
        w.write(data)
        vid = "ab" * 16
        w.commit(vid)
        obj = md.ObjectVersion("bk", "k", vid, len(data), "etag", time.time(), "owner")
        await db.write(lambda c: md.upsert_object(c, obj))
        tasks = [hj.ensure(obj) for _ in range(5)]
        assert len({id(t) for t in tasks}) == 1
        results = await asyncio.gather(*tasks)
        await hj.close()
        db.close()
        return results

    monkeypatch.setattr(jobs, "hash_file", counting)
    results = asyncio.run(scenario())
    assert calls == [1]
    assert len({r.pieces_v1 for r in results}) == 1
    pl = results[0].piece_length
    assert results[0].pieces_v1 == b"".join(
        hashlib.sha1(data[i : i + pl]).digest() for i in range(0, len(data), pl)
    )


def test_hash_wait_timeout_is_slow_down(tmp_path: Path) -> None:
    srv = start_server(
        tmp_path,
        env={
            "S3TORRENT_TORRENT__HASH_WAIT_TIMEOUT": "0.001",
            "S3TORRENT_TORRENT__FORMAT": "hybrid",
        },
    )
    try:
        s3 = make_client(srv.endpoint)
        s3.create_bucket(Bucket="slow")
        block = os.urandom(MiB)
        parts = [block * 16, block * 16, block * 16, block * 16]  # 64 MiB
        multipart_put(s3, "slow", "big.bin", parts, "public-read")
        status, h, body = http("GET", torrent_url(srv.endpoint, "slow", "big.bin"))
        assert status == 503, body[:300]
        assert error_code(body) == "SlowDown"
        assert int(h["Retry-After"]) > 0
        # The job keeps running; the torrent arrives once it is done.
        ok = wait_for(
            lambda: (
                (r := http("GET", torrent_url(srv.endpoint, "slow", "big.bin")))[0] == 200 and r
            ),
            60,
            "the background job",
        )
        check_v1_pieces(ok[2], b"".join(parts))
    finally:
        srv.stop()
