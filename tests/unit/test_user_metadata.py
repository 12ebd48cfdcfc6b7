"""The pure rules for non-ASCII user metadata: what is stored, what is returned."""

from __future__ import annotations

from email.header import decode_header

from hypothesis import given
from hypothesis import strategies as st

from s3torrent.s3.user_metadata import decode_rfc2047, response_value, stored_value


def _as_aiohttp_hands_it_over(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _mail_decoded(value: str) -> str:
    parts = decode_header(value)
    return "".join(p.decode(c or "ascii") if isinstance(p, bytes) else p for p, c in parts)


def test_invalid_utf8_bytes_are_read_as_latin_1() -> None:
    assert stored_value(_as_aiohttp_hands_it_over(b"caf\xe9")) == "café"


def test_utf8_bytes_are_read_as_utf8() -> None:
    assert stored_value(_as_aiohttp_hands_it_over("日本".encode())) == "日本"


def test_encoded_words_are_decoded_and_bad_ones_kept() -> None:
    assert decode_rfc2047("=?UTF-8?B?w6k=?= =?UTF-8?Q?_x?=") == "é x"
    assert decode_rfc2047("=?nope?B?w6k=?=") == "=?nope?B?w6k=?="
    assert decode_rfc2047("=?UTF-8?B?!!?=") == "=?UTF-8?B?!!?="


def test_a_decoded_line_break_is_never_returned_raw() -> None:
    stored = stored_value("=?UTF-8?B?DQp4LWZvbzogMQ==?=")
    assert stored == "\r\nx-foo: 1"
    assert response_value(stored) == "=?UTF-8?B?DQp4LWZvbzogMQ==?="


@given(st.text())
def test_what_is_returned_is_ascii_and_decodes_to_what_was_stored(text: str) -> None:
    stored = stored_value(_as_aiohttp_hands_it_over(text.encode("utf-8", "surrogatepass")))
    answer = response_value(stored)
    assert answer.isascii()
    assert all(" " <= c < "\x7f" or c == "\t" for c in answer)
    if answer != stored:
        assert _mail_decoded(answer) == stored
