"""POST Object's signed policy document: parsing, signatures, conditions (pure).

A browser form upload carries a base64 JSON policy (an expiration and a list of
conditions) signed with SigV4 (x-amz-algorithm, -credential, -date, -signature) or SigV2
(AWSAccessKeyId, signature). Every form field except the exempt ones must be named by a
condition, and every condition must hold for the field's value as sent. The file's size is
checked against `content-length-range` by the caller while the file streams.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from s3torrent.s3 import sigv2
from s3torrent.s3.errors import S3Error
from s3torrent.s3.sigv4_signing import ALGORITHM, SERVICE, TERMINATOR, hmac_hex, signing_key

# Fields no condition needs to name (S3's list, both signature versions).
EXEMPT_FIELDS = frozenset({"x-amz-signature", "file", "policy", "awsaccesskeyid", "signature"})
EXEMPT_PREFIX = "x-ignore-"
_V4_FIELDS = ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")

SecretLookup = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class Condition:
    """One `eq` / `starts-with` condition on a field (name lower case, without `$`)."""

    op: str
    field: str
    value: str
    text: str  # as S3 quotes it back in "Policy Condition failed: ..."

    def holds(self, sent: str | None) -> bool:
        if sent is None:
            return False
        if self.op == "eq":
            return sent == self.value
        if self.field == "content-type":
            # S3: a list of types (several files' worth) must start with the prefix each.
            return all(t.strip().startswith(self.value) for t in sent.split(","))
        return sent.startswith(self.value)


@dataclass(frozen=True, slots=True)
class PostPolicy:
    expiration: datetime
    conditions: tuple[Condition, ...]
    length_range: tuple[int, int] | None

    def named_fields(self) -> frozenset[str]:
        return frozenset(c.field for c in self.conditions)


def _invalid(message: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", f"Invalid Policy: {message}")


def decode_policy(encoded: str) -> PostPolicy:
    """The policy field's document; InvalidPolicyDocument when it is not one."""
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
        document = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):  # nested past the parser's stack
        raise _invalid("Invalid JSON.") from None
    if not isinstance(document, dict):
        raise _invalid("Invalid JSON.")
    if "expiration" not in document:
        raise _invalid("Policy missing expiration.")
    if "conditions" not in document:
        raise _invalid("Policy missing conditions.")
    expiration = _parse_expiration(document["expiration"])
    items = document["conditions"]
    if not isinstance(items, list):
        raise _invalid("Invalid 'conditions' value: must be a list.")
    conditions: list[Condition] = []
    length_range: tuple[int, int] | None = None
    for item in items:
        if isinstance(item, dict):
            if len(item) != 1:
                raise _invalid(f"Invalid Simple-Condition: {_quote(item)}")
            ((name, value),) = item.items()
            if not isinstance(value, str):
                raise _invalid(f"Invalid Simple-Condition: value must be a string: {_quote(item)}")
            conditions.append(
                Condition("eq", name.lower().lstrip("$"), value, _quote(["eq", f"${name}", value]))
            )
        elif isinstance(item, list):
            op = item[0].lower() if item and isinstance(item[0], str) else None
            if op == "content-length-range":
                # Every condition holds: a second range narrows the first, never replaces it.
                low, high = _length_range(item)
                if length_range is not None:
                    low, high = max(low, length_range[0]), min(high, length_range[1])
                length_range = (low, high)
            elif op in ("eq", "starts-with"):
                conditions.append(_field_condition(op, item))
            else:
                raise _invalid(f"Invalid Condition: {_quote(item)}")
        else:
            raise _invalid(f"Invalid Condition: {_quote(item)}")
    return PostPolicy(expiration, tuple(conditions), length_range)


def _quote(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)[:256]


# The policy's expiration, "in ISO 8601 UTC date format" as S3 documents it (its example
# 2007-12-01T12:00:00.000Z): a date and time of day, fractions optional, in UTC. Python's
# fromisoformat alone also took a date without a time, a space for the T and any offset.
_EXPIRATION = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z")


def _parse_expiration(value: Any) -> datetime:
    if isinstance(value, str) and _EXPIRATION.fullmatch(value):
        whole, _, fraction = value[:-1].partition(".")
        try:
            moment = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        except ValueError:
            moment = None
        if moment is not None:
            return moment.replace(microsecond=int(fraction[:6].ljust(6, "0")) if fraction else 0)
    raise _invalid(f"Invalid 'expiration' value: {_quote(value)}")


def _field_condition(op: str, item: list[Any]) -> Condition:
    if len(item) != 3 or not all(isinstance(x, str) for x in item[1:]) or not item[1]:
        raise _invalid(f"Invalid Condition: {_quote(item)}")
    name, value = item[1], item[2]
    if not name.startswith("$"):
        raise _invalid(f"Invalid Condition: the field name must start with '$': {_quote(item)}")
    return Condition(op, name[1:].lower(), value, _quote([item[0], name, value]))


