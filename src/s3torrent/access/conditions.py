"""IAM policy Condition blocks: operators, their validation, and their evaluation."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from s3torrent.access.principals import user_arn
from s3torrent.access.variables import VARIABLE_KEYS, Template, Text, parse_template
from s3torrent.access.wildcard import WildcardPattern

# No date or IP address is longer than this; a longer request value is simply not one, and
# is refused before the (slow, and for dates lenient) standard parsers see it.
_MAX_DATE_OR_ADDRESS = 64


class ConditionError(ValueError):
    """A condition that cannot be parsed; the policy parser turns it into MalformedPolicy."""


# An integer or a decimal, as IAM's numeric operators take them: ASCII digits, a minus sign
# and a fraction at most. float() also took "1_0", "+5", " 5", "1e3", "inf" and other
# scripts' digits, and compared as binary floats (2**53 + 1 was 2**53).
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _parse_number(value: str) -> Decimal:
    if len(value) > _MAX_DATE_OR_ADDRESS or not _NUMBER.fullmatch(value):
        raise ValueError(f"not an integer or a decimal number: {value!r}")
    return Decimal(value)


def _stored_number(value: str) -> Decimal:
    """A numeric value of a policy stored before numbers were read strictly, as float()
    read it then."""
    number = float(value)
    if math.isnan(number):
        raise ValueError("NaN")
    return Decimal(number)


def _epoch(text: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(text), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _bounded(value: str) -> str:
    text = value.strip()
    if len(text) > _MAX_DATE_OR_ADDRESS:
        raise ValueError("too long for a date")
    return text


def parse_timestamp(value: str) -> datetime:
    """An ISO 8601 date/time as a request carries one (a retain-until date); naive is UTC.

    What parse_date reads as the same instant and nothing else: the digits of a basic date
    ("20991231") are epoch seconds to a Date condition, so a date a request gives both an
    operation and a policy must not be read otherwise by the operation (a Deny capping the
    date would not see the date the operation keeps)."""
    text = _bounded(value)
    if _epoch(text) is not None:
        raise ValueError("epoch seconds, not a date")
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_date(value: str) -> datetime:
    """An ISO 8601 date/time or epoch seconds, as IAM accepts them; naive values are UTC."""
    moment = _epoch(_bounded(value))
    return moment if moment is not None else parse_timestamp(value)


# A policy's date, as IAM takes one: epoch seconds or the W3C profile of ISO 8601 (a date,
# or a date and a time to the minute, second or a fraction of it, with its zone). Python's
# readers also took "1_900_000_000", "+1900000000", other scripts' digits, a space for the
# T, the basic and week formats and an hour alone.
_POLICY_DATE = re.compile(
    r"[0-9]+|[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:Z|[+-][0-9]{2}:[0-9]{2})?)?"
)


def _policy_date(value: str) -> datetime:
    """A Date condition's value in a policy (a request's is read by parse_date, as an
    operation reads it)."""
    if len(value) > _MAX_DATE_OR_ADDRESS or not _POLICY_DATE.fullmatch(value):
        raise ValueError(f"not epoch seconds or a W3C ISO 8601 date: {value!r}")
    return parse_date(value)


_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A policy's network; one inside ::ffff:0:0/96 is the IPv4 network it maps, as a
    request's IPv4-mapped address is the IPv4 address (_ip_address)."""
    parsed = ipaddress.ip_network(value, strict=False)
    if isinstance(parsed, ipaddress.IPv6Network) and parsed.subnet_of(_IPV4_MAPPED):
        mapped = parsed.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network((mapped, parsed.prefixlen - 96))
    return parsed


# A CIDR block's prefix length: decimal digits without a leading zero. ip_network also took a
# netmask or a host mask there (10.0.0.0/0.0.0.255 was read as /24) and a zone (%eth0).
_PREFIX_LENGTH = re.compile(r"0|[1-9][0-9]{0,2}")


def _policy_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IpAddress condition's value in a policy: an address or a CIDR block (RFC 4632)."""
    address, slash, prefix = value.partition("/")
    if "%" in address or (slash and not _PREFIX_LENGTH.fullmatch(prefix)):
        raise ValueError(f"not an IP address or a CIDR block: {value!r}")
    return network(value)


def _ip_address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if len(value) > _MAX_DATE_OR_ADDRESS:
        raise ValueError("too long for an IP address")
    address = ipaddress.ip_address(value)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _ip_in(address: Any, network: Any) -> bool:
    return bool(address.version == network.version and address in network)


def _bool_value(value: str) -> str:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"not a boolean: {value}")
    return lowered


