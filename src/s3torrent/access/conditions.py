"""IAM policy Condition blocks: operators, their validation, and their evaluation."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from s3torrent.access.wildcard import wildcard_match


class ConditionError(ValueError):
    """A condition that cannot be parsed; the policy parser turns it into MalformedPolicy."""


def _parse_number(value: str) -> float:
    number = float(value)
    if math.isnan(number):
        raise ValueError("NaN")
    return number


def parse_date(value: str) -> datetime:
    """An ISO 8601 date/time or epoch seconds, as IAM accepts them; naive values are UTC."""
    text = value.strip()
    try:
        moment = datetime.fromtimestamp(int(text), tz=UTC)
    except (ValueError, OverflowError, OSError):
        moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def _ip_in(context: str, cidr: str) -> bool:
    network = ipaddress.ip_network(cidr, strict=False)
    address = ipaddress.ip_address(context)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.version == network.version and address in network


def _bool_value(value: str) -> str:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise ValueError(f"not a boolean: {value}")
    return lowered


# A comparison takes (context value, policy value) and may raise ValueError on a bad
# context value: the comparison is then false.
Comparison = Callable[[str, str], bool]
Validator = Callable[[str], object]


def _identity(value: str) -> object:
    return value


@dataclass(frozen=True, slots=True)
class _Operator:
    compare: Comparison
    negated: bool
    validate: Validator


def _num(test: Callable[[float, float], bool]) -> Comparison:
    return lambda ctx, pol: test(_parse_number(ctx), _parse_number(pol))


def _date(test: Callable[[datetime, datetime], bool]) -> Comparison:
    return lambda ctx, pol: test(parse_date(ctx), parse_date(pol))


def _string_equals(ctx: str, pol: str) -> bool:
    return ctx == pol


def _string_equals_ignore_case(ctx: str, pol: str) -> bool:
    return ctx.lower() == pol.lower()


def _string_like(ctx: str, pol: str) -> bool:
    return wildcard_match(pol, ctx)


def _bool_equals(ctx: str, pol: str) -> bool:
    return _bool_value(ctx) == _bool_value(pol)


def _validate_cidr(value: str) -> object:
    return ipaddress.ip_network(value, strict=False)


def _validate_arn(value: str) -> object:
    if value != "*" and not value.startswith("arn:"):
        raise ValueError(f"not an ARN: {value}")
    return value


_OPERATORS: dict[str, _Operator] = {
    "StringEquals": _Operator(_string_equals, False, _identity),
    "StringNotEquals": _Operator(_string_equals, True, _identity),
    "StringEqualsIgnoreCase": _Operator(_string_equals_ignore_case, False, _identity),
    "StringNotEqualsIgnoreCase": _Operator(_string_equals_ignore_case, True, _identity),
    "StringLike": _Operator(_string_like, False, _identity),
    "StringNotLike": _Operator(_string_like, True, _identity),
    "NumericEquals": _Operator(_num(lambda a, b: a == b), False, _parse_number),
    "NumericNotEquals": _Operator(_num(lambda a, b: a == b), True, _parse_number),
    "NumericLessThan": _Operator(_num(lambda a, b: a < b), False, _parse_number),
    "NumericLessThanEquals": _Operator(_num(lambda a, b: a <= b), False, _parse_number),
    "NumericGreaterThan": _Operator(_num(lambda a, b: a > b), False, _parse_number),
    "NumericGreaterThanEquals": _Operator(_num(lambda a, b: a >= b), False, _parse_number),
    "DateEquals": _Operator(_date(lambda a, b: a == b), False, parse_date),
    "DateNotEquals": _Operator(_date(lambda a, b: a == b), True, parse_date),
    "DateLessThan": _Operator(_date(lambda a, b: a < b), False, parse_date),
    "DateLessThanEquals": _Operator(_date(lambda a, b: a <= b), False, parse_date),
    "DateGreaterThan": _Operator(_date(lambda a, b: a > b), False, parse_date),
    "DateGreaterThanEquals": _Operator(_date(lambda a, b: a >= b), False, parse_date),
    "Bool": _Operator(_bool_equals, False, _bool_value),
    "BinaryEquals": _Operator(_string_equals, False, _identity),
    "IpAddress": _Operator(_ip_in, False, _validate_cidr),
    "NotIpAddress": _Operator(_ip_in, True, _validate_cidr),
    # ArnEquals takes wildcards exactly like ArnLike does.
    "ArnEquals": _Operator(_string_like, False, _validate_arn),
    "ArnLike": _Operator(_string_like, False, _validate_arn),
    "ArnNotEquals": _Operator(_string_like, True, _validate_arn),
    "ArnNotLike": _Operator(_string_like, True, _validate_arn),
}

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

    @property
    def negated(self) -> bool:
        return self.base != "Null" and _OPERATORS[self.base].negated


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ConditionError(f"condition values must be strings, numbers or booleans: {value!r}")


def parse_condition_block(block: object) -> tuple[Condition, ...]:
    """Turn a statement's Condition object into conditions, raising ConditionError."""
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
            validate = _bool_value if base == "Null" else _OPERATORS[base].validate
            for value in values:
                try:
                    validate(value)
                except ValueError as exc:
                    raise ConditionError(
                        f"Invalid value {value!r} for condition {operator} on {key}"
                    ) from exc
            conditions.append(
                Condition(operator, base, set_operator, if_exists, key.lower(), values)
            )
    return tuple(conditions)


def _value_matches(condition: Condition, context_value: str) -> bool:
    operator = _OPERATORS[condition.base]
    hit = False
    for policy_value in condition.values:
        try:
            if operator.compare(context_value, policy_value):
                hit = True
                break
        except (ValueError, OverflowError):
            continue
    return not hit if operator.negated else hit


def condition_holds(condition: Condition, context: Mapping[str, Sequence[str]]) -> bool:
    """Evaluate one condition against the request's (lower-cased) condition keys.

    A missing key fails a positive operator and satisfies a negated one, as IAM documents;
    `...IfExists` makes a missing key satisfy any operator.
    """
    present = context.get(condition.key)
    if condition.base == "Null":
        want_absent = condition.values[0].lower() == "true"
        return (not present) == want_absent
    if not present:
        if condition.set_operator == "ForAllValues":
            return True
        if condition.set_operator == "ForAnyValue":
            return condition.if_exists
        return condition.if_exists or condition.negated
    if condition.set_operator == "ForAllValues":
        return all(_value_matches(condition, value) for value in present)
    if condition.set_operator == "ForAnyValue":
        return any(_value_matches(condition, value) for value in present)
    if condition.negated:
        return all(_value_matches(condition, value) for value in present)
    return any(_value_matches(condition, value) for value in present)
