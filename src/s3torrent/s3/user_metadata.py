"""User metadata values (`x-amz-meta-*`) beyond US-ASCII, stored and returned as S3 does.

S3 documents it: a value holding non-ASCII characters is decoded per RFC 2047 before it is
stored, and encoded per RFC 2047 ("mail-safe") when it is returned; an ASCII value is
returned as is. So a client gets back, as ASCII, an encoded word that decodes to what it
sent, whatever bytes its HTTP library put on the wire:

- raw UTF-8 bytes (curl, most SDKs) are read as UTF-8;
- bytes that are not UTF-8 (Python's http.client writes header strings as ISO-8859-1, so
  "é" goes out as the single byte 0xE9) are read as ISO-8859-1, HTTP's historical charset;
- an RFC 2047 encoded word the client sent is decoded, and comes back encoded.

(aiohttp hands undecodable header bytes over as surrogate escapes and cannot write them
back, which is how a 0xE9 used to come back as C3 A9 or vanish; an ASCII answer sidesteps
that.) SigV4 signs the bytes as sent (`sigv4_signing.utf8_as_sent`), independently of this.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re

# One RFC 2047 encoded word: =?charset?B|Q?text?=
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(\?=)\s+(=\?)")


def wire_bytes(value: str) -> bytes:
    """The bytes a header value arrived as (aiohttp decodes UTF-8 with surrogate escapes)."""
    return value.encode("utf-8", "surrogateescape")


def _decode_word(match: re.Match[str]) -> str:
    charset, kind, text = match.group(1), match.group(2).upper(), match.group(3)
    try:
        if kind == "B":
            raw = base64.b64decode(text, validate=True)
        else:
            raw = quopri.decodestring(text.replace("_", " ").encode("ascii"), header=True)
        return raw.decode(charset)
    except (binascii.Error, LookupError, UnicodeError, ValueError):
        # Not a word we can read: keep it as the client wrote it.
        return match.group(0)


def decode_rfc2047(value: str) -> str:
    """Encoded words decoded (whitespace between adjacent words dropped, as RFC 2047 says)."""
    if "=?" not in value:
        return value
    return _ENCODED_WORD.sub(_decode_word, _BETWEEN_WORDS.sub(r"\1\2", value))


def stored_value(value: str) -> str:
    """The text to store for a header value as aiohttp handed it over."""
    raw = wire_bytes(value)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return decode_rfc2047(text)


def _header_safe(text: str) -> bool:
    """Printable ASCII (and tabs): what a header may carry as is."""
    return all(" " <= c < "\x7f" or c == "\t" for c in text)


def response_value(text: str) -> str:
    """The header value to return: printable ASCII as is, anything else (non-ASCII, or a
    control character an encoded word decoded to) one RFC 2047 B-encoded word."""
    if _header_safe(text):
        return text
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return f"=?UTF-8?B?{encoded}?="
