"""Bucket CORS configurations: S3's rule semantics, validation and response headers (pure).

A configuration is up to 100 rules; a request matches the first rule whose AllowedOrigin
(one `*` wildcard at most), AllowedMethod and, for a preflight, every requested header
(AllowedHeader, wildcards allowed) accept it. A match only adds `Access-Control-*`
headers: CORS tells a browser what it may show a page, it never grants access.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from s3torrent.s3 import xml as s3xml
from s3torrent.s3.errors import S3Error
from s3torrent.s3.numbers import ascii_int

MAX_RULES = 100
# S3: "The document is limited to 64 KB in size." Every answer to a request with an Origin
# matches against it, so a bigger one costs every such request more.
MAX_CONFIGURATION_SIZE = 64 * 1024
MAX_ID_LENGTH = 255
METHODS = ("GET", "PUT", "HEAD", "POST", "DELETE")
# An HTTP header name (RFC 9110's token): what Access-Control-Expose-Headers lists.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
MAX_AGE = 2**31 - 1
SETTING = "cors"  # the bucket setting the configuration is stored under

# What every CORS answer varies by, so that caches keep one answer per origin and request.
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"

NOT_ALLOWED = (
    # S3's message, its spelling included: clients and tests match on it.
    "CORSResponse: This CORS request is not allowed. This is usually because the evalution "
    "of Origin, request method / Access-Control-Request-Method or "
    "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec."
)
NOT_ENABLED = "CORSResponse: CORS is not enabled for this bucket."


@dataclass(frozen=True, slots=True)
class CorsRule:
    """One <CORSRule>."""

    allowed_origins: tuple[str, ...]
    allowed_methods: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    id: str | None = None

    def origin_match(self, origin: str) -> str | None:
        """The AllowedOrigin that accepts origin, or None."""
        for pattern in self.allowed_origins:
            if wildcard_match(pattern, origin, case_sensitive=True):
                return pattern
        return None

    def allows_headers(self, requested: Iterable[str]) -> bool:
        return all(
            any(wildcard_match(p, h, case_sensitive=False) for p in self.allowed_headers)
            for h in requested
        )


def wildcard_match(pattern: str, value: str, *, case_sensitive: bool) -> bool:
    """`*` matches any run of characters (validation keeps one per origin or header)."""
    if not case_sensitive:
        pattern, value = pattern.lower(), value.lower()
    parts = pattern.split("*")
    if len(parts) == 1:
        return pattern == value
    if not value.startswith(parts[0]) or len(value) < len(parts[0]) + len(parts[-1]):
        return False
    pos = len(parts[0])
    end = len(value) - len(parts[-1])
    if not value.endswith(parts[-1]):
        return False
    for middle in parts[1:-1]:
        found = value.find(middle, pos, end)
        if found < 0:
            return False
        pos = found + len(middle)
    return True


def public_default_rule(max_age: int) -> CorsRule:
    """The rule the server gives anonymously readable objects when their bucket has none:
    reads from any origin, with what range requests and web seeds need to see."""
    return CorsRule(
        allowed_origins=("*",),
        allowed_methods=("GET", "HEAD"),
        allowed_headers=("*",),
        expose_headers=("Content-Range", "Content-Length", "ETag", "Accept-Ranges"),
        max_age_seconds=max_age,
        id="s3torrent-public-default",
    )


# ---------------------------------------------------------------- the configuration


# What a PutBucketCors body may hold (S3's API model, 2026-12).
CORS_SCHEMA: s3xml.Schema = {
    "CORSRule": dict.fromkeys(
        ("ID", "AllowedHeader", "AllowedMethod", "AllowedOrigin", "ExposeHeader", "MaxAgeSeconds")
    )
}


def parse_configuration(body: bytes) -> tuple[CorsRule, ...]:
    """A PutBucketCors body, validated as S3 validates it."""
    root = s3xml.parse(body)
    s3xml.check_document(root, "CORSConfiguration", CORS_SCHEMA)
    elements = s3xml.children(root, "CORSRule")
    if not elements or len(elements) > MAX_RULES:
        raise S3Error("MalformedXML")
    return tuple(_parse_rule(element) for element in elements)


def _texts(element: Any, name: str) -> tuple[str, ...]:
    return tuple((child.text or "").strip() for child in s3xml.children(element, name))


def _parse_rule(element: Any) -> CorsRule:
    # A misspelt <MaxAge> is refused by CORS_SCHEMA; a second <MaxAgeSeconds> here.
    s3xml.check_once(element, ("ID", "MaxAgeSeconds"))
    origins = _texts(element, "AllowedOrigin")
    methods = _texts(element, "AllowedMethod")
    if not origins or not methods:
        raise S3Error("MalformedXML")
    for method in methods:
        if method not in METHODS:
            raise S3Error(
                "InvalidRequest",
                f"Found unsupported HTTP method in CORS config. Unsupported method is {method}",
            )
    for origin in origins:
        if origin.count("*") > 1:
            raise S3Error(
                "InvalidRequest", f'AllowedOrigin "{origin}" can not have more than one wildcard.'
            )
    headers = _texts(element, "AllowedHeader")
    for header in headers:
        if header.count("*") > 1:
            raise S3Error(
                "InvalidRequest", f'AllowedHeader "{header}" can not have more than one wildcard.'
            )
    expose = _texts(element, "ExposeHeader")
    for header in expose:
        if "*" in header:
            raise S3Error(
                "InvalidRequest",
                f'ExposeHeader "{header}" contains wildcard. We currently do not support '
                "wildcard for ExposeHeader.",
            )
        if not _HEADER_NAME.fullmatch(header):
            # It is returned as a header's value: a line break there broke every answer.
            raise S3Error("InvalidRequest", f'ExposeHeader "{header}" is not a header name.')
    rule_id = s3xml.text(element, "ID")
    if rule_id is not None and len(rule_id) > MAX_ID_LENGTH:
        raise S3Error("InvalidArgument", "ID length should not exceed allowed limit of 255")
    max_age_text = s3xml.text(element, "MaxAgeSeconds")
    max_age = _max_age(max_age_text) if max_age_text is not None else None
    return CorsRule(
        allowed_origins=origins,
        allowed_methods=methods,
        allowed_headers=headers,
        expose_headers=expose,
        max_age_seconds=max_age,
        id=rule_id,
    )


def _max_age(text: str) -> int:
    """MaxAgeSeconds, an Integer in S3's model (32 bits, not negative): ASCII digits only
    (int() takes any script's digits and `1_000`), and no more than 2^31 - 1, which a
    Java or Go SDK reading GetBucketCors's answer could not hold."""
    value = ascii_int(text.strip())
    if value is None or value > MAX_AGE:
        raise S3Error("MalformedXML")
    return value


def render_configuration(rules: Sequence[CorsRule]) -> bytes:
    """GetBucketCors's body."""
    out: list[dict[str, Any]] = []
    for rule in rules:
        entry: dict[str, Any] = {}
        if rule.id is not None:
            entry["ID"] = rule.id
        entry["AllowedHeader"] = list(rule.allowed_headers)
        entry["AllowedMethod"] = list(rule.allowed_methods)
        entry["AllowedOrigin"] = list(rule.allowed_origins)
        entry["ExposeHeader"] = list(rule.expose_headers)
        if rule.max_age_seconds is not None:
            entry["MaxAgeSeconds"] = rule.max_age_seconds
        out.append(entry)
    return s3xml.render("CORSConfiguration", {"CORSRule": out})


def to_setting(rules: Sequence[CorsRule]) -> list[dict[str, Any]]:
    """The configuration as stored in the bucket's settings (JSON)."""
    return [
        {
            "origins": list(r.allowed_origins),
            "methods": list(r.allowed_methods),
            "headers": list(r.allowed_headers),
            "expose": list(r.expose_headers),
            "max_age": r.max_age_seconds,
            "id": r.id,
        }
        for r in rules
    ]


def from_setting(value: Any) -> tuple[CorsRule, ...] | None:
    """The configuration stored in a bucket's settings (None: the bucket has none)."""
    if not isinstance(value, list) or not value:
        return None
    return tuple(
        CorsRule(
            allowed_origins=tuple(entry.get("origins") or ()),
            allowed_methods=tuple(entry.get("methods") or ()),
            allowed_headers=tuple(entry.get("headers") or ()),
            expose_headers=tuple(entry.get("expose") or ()),
            max_age_seconds=entry.get("max_age"),
            id=entry.get("id"),
        )
        for entry in value
        if isinstance(entry, dict)
    )


def bucket_rules(settings: Mapping[str, Any]) -> tuple[CorsRule, ...] | None:
    return from_setting(settings.get(SETTING))


# ---------------------------------------------------------------- requests


def requested_headers(value: str | None) -> list[str]:
    """Access-Control-Request-Headers as a list of lower-case names."""
    if not value:
        return []
    return [h.strip().lower() for h in value.split(",") if h.strip()]


def match(
    rules: Sequence[CorsRule], origin: str, method: str, headers: Sequence[str] = ()
) -> tuple[CorsRule, str] | None:
    """The first rule accepting this origin, method and requested headers, with the
    AllowedOrigin that matched."""
    for rule in rules:
        if method not in rule.allowed_methods:
            continue
        pattern = rule.origin_match(origin)
        if pattern is None or not rule.allows_headers(headers):
            continue
        return rule, pattern
    return None


def response_headers(
    rule: CorsRule, matched_origin: str, origin: str, *, requested: Sequence[str] = ()
) -> dict[str, str]:
    """The Access-Control-* headers of an answer under rule (preflight or actual).

    As S3: an AllowedOrigin of `*` answers `*` (no credentials); any other echoes the origin
    and allows credentials.
    """
    headers: dict[str, str] = {"Vary": VARY}
    if matched_origin == "*":
        headers["Access-Control-Allow-Origin"] = "*"
    else:
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Allow-Credentials"] = "true"
    headers["Access-Control-Allow-Methods"] = ", ".join(rule.allowed_methods)
    if requested:
        headers["Access-Control-Allow-Headers"] = ", ".join(requested)
    if rule.expose_headers:
        headers["Access-Control-Expose-Headers"] = ", ".join(rule.expose_headers)
    if rule.max_age_seconds is not None:
        headers["Access-Control-Max-Age"] = str(rule.max_age_seconds)
    return headers
