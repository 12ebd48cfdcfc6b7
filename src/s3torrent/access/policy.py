"""Bucket policies: the IAM policy language as S3 applies it to one bucket."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from s3torrent.access.actions import (
    is_global_condition_key,
    is_s3_action,
    is_s3_condition_key,
)
from s3torrent.access.conditions import (
    ArnPattern,
    Condition,
    ConditionError,
    condition_holds,
    network,
    parse_condition_block,
)
from s3torrent.access.errors import AccessError
from s3torrent.access.principals import (
    ACCOUNT_ID,
    ROOT_ARN,
    Principal,
    is_canonical_id,
    user_arn,
)
from s3torrent.access.variables import Template, parse_template
from s3torrent.access.wildcard import WildcardPattern, has_wildcard, wildcard_match
from s3torrent.user_names import is_user_name

VERSIONS = frozenset({"2008-10-17", "2012-10-17"})
MAX_POLICY_BYTES = 20 * 1024  # S3's bucket policy size limit
# The deepest legitimate policy nests 6 levels (Statement list > statement > Condition >
# operator > key > value list); anything far deeper is refused before json recurses into it.
MAX_POLICY_DEPTH = 16
# Worst-case work per character of a request's text, summed over every wildcard in a policy
# (units: one `str.find` step; see WildcardPattern.cost): 128 `*word*` patterns, or one with
# a long `?`-bearing core. At the bound one decision against a 16 KiB header value takes
# ~10-25 ms of event loop; a policy beyond it is refused rather than stalling every client.
MAX_WILDCARD_COST = 128
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
# Principal kinds we accept: AWS and CanonicalUser name our users; a Service (an AWS service
# such as log delivery) never sends requests here, so naming one changes nothing either way.
# Federated identities do not exist here: a Deny naming one would silently deny nobody.
_PRINCIPAL_KINDS = frozenset({"AWS", "CanonicalUser", "Service"})
_USER_ARN_PREFIX = user_arn("")
# A JSON string (escapes included), a bracket outside one, or a quote that opens a string
# never closed; possessive, so a failed string is not retried: one pass over the text.
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*+"|[\[\]{}"]', re.DOTALL)


@dataclass(frozen=True, slots=True)
class PrincipalSet:
    """The principals a Principal/NotPrincipal element names."""

    everyone: bool = False
    arns: frozenset[str] = frozenset()
    canonical_ids: frozenset[str] = frozenset()
    # Our account named by its id or root ARN: like AWS, that covers the account's users.
    account: bool = False
    # Each user ARN's (arn, canonical id) as the policy was stored (bind_principals): an
    # ARN names the user who had that name then, as IAM binds it to a unique id, not one
    # created under the name since. None: a policy stored before bindings, read by name.
    bound: frozenset[tuple[str, str]] | None = None

    def matches(self, principal: Principal) -> bool:
        """Whether a Principal element names `principal` (its account covers its users)."""
        if self.everyone or (self.account and not principal.is_anonymous):
            return True
        return self._names_itself(principal)

    def excludes(self, principal: Principal, *, every_identity: bool) -> bool:
        """Whether a NotPrincipal element leaves `principal` out of its statement.

        A user has two identities, itself and our account, and IAM evaluates both (the
        account first): a Deny spares a user only when both are listed (`every_identity`;
        IAM: "you must also specify the account ARN of the not-denied principal"), an
        Allow leaves out a user either names. Each reading is the narrower grant, never a
        wider one; the anonymous caller, in no account, is left out only by "*"."""
        if self.everyone:
            return True
        if principal.is_anonymous:
            return False
        itself = self._names_itself(principal) or (principal.is_root and self.account)
        return itself and self.account if every_identity else itself or self.account

    def _names_itself(self, principal: Principal) -> bool:
        if principal.canonical_id is not None and principal.canonical_id in self.canonical_ids:
            return True
        if principal.arn is None or principal.arn not in self.arns:
            return False
        return self.bound is None or (principal.arn, principal.canonical_id) in self.bound


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
    # `actions` and `resources` compiled once, when the policy is parsed (a resource with
    # policy variables: per request, from its template).
    action_patterns: tuple[WildcardPattern, ...] = field(compare=False)
    resource_patterns: tuple[WildcardPattern | Template, ...] = field(compare=False)

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
    has_conditions: bool = field(init=False)
    """Whether any statement tests the request context, by a condition or a policy variable
    (else a decision needs none of it)."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "has_conditions",
            any(
                s.conditions or any(isinstance(p, Template) for p in s.resource_patterns)
                for s in self.statements
            ),
        )


