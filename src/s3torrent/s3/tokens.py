"""Continuation tokens (ListObjectsV2, ListBuckets): where the next page starts, as the
server wrote it.

A token is the URL-safe base64 of the last key (or bucket name) a page held. Only a token
this module could have written is taken back: base64 decoding on its own is lenient (it
drops characters outside its alphabet and a padding's stray bits), and a garbled token
must be S3's error, not a listing from some other place.
"""

from __future__ import annotations

import base64
import binascii

from s3torrent.s3.errors import S3Error


def encode_token(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode("utf-8")).decode("ascii")


def decode_token(token: str) -> str:
    """The key (or name) `token` goes on after; 400 InvalidArgument for any other string."""
    try:
        after = base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        after = None
    if after is None or encode_token(after) != token:
        raise S3Error(
            "InvalidArgument",
            "The continuation token provided is incorrect",
            extra={"ArgumentName": "continuation-token"},
        )
    return after
