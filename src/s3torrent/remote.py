"""The CLI's side of the admin API: credentials (environment or an AWS profile), SigV4
signing, and one JSON request at a time to a running server.

Signing uses the same primitives the server verifies with (s3/sigv4_signing.py); the tests
also sign with botocore, so the two are checked against a third implementation.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from s3torrent.s3.sigv4_signing import (
    ALGORITHM,
    SERVICE,
    TERMINATOR,
    canonical_request,
    hmac_hex,
    signing_key,
    string_to_sign,
)

ADMIN_PREFIX = "/_admin"
NONCE_HEADER = "x-s3torrent-nonce"


class RemoteError(Exception):
    """A request the server refused, or could not be sent; the message says which."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True, slots=True)
class Credentials:
    access_key: str
    secret_key: str
    region: str
    source: str  # where they came from, for error messages


def _aws_file(env: Mapping[str, str], variable: str, default: str) -> Path:
    return Path(env.get(variable) or Path.home() / ".aws" / default).expanduser()


def _read_ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise RemoteError(f"cannot read {path}: {exc}") from None
    return parser


def credentials(profile: str | None, env: Mapping[str, str] | None = None) -> Credentials:
    """The keys to sign with: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, unless a profile is
    named (--profile, else AWS_PROFILE); profiles come from ~/.aws/credentials and config."""
    env = os.environ if env is None else env
    env_region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    ak, sk = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if profile is None and ak and sk:
        return Credentials(ak, sk, env_region or "us-east-1", "the environment")
    name = profile or env.get("AWS_PROFILE") or "default"
    cred_file = _aws_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials")
    config_file = _aws_file(env, "AWS_CONFIG_FILE", "config")
    creds = _read_ini(cred_file)
    config = _read_ini(config_file)
    config_section = name if name == "default" else f"profile {name}"
    values: dict[str, str] = {}
    if config.has_section(config_section):
        values.update(config[config_section])
    if creds.has_section(name):
        values.update(creds[name])
    ak, sk = values.get("aws_access_key_id"), values.get("aws_secret_access_key")
    if not ak or not sk:
        if profile is None and "AWS_PROFILE" not in env:
            raise RemoteError(
                "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name a "
                f"profile of {cred_file} with --profile"
            )
        raise RemoteError(f"profile {name!r} has no keys in {cred_file} or {config_file}")
    region = env_region or values.get("region") or "us-east-1"
    return Credentials(ak, sk, region, f"profile {name}")


def signed_headers(
    method: str,
    host: str,
    raw_path: str,
    query_pairs: Sequence[tuple[str, str]],
    body: bytes,
    creds: Credentials,
    now: datetime,
    nonce: str,
) -> dict[str, str]:
    """The headers of a SigV4-signed request (pure: the caller passes the time and nonce)."""
    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {
        "host": host,
        "x-amz-content-sha256": payload_hash,
        "x-amz-date": amz_date,
        # Signatures are accepted once: the same change twice within a second must differ.
        NONCE_HEADER: nonce,
    }
    if body:
        headers["content-type"] = "application/json"
    names = ";".join(sorted(headers))
    canonical = canonical_request(
        method, raw_path, query_pairs, list(headers.items()), names, payload_hash
    )
    scope = f"{date}/{creds.region}/{SERVICE}/{TERMINATOR}"
    key = signing_key(creds.secret_key, date, creds.region)
    signature = hmac_hex(key, string_to_sign(amz_date, scope, canonical))
    headers["authorization"] = (
        f"{ALGORITHM} Credential={creds.access_key}/{scope}, "
        f"SignedHeaders={names}, Signature={signature}"
    )
    return headers


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class AdminClient:
    """Signed requests to one server's admin API."""

    def __init__(self, endpoint: str, creds: Credentials, timeout: float = 60.0) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RemoteError(f"--endpoint must be an http(s) URL, not {endpoint!r}")
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        self.creds = creds
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Mapping[str, Any] | None = None,
    ) -> Reply:
        """One signed request to ADMIN_PREFIX + path (segments already encoded); RemoteError
        if the server refuses it (with its error code) or cannot be reached."""
        data = b"" if body is None else json.dumps(body).encode()
        raw_path = ADMIN_PREFIX + path
        pairs = list(query)
        raw_query = urlencode(pairs, quote_via=quote, safe="")
        headers = signed_headers(
            method,
            self.host,
            raw_path,
            pairs,
            data,
            self.creds,
            datetime.now(UTC),
            secrets.token_hex(8),
        )
        url = self.base + raw_path + (f"?{raw_query}" if raw_query else "")
        req = urllib.request.Request(url, data=data or None, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return Reply(r.status, r.headers.get("Content-Type", ""), r.read())
        except urllib.error.HTTPError as exc:
            raise _refusal(exc.code, exc.read(), self.creds) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RemoteError(f"cannot reach {self.base}: {reason}") from None

    def json(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]] = (),
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        return self.request(method, path, query, body).json()


def _refusal(status: int, body: bytes, creds: Credentials) -> RemoteError:
    try:
        err = json.loads(body)["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        return RemoteError(f"the server answered {status}: {body[:200]!r}", status=status)
    hint = ""
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
        hint = f" (keys from {creds.source})"
    elif code == "AccessDenied":
        hint = f" (signed as {creds.access_key}: root or an admin user may do this)"
    return RemoteError(f"{code}: {message}{hint}", code=code, status=status)


def segment(value: str) -> str:
    """One path segment, encoded (a user name may hold '@', '+', '=' or ',')."""
    return quote(value, safe="")
