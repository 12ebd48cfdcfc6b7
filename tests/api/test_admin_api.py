"""The admin API against a live server: users, reports, torrents, info, and who is refused."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import (
    ROOT_AK,
    ROOT_SK,
    LiveServer,
    add_user,
    make_client,
    shifted_clock,
    sign_request,
    start_server,
)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Any:
    s = start_server(tmp_path_factory.mktemp("admin"))
    yield s
    s.stop()


def call(
    srv: LiveServer,
    method: str,
    path: str,
    body: Any = None,
    keys: tuple[str, str] | None = (ROOT_AK, ROOT_SK),
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """(status, parsed JSON body) of one admin request, signed by `keys` (None: unsigned)."""
    url = srv.endpoint + path
    data = b"" if body is None else json.dumps(body).encode()
    # Signatures are accepted once; the same change twice in one second signs the same bytes
    # unless something differs (the remote CLI sends this header too).
    hdrs = {"x-s3torrent-nonce": os.urandom(8).hex(), **(headers or {})}
    if keys is not None:
        hdrs = sign_request(method, url, hdrs, data, ak=keys[0], sk=keys[1])
    return send(url, method, data, hdrs)


def send(url: str, method: str, data: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=data or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw, status, ctype = r.read(), r.status, r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        raw, status, ctype = e.read(), e.code, e.headers.get("Content-Type", "")
    return status, json.loads(raw) if "json" in ctype else raw.decode()


def new_name(stem: str) -> str:
    return f"{stem}{os.getpid()}{time.monotonic_ns() % 10**8}"


def test_root_adds_lists_and_removes_a_user_whose_keys_then_work_and_stop(
    srv: LiveServer,
) -> None:
    name = new_name("ann")
    status, made = call(srv, "POST", "/_admin/users", {"name": name})
    assert status == 201, made
    assert made["name"] == name and made["secret_key"] and not made["admin"]
    s3 = make_client(srv.endpoint, made["access_key"], made["secret_key"])
    s3.list_buckets()
    status, listed = call(srv, "GET", "/_admin/users")
    assert status == 200
    row = next(u for u in listed["users"] if u["name"] == name)
    assert "secret_key" not in row and row["disabled"] is False
    assert any(u["root"] for u in listed["users"])
    assert call(srv, "POST", "/_admin/users", {"name": name})[1]["error"]["code"] == (
        "EntityAlreadyExists"
    )
    status, gone = call(srv, "DELETE", f"/_admin/users/{name}")
    assert (status, gone) == (200, {"removed": name})
    with pytest.raises(Exception, match="InvalidAccessKeyId"):
        s3.list_buckets()
    status, err = call(srv, "DELETE", f"/_admin/users/{name}")
    assert status == 404 and err["error"]["code"] == "NoSuchEntity"


def test_disabled_user_is_refused_as_an_inactive_key_until_enabled(srv: LiveServer) -> None:
    who = add_user(srv, new_name("dis"))
    s3 = make_client(srv.endpoint, who.access_key, who.secret_key)
    s3.list_buckets()
    status, row = call(srv, "POST", f"/_admin/users/{who.name}/disable")
    assert status == 200 and row["disabled"] is True
    with pytest.raises(Exception, match="InvalidAccessKeyId") as refused:
        s3.list_buckets()
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403  # type: ignore[attr-defined]
    # The admin API refuses them the same way, reports included.
    status, err = call(srv, "GET", "/_admin/usage", keys=(who.access_key, who.secret_key))
    assert status == 403 and err["error"]["code"] == "InvalidAccessKeyId"
    status, row = call(srv, "POST", f"/_admin/users/{who.name}/enable")
    assert status == 200 and row["disabled"] is False
    s3.list_buckets()


def test_a_presigned_link_used_again_stops_when_its_user_is_disabled_or_rotated(
    srv: LiveServer,
) -> None:
    """A presigned URL fetched again and again is answered from a memo of verified
    signatures; the key's state is still asked on every use."""
    who = add_user(srv, new_name("link"))
    s3 = make_client(srv.endpoint, who.access_key, who.secret_key)
    bucket = new_name("link")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"linked")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    for _ in range(3):
        assert send(url, "GET", b"", {}) == (200, "linked")
    assert call(srv, "POST", f"/_admin/users/{who.name}/disable")[0] == 200
    status, body = send(url, "GET", b"", {})
    assert status == 403 and "<Code>InvalidAccessKeyId</Code>" in body
    assert call(srv, "POST", f"/_admin/users/{who.name}/enable")[0] == 200
    assert send(url, "GET", b"", {}) == (200, "linked")
    status, row = call(srv, "POST", f"/_admin/users/{who.name}/rotate")
    assert status == 200
    status, body = send(url, "GET", b"", {})
    assert status == 403 and "<Code>InvalidAccessKeyId</Code>" in body
    fresh = make_client(srv.endpoint, row["access_key"], row["secret_key"])
    url = fresh.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
    assert send(url, "GET", b"", {}) == (200, "linked")


