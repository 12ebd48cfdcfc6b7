"""Who is asking: the anonymous principal, a user, or the administrator (root)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Every user lives in one fixed account: the ARN shape IAM policies expect, without accounts.
ACCOUNT_ID = "000000000000"
ROOT_ARN = f"arn:aws:iam::{ACCOUNT_ID}:root"

_CANONICAL_ID = re.compile(r"[0-9a-f]{64}")


def is_canonical_id(value: str) -> bool:
    """True for a 64-hex-digit S3 canonical user id (lower case, as S3 renders them)."""
    return _CANONICAL_ID.fullmatch(value) is not None


def user_arn(name: str) -> str:
    """The IAM ARN a bucket policy names this user by."""
    return f"arn:aws:iam::{ACCOUNT_ID}:user/{name}"


@dataclass(frozen=True, slots=True)
class Principal:
    """The identity a request is evaluated for; anonymous when `canonical_id` is None."""

    canonical_id: str | None = None
    name: str | None = None
    arn: str | None = None
    is_root: bool = False

    @classmethod
    def user(cls, canonical_id: str, name: str, *, is_root: bool = False) -> Principal:
        """A signed-in user; the root user is the administrator and has the account-root ARN."""
        if not is_canonical_id(canonical_id):
            raise ValueError(f"canonical id must be 64 lower-case hex digits: {canonical_id!r}")
        return cls(
            canonical_id=canonical_id,
            name=name,
            arn=ROOT_ARN if is_root else user_arn(name),
            is_root=is_root,
        )

    @property
    def is_anonymous(self) -> bool:
        return self.canonical_id is None

    @property
    def principal_type(self) -> str:
        """The value of the aws:PrincipalType condition key."""
        if self.is_anonymous:
            return "Anonymous"
        return "Account" if self.is_root else "User"


ANONYMOUS = Principal()
