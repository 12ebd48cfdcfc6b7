"""Audit of the policy language against IAM's: what PutBucketPolicy accepts is enforced as
IAM would enforce it, and what IAM's grammar refuses is refused (MalformedPolicy)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from s3torrent.access import (
    ANONYMOUS,
    AccessFacts,
    BucketPolicy,
    Decision,
    Owner,
    Principal,
    RequestContext,
    Resource,
    canned_acl,
    condition_keys,
    decide,
    parse_policy,
    policy_is_public,
)
from s3torrent.access.conditions import condition_holds, parse_condition_block
from s3torrent.access.errors import AccessError
from s3torrent.access.facts import with_object_tags
from s3torrent.access.variables import parse_template
from s3torrent.user_names import is_user_name

DENY_SECRET = (
    '{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*",'
    ' "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/secret/*",'
    ' "Resource": "arn:aws:s3:::b/tmp/*"}]}'
)


def _holds(block: dict[str, Any], context: dict[str, list[str]]) -> bool:
    return all(condition_holds(c, context) for c in parse_condition_block(block))


@pytest.mark.parametrize(
    "text",
    [
        DENY_SECRET,
        '{"Version": "2012-10-17", "Version": "2008-10-17", "Statement": []}',
        '{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",'
        ' "Resource": "arn:aws:s3:::b/*", "Condition": {"IpAddress": {"aws:SourceIp":'
        ' "10.0.0.0/8"}, "IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}}]}',
        '{"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",'
        ' "Resource": "arn:aws:s3:::b/*", "Condition": {"StringEquals": {"aws:UserAgent":'
        ' "a", "aws:UserAgent": "b"}}}]}',
    ],
)
def test_duplicate_json_keys_are_malformed(text: str) -> None:
    """JSON leaves duplicate names undefined and json.loads keeps the last, so a statement
    with two Resource elements (or two IpAddress blocks) would be enforced as half of what
    GetBucketPolicy shows: a Deny on secret/* that denies nothing."""
    with pytest.raises(AccessError) as exc:
        parse_policy(text, bucket="b")
    assert exc.value.code == "MalformedPolicy"
    assert "duplicate" in exc.value.message.lower()


def test_duplicate_names_in_different_objects_are_fine() -> None:
    statement = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}
    text = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {**statement, "Resource": "arn:aws:s3:::b/a/*"},
                {**statement, "Resource": "arn:aws:s3:::b/b/*"},
            ],
        }
    )
    assert len(parse_policy(text, bucket="b").statements) == 2


def test_a_stored_policy_with_duplicate_names_still_reads() -> None:
    """One accepted before the check keeps its old reading rather than failing every request."""
    policy = parse_policy(DENY_SECRET, bucket="b", strict=False)
    assert policy.statements[0].resources == ("arn:aws:s3:::b/tmp/*",)


@pytest.mark.parametrize("present", [True, False])
def test_null_with_both_values_holds_either_way(present: bool) -> None:
    """A condition's values are ORed (IAM: "multiple values for a context key ... logical
    OR"), Null's too: ["true", "false"] holds whether the key is absent or present. Before,
    only the first value was read, so a Deny with it applied to requests without the key."""
    context = {"aws:referer": ["https://example.com/"]} if present else {}
    assert _holds({"Null": {"aws:Referer": ["true", "false"]}}, context)
    assert _holds({"Null": {"aws:Referer": ["false", "true"]}}, context)
    assert _holds({"Null": {"aws:Referer": "true"}}, context) is not present
    assert _holds({"Null": {"aws:Referer": False}}, context) is present


# --- policy variables ---------------------------------------------------------------------------

ALICE = Principal.user("a" * 64, "alice")
NOW = datetime(2026, 12, 7, tzinfo=UTC)


def _policy(*statements: dict[str, Any], version: str = "2012-10-17") -> BucketPolicy:
    full = [{"Principal": "*", "Action": "s3:GetObject", **s} for s in statements]
    return parse_policy(json.dumps({"Version": version, "Statement": full}), bucket="b")


def _decide(policy: BucketPolicy, principal: Principal, key: str, **values: str) -> Decision:
    owner = Owner("f" * 64, "")
    facts = AccessFacts(
        bucket_owner=owner,
        bucket_acl=canned_acl("private", owner=owner, bucket_owner=owner),
        object_acl=canned_acl("private", owner=owner, bucket_owner=owner),
        policy=policy,
    )
    return decide(
        principal, "s3:GetObject", Resource("b", key), facts, RequestContext(NOW, values=values)
    )


def test_a_variable_in_a_resource_is_the_callers_value() -> None:
    policy = _policy({"Effect": "Allow", "Resource": "arn:aws:s3:::b/home/${aws:username}/*"})
    assert _decide(policy, ALICE, "home/alice/x").allowed
    assert not _decide(policy, ALICE, "home/bob/x").allowed
    assert not _decide(policy, ALICE, "home/${aws:username}/x").allowed
    assert not _decide(policy, ANONYMOUS, "home/${aws:username}/x").allowed


def test_in_2008_10_17_a_variable_is_text() -> None:
    policy = _policy(
        {"Effect": "Allow", "Resource": "arn:aws:s3:::b/home/${aws:username}/*"},
        version="2008-10-17",
    )
    assert _decide(policy, ANONYMOUS, "home/${aws:username}/x").allowed
    assert not _decide(policy, ALICE, "home/alice/x").allowed


def test_a_variable_without_a_value_matches_nothing_so_a_negated_operator_holds() -> None:
    """IAM: a variable with no value is "effectively null": StringEquals does not match it,
    StringNotEquals does; a NotResource entry holding it excludes nothing."""
    tag_owner = _policy(
        {"Effect": "Allow", "Resource": "arn:aws:s3:::b/*"},
        {
            "Effect": "Deny",
            "Resource": "arn:aws:s3:::b/*",
            "Condition": {"StringNotEquals": {"aws:Referer": "${aws:username}"}},
        },
    )
    assert _decide(tag_owner, ALICE, "k", **{"aws:Referer": "alice"}).allowed
    assert _decide(tag_owner, ALICE, "k", **{"aws:Referer": "bob"}).explicit_deny
    assert _decide(tag_owner, ANONYMOUS, "k", **{"aws:Referer": "${aws:username}"}).explicit_deny
    outside_home = _policy(
        {"Effect": "Allow", "Resource": "arn:aws:s3:::b/*"},
        {"Effect": "Deny", "NotResource": "arn:aws:s3:::b/home/${aws:username}/*"},
    )
    assert _decide(outside_home, ALICE, "home/alice/k").allowed
    assert _decide(outside_home, ALICE, "home/bob/k").explicit_deny
    assert _decide(outside_home, ANONYMOUS, "home/${aws:username}/k").explicit_deny


def test_defaults_special_characters_and_operators() -> None:
    default = _policy(
        {"Effect": "Allow", "Resource": "arn:aws:s3:::b/${aws:username, 'it''s public'}/*"}
    )
    assert _decide(default, ANONYMOUS, "it's public/k").allowed
    assert _decide(default, ALICE, "alice/k").allowed
    assert not _decide(default, ALICE, "it's public/k").allowed
    star = _policy({"Effect": "Allow", "Resource": "arn:aws:s3:::b/${*}/${?}${$}"})
    assert _decide(star, ANONYMOUS, "*/?$").allowed
    assert not _decide(star, ANONYMOUS, "x/y$").allowed
    arn = _policy(
        {
            "Effect": "Allow",
            "Resource": "arn:aws:s3:::b/*",
            "Condition": {
                "ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::*:user/${aws:username}"},
                "StringEqualsIgnoreCase": {"aws:Referer": "${aws:username}"},
            },
        }
    )
    assert _decide(arn, ALICE, "k", **{"aws:Referer": "ALICE"}).allowed
    assert not _decide(arn, ALICE, "k", **{"aws:Referer": "bob"}).allowed


