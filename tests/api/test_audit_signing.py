"""Signatures as an attacker meets them: a captured signed request or presigned URL, a
form signed by a key that no longer signs, headers added in transit."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Any

import requests

from tests.conftest import LiveServer, add_user, make_client, sign_request


def _admin(server: LiveServer, method: str, path: str) -> int:
    """One admin API request signed by root: its status."""
    url = server.endpoint + path
    headers = sign_request(method, url, {"x-s3torrent-nonce": os.urandom(8).hex()})
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def _code(text: str) -> str:
    return text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in text else ""


def test_form_upload_signed_by_a_disabled_users_key_is_refused(server: LiveServer) -> None:
    """A disabled user's key signs nothing: a POST policy it signed before is refused as any
    request it signs is (InvalidAccessKeyId), and nothing is stored under its name."""
    who = add_user(server, f"formdis{os.getpid()}{os.urandom(3).hex()}")
    theirs: Any = make_client(
        server.endpoint, who.access_key, who.secret_key, signature_version="s3v4"
    )
    bucket = f"formdis-{os.urandom(4).hex()}"
    theirs.create_bucket(Bucket=bucket)
    form = theirs.generate_presigned_post(bucket, "late", ExpiresIn=300)
    assert _admin(server, "POST", f"/_admin/users/{who.name}/disable") == 200
    r = requests.post(form["url"], data=form["fields"], files={"file": ("f", b"x")}, timeout=30)
    assert r.status_code == 403, r.text
    assert _code(r.text) == "InvalidAccessKeyId"
    assert _admin(server, "POST", f"/_admin/users/{who.name}/enable") == 200
    try:
        theirs.head_object(Bucket=bucket, Key="late")
        raise AssertionError("the disabled user's form stored an object")
    except theirs.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "404"
    # Enabled again, the same form works: only the key's state was in the way.
    r = requests.post(form["url"], data=form["fields"], files={"file": ("f", b"x")}, timeout=30)
    assert r.status_code == 204, r.text