def test_rotated_keys_replace_the_old_ones_at_once(srv: LiveServer) -> None:
    who = add_user(srv, new_name("rot"))
    status, row = call(srv, "POST", f"/_admin/users/{who.name}/rotate")
    assert status == 200 and row["access_key"] != who.access_key
    with pytest.raises(Exception, match="InvalidAccessKeyId"):
        make_client(srv.endpoint, who.access_key, who.secret_key).list_buckets()
    make_client(srv.endpoint, row["access_key"], row["secret_key"]).list_buckets()


def test_root_cannot_be_removed_disabled_or_rotated(srv: LiveServer) -> None:
    for method, path in [
        ("DELETE", "/_admin/users/root"),
        ("POST", "/_admin/users/root/disable"),
        ("POST", "/_admin/users/root/rotate"),
    ]:
        status, err = call(srv, method, path)
        assert status == 400 and err["error"]["code"] == "InvalidRequest", (path, err)
    make_client(srv.endpoint).list_buckets()


def test_another_user_and_anonymous_are_denied(srv: LiveServer) -> None:
    other = add_user(srv, new_name("oth"))
    keys = (other.access_key, other.secret_key)
    for method, path, body in [
        ("GET", "/_admin/users", None),
        ("POST", "/_admin/users", {"name": new_name("sneak")}),
        ("POST", f"/_admin/users/{other.name}/rotate", None),
        ("GET", "/_admin/info", None),
        ("GET", "/_admin/torrent?bucket=b&key=k", None),
    ]:
        status, err = call(srv, method, path, body, keys=keys)
        assert status == 403 and err["error"]["code"] == "AccessDenied", (path, err)
        status, err = call(srv, method, path, body, keys=None)
        assert status == 403 and err["error"]["code"] == "AccessDenied", (path, err)
        assert err["error"]["request_id"]
    # A user's own usage report is theirs to read.
    assert call(srv, "GET", "/_admin/usage", keys=keys)[0] == 200


def test_admin_user_may_manage_users_but_not_root(srv: LiveServer) -> None:
    status, boss = call(srv, "POST", "/_admin/users", {"name": new_name("boss"), "admin": True})
    assert status == 201 and boss["admin"] is True
    keys = (boss["access_key"], boss["secret_key"])
    status, _ = call(srv, "POST", "/_admin/users", {"name": new_name("sub")}, keys=keys)
    assert status == 201
    assert call(srv, "GET", "/_admin/users", keys=keys)[0] == 200
    assert call(srv, "POST", "/_admin/users/root/disable", keys=keys)[0] == 400
    call(srv, "POST", f"/_admin/users/{boss['name']}/disable")
    status, err = call(srv, "GET", "/_admin/users", keys=keys)
    assert status == 403 and err["error"]["code"] == "InvalidAccessKeyId"


