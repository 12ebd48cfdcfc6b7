"""Bucket policies: the IAM policy language as S3 applies it to one bucket."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from s3torrent.access.conditions import (
    Condition,
    ConditionError,
    condition_holds,
    parse_condition_block,
)
from s3torrent.access.errors import AccessError
from s3torrent.access.principals import ACCOUNT_ID, ROOT_ARN, Principal, is_canonical_id
from s3torrent.access.wildcard import has_wildcard, wildcard_match

VERSIONS = frozenset({"2008-10-17", "2012-10-17"})
MAX_POLICY_BYTES = 20 * 1024  # S3's bucket policy size limit
S3_ARN_PREFIX = "arn:aws:s3:::"

_TOP_LEVEL_FIELDS = frozenset({"Version", "Id", "Statement"})
_STATEMENT_FIELDS = frozenset(
    {
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    }
)
# Principal kinds S3 accepts; only AWS and CanonicalUser can name someone in this server.
_PRINCIPAL_KINDS = frozenset({"AWS", "CanonicalUser", "Service", "Federated"})


@dataclass(frozen=True, slots=True)
class PrincipalSet:
    """The principals a Principal/NotPrincipal element names."""

    everyone: bool = False
    arns: frozenset[str] = frozenset()
    canonical_ids: frozenset[str] = frozenset()

    def matches(self, principal: Principal) -> bool:
        if self.everyone:
            return True
        if principal.canonical_id is not None and principal.canonical_id in self.canonical_ids:
            return True
        return principal.arn is not None and principal.arn in self.arns


@dataclass(frozen=True, slots=True)
class Statement:
    sid: str | None
    effect: Literal["Allow", "Deny"]
    principals: PrincipalSet
    not_principal: bool  # True when written as NotPrincipal
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool
    conditions: tuple[Condition, ...]

    @property
    def label(self) -> str:
        return f"Sid {self.sid}" if self.sid else "an unnamed statement"


@dataclass(frozen=True, slots=True)
class BucketPolicy:
    """A parsed policy; `text` is what GetBucketPolicy gives back, byte for byte."""

    text: str
    version: str
    id: str | None
    statements: tuple[Statement, ...]


def _malformed(message: str) -> AccessError:
    return AccessError("MalformedPolicy", message)


def _string_list(statement: Mapping[str, object], field: str) -> tuple[str, ...]:
    raw = statement[field]
    items = raw if isinstance(raw, list) else [raw]
    if not items or not all(isinstance(item, str) and item for item in items):
        raise _malformed(f"{field} must be a non-empty string or list of non-empty strings")
    return tuple(item for item in items if isinstance(item, str))


def _aws_principal(value: str) -> tuple[bool, str | None]:
    """(is everyone, ARN) for one entry of Principal.AWS."""
    if value == "*":
        return True, None
    if value.isdigit() and len(value) == 12:
        return False, ROOT_ARN if value == ACCOUNT_ID else f"arn:aws:iam::{value}:root"
    parts = value.split(":", 5)
    if (
        len(parts) == 6
        and parts[:3] == ["arn", "aws", "iam"]
        and parts[4].isdigit()
        and len(parts[4]) == 12
        and (parts[5] == "root" or parts[5].startswith(("user/", "role/")))
    ):
        return False, value
    raise _malformed(f"Invalid principal in policy: {value}")


def _parse_principals(raw: object, field: str) -> PrincipalSet:
    if raw == "*":
        return PrincipalSet(everyone=True)
    if not isinstance(raw, dict) or not raw:
        raise _malformed(f'Invalid principal in policy: {field} must be "*" or an object')
    everyone = False
    arns: set[str] = set()
    canonical_ids: set[str] = set()
    for kind, value in raw.items():
        if kind not in _PRINCIPAL_KINDS:
            raise _malformed(f"Invalid principal in policy: unknown principal type {kind}")
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(item, str) and item for item in items):
            raise _malformed(f"Invalid principal in policy: {kind} must be a string or list")
        for item in items:
            assert isinstance(item, str)
            if kind == "AWS":
                is_everyone, arn = _aws_principal(item)
                everyone = everyone or is_everyone
                if arn is not None:
                    arns.add(arn)
            elif kind == "CanonicalUser":
                if not is_canonical_id(item):
                    raise _malformed(f"Invalid principal in policy: bad canonical id {item}")
                canonical_ids.add(item)
    return PrincipalSet(everyone, frozenset(arns), frozenset(canonical_ids))


def _check_action(action: str) -> str:
    if action == "*":
        return action
    service, sep, name = action.partition(":")
    if not sep or service.lower() != "s3" or not name:
        raise _malformed(f"Policy has invalid action: {action}")
    return action


def _check_resource(resource: str, bucket: str) -> str:
    if resource == "*":
        return resource
    if not resource.startswith(S3_ARN_PREFIX):
        raise _malformed(f"Policy has invalid resource: {resource}")
    bucket_part = resource[len(S3_ARN_PREFIX) :].split("/", 1)[0]
    if not wildcard_match(bucket_part, bucket):
        raise _malformed(
            f"Policy has invalid resource: {resource} is not within arn:aws:s3:::{bucket}"
        )
    return resource


def _pick(
    statement: Mapping[str, object], positive: str, negative: str, index: int
) -> tuple[str, bool]:
    has_positive, has_negative = positive in statement, negative in statement
    if has_positive and has_negative:
        raise _malformed(f"Statement {index} has both {positive} and {negative}")
    if not has_positive and not has_negative:
        raise _malformed(f"Missing required field {positive} in statement {index}")
    return (negative, True) if has_negative else (positive, False)


def _parse_statement(raw: object, index: int, bucket: str) -> Statement:
    if not isinstance(raw, dict):
        raise _malformed(f"Statement {index} must be an object")
    unknown = set(raw) - _STATEMENT_FIELDS
    if unknown:
        raise _malformed(f"Statement {index} has unknown field(s): {', '.join(sorted(unknown))}")
    sid = raw.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise _malformed(f"Sid of statement {index} must be a string")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise _malformed(f"Invalid effect: {effect!r} (statement {index}); use Allow or Deny")
    principal_field, not_principal = _pick(raw, "Principal", "NotPrincipal", index)
    principals = _parse_principals(raw[principal_field], principal_field)
    action_field, not_action = _pick(raw, "Action", "NotAction", index)
    actions = tuple(_check_action(a) for a in _string_list(raw, action_field))
    resource_field, not_resource = _pick(raw, "Resource", "NotResource", index)
    resources = tuple(_check_resource(r, bucket) for r in _string_list(raw, resource_field))
    try:
        conditions = parse_condition_block(raw["Condition"]) if "Condition" in raw else ()
    except ConditionError as exc:
        raise _malformed(f"{exc} (statement {index})") from exc
    return Statement(
        sid=sid,
        effect="Allow" if effect == "Allow" else "Deny",
        principals=principals,
        not_principal=not_principal,
        actions=actions,
        not_action=not_action,
        resources=resources,
        not_resource=not_resource,
        conditions=conditions,
    )


def parse_policy(text: str, *, bucket: str) -> BucketPolicy:
    """Validate a PutBucketPolicy body for `bucket`, raising MalformedPolicy with the reason."""
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise _malformed(f"Policy exceeds the maximum allowed size of {MAX_POLICY_BYTES} bytes")
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise _malformed(f"Policies must be valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise _malformed("Policies must be valid JSON and the first byte must be '{'")
    unknown = set(document) - _TOP_LEVEL_FIELDS
    if unknown:
        raise _malformed(f"Policy has invalid top-level field(s): {', '.join(sorted(unknown))}")
    version = document.get("Version", "2008-10-17")
    if version not in VERSIONS:
        raise _malformed(f"Invalid Version {version!r}: use 2012-10-17 or 2008-10-17")
    policy_id = document.get("Id")
    if policy_id is not None and not isinstance(policy_id, str):
        raise _malformed("Id must be a string")
    if "Statement" not in document:
        raise _malformed("Missing required field Statement")
    raw_statements = document["Statement"]
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise _malformed("Statement must be a non-empty object or list of objects")
    statements = tuple(
        _parse_statement(raw, index, bucket) for index, raw in enumerate(raw_statements)
    )
    sids = [s.sid for s in statements if s.sid]
    if len(sids) != len(set(sids)):
        raise _malformed("Statement IDs (SID) in a single policy must be unique")
    return BucketPolicy(text, version, policy_id, statements)


# --- matching ---------------------------------------------------------------------------------


def statement_applies(
    statement: Statement,
    principal: Principal,
    action: str,
    resource_arn: str,
    context: Mapping[str, Sequence[str]],
) -> bool:
    """Whether the statement covers this principal, action, resource and request context."""
    if statement.principals.matches(principal) == statement.not_principal:
        return False
    action_hit = any(wildcard_match(p, action, ignore_case=True) for p in statement.actions)
    if action_hit == statement.not_action:
        return False
    resource_hit = any(wildcard_match(p, resource_arn) for p in statement.resources)
    if resource_hit == statement.not_resource:
        return False
    return all(condition_holds(c, context) for c in statement.conditions)


# --- "public" as S3's Block Public Access defines it -------------------------------------------

# Actions that expose data; a statement granting none of them is never public.
_BAD_ACTION_PREFIXES = ("s3:get", "s3:list", "s3:delete", "s3:put")
_BAD_ACTIONS = ("s3:abortmultipartupload", "s3:restoreobject")
_BAD_SAMPLES = (
    "s3:GetObject",
    "s3:ListBucket",
    "s3:DeleteObject",
    "s3:PutObject",
    "s3:AbortMultipartUpload",
    "s3:RestoreObject",
    "s3:GetBucketAcl",
    "s3:PutBucketPolicy",
)
# Condition keys whose fixed value restricts a statement to known callers.
_RESTRICTING_KEYS = frozenset(
    {
        "aws:sourcearn",
        "aws:sourcevpc",
        "aws:sourcevpce",
        "aws:sourceowner",
        "aws:sourceaccount",
        "aws:principalorgid",
        "aws:principalaccount",
        "aws:principalarn",
        "aws:userid",
        "s3:dataaccesspointarn",
        "s3:dataaccesspointaccount",
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
    }
)
_FIXED_OPERATORS = frozenset({"StringEquals", "StringLike", "ArnEquals", "ArnLike"})
# CIDRs wider than this are treated as "anyone" (S3 does not publish its exact threshold).
_MIN_PUBLIC_PREFIX = {4: 8, 6: 32}


def _is_bad_action(pattern: str) -> bool:
    lowered = pattern.lower()
    if lowered.startswith(_BAD_ACTION_PREFIXES) or lowered in _BAD_ACTIONS:
        return True
    return any(wildcard_match(pattern, sample, ignore_case=True) for sample in _BAD_SAMPLES)


def _restricting(condition: Condition) -> bool:
    if condition.if_exists or condition.set_operator:
        return False
    if condition.key == "aws:sourceip" and condition.base == "IpAddress":
        networks = [ipaddress.ip_network(v, strict=False) for v in condition.values]
        return all(n.prefixlen >= _MIN_PUBLIC_PREFIX[n.version] for n in networks)
    if condition.key in _RESTRICTING_KEYS and condition.base in _FIXED_OPERATORS:
        return not any(has_wildcard(v) for v in condition.values)
    return False


def statement_is_public(statement: Statement) -> bool:
    if statement.effect != "Allow":
        return False
    principals = statement.principals
    if not statement.not_principal and not principals.everyone:
        return False
    if not statement.not_action and not any(_is_bad_action(a) for a in statement.actions):
        return False
    return not any(_restricting(c) for c in statement.conditions)


def policy_is_public(policy: BucketPolicy) -> bool:
    """True when some Allow statement reaches anyone without a fixed restricting condition."""
    return any(statement_is_public(s) for s in policy.statements)
