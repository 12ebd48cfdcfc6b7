"""The access layer's own error: a code the S3 edge renders, and a message for the client."""

from __future__ import annotations

from collections.abc import Mapping


class AccessError(Exception):
    """A refused ACL, policy or Block Public Access request.

    `code` is the S3 error code it corresponds to (MalformedPolicy, MalformedACLError,
    InvalidArgument, AccessDenied, ...); the S3 edge maps it to an S3Error of that code, so
    this layer never imports the S3 one. `extra` holds the additional Error elements S3
    includes for that code (ArgumentName, ArgumentValue).
    """

    def __init__(self, code: str, message: str = "", *, extra: Mapping[str, str] | None = None):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.extra: dict[str, str] = dict(extra or {})
