"""The URLs a torrent names: object paths that survive URL normalisation, web-seed forms."""

from __future__ import annotations

from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from s3torrent.torrent.catalog import TorrentInfo, object_path, web_seed_url
from s3torrent.torrent.hasher import PieceHashes
from s3torrent.torrent.metainfo import InfoHash

# WHATWG URL's single- and double-dot segments (ASCII case-insensitive).
_WHATWG_DOTS = {".", "%2e", "..", ".%2e", "%2e.", "%2e%2e"}


@given(st.text(alphabet="a./%é ", min_size=1, max_size=12))
def test_object_path_has_no_dot_segment_and_decodes_to_the_key(key: str) -> None:
    path = object_path("bkt", key)
    assert not {s.lower() for s in path.split("/")} & _WHATWG_DOTS, path
    # The server decodes the whole path, then splits the bucket off at the first "/".
    assert unquote(path) == f"bkt/{key}"


def test_dot_segments_are_joined_to_the_segment_before() -> None:
    assert object_path("b", "a/../c") == "b/a%2F../c"
    assert object_path("b", "../x/./y") == "b%2F../x%2F./y"
    assert object_path("b", "plain/key name") == "b/plain/key%20name"


def info(fmt: str, key: str, name: str) -> TorrentInfo:
    hashes = PieceHashes(length=1, piece_length=16384, pieces_v1=None, pieces_root=None,
                         piece_layer=None)  # fmt: skip
    return TorrentInfo(
        bucket="b",
        key=key,
        version_id="v",
        name=name,
        fmt=fmt,  # type: ignore[arg-type]
        hashes=hashes,
        info=b"",
        info_hash=InfoHash(v1=b"\1" * 20, v2=None),
        last_modified=0.0,
    )


def test_web_seed_is_the_swarms_own_path_in_every_format() -> None:
    """One form for v1, hybrid and v2 whatever the key: clients append the name after the
    slash, and the web seed finds the object by swarm id, not by that name."""
    base = "http://h:1"
    swarm = "01" * 20
    for fmt in ("v1", "hybrid", "v2"):
        for key, name in (("d/f.bin", "f.bin"), ("dir/", "dir"), ("a/../b", "b")):
            assert web_seed_url(base, info(fmt, key, name)) == f"http://h:1/_webseed/{swarm}/"