def test_a_variables_value_is_never_a_wildcard() -> None:
    template = parse_template("arn:aws:s3:::b/${aws:username}/*")
    assert template is not None
    pattern = template.pattern({"aws:username": ["a*"]})
    assert pattern is not None
    assert pattern.matches("arn:aws:s3:::b/a*/k")
    assert not pattern.matches("arn:aws:s3:::b/ab/k")
    assert template.pattern({"aws:username": ["a", "b"]}) is None  # several values: none


@pytest.mark.parametrize(
    "value",
    [
        "${aws:UserAgent}",
        "${s3:prefix}",
        "${aws:CurrentTime}",
        "${aws:username",
        "${}",
        "${aws:username, nobody}",
        "x${aws:username}${",
    ],
)
def test_unsupported_or_malformed_variables_are_malformed(value: str) -> None:
    for statement in (
        {"Effect": "Deny", "Resource": f"arn:aws:s3:::b/{value}"},
        {
            "Effect": "Deny",
            "Resource": "arn:aws:s3:::b/*",
            "Condition": {"StringLike": {"aws:Referer": value}},
        },
    ):
        with pytest.raises(AccessError) as exc:
            _policy(statement)
        assert exc.value.code == "MalformedPolicy"
        _policy(statement, version="2008-10-17")  # text there


