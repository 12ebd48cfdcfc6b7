"""The pure CORS core: wildcard matching, rule choice, the XML round trip, answer headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from s3torrent.s3 import cors
from s3torrent.s3.cors import CorsRule, wildcard_match
from s3torrent.s3.errors import S3Error

text = st.text(alphabet="abc.:/-*", max_size=12)


@given(text.filter(lambda t: "*" not in t), text.filter(lambda t: "*" not in t))
def test_a_pattern_without_wildcard_matches_only_itself(pattern: str, value: str) -> None:
    assert wildcard_match(pattern, value, case_sensitive=True) is (pattern == value)


@given(st.text(max_size=8), st.text(max_size=8), st.text(max_size=8))
def test_one_wildcard_matches_any_middle(prefix: str, middle: str, suffix: str) -> None:
    prefix, suffix = prefix.replace("*", ""), suffix.replace("*", "")
    middle = middle.replace("*", "")
    assert wildcard_match(f"{prefix}*{suffix}", prefix + middle + suffix, case_sensitive=True)


def test_wildcard_needs_room_for_prefix_and_suffix() -> None:
    assert not wildcard_match("ab*ba", "aba", case_sensitive=True)
    assert wildcard_match("https://*.example.com", "https://a.b.example.com", case_sensitive=True)
    assert not wildcard_match("https://*.example.com", "https://example.com", case_sensitive=True)
    assert wildcard_match("X-Amz-*", "x-amz-date", case_sensitive=False)


def test_first_matching_rule_wins_and_headers_are_case_insensitive() -> None:
    rules = (
        CorsRule(("https://a.test",), ("GET",), ("x-*",), id="one"),
        CorsRule(("*",), ("GET", "PUT"), ("*",), id="two"),
    )
    found = cors.match(rules, "https://a.test", "GET", ["X-Custom".lower()])
    assert found is not None and found[0].id == "one"
    found = cors.match(rules, "https://a.test", "GET", ["authorization"])
    assert found is not None and found[0].id == "two"
    assert cors.match(rules[:1], "https://A.test", "GET") is None  # origins: case-sensitive
    assert cors.match(rules[:1], "https://a.test", "PUT") is None


def test_configuration_round_trip() -> None:
    body = (
        b"<CORSConfiguration><CORSRule><ID>r</ID><AllowedOrigin>*</AllowedOrigin>"
        b"<AllowedMethod>GET</AllowedMethod><AllowedMethod>HEAD</AllowedMethod>"
        b"<AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader>"
        b"<MaxAgeSeconds>30</MaxAgeSeconds></CORSRule></CORSConfiguration>"
    )
    rules = cors.parse_configuration(body)
    assert cors.parse_configuration(cors.render_configuration(rules)) == rules
    assert cors.from_setting(cors.to_setting(rules)) == rules


@pytest.mark.parametrize(
    "body",
    [
        b"<CORSConfiguration/>",
        b"<Other><CORSRule/></Other>",
        b"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule>"
        b"</CORSConfiguration>",
        b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin></CORSRule>"
        b"</CORSConfiguration>",
        b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET"
        b"</AllowedMethod><MaxAgeSeconds>soon</MaxAgeSeconds></CORSRule></CORSConfiguration>",
    ],
)
def test_malformed_configurations(body: bytes) -> None:
    with pytest.raises(S3Error) as exc:
        cors.parse_configuration(body)
    assert exc.value.code == "MalformedXML"


def test_answer_headers_for_a_named_origin_allow_credentials() -> None:
    rule = CorsRule(("https://*.test",), ("GET",), (), ("ETag",), 10)
    h = cors.response_headers(rule, "https://*.test", "https://x.test", requested=["range"])
    assert h["Access-Control-Allow-Origin"] == "https://x.test"
    assert h["Access-Control-Allow-Credentials"] == "true"
    assert h["Access-Control-Allow-Headers"] == "range"
    assert h["Access-Control-Max-Age"] == "10"
    assert h["Vary"].startswith("Origin")