def test_replayed_request_is_refused(srv: LiveServer) -> None:
    url = srv.endpoint + "/_admin/users"
    body = json.dumps({"name": new_name("rep")}).encode()
    headers = sign_request("POST", url, {}, body)
    assert send(url, "POST", body, headers)[0] == 201
    status, err = send(url, "POST", body, headers)
    assert status == 403 and err["error"]["code"] == "RequestReplayed"


def _presigned_url(method: str, url: str, expires: int = 3600) -> str:
    from botocore.auth import S3SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method=method, url=url)
    S3SigV4QueryAuth(Credentials(ROOT_AK, ROOT_SK), "s3", "us-east-1", expires=expires).add_auth(
        req
    )
    return str(req.url)


def test_presigned_admin_write_is_refused_as_it_could_be_replayed_all_week(
    srv: LiveServer,
) -> None:
    # A presigned URL is valid until it expires (up to a week), far beyond the 30 minutes
    # the replay memory keeps a signature: a captured link that disables or rotates a user
    # would be obeyed again once forgotten. Changes must be header-signed, reads may not.
    who = add_user(srv, new_name("pre"))
    url = _presigned_url("POST", srv.endpoint + f"/_admin/users/{who.name}/disable")
    status, err = send(url, "POST", b"", {})
    assert status == 403 and err["error"]["code"] == "AccessDenied", err
    make_client(srv.endpoint, who.access_key, who.secret_key).list_buckets()  # still enabled
    url = _presigned_url("DELETE", srv.endpoint + f"/_admin/users/{who.name}")
    status, err = send(url, "DELETE", b"", {})
    assert status == 403 and err["error"]["code"] == "AccessDenied", err
    url = _presigned_url("GET", srv.endpoint + f"/_admin/users/{who.name}")
    status, row = send(url, "GET", b"", {})
    assert status == 200 and row, row


def test_sigv2_is_refused_as_it_leaves_the_query_unsigned(srv: LiveServer) -> None:
    # SigV2 signs S3's sub-resources, not the admin API's parameters: a captured request
    # for ?bucket=mine&format=json was obeyed as ?bucket=theirs&format=csv, a report the
    # signer never asked for. The admin API is SigV4 only, header or presigned.
    from botocore.auth import HmacV1Auth, HmacV1QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = srv.endpoint + "/_admin/usage?format=json"
    req = AWSRequest(method="GET", url=url)
    HmacV1Auth(Credentials(ROOT_AK, ROOT_SK)).add_auth(req)
    headers = dict(req.headers.items())
    for sent in (url, url.replace("format=json", "format=csv")):
        status, err = send(sent, "GET", b"", headers)
        assert status == 403 and err["error"]["code"] == "AccessDenied", (sent, err)
    req = AWSRequest(method="GET", url=url)
    HmacV1QueryAuth(Credentials(ROOT_AK, ROOT_SK), expires=600).add_auth(req)
    status, err = send(str(req.url).replace("format=json", "format=csv"), "GET", b"", {})
    assert status == 403 and err["error"]["code"] == "AccessDenied", err


def test_body_must_be_the_signed_one(srv: LiveServer) -> None:
    url = srv.endpoint + "/_admin/users"
    signed = json.dumps({"name": new_name("a")}).encode()
    headers = sign_request("POST", url, {}, signed)
    swapped = json.dumps({"name": new_name("b"), "admin": True}).encode()
    status, err = send(url, "POST", swapped, headers)
    assert status == 400 and err["error"]["code"] == "XAmzContentSHA256Mismatch"
    headers = sign_request("POST", url, {}, signed, payload_hash="UNSIGNED-PAYLOAD")
    status, err = send(url, "POST", signed, headers)
    assert status == 400 and err["error"]["code"] == "InvalidRequest"