def _malformed(message: str) -> AccessError:
    return AccessError("MalformedPolicy", message)


def _string_list(statement: Mapping[str, object], field: str) -> tuple[str, ...]:
    raw = statement[field]
    items = raw if isinstance(raw, list) else [raw]
    if not items or not all(isinstance(item, str) and item for item in items):
        raise _malformed(f"{field} must be a non-empty string or list of non-empty strings")
    return tuple(item for item in items if isinstance(item, str))


def _aws_principal(value: str, strict: bool) -> str:
    """One entry of Principal.AWS as "*", ROOT_ARN (our account), or one of our users' ARN.

    Anything else (another account, a role, a wildcard inside an ARN, a user ARN with an IAM
    path or a name no user may have) could never match a request here, and a Deny naming it
    would deny nobody while looking like it did: refused. Not `strict` (a stored policy):
    only wildcards are, as before the user name rule, so a stored policy still reads.
    """
    if value == "*":
        return value
    if value in (ACCOUNT_ID, ROOT_ARN):
        return ROOT_ARN
    name = value.removeprefix(_USER_ARN_PREFIX)
    valid = is_user_name(name) if strict else bool(name) and not has_wildcard(name)
    if value.startswith(_USER_ARN_PREFIX) and valid:
        return value
    raise _malformed(f"Invalid principal in policy: {value}")


def _parse_principals(raw: object, field: str, strict: bool) -> PrincipalSet:
    if raw == "*":
        return PrincipalSet(everyone=True)
    if not isinstance(raw, dict) or not raw:
        raise _malformed(f'Invalid principal in policy: {field} must be "*" or an object')
    everyone = account = False
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
                arn = _aws_principal(item, strict)
                everyone = everyone or arn == "*"
                account = account or arn == ROOT_ARN
                if arn not in ("*", ROOT_ARN):
                    arns.add(arn)
            elif kind == "CanonicalUser":
                if not is_canonical_id(item):
                    raise _malformed(f"Invalid principal in policy: bad canonical id {item}")
                canonical_ids.add(item)
    return PrincipalSet(everyone, frozenset(arns), frozenset(canonical_ids), account)


def _check_action(action: str, known_only: bool) -> str:
    if action == "*":
        return action
    service, sep, name = action.partition(":")
    if not sep or service.lower() != "s3" or not name:
        raise _malformed(f"Policy has invalid action: {action}")
    if known_only and "*" not in name and "?" not in name and not is_s3_action(name):
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


def _resource_pattern(resource: str, variables: bool) -> WildcardPattern | Template:
    try:
        template = parse_template(resource) if variables else None
    except ValueError as exc:
        raise _malformed(f"Policy has invalid resource: {resource}: {exc}") from exc
    return WildcardPattern.compile(resource) if template is None else template


def _parse_statement(
    raw: object, index: int, bucket: str, strict: bool, variables: bool
) -> Statement:
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
    principals = _parse_principals(raw[principal_field], principal_field, strict)
    action_field, not_action = _pick(raw, "Action", "NotAction", index)
    actions = tuple(_check_action(a, strict) for a in _string_list(raw, action_field))
    resource_field, not_resource = _pick(raw, "Resource", "NotResource", index)
    resources = tuple(_check_resource(r, bucket) for r in _string_list(raw, resource_field))
    try:
        conditions = (
            parse_condition_block(raw["Condition"], variables=variables, strict=strict)
            if "Condition" in raw
            else ()
        )
    except ConditionError as exc:
        raise _malformed(f"{exc} (statement {index})") from exc
    if strict:
        for condition in conditions:
            service, colon, name = condition.key.partition(":")
            if (
                not colon
                or not service
                or not name
                or (service == "s3" and not is_s3_condition_key(name))
                or (service == "aws" and not is_global_condition_key(name))
            ):
                raise _malformed(
                    f"Policy has an invalid condition key: {condition.key} (statement {index})"
                )
            unknowable = UNKNOWABLE_KEYS.get(condition.key)
            if unknowable is not None:
                raise _malformed(
                    f"Policy has a condition key this server cannot know: {condition.key} "
                    f"({unknowable}) (statement {index})"
                )
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
        action_patterns=tuple(WildcardPattern.compile(a, ignore_case=True) for a in actions),
        resource_patterns=tuple(_resource_pattern(r, variables) for r in resources),
    )