def _identity(value: str) -> str:
    return value


def _lower(value: str) -> str:
    return value.lower()


# An ARN's parts: arn:partition:service:region:account:resource (the resource may hold colons).
_ARN_PARTS = 6


@dataclass(frozen=True, slots=True)
class ArnPattern:
    """An ARN condition's value as IAM matches it: each of the six colon-separated parts on
    its own, so a `*` or `?` never crosses a colon, except in the resource part (the last,
    which may hold colons itself). `parts` empty: the value "*", any ARN."""

    parts: tuple[WildcardPattern, ...]

    @classmethod
    def compile_parts(cls, parts: Sequence[Text]) -> ArnPattern | None:
        """The pattern of these (text, wild) parts, as WildcardPattern.compile_parts takes
        them, split at colons; None when they make fewer than six parts (no ARN)."""
        pieces: list[list[Text]] = [[]]
        for text, wild in parts:
            chunks = text.split(":", _ARN_PARTS - len(pieces))
            pieces[-1].append((chunks[0], wild))
            pieces += [[(chunk, wild)] for chunk in chunks[1:]]
        if len(pieces) != _ARN_PARTS:
            return None
        return cls(tuple(WildcardPattern.compile_parts(piece) for piece in pieces))

    @property
    def cost(self) -> int:
        return sum(part.cost for part in self.parts)

    def matches(self, arn: str) -> bool:
        if not self.parts:
            return True
        parts = arn.split(":", _ARN_PARTS - 1)
        return len(parts) == _ARN_PARTS and all(
            pattern.matches(part) for pattern, part in zip(self.parts, parts, strict=True)
        )


_ANY_ARN = ArnPattern(())


def _validate_arn(value: str) -> ArnPattern:
    if value == "*":
        return _ANY_ARN
    pattern = ArnPattern.compile_parts(((value, True),)) if value.startswith("arn:") else None
    if pattern is None:
        raise ValueError(f"not an ARN (arn:partition:service:region:account:resource): {value}")
    return pattern


def _stored_arn(value: str) -> WildcardPattern:
    """An ARN value of a policy stored before ARNs were matched part by part: the whole
    text as one wildcard, as it was read then."""
    if not value.startswith("arn:"):
        raise ValueError(f"not an ARN: {value}")
    return WildcardPattern.compile(value)


# A value of each key a policy variable may name, of its shape: only aws:PrincipalArn's
# holds colons.
_VARIABLE_SAMPLES: Mapping[str, Sequence[str]] = {
    key: [user_arn("sample") if key == "aws:principalarn" else "sample"] for key in VARIABLE_KEYS
}


def _check_arn_template(template: Template) -> None:
    """An ARN value with variables must make an ARN once they are resolved: one that never
    does (user/${aws:username}, arn:aws:iam::${aws:username}) would match nothing."""
    text = template.text(_VARIABLE_SAMPLES)
    assert text is not None  # every key has its sample
    _validate_arn(text)


def _arn_of(template: Template, context: Mapping[str, Sequence[str]]) -> ArnPattern | None:
    """An ARN condition's value with its variables resolved (their values literal text); None
    when a variable has no value or the result is no ARN: it matches nothing."""
    parts = template.resolve(context)
    return None if parts is None else ArnPattern.compile_parts(parts)


def _like(context: Any, pattern: Any) -> bool:
    return bool(pattern.matches(context))


def _equal(context: Any, policy: Any) -> bool:
    return bool(context == policy)


@dataclass(frozen=True, slots=True)
class _Operator:
    """How one condition operator reads its values and compares them.

    `prepare_policy` turns a policy value into what `compare` takes (raising ValueError on
    a bad one: the policy is malformed), once, when the policy is parsed;
    `prepare_context` does the same for a request's value (a ValueError there makes the
    comparison false), once per value per condition, never once per policy value.
    `prepare_variable`, for the string and ARN operators only (IAM's), turns a value with
    policy variables (access.variables) into what `compare` takes, per request; None: a
    value of this operator holds no variables.
    """

    prepare_policy: Callable[[str], object]
    prepare_context: Callable[[str], object]
    compare: Callable[[Any, Any], bool]
    negated: bool
    prepare_variable: Callable[[Template, Mapping[str, Sequence[str]]], object] | None = None
    prepare_stored: Callable[[str], object] | None = None
    """How a stored policy reads a value `prepare_policy` refuses, one accepted before the
    grammar narrowed: as it was read then (None: there is no such value)."""
    check_template: Callable[[Template], object] | None = None
    """Refuses (ValueError) a value with variables that no request could resolve into a
    value of this operator; None: any may."""