def test_stale_signature_is_refused(srv: LiveServer) -> None:
    url = srv.endpoint + "/_admin/users"
    # Signed an hour ago, scope date included: a replay, whatever the time of day (a date
    # moved back by hand leaves the scope's date behind between 00:00 and 01:00 UTC).
    with shifted_clock(timedelta(hours=-1)):
        headers = sign_request("GET", url)
    status, err = send(url, "GET", b"", headers)
    assert (status, err["error"]["code"]) == (403, "RequestTimeTooSkewed")
    # The date alone moved back, after signing: the signature no longer matches.
    headers = sign_request("GET", url)
    headers["X-Amz-Date"] = headers["X-Amz-Date"][:9] + "000000Z"
    status, err = send(url, "GET", b"", headers)
    assert status == 403 and err["error"]["code"] in (
        "RequestTimeTooSkewed",
        "SignatureDoesNotMatch",
    )


def test_bad_input_answers_json_errors(srv: LiveServer) -> None:
    status, err = call(srv, "POST", "/_admin/users", {"name": "no spaces please"})
    assert status == 400 and err["error"]["code"] == "InvalidArgument"
    status, err = call(srv, "POST", "/_admin/users", {"name": new_name("x"), "admin": "yes"})
    assert status == 400 and err["error"]["code"] == "InvalidArgument"
    status, err = call(srv, "POST", "/_admin/users", [1, 2])
    assert status == 400 and err["error"]["code"] == "MalformedJSON"
    status, err = call(srv, "GET", "/_admin/nothing-here")
    assert status == 404 and err["error"]["code"] == "NoSuchEndpoint"
    status, err = call(srv, "PUT", "/_admin/users")
    assert status == 405 and err["error"]["code"] == "MethodNotAllowed"
    status, err = call(srv, "GET", "/_admin/usage?by=week")
    assert status == 400 and err["error"]["code"] == "InvalidArgument"
    status, err = call(srv, "GET", "/_admin/torrent?bucket=nope&key=k")
    assert status == 404 and err["error"]["code"] == "NoSuchKey"


def test_torrent_show_and_rehash(srv: LiveServer) -> None:
    s3 = make_client(srv.endpoint)
    bucket = new_name("tor")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="dir/a b.bin", Body=b"x" * 100_000, ACL="public-read")
    status, shown = call(srv, "GET", f"/_admin/torrent?bucket={bucket}&key=dir%2Fa%20b.bin")
    assert status == 200, shown
    assert shown["state"] == "ready" and shown["size"] == 100_000
    assert len(shown["info_hash_v1"]) == 40 and shown["magnet"].startswith("magnet:?")
    status, queued = call(srv, "POST", f"/_admin/torrent/rehash?bucket={bucket}")
    assert status == 202 and queued == {"queued": 0, "bytes": 0}
    status, err = call(srv, "POST", "/_admin/torrent/rehash?bucket=no-such-bucket-x")
    assert status == 404 and err["error"]["code"] == "NoSuchBucket"


def test_info_names_version_uptime_settings_and_engines(srv: LiveServer) -> None:
    status, info = call(srv, "GET", "/_admin/info")
    assert status == 200
    assert info["version"] and info["uptime_seconds"] >= 0
    assert info["engines"]["metadata"] in ("sqlite", "postgresql")
    assert info["engines"]["blobs"] == "local"
    assert info["settings"]["listen"] == f"127.0.0.1:{srv.port}"
    assert "secret" not in json.dumps(info).lower()


def test_usage_as_csv(srv: LiveServer) -> None:
    status, text = call(srv, "GET", "/_admin/usage?format=csv")
    assert status == 200 and text.startswith("Service,Operation,UsageType")


def test_openapi_is_served_unsigned(srv: LiveServer) -> None:
    status, doc = call(srv, "GET", "/_admin/openapi.json", keys=None)
    assert status == 200 and doc["openapi"].startswith("3.")
    assert doc["servers"][0]["url"] == srv.endpoint + "/_admin"
