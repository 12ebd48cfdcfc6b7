"""The names users may have: one rule for the user directory that gives them and the bucket
policies that name them (an ARN no user can have is refused there, not stored to fail open).

Its own module, below both the store and access, since neither may import the other's rule."""

from __future__ import annotations

import re

# The root user's name, which no other user may take.
ROOT_NAME = "root"
# IAM's characters for a user name, with no path.
_USER_NAME = re.compile(r"[A-Za-z0-9_.@+=,-]{1,64}")


def is_user_name(name: str) -> bool:
    """Whether a user (not the root user) may have this name."""
    return _USER_NAME.fullmatch(name) is not None and name != ROOT_NAME