def _nesting_depth(text: str) -> int:
    """How deep brackets nest outside JSON strings, up to a string that is never closed.

    json stops at such a string (it is invalid), so nothing after it can make it recurse.
    """
    depth = deepest = 0
    for token in _JSON_TOKEN.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
        elif bracket in ("]", "}"):
            depth -= 1
        elif bracket == '"':
            break
    return deepest


def _wildcard_cost(statements: Sequence[Statement]) -> int:
    """The summed cost of the policy's patterns, a variable's at its longest value."""
    patterns: list[object] = [
        p for s in statements for p in (*s.action_patterns, *s.resource_patterns)
    ]
    patterns += [p for s in statements for c in s.conditions for p in c.prepared]
    patterns += [t for s in statements for c in s.conditions for t in c.templates]
    return sum(
        p.worst_case().cost if isinstance(p, Template) else p.cost
        for p in patterns
        if isinstance(p, WildcardPattern | ArnPattern | Template)
    )


def _unique_names(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A JSON object's members, refusing a name given twice: json.loads would keep the
    last silently, enforcing half of what GetBucketPolicy shows (a second Resource, or a
    second IpAddress block, dropping the first); IAM's grammar refuses duplicates."""
    members: dict[str, object] = {}
    for name, value in pairs:
        if name in members:
            raise _malformed(f"Policies must be valid JSON: duplicate name {name!r} in an object")
        members[name] = value
    return members


def parse_policy(text: str, *, bucket: str, strict: bool = True) -> BucketPolicy:
    """Validate a PutBucketPolicy body for `bucket`, raising MalformedPolicy with the reason.

    strict: PutBucketPolicy's checks, which came after policies were first stored: refuse
    an action or `s3:` condition key S3 does not define (access/actions.py), a JSON name
    given twice in one object, a user ARN no user may have, a policy variable this server
    does not resolve. A stored policy is read without them (not strict), as it was
    accepted: its old reading rather than a failure of every request on its bucket."""
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise _malformed(
            f"Policy exceeds the maximum allowed document size ({MAX_POLICY_BYTES} bytes)"
        )
    if _nesting_depth(text) > MAX_POLICY_DEPTH:
        raise _malformed(f"Policies must be valid JSON: nested deeper than {MAX_POLICY_DEPTH}")
    try:
        # A stored policy keeps the reading it was accepted with (the last duplicate wins).
        document = json.loads(text, object_pairs_hook=_unique_names if strict else None)
    except (ValueError, RecursionError) as exc:
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
    # Policy variables came with the 2012-10-17 language; before it `${...}` is text.
    try:
        statements = _parse_statements(
            raw_statements, bucket, strict, variables=version == "2012-10-17"
        )
    except AccessError:
        if strict or version != "2012-10-17":
            raise
        # A policy stored before variables were read, with one this server refuses, keeps
        # the reading it was stored with (text) rather than failing every request.
        statements = _parse_statements(raw_statements, bucket, strict, variables=False)
    return BucketPolicy(text, version, policy_id, statements)


def _parse_statements(
    raw_statements: list[object], bucket: str, strict: bool, *, variables: bool
) -> tuple[Statement, ...]:
    statements = tuple(
        _parse_statement(raw, index, bucket, strict, variables)
        for index, raw in enumerate(raw_statements)
    )
    sids = [s.sid for s in statements if s.sid]
    if len(sids) != len(set(sids)):
        raise _malformed("Statement IDs (SID) in a single policy must be unique")
    if _wildcard_cost(statements) > MAX_WILDCARD_COST:
        raise _malformed(
            "Policy wildcards are too costly to evaluate: use fewer `*...*` patterns, "
            "or fewer `?` inside them"
        )
    return statements


# --- matching ---------------------------------------------------------------------------------


def named_users(policy: BucketPolicy) -> frozenset[str]:
    """The user names the policy's Principal and NotPrincipal elements name by ARN."""
    return frozenset(
        arn.removeprefix(_USER_ARN_PREFIX) for s in policy.statements for arn in s.principals.arns
    )


def bind_principals(policy: BucketPolicy, ids: Mapping[str, str]) -> BucketPolicy:
    """The policy with each user ARN bound to the canonical id `ids` gives its name (the
    user who had it when the policy was stored); an ARN `ids` lacks matches no one."""
    statements = tuple(
        replace(
            s,
            principals=replace(
                s.principals,
                bound=frozenset(
                    (arn, ids[name])
                    for arn in s.principals.arns
                    if (name := arn.removeprefix(_USER_ARN_PREFIX)) in ids
                ),
            ),
        )
        for s in policy.statements
    )
    return replace(policy, statements=statements)


def _resource_matches(
    pattern: WildcardPattern | Template, arn: str, context: Mapping[str, Sequence[str]]
) -> bool:
    """Whether a Resource entry covers `arn`; one whose variable has no value covers none."""
    if isinstance(pattern, Template):
        resolved = pattern.pattern(context)
        return resolved is not None and resolved.matches(arn)
    return pattern.matches(arn)


def statement_applies(
    statement: Statement,
    principal: Principal,
    action: str,
    resource_arn: str,
    context: Mapping[str, Sequence[str]],
) -> bool:
    """Whether the statement covers this principal, action, resource and request context."""
    if statement.not_principal:
        every_identity = statement.effect == "Deny"
        if statement.principals.excludes(principal, every_identity=every_identity):
            return False
    elif not statement.principals.matches(principal):
        return False
    action_hit = any(p.matches(action) for p in statement.action_patterns)
    if action_hit == statement.not_action:
        return False
    resource_hit = any(
        _resource_matches(p, resource_arn, context) for p in statement.resource_patterns
    )
    if resource_hit == statement.not_resource:
        return False
    deny = statement.effect == "Deny"
    return all(condition_holds(c, context, deny=deny) for c in statement.conditions)


# --- "public" as S3's Block Public Access defines it -------------------------------------------

# Actions that expose data; a statement granting none of them is never public.
_BAD_ACTION_PREFIXES = ("s3:get", "s3:list", "s3:delete", "s3:put")
_BAD_ACTIONS = ("s3:abortmultipartupload", "s3:restoreobject")
# Keys S3 defines whose fact this server never has, though requests it serves have one in
# S3: a statement testing one would be stored to never match (a Deny that denies nothing).
# Refused, as principals that can never match are (keys are lower-cased by the parser).
UNKNOWABLE_KEYS: dict[str, str] = {
    "s3:tlsversion": "TLS ends at a proxy in front of it; test aws:SecureTransport",
}

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


def _is_bad_action(pattern: WildcardPattern) -> bool:
    lowered = pattern.source.lower()
    if lowered.startswith(_BAD_ACTION_PREFIXES) or lowered in _BAD_ACTIONS:
        return True
    return any(pattern.matches(sample) for sample in _BAD_SAMPLES)


def _restricting(condition: Condition) -> bool:
    if condition.if_exists or condition.set_operator:
        return False
    if condition.key == "aws:sourceip" and condition.base == "IpAddress":
        networks = [network(v) for v in condition.values]
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
    if not statement.not_action and not any(_is_bad_action(a) for a in statement.action_patterns):
        return False
    return not any(_restricting(c) for c in statement.conditions)


def policy_is_public(policy: BucketPolicy) -> bool:
    """True when some Allow statement reaches anyone without a fixed restricting condition."""
    return any(statement_is_public(s) for s in policy.statements)
