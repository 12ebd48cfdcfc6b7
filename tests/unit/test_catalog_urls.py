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


def test_web_seed_names_the_object_for_v1_and_hybrid_and_its_directory_for_v2() -> None:
    base = "http://h:1"
    assert web_seed_url(base, info("v1", "d/f.bin", "f.bin")) == "http://h:1/b/d/f.bin"
    assert web_seed_url(base, info("hybrid", "d/f.bin", "f.bin")) == "http://h:1/b/d/f.bin"
    assert web_seed_url(base, info("v2", "d/f.bin", "f.bin")) == "http://h:1/b/d/"
    # Trailing slashes are escaped so a client appending the name cannot land elsewhere.
    assert web_seed_url(base, info("v1", "dir/", "dir")) == "http://h:1/b/dir%2F"