def _length_range(item: list[Any]) -> tuple[int, int]:
    def bound(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            value = int(value.strip())
        if not isinstance(value, int) or value < 0:
            raise ValueError
        return value

    try:
        if len(item) != 3:
            raise ValueError
        low, high = bound(item[1]), bound(item[2])
    except ValueError:
        raise _invalid(f"Invalid content-length-range: {_quote(item)}") from None
    if low > high:
        raise _invalid(f"Invalid content-length-range: {_quote(item)}")
    return low, high


# ---------------------------------------------------------------- checks


def denied(message: str) -> S3Error:
    return S3Error("AccessDenied", f"Invalid according to Policy: {message}")


def check_expiration(policy: PostPolicy, now: datetime) -> None:
    if now >= policy.expiration:
        raise denied("Policy expired.")


def check_conditions(policy: PostPolicy, fields: Mapping[str, str], bucket: str) -> None:
    """Every condition holds, and every field but the exempt ones is named by one."""
    for condition in policy.conditions:
        sent = bucket if condition.field == "bucket" else fields.get(condition.field)
        if not condition.holds(sent):
            raise denied(f"Policy Condition failed: {condition.text}")
    named = policy.named_fields()
    extra = [
        name
        for name in fields
        if name not in EXEMPT_FIELDS and not name.startswith(EXEMPT_PREFIX) and name not in named
    ]
    if extra:
        raise denied(f"Extra input fields: {', '.join(extra)}")


def check_length(policy: PostPolicy | None, size: int) -> None:
    """The file's size against content-length-range, once it is all received."""
    if policy is None or policy.length_range is None:
        return
    low, high = policy.length_range
    if size < low:
        raise S3Error(
            "EntityTooSmall", extra={"ProposedSize": str(size), "MinSizeAllowed": str(low)}
        )
    if size > high:
        raise too_large(high)


def too_large(limit: int) -> S3Error:
    return S3Error("EntityTooLarge", extra={"MaxSizeAllowed": str(limit)})


# ---------------------------------------------------------------- signatures


def missing_field(name: str) -> S3Error:
    return S3Error(
        "InvalidArgument",
        f"Bucket POST must contain a field named '{name}'.  If it is specified, please check "
        "the order of the fields.",
        extra={"ArgumentName": name, "ArgumentValue": ""},
    )


def is_signed(fields: Mapping[str, str]) -> bool:
    """Whether the form claims any signature (then it must carry a policy and all of it)."""
    return any(f in fields for f in (*_V4_FIELDS, "awsaccesskeyid", "signature"))


def verify_signature(fields: Mapping[str, str], lookup_secret: SecretLookup, region: str) -> str:
    """The access key whose secret signed the policy field (SigV4 or SigV2)."""
    policy = fields.get("policy")
    if policy is None:
        raise missing_field("policy")
    if any(f in fields for f in _V4_FIELDS):
        return _verify_v4(fields, policy, lookup_secret, region)
    access_key = fields.get("awsaccesskeyid")
    if access_key is None:
        raise missing_field("AWSAccessKeyId")
    signature = fields.get("signature")
    if signature is None:
        raise missing_field("signature")
    secret = lookup_secret(access_key)
    if secret is None:
        raise _unknown_key(access_key)
    if not hmac.compare_digest(sigv2.sign(secret, policy).encode(), signature.encode()):
        raise _mismatch(access_key)
    return access_key


def _verify_v4(
    fields: Mapping[str, str], policy: str, lookup_secret: SecretLookup, region: str
) -> str:
    for name in _V4_FIELDS:
        if name not in fields:
            raise missing_field(name)
    if fields["x-amz-algorithm"] != ALGORITHM:
        raise S3Error(
            "InvalidArgument",
            "Unsupported algorithm; only AWS4-HMAC-SHA256 is supported.",
            extra={"ArgumentName": "x-amz-algorithm", "ArgumentValue": fields["x-amz-algorithm"]},
        )
    amz_date = fields["x-amz-date"]
    if not _AMZ_DATE.fullmatch(amz_date):
        raise _bad_credential("x-amz-date", amz_date, "invalid date")
    parts = fields["x-amz-credential"].split("/")
    if len(parts) != 5 or not parts[0]:
        raise _bad_credential("x-amz-credential", fields["x-amz-credential"], "malformed")
    access_key, date, cred_region, service, terminator = parts
    if service != SERVICE or terminator != TERMINATOR:
        raise _bad_credential("x-amz-credential", fields["x-amz-credential"], "wrong scope")
    if cred_region != region:
        raise _bad_credential(
            "x-amz-credential", fields["x-amz-credential"], f"the region is wrong; use {region}"
        )
    if date != amz_date[:8]:
        raise _bad_credential(
            "x-amz-credential", fields["x-amz-credential"], "date is not x-amz-date's"
        )
    secret = lookup_secret(access_key)
    if secret is None:
        raise _unknown_key(access_key)
    expected = hmac_hex(signing_key(secret, date, cred_region), policy)
    if not hmac.compare_digest(expected.encode(), fields["x-amz-signature"].encode()):
        raise _mismatch(access_key)
    return access_key


def _bad_credential(name: str, value: str, why: str) -> S3Error:
    return S3Error(
        "InvalidArgument",
        f"Invalid argument: {name} ({why}).",
        extra={"ArgumentName": name, "ArgumentValue": value[:128]},
    )


def _unknown_key(access_key: str) -> S3Error:
    return S3Error("InvalidAccessKeyId", extra={"AWSAccessKeyId": access_key[:128]})


def _mismatch(access_key: str) -> S3Error:
    return S3Error("SignatureDoesNotMatch", extra={"AWSAccessKeyId": access_key[:128]})