def test_a_variable_counts_at_its_longest_value_towards_the_wildcard_cost() -> None:
    """Values fill wildcard segments: their length must be bounded, and counted."""
    value = "*" + "a?" * 30 + "${aws:username}" + "?b" * 30 + "*"
    statements = [
        {
            "Effect": "Allow",
            "Resource": "arn:aws:s3:::b/*",
            "Condition": {"StringLike": {f"s3:ExistingObjectTag/t{i}": value}},
        }
        for i in range(2)
    ]
    assert len(_policy(*statements[:1]).statements) == 1
    with pytest.raises(AccessError) as exc:
        _policy(*statements)
    assert "costly" in exc.value.message
    assert len(_policy(*statements, version="2008-10-17").statements) == 2


def test_a_stored_policy_with_a_refused_variable_keeps_reading_it_as_text() -> None:
    text = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::b/${aws:UserAgent}/*",
            },
        }
    )
    with pytest.raises(AccessError):
        parse_policy(text, bucket="b")
    stored = parse_policy(text, bucket="b", strict=False)
    assert _decide(stored, ANONYMOUS, "${aws:UserAgent}/k").allowed


# --- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("network", "inside", "outside"),
    [
        ("::ffff:10.0.0.0/104", "10.1.2.3", "11.1.2.3"),
        ("::ffff:10.0.0.0/104", "::ffff:10.1.2.3", "::ffff:11.1.2.3"),
        ("::ffff:192.0.2.7/128", "192.0.2.7", "192.0.2.8"),
    ],
)
def test_an_ipv4_mapped_network_holds_the_ipv4_addresses_it_maps(
    network: str, inside: str, outside: str
) -> None:
    """A request's IPv4-mapped address is read as the IPv4 address it maps (a dual-stack
    listener's callers), so a policy network written in that form must be too: before, it
    never matched, and a Deny on it denied nobody."""
    block = {"IpAddress": {"aws:SourceIp": network}}
    assert _holds(block, {"aws:sourceip": [inside]})
    assert not _holds(block, {"aws:sourceip": [outside]})
    assert not _holds({"NotIpAddress": {"aws:SourceIp": network}}, {"aws:sourceip": [inside]})


def test_an_ipv4_mapped_network_is_as_public_as_the_ipv4_one() -> None:
    """Block Public Access reads the network as it is enforced: ::ffff:0:0/96 is every
    IPv4 caller, as public as 0.0.0.0/0."""
    for network in ("::ffff:0.0.0.0/96", "::ffff:0:0/100"):
        policy = _policy(
            {
                "Effect": "Allow",
                "Resource": "arn:aws:s3:::b/*",
                "Condition": {"IpAddress": {"aws:SourceIp": network}},
            }
        )
        assert policy_is_public(policy), network
    narrow = {"IpAddress": {"aws:SourceIp": "::ffff:10.0.0.0/104"}}
    policy = _policy({"Effect": "Allow", "Resource": "arn:aws:s3:::b/*", "Condition": narrow})
    assert not policy_is_public(policy)


# --- tags ----------------------------------------------------------------------------------------


def test_tags_whose_keys_differ_only_in_case_are_both_tested() -> None:
    """Condition keys are case-insensitive, S3 tag keys are not: an object tagged env=prod
    and Env=dev has two values for s3:ExistingObjectTag/env. Before, the last tag silently
    replaced the first, so its uploader could tag prod data Env=dev and slip past a Deny on
    env=prod."""
    policy = _policy(
        {"Effect": "Allow", "Resource": "arn:aws:s3:::b/*"},
        {
            "Effect": "Deny",
            "Resource": "arn:aws:s3:::b/*",
            "Condition": {"StringEquals": {"s3:ExistingObjectTag/env": "prod"}},
        },
    )
    for tags in ([("env", "prod"), ("Env", "dev")], [("Env", "dev"), ("env", "prod")]):
        ctx = with_object_tags(RequestContext(NOW), tags)
        keys = condition_keys(ANONYMOUS, ctx)
        assert sorted(keys["s3:existingobjecttag/env"]) == ["dev", "prod"]
        facts = AccessFacts(
            bucket_owner=Owner("f" * 64, ""),
            bucket_acl=canned_acl(
                "private", owner=Owner("f" * 64, ""), bucket_owner=Owner("f" * 64, "")
            ),
            policy=policy,
        )
        decision = decide(ANONYMOUS, "s3:GetObject", Resource("b", "k"), facts, ctx)
        assert decision.explicit_deny, tags


def test_the_service_keys_s3_always_has_are_false_here() -> None:
    """IAM's own example denies callers outside some networks with NotIpAddress and
    "Bool": {"aws:ViaAWSService": "false"}; transport denies pair aws:SecureTransport with
    aws:PrincipalIsAWSService false. S3 has both keys in (signed) requests; before, neither
    was filled, the Bool never held, and those Denies denied nobody."""
    policy = _policy(
        {"Effect": "Allow", "Resource": "arn:aws:s3:::b/*"},
        {
            "Effect": "Deny",
            "Resource": "arn:aws:s3:::b/*",
            "Condition": {
                "NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"},
                "Bool": {"aws:ViaAWSService": "false"},
            },
        },
        {
            "Effect": "Deny",
            "Resource": "arn:aws:s3:::b/*",
            "Condition": {
                "Bool": {"aws:SecureTransport": "false", "aws:PrincipalIsAWSService": "false"}
            },
        },
    )

    def decision(principal: Principal, source: str, secure: bool) -> Decision:
        owner = Owner("f" * 64, "")
        facts = AccessFacts(
            bucket_owner=owner,
            bucket_acl=canned_acl("private", owner=owner, bucket_owner=owner),
            policy=policy,
        )
        ctx = RequestContext(NOW, source_ip=source, secure_transport=secure)
        return decide(principal, "s3:GetObject", Resource("b", "k"), facts, ctx)

    assert decision(ANONYMOUS, "10.1.2.3", False).allowed
    assert decision(ANONYMOUS, "192.0.2.1", False).explicit_deny
    assert decision(ALICE, "10.1.2.3", True).allowed
    assert decision(ALICE, "10.1.2.3", False).explicit_deny
    anonymous_keys = condition_keys(ANONYMOUS, RequestContext(NOW))
    assert anonymous_keys["aws:viaawsservice"] == ["false"]
    assert "aws:principalisawsservice" not in anonymous_keys  # signed requests only


# --- principals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["division/bob", "bo b", "bob\n", "root", "x" * 65, "b*b", "b?b"],
)
def test_a_user_arn_no_user_here_can_have_is_refused(name: str) -> None:
    """A user ARN with an IAM path (user/division/bob, as ported from AWS), or a name no
    user here can have, can never match a caller: a Deny naming it would deny nobody. As
    for other accounts' principals, PutBucketPolicy refuses it."""
    statement = {
        "Effect": "Deny",
        "Principal": {"AWS": f"arn:aws:iam::000000000000:user/{name}"},
        "Resource": "arn:aws:s3:::b/*",
    }
    with pytest.raises(AccessError) as exc:
        _policy(statement)
    assert exc.value.code == "MalformedPolicy"
    assert "Invalid principal" in exc.value.message


def test_a_user_arn_any_user_name_can_take_is_accepted() -> None:
    name = "Bob.Smith+ops=1,x@example.com_-"
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::000000000000:user/{name}"},
        "Resource": "arn:aws:s3:::b/*",
    }
    policy = _policy(statement)
    assert _decide(policy, Principal.user("c" * 64, name), "k").allowed


def test_the_user_name_rule_is_one_for_users_and_policies() -> None:
    """A name policies refuse is one no user can be given (the store asks is_user_name);
    before, the store's pattern ended in `$`, which let a name end in a newline."""
    assert is_user_name("bob") and is_user_name("Bob.Smith+ops=1,x@example.com_-")
    assert not is_user_name("bob\n")
    assert not is_user_name("root")
    assert not is_user_name("division/bob")


def test_a_stored_policy_naming_a_user_with_a_path_still_reads() -> None:
    text = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::000000000000:user/division/bob"},
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::b/*",
            },
        }
    )
    with pytest.raises(AccessError):
        parse_policy(text, bucket="b")
    assert len(parse_policy(text, bucket="b", strict=False).statements) == 1
