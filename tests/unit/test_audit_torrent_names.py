"""The torrent's `name` and the `?torrent` Content-Disposition for awkward keys.

Real clients saving these names: tests/interop/test_audit_awkward_torrents.py.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s3torrent.s3.ops.torrent import content_disposition
from s3torrent.torrent.metainfo import MAX_NAME_BYTES, torrent_name

WINDOWS_FORBIDDEN = set('<>:"|?*\\/')
DEVICES = {"CON", "PRN", "AUX", "NUL"} | {p + n for p in ("COM", "LPT") for n in "0123456789¹²³"}


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("a/" + "x" * 300 + ".bin", "x" * 236 + ".bin"),
        ("é" * 200, "é" * 120),
        ("ü" * 150 + ".tar.gz", "ü" * 118 + ".gz"),  # never half a character
        ("x" * 250 + "." + "e" * 30, "x" * 240),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("a:b*c<d>e|f?g.bin", "a_b_c_d_e_f_g.bin"),
        ('say "hi".txt', "say _hi_.txt"),
        ("con.txt", "con_.txt"),
        ("dir/LPT1.x.y", "LPT1_.x.y"),
        ("Nul", "Nul_"),
        ("COM10", "COM10"),
        ("com0", "com0_"),
        ("LPT\u00b2.txt", "LPT\u00b2_.txt"),
        ("console.log", "console.log"),
        (" trail. .", "trail"),
        ("c1\x85\x9f.bin", "c1__.bin"),
        ("...", "object"),
        ("\u202e", "object"),
        ("../../etc/", "etc"),
        ("cafe\u0301 \U0001f600 100% #1.bin", "cafe\u0301 \U0001f600 100% #1.bin"),
    ],
)
def test_awkward_keys_get_portable_names(key: str, name: str) -> None:
    assert torrent_name(key) == name


@settings(max_examples=300)
@given(st.text(min_size=0, max_size=600))
def test_every_name_is_portable(key: str) -> None:
    name = torrent_name(key)
    assert 0 < len(name.encode("utf-8")) <= MAX_NAME_BYTES
    assert name not in (".", "..")
    assert not WINDOWS_FORBIDDEN & set(name)
    assert all(unicodedata.category(c) not in ("Cc", "Cf", "Cs") for c in name)
    assert not name.startswith(" ") and not name.endswith((" ", "."))
    assert name.partition(".")[0].upper() not in DEVICES


@settings(max_examples=300)
@given(st.text(min_size=1, max_size=300))
def test_content_disposition_is_one_safe_header_value(key: str) -> None:
    name = torrent_name(key)
    value = content_disposition(name)
    assert value.isascii() and "\r" not in value and "\n" not in value
    quoted = value.split('filename="', 1)[1].split('"', 1)[0]
    assert value.startswith('attachment; filename="') and quoted.endswith(".torrent")
    if "filename*=" in value:
        star = value.split("filename*=", 1)[1]
        assert star.startswith("UTF-8''") and ";" not in star and " " not in star
        assert unquote(star[len("UTF-8''") :], errors="strict") == name + ".torrent"
    else:
        assert quoted == name + ".torrent"


@pytest.mark.parametrize(
    ("name", "plain", "exact"),
    [
        ("report.pdf", "report.pdf.torrent", None),
        ("100%41.bin", "100_41.bin.torrent", "100%2541.bin.torrent"),
        ("50%.bin", "50_.bin.torrent", "50%25.bin.torrent"),
        ("café.txt", "caf_.txt.torrent", "caf%C3%A9.txt.torrent"),
    ],
)
def test_a_percent_is_never_left_for_a_browser_to_decode(
    name: str, plain: str, exact: str | None
) -> None:
    value = content_disposition(name)
    assert value.startswith(f'attachment; filename="{plain}"')
    assert value.endswith(f"; filename*=UTF-8''{exact}" if exact else f'"{plain}"')
