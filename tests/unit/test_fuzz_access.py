"""Fuzzing the access layer: any input raises nothing but AccessError, in time linear in its size.

Bounded to a few seconds per target; S3TORRENT_FUZZ_EXAMPLES=N runs N examples per target
(default 150) for a longer hunt.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s3torrent.access import (
    ANONYMOUS,
    AccessError,
    AccessFacts,
    Owner,
    Principal,
    RequestContext,
    Resource,
    acl_from_xml,
    canned_acl,
    decide,
    grants_from_headers,
    parse_policy,
    public_access_block_from_xml,
)
from s3torrent.access.wildcard import WildcardPattern

EXAMPLES = int(os.environ.get("S3TORRENT_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ALICE_ID = "a" * 64
ALICE = Owner(ALICE_ID, "alice")
PRIVATE = canned_acl("private", owner=ALICE, bucket_owner=ALICE)
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def linear_budget(*texts: str | bytes) -> float:
    """Seconds an input of this size may take: a fixed allowance plus 20 µs per character.

    Generous, for a shared machine's pauses; what it catches is growth: a quadratic step
    over the few-KB inputs here takes seconds.
    """
    return 0.25 + 20e-6 * sum(len(t) for t in texts)


@contextlib.contextmanager
def within_linear_budget(*texts: str | bytes) -> Iterator[None]:
    """The block takes no more than linear_budget(texts) of this thread's CPU time, with the
    cyclic collector paused: a neighbour's load on a shared machine, or a collection of the
    whole test run's heap (once 0.38 s for a 140-character policy), is not the parser's
    doing. A super-linear step still costs CPU, and is still caught."""
    collecting = gc.isenabled()
    gc.disable()
    started = time.thread_time()
    try:
        yield
    finally:
        elapsed = time.thread_time() - started
        if collecting:
            gc.enable()
    assert elapsed < linear_budget(*texts)


def known_user(canonical_id: str) -> str | None:
    return "alice" if canonical_id == ALICE_ID else None


# --- strategies ----------------------------------------------------------------------------------

_pieces = st.sampled_from(
    ["a", "b", "?", "*", "a?", "?" * 40, "ab" * 8, "*a", "#", "arn:aws:s3:::b/", "s3:Get", "é"]
)
wildcard_text = st.lists(_pieces, max_size=120).map("".join)
subject_text = st.one_of(
    st.text(max_size=50),
    st.lists(st.sampled_from(["a", "b", "a" * 200, "ab" * 100, "#", "?", "*"]), max_size=60).map(
        "".join
    ),
)

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), wildcard_text, st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)

_FIELDS = ["Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource"]
_FIELDS += ["NotResource", "Condition"]
_good_values: dict[str, Any] = {
    "Sid": st.sampled_from(["A", "B", ""]),
    "Effect": st.sampled_from(["Allow", "Deny", "allow"]),
    "Principal": st.sampled_from(
        [
            "*",
            {"AWS": "*"},
            {"AWS": "000000000000"},
            {"AWS": "arn:aws:iam::000000000000:user/bob"},
            {"AWS": "arn:aws:iam::000000000000:user/*"},
            {"CanonicalUser": "b" * 64},
            {"Service": "s3.amazonaws.com"},
            {"Federated": "x"},
            {"AWS": []},
        ]
    ),
    "Action": st.lists(wildcard_text.map(lambda s: "s3:" + s), min_size=1, max_size=3),
    "Resource": st.lists(wildcard_text.map(lambda s: "arn:aws:s3:::b" + s), min_size=1, max_size=3),
    "Condition": st.dictionaries(
        st.sampled_from(
            [
                "StringLike",
                "StringNotLike",
                "ArnLike",
                "StringEqualsIgnoreCase",
                "ForAnyValue:StringLike",
                "ForAllValues:StringLikeIfExists",
                "NumericLessThan",
                "DateGreaterThan",
                "IpAddress",
                "Bool",
                "Null",
                "Bogus",
            ]
        ),
        st.dictionaries(
            st.sampled_from(["aws:UserAgent", "aws:SourceIp", "s3:prefix", "aws:Referer"]),
            st.one_of(json_scalars, st.lists(json_scalars, max_size=3)),
            max_size=2,
        ),
        max_size=3,
    ),
}
_field_value = {
    name: st.one_of(_good_values.get(name.removeprefix("Not"), json_values), json_values)
    for name in _FIELDS
}
statements = st.fixed_dictionaries(
    {},
    optional={name: _field_value[name] for name in _FIELDS},
)
policy_documents = st.fixed_dictionaries(
    {"Statement": st.one_of(st.lists(statements, max_size=3), statements, json_values)},
    optional={"Version": st.sampled_from(["2012-10-17", "2008-10-17", "1"]), "Id": json_values},
)

principals = st.sampled_from(
    [ANONYMOUS, Principal.user("b" * 64, "bob"), Principal.user(ALICE_ID, "alice")]
)
contexts = st.dictionaries(
    st.sampled_from(["aws:UserAgent", "aws:Referer", "s3:prefix", "s3:max-keys"]),
    subject_text,
    max_size=3,
).map(lambda values: RequestContext(now=NOW, source_ip="192.0.2.1", values=values))


# --- policies ------------------------------------------------------------------------------------


def _parse(text: str) -> Any:
    with within_linear_budget(text):
        try:
            return parse_policy(text, bucket="b")
        except AccessError:
            return None


@FUZZ
@given(text=st.text(max_size=400))
def test_any_text_parses_or_is_malformed(text: str) -> None:
    _parse(text)


@FUZZ
@given(
    text=st.lists(
        st.sampled_from(['{"', '"', "[", "]", "{", "}", ":", ",", "\\", "1"]), max_size=400
    )
)
def test_json_punctuation_soup_parses_or_is_malformed(text: list[str]) -> None:
    _parse("".join(text))


@FUZZ
@given(document=policy_documents)
def test_policy_shaped_documents_parse_or_are_malformed(document: dict[str, Any]) -> None:
    _parse(json.dumps(document))


@FUZZ
@given(
    document=policy_documents,
    principal=principals,
    key=st.sampled_from([None, "k", "a" * 300, "x?y*z"]),
    action=st.sampled_from(["s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:GetBucketAcl"]),
    ctx=contexts,
)
def test_any_parsed_policy_decides_without_error_in_linear_time(
    document: dict[str, Any], principal: Principal, key: str | None, action: str, ctx: Any
) -> None:
    text = json.dumps(document)
    policy = _parse(text)
    if policy is None:
        return
    facts = AccessFacts(ALICE, PRIVATE, PRIVATE if key else None, policy=policy)
    values = [v for v in ctx.values.values() if isinstance(v, str)]
    with within_linear_budget(text, *values):
        decision = decide(principal, action, Resource("b", key), facts, ctx)
    assert isinstance(decision.allowed, bool)


@FUZZ
@given(pattern=wildcard_text, text=subject_text)
def test_wildcards_match_in_linear_time(pattern: str, text: str) -> None:
    compiled = WildcardPattern.compile(pattern)
    with within_linear_budget(pattern, text):
        compiled.matches(text)


# --- ACLs and Block Public Access ----------------------------------------------------------------

grantee_xml = st.one_of(
    st.builds(
        lambda kind, inner: (
            f'<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:type="{kind}">{inner}</Grantee>'
        ),
        st.sampled_from(["CanonicalUser", "Group", "AmazonCustomerByEmail", "Nobody", ""]),
        st.sampled_from(
            [
                f"<ID>{ALICE_ID}</ID>",
                "<ID></ID>",
                "<ID>" + "b" * 64 + "</ID>",
                "<URI>http://acs.amazonaws.com/groups/global/AllUsers</URI>",
                "<URI>http://example.com/</URI>",
                "<EmailAddress>a@example.com</EmailAddress>",
                "",
            ]
        ),
    ),
    st.text(max_size=40),
)
grant_xml = st.builds(
    lambda grantee, permission: f"<Grant>{grantee}<Permission>{permission}</Permission></Grant>",
    grantee_xml,
    st.sampled_from(["READ", "WRITE", "FULL_CONTROL", "read", "", "<x/>"]),
)
acl_documents = st.builds(
    lambda owner, grants, root: (
        f'<{root} xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{owner}'
        f"<AccessControlList>{''.join(grants)}</AccessControlList></{root}>"
    ),
    st.sampled_from(["", f"<Owner><ID>{ALICE_ID}</ID></Owner>", "<Owner/>", "<Owner><ID>x</ID>"]),
    st.lists(st.one_of(grant_xml, st.text(max_size=20)), max_size=8),
    st.sampled_from(["AccessControlPolicy", "Other"]),
)


def _acl(body: bytes) -> None:
    with within_linear_budget(body), contextlib.suppress(AccessError):
        acl_from_xml(body, expected_owner_id=ALICE_ID, known_user=known_user)


@FUZZ
@given(body=st.binary(max_size=400))
def test_any_bytes_parse_as_an_acl_or_are_refused(body: bytes) -> None:
    _acl(body)


@FUZZ
@given(document=acl_documents)
def test_acl_shaped_documents_parse_or_are_refused(document: str) -> None:
    _acl(document.encode("utf-8", "surrogatepass"))


@FUZZ
@given(
    declaration=st.sampled_from(
        [
            "",
            '<?xml version="1.0"?>',
            '<?xml version="1.0" encoding="utf-16"?>',
            '<?xml version="1.0" encoding="x-no-such-codec"?>',
            '<!DOCTYPE a [<!ENTITY e "x">]>',
            '<!DOCTYPE a SYSTEM "http://example.com/a.dtd">',
        ]
    ),
    document=acl_documents,
)
def test_xml_declarations_and_doctypes_are_refused_or_parsed(
    declaration: str, document: str
) -> None:
    _acl((declaration + document).encode("utf-8", "surrogatepass"))


@FUZZ
@given(body=st.one_of(st.binary(max_size=300), acl_documents.map(str.encode)))
def test_any_bytes_parse_as_public_access_block_or_are_refused(body: bytes) -> None:
    with contextlib.suppress(AccessError):
        public_access_block_from_xml(body)


@FUZZ
@given(
    headers=st.dictionaries(
        st.sampled_from(
            ["x-amz-grant-read", "x-amz-grant-write", "x-amz-grant-full-control", "x-amz-acl"]
        ),
        st.one_of(
            st.text(max_size=80),
            st.lists(
                st.sampled_from(['id="', ALICE_ID, '"', "uri=", "emailAddress=", ",", "=", " "]),
                max_size=20,
            ).map("".join),
        ),
        max_size=3,
    )
)
def test_any_grant_headers_give_an_acl_or_are_refused(headers: dict[str, str]) -> None:
    with contextlib.suppress(AccessError):
        grants_from_headers(headers, ALICE, known_user=known_user)


@FUZZ
@given(name=st.text(max_size=30))
def test_any_canned_acl_name_is_known_or_refused(name: str) -> None:
    try:
        canned_acl(name, owner=ALICE, bucket_owner=ALICE)
    except AccessError as exc:
        assert exc.code == "InvalidArgument"