def _num(test: Callable[[Decimal, Decimal], bool], negated: bool = False) -> _Operator:
    return _Operator(_parse_number, _parse_number, test, negated, None, _stored_number)


def _date(test: Callable[[datetime, datetime], bool], negated: bool = False) -> _Operator:
    return _Operator(_policy_date, parse_date, test, negated, None, parse_date)


def _lower_text(template: Template, context: Mapping[str, Sequence[str]]) -> str | None:
    text = template.text(context)
    return None if text is None else text.lower()


_STRING = _Operator(_identity, _identity, _equal, False, Template.text)
_STRING_NOT = _Operator(_identity, _identity, _equal, True, Template.text)
_LIKE = _Operator(WildcardPattern.compile, _identity, _like, False, Template.pattern)
_LIKE_NOT = _Operator(WildcardPattern.compile, _identity, _like, True, Template.pattern)
_ARN = _Operator(_validate_arn, _identity, _like, False, _arn_of, _stored_arn, _check_arn_template)
_ARN_NOT = _Operator(
    _validate_arn, _identity, _like, True, _arn_of, _stored_arn, _check_arn_template
)

_OPERATORS: dict[str, _Operator] = {
    "StringEquals": _STRING,
    "StringNotEquals": _STRING_NOT,
    "StringEqualsIgnoreCase": _Operator(_lower, _lower, _equal, False, _lower_text),
    "StringNotEqualsIgnoreCase": _Operator(_lower, _lower, _equal, True, _lower_text),
    "StringLike": _LIKE,
    "StringNotLike": _LIKE_NOT,
    "NumericEquals": _num(lambda a, b: a == b),
    "NumericNotEquals": _num(lambda a, b: a == b, negated=True),
    "NumericLessThan": _num(lambda a, b: a < b),
    "NumericLessThanEquals": _num(lambda a, b: a <= b),
    "NumericGreaterThan": _num(lambda a, b: a > b),
    "NumericGreaterThanEquals": _num(lambda a, b: a >= b),
    "DateEquals": _date(lambda a, b: a == b),
    "DateNotEquals": _date(lambda a, b: a == b, negated=True),
    "DateLessThan": _date(lambda a, b: a < b),
    "DateLessThanEquals": _date(lambda a, b: a <= b),
    "DateGreaterThan": _date(lambda a, b: a > b),
    "DateGreaterThanEquals": _date(lambda a, b: a >= b),
    "Bool": _Operator(_bool_value, _bool_value, _equal, False),
    "BinaryEquals": _Operator(_identity, _identity, _equal, False),
    "IpAddress": _Operator(_policy_network, _ip_address, _ip_in, False, None, network),
    "NotIpAddress": _Operator(_policy_network, _ip_address, _ip_in, True, None, network),
    # ArnEquals takes wildcards exactly like ArnLike does.
    "ArnEquals": _ARN,
    "ArnLike": _ARN,
    "ArnNotEquals": _ARN_NOT,
    "ArnNotLike": _ARN_NOT,
}
# Null is special: its one value says whether the key must be absent.
_NULL = _Operator(_bool_value, _identity, _equal, False)

OPERATOR_NAMES = frozenset(_OPERATORS) | {"Null"}


@dataclass(frozen=True, slots=True)
class Condition:
    """One (operator, key, values) triple; a statement's conditions must all hold."""

    operator: str  # as written, e.g. "ForAnyValue:StringLikeIfExists"
    base: str  # e.g. "StringLike"
    set_operator: str  # "", "ForAnyValue" or "ForAllValues"
    if_exists: bool
    key: str  # lower case: condition keys are case-insensitive
    values: tuple[str, ...]
    # `values` as the operator compares them (compiled wildcards, numbers, networks, ...);
    # a value with policy variables is prepared per request, from its template.
    prepared: tuple[object, ...] = field(default=(), compare=False)
    templates: tuple[Template | None, ...] = field(default=(), compare=False)

    @property
    def negated(self) -> bool:
        return self.base != "Null" and _OPERATORS[self.base].negated


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ConditionError(f"condition values must be strings, numbers or booleans: {value!r}")


def _prepare(spec: _Operator, value: str, strict: bool) -> object:
    """A policy value as `spec` compares it; not `strict` (a stored policy): a value the
    grammar has since narrowed out keeps the reading it was stored with."""
    try:
        return spec.prepare_policy(value)
    except ValueError:
        if strict or spec.prepare_stored is None:
            raise
        return spec.prepare_stored(value)


