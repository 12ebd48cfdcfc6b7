"""IAM policy variables: `${aws:username}` in a 2012-10-17 policy's Resource and in the values
of its string and ARN conditions, replaced by the request's value of that condition key.

As IAM defines them: a variable names a condition key (any case), optionally with a default
(`${aws:username, 'nobody'}`, `''` for a quote inside it); `${*}`, `${?}` and `${$}` stand for
those characters, never wildcards. A variable whose key the request lacks (an anonymous
caller has no aws:username), or has several values of, has no value unless it has a default:
an element holding it then matches nothing (a negated operator, matching nothing, holds).
A value put in place of a variable is text, never wildcards. A 2008-10-17 policy has no
variables: `${...}` is text there, as in IAM.

Variables may name only the keys of who is calling and of the account: what this server
always knows, whose values are short (a bound for the wildcard cost a policy may carry) and
fixed for a caller (decisions cached by caller, address and headers stay right). A policy
naming another key is refused rather than enforced some other way than IAM would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from s3torrent.access.wildcard import WildcardPattern

VARIABLE_KEYS = frozenset(
    {
        "aws:username",
        "aws:userid",
        "aws:principalarn",
        "aws:principalaccount",
        "aws:principaltype",
        "aws:resourceaccount",
        "s3:resourceaccount",
    }
)
# The longest value those keys take (a user's ARN: 31 characters and a name of up to 64).
MAX_VALUE_LENGTH = 128
_SPECIAL = frozenset({"*", "?", "$"})
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_BODY = re.compile(r"\s*([^\s,']+)\s*(?:,\s*'((?:[^']|'')*)'\s*)?")

# A part of a template: policy text (its `*` and `?` are wildcards), or literal text, each as
# WildcardPattern.compile_parts takes them; or a variable.
Text = tuple[str, bool]


@dataclass(frozen=True, slots=True)
class Variable:
    key: str  # lower case: condition keys are case-insensitive
    default: str | None


@dataclass(frozen=True, slots=True)
class Template:
    """A policy value holding variables."""

    source: str
    parts: tuple[Text | Variable, ...]

    def resolve(self, context: Mapping[str, Sequence[str]]) -> tuple[Text, ...] | None:
        """The value with every variable replaced by its key's value (or default), as
        literal text; None when a variable has no value."""
        resolved: list[Text] = []
        for part in self.parts:
            if not isinstance(part, Variable):
                resolved.append(part)
                continue
            values = context.get(part.key)
            if values and len(values) == 1:
                resolved.append((values[0], False))
            elif part.default is not None:
                resolved.append((part.default, False))
            else:
                return None
        return tuple(resolved)

    def text(self, context: Mapping[str, Sequence[str]]) -> str | None:
        """The resolved value as a plain string (for operators without wildcards)."""
        parts = self.resolve(context)
        return None if parts is None else "".join(text for text, _ in parts)

    def pattern(self, context: Mapping[str, Sequence[str]]) -> WildcardPattern | None:
        """The resolved value as a wildcard pattern (its values' characters literal)."""
        parts = self.resolve(context)
        return None if parts is None else _compiled(parts)

    def worst_case(self) -> WildcardPattern:
        """The pattern with every variable at its longest value: what bounds its cost."""
        filler = ("x" * MAX_VALUE_LENGTH, False)
        return _compiled(tuple(filler if isinstance(p, Variable) else p for p in self.parts))


@lru_cache(maxsize=1024)
def _compiled(parts: tuple[Text, ...]) -> WildcardPattern:
    return WildcardPattern.compile_parts(parts)


def _variable(body: str) -> Text | Variable:
    if body in _SPECIAL:
        return (body, False)
    match = _BODY.fullmatch(body)
    if match is None:
        raise ValueError(f"malformed policy variable ${{{body}}}")
    key = match.group(1).lower()
    if key not in VARIABLE_KEYS:
        raise ValueError(
            f"policy variable ${{{match.group(1)}}} is not supported: variables may name "
            f"{', '.join(sorted(VARIABLE_KEYS))}"
        )
    default = match.group(2)
    return Variable(key, None if default is None else default.replace("''", "'"))


def parse_template(value: str) -> Template | None:
    """The template `value` is, or None when it holds no variable (it is plain policy
    text); raises ValueError for a malformed or unsupported variable."""
    if "${" not in value:
        return None
    parts: list[Text | Variable] = []
    position = 0
    for match in _VARIABLE.finditer(value):
        parts.append((value[position : match.start()], True))
        parts.append(_variable(match.group(1)))
        position = match.end()
    parts.append((value[position:], True))
    if any(isinstance(p, tuple) and p[1] and "${" in p[0] for p in parts):
        raise ValueError(f"malformed policy variable in {value!r}: no closing brace")
    return Template(value, tuple(p for p in parts if not isinstance(p, tuple) or p[0]))