def parse_condition_block(
    block: object, *, variables: bool = False, strict: bool = True
) -> tuple[Condition, ...]:
    """Turn a statement's Condition object into conditions, raising ConditionError.

    variables: read policy variables in the values of string and ARN operators (a
    2012-10-17 policy); elsewhere `${...}` is text. strict: PutBucketPolicy's grammar; a
    stored policy is read as it was accepted (_Operator.prepare_stored)."""
    if not isinstance(block, dict):
        raise ConditionError("Condition must be an object")
    conditions: list[Condition] = []
    for operator, pairs in block.items():
        set_operator, _, rest = operator.rpartition(":")
        if set_operator not in ("", "ForAnyValue", "ForAllValues"):
            raise ConditionError(f"Invalid Condition type : {operator}")
        if_exists = rest.endswith("IfExists") and rest != "IfExists"
        base = rest.removesuffix("IfExists") if if_exists else rest
        if base not in OPERATOR_NAMES or (base == "Null" and (if_exists or set_operator)):
            raise ConditionError(f"Invalid Condition type : {operator}")
        if not isinstance(pairs, dict) or not pairs:
            raise ConditionError(f"Condition {operator} must map condition keys to values")
        for key, raw in pairs.items():
            items = raw if isinstance(raw, list) else [raw]
            if not items:
                raise ConditionError(f"Condition {operator} on {key} has no values")
            values = tuple(_scalar(item) for item in items)
            spec = _NULL if base == "Null" else _OPERATORS[base]
            prepared: list[object] = []
            templates: list[Template | None] = []
            for value in values:
                try:
                    template = (
                        parse_template(value)
                        if variables and spec.prepare_variable is not None
                        else None
                    )
                    if template is not None and strict and spec.check_template is not None:
                        spec.check_template(template)
                    prepared.append(_prepare(spec, value, strict) if template is None else None)
                except ValueError as exc:
                    raise ConditionError(
                        f"Invalid value {value!r} for condition {operator} on {key}: {exc}"
                    ) from exc
                templates.append(template)
            conditions.append(
                Condition(
                    operator,
                    base,
                    set_operator,
                    if_exists,
                    key.lower(),
                    values,
                    tuple(prepared),
                    tuple(templates) if any(templates) else (),
                )
            )
    return tuple(conditions)


def _policy_values(condition: Condition, context: Mapping[str, Sequence[str]]) -> Sequence[object]:
    """The condition's values as its operator compares them, for this request: a value
    with policy variables resolved; one whose variable has no value left out (it matches
    nothing, as IAM's "effectively null" value)."""
    if not condition.templates:
        return condition.prepared
    prepare = _OPERATORS[condition.base].prepare_variable
    assert prepare is not None
    values: list[object] = []
    for value, template in zip(condition.prepared, condition.templates, strict=True):
        if template is not None:
            value = prepare(template, context)
        if value is not None:
            values.append(value)
    return values


def _value_matches(condition: Condition, policy_values: Sequence[object], value: str) -> bool:
    operator = _OPERATORS[condition.base]
    try:
        context = operator.prepare_context(value)
    except (ValueError, OverflowError):
        hit = False
    else:
        hit = any(operator.compare(context, policy) for policy in policy_values)
    return not hit if operator.negated else hit


def condition_holds(
    condition: Condition, context: Mapping[str, Sequence[str]], *, deny: bool = False
) -> bool:
    """Evaluate one condition of an Allow statement (`deny`: of a Deny) against the
    request's (lower-cased) condition keys.

    A missing key fails a positive operator and satisfies a negated one, as IAM documents;
    `...IfExists` makes a missing key satisfy any operator. A key given several values to a
    plain operator (tags whose keys differ only in case, Env and env, are one condition
    key) is read against the request: an Allow holds only when every value meets it, a Deny
    when any does, so no value slips past either by hiding behind another.
    """
    present = context.get(condition.key)
    if condition.base == "Null":
        # Its values ("true": absent, "false": present, lower-cased when parsed) are ORed.
        return ("true" if not present else "false") in condition.prepared
    if not present:
        if condition.set_operator == "ForAllValues":
            return True
        if condition.set_operator == "ForAnyValue":
            return condition.if_exists
        return condition.if_exists or condition.negated
    policy = _policy_values(condition, context)
    if condition.set_operator == "ForAllValues":
        return all(_value_matches(condition, policy, value) for value in present)
    if condition.set_operator == "ForAnyValue":
        return any(_value_matches(condition, policy, value) for value in present)
    meets = (_value_matches(condition, policy, value) for value in present)
    return any(meets) if deny else all(meets)
