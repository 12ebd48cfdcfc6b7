"""Torrent metainfo for one object version: the info dict, the .torrent file, magnets.

Pure: values in, bytes out (and back, for ``parse_torrent``). Every torrent describes a
single file named after the object key's last segment, made a portable file name
(``torrent_name``): every client we test saves the file under exactly that name.

Formats: ``v1`` (BEP 3), ``v2`` (BEP 52) and ``hybrid`` (both in one info dict, so v1-only
and v2 clients join the same swarm under their own info-hash).

Uniqueness: the info dict carries three non-standard keys, ``x-amz-bucket``,
``x-amz-key`` (as Amazon S3's own ``?torrent`` did) and ``x-s3torrent-version`` (the
object version id), so two versions never share an info-hash, even with identical bytes.

Empty objects: for a 0-byte object we emit what the BEPs describe, ``length`` 0 and an
empty ``pieces`` string (v1), and a file-tree entry with ``length`` 0 and no
``pieces root`` (v2). Such a torrent has no pieces, so there is nothing to seed or
announce, and most clients refuse it (libtorrent: "invalid length of torrent"; lftp
crashes): the S3 edge answers ``?torrent`` of an empty object with an error instead.

Web seeds (BEP 19): every torrent names the web seed's own path, ending in ``/``
(``catalog.web_seed_url``): clients append the torrent's name, which the web seed ignores,
so v1, hybrid and v2 (where libtorrent 2.x adds a tail pad file and fetches
``<url>/<name>``) all work, whatever the key.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

# fastbencode re-exports these from its compiled module without declaring them.
from fastbencode import bdecode, bencode  # type: ignore[attr-defined]

from s3torrent.torrent.hasher import SHA1_SIZE, SHA256_SIZE, PieceHashes
from s3torrent.torrent.pieces import is_valid_piece_length

TorrentFormat = Literal["v1", "hybrid", "v2"]

FALLBACK_NAME = "object"
# The longest name every client keeps as it is: libtorrent (so qBittorrent) cuts a longer
# one to 240 bytes, aria2 cannot open its control file (the name + ".aria2") past 249, and
# file systems stop at 255, where Transmission, rtorrent and WebTorrent fail.
MAX_NAME_BYTES = 240
# A long name is cut before its extension, if that is at most this long (".gz", ".jpeg").
MAX_EXTENSION_BYTES = 16
# What Windows cannot have in a name, which Transmission replaces on every system; with the
# backslash (a separator on Windows) and control characters (libtorrent replaces those).
_REPLACED_CHARS = frozenset('<>:"|?*\\')
_REPLACED_CATEGORIES = frozenset({"Cc", "Cs"})  # controls, lone surrogates
# Format characters (bidi overrides, zero-width, BOM) are invisible; right-to-left overrides
# disguise an extension ("invoice\u202efdp.exe" shows as "invoiceexe.pdf"). libtorrent
# drops them, the other clients keep them.
_DROPPED_CATEGORY = "Cf"
# Windows device names, whatever the case and extension (Microsoft's list, with the ports
# numbered 0 and in superscript); Transmission appends "_" to them.
_RESERVED_STEMS = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(port + n for port in ("COM", "LPT") for n in "0123456789¹²³")}
)
# Lists and dictionaries inside each other, at most: far beyond any real file tree's depth.
MAX_NESTING = 512
# multihash prefix of a SHA-256 digest: function code 0x12, digest length 0x20 (BEP 9/52)
_SHA256_MULTIHASH = b"\x12\x20"


class MetainfoError(ValueError):
    """The bytes are not a torrent we can read."""


def torrent_name(key: str) -> str:
    """The file name a torrent of object ``key`` carries: its last non-empty segment, as a
    name every client saves as it is, on any system.

    Path separators, control characters and what Windows forbids become ``_``, invisible
    format characters go, a name longer than ``MAX_NAME_BYTES`` is cut (before a short
    extension), leading spaces and trailing spaces and dots go, a Windows device name gets
    ``_`` after its stem (``con.txt`` → ``con_.txt``, as Transmission saves it), and
    nothing left, ``.`` or ``..`` fall back to ``"object"``.
    """
    segments = [segment for segment in key.split("/") if segment]
    name = "".join(map(_portable_char, segments[-1])) if segments else ""
    name = _shortened(name).lstrip(" ").rstrip(" .")
    stem, dot, rest = name.partition(".")
    if stem.upper() in _RESERVED_STEMS:
        name = f"{stem}_{dot}{rest}"
    return name if name not in ("", ".", "..") else FALLBACK_NAME


def _portable_char(char: str) -> str:
    category = unicodedata.category(char)
    if char in _REPLACED_CHARS or category in _REPLACED_CATEGORIES:
        return "_"
    return "" if category == _DROPPED_CATEGORY else char


def _shortened(name: str) -> str:
    """name cut to at most MAX_NAME_BYTES of UTF-8 on a character boundary, keeping a short
    extension."""
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    suffix = dot + extension
    if not stem or len(suffix.encode("utf-8")) > MAX_EXTENSION_BYTES:
        stem, suffix = name, ""
    room = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    return stem.encode("utf-8")[:room].decode("utf-8", "ignore") + suffix


def _check_name(name: str) -> bytes:
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ValueError(f"unsafe torrent name: {name!r}")
    return name.encode("utf-8")


def build_info(
    *,
    name: str,
    hashes: PieceHashes,
    bucket: str,
    key: str,
    version_id: str,
    fmt: TorrentFormat,
) -> bytes:
    """The bencoded info dictionary of one object version (deterministic)."""
    if fmt not in ("v1", "hybrid", "v2"):
        raise ValueError(f"unknown torrent format: {fmt!r}")
    encoded_name = _check_name(name)
    info: dict[bytes, object] = {
        b"name": encoded_name,
        b"piece length": hashes.piece_length,
        b"x-amz-bucket": bucket.encode("utf-8"),
        b"x-amz-key": key.encode("utf-8"),
        b"x-s3torrent-version": version_id.encode("utf-8"),
    }
    if fmt in ("v1", "hybrid"):
        if hashes.pieces_v1 is None:
            raise ValueError(f"{fmt} torrent needs v1 piece hashes")
        info[b"length"] = hashes.length
        info[b"pieces"] = hashes.pieces_v1
    if fmt in ("v2", "hybrid"):
        if hashes.piece_layer is None:
            raise ValueError(f"{fmt} torrent needs v2 piece hashes")
        entry: dict[bytes, object] = {b"length": hashes.length}
        if hashes.pieces_root is not None:
            entry[b"pieces root"] = hashes.pieces_root
        info[b"meta version"] = 2
        info[b"file tree"] = {encoded_name: {b"": entry}}
    encoded: bytes = bencode(info)
    return encoded


def piece_layers_for(hashes: PieceHashes) -> dict[bytes, bytes]:
    """The ``piece layers`` entry for this file: only files larger than one piece have one."""
    if hashes.pieces_root is None or hashes.piece_layer is None:
        return {}
    if hashes.length <= hashes.piece_length:
        return {}
    return {hashes.pieces_root: hashes.piece_layer}


def info_hash_v1(info: bytes) -> bytes:
    return hashlib.sha1(info).digest()


def info_hash_v2(info: bytes) -> bytes:
    return hashlib.sha256(info).digest()


@dataclass(frozen=True, slots=True)
class InfoHash:
    """A torrent's identity: the v1 (SHA-1) and/or v2 (SHA-256) hash of its info dict."""

    v1: bytes | None
    v2: bytes | None

    def __post_init__(self) -> None:
        if self.v1 is None and self.v2 is None:
            raise ValueError("an info-hash needs v1 or v2")
        if self.v1 is not None and len(self.v1) != SHA1_SIZE:
            raise ValueError("v1 info-hash must be 20 bytes")
        if self.v2 is not None and len(self.v2) != SHA256_SIZE:
            raise ValueError("v2 info-hash must be 32 bytes")

    @classmethod
    def of(cls, info: bytes, fmt: TorrentFormat) -> InfoHash:
        return cls(
            v1=info_hash_v1(info) if fmt in ("v1", "hybrid") else None,
            v2=info_hash_v2(info) if fmt in ("v2", "hybrid") else None,
        )

    @property
    def v2_truncated(self) -> bytes | None:
        """The v2 hash cut to 20 bytes, as trackers and the peer handshake carry it."""
        return self.v2[:SHA1_SIZE] if self.v2 is not None else None

    @property
    def swarm_ids(self) -> tuple[bytes, ...]:
        """Every 20-byte id peers may announce this torrent under (v1 first)."""
        return tuple(h for h in (self.v1, self.v2_truncated) if h is not None)

    @property
    def v1_hex(self) -> str | None:
        return self.v1.hex() if self.v1 is not None else None

    @property
    def v2_hex(self) -> str | None:
        return self.v2.hex() if self.v2 is not None else None


def _encoded_pair(key: bytes, value: object) -> bytes:
    # bencode of a one-entry dict is b"d" + key + value + b"e"; keep the middle.
    encoded: bytes = bencode({key: value})
    return encoded[1:-1]


def build_torrent(
    *,
    info: bytes,
    announce: str | None,
    announce_list: list[list[str]],
    url_list: list[str],
    creation_date: int,
    created_by: str,
    comment: str | None,
    piece_layers: dict[bytes, bytes] | None,
) -> bytes:
    """The .torrent file around an already-encoded info dict, spliced in byte for byte."""
    try:
        decoded = bdecode(info)
    except ValueError as exc:
        raise ValueError(f"info is not valid bencode: {exc}") from exc
    if not isinstance(decoded, dict):
        raise ValueError("info must be a bencoded dictionary")

    fields: dict[bytes, object] = {b"creation date": creation_date}
    if announce is not None:
        fields[b"announce"] = announce.encode("utf-8")
    tiers = [[url.encode("utf-8") for url in tier] for tier in announce_list if tier]
    if tiers:
        fields[b"announce-list"] = tiers
    if url_list:
        fields[b"url-list"] = [url.encode("utf-8") for url in url_list]
    if created_by:
        fields[b"created by"] = created_by.encode("utf-8")
    if comment is not None:
        fields[b"comment"] = comment.encode("utf-8")
    if piece_layers:
        fields[b"piece layers"] = dict(piece_layers)

    pairs = {key: _encoded_pair(key, value) for key, value in fields.items()}
    pairs[b"info"] = b"4:info" + info
    return b"d" + b"".join(pairs[key] for key in sorted(pairs)) + b"e"


def magnet_uri(
    *,
    info_hash_v1: bytes | None,
    info_hash_v2: bytes | None,
    name: str,
    length: int,
    trackers: list[str],
    web_seeds: list[str],
    torrent_url: str | None,
) -> str:
    """A magnet link (BEP 9, with BEP 52's ``btmh``) for one torrent."""
    params: list[tuple[str, str]] = []
    if info_hash_v1 is not None:
        params.append(("xt", "urn:btih:" + info_hash_v1.hex()))
    if info_hash_v2 is not None:
        params.append(("xt", "urn:btmh:" + (_SHA256_MULTIHASH + info_hash_v2).hex()))
    if not params:
        raise ValueError("a magnet link needs at least one info-hash")
    params.append(("dn", name))
    params.append(("xl", str(length)))
    params.extend(("tr", url) for url in trackers)
    params.extend(("ws", url) for url in web_seeds)
    if torrent_url is not None:
        params.append(("xs", torrent_url))
    # xt values are plain "urn:..." text; keep their colons readable like every client does.
    return "magnet:?" + "&".join(
        f"{key}={quote(value, safe=':' if key == 'xt' else '')}" for key, value in params
    )


@dataclass(frozen=True, slots=True)
class Metainfo:
    """What a .torrent file says, as read by ``parse_torrent``."""

    info: bytes
    format: TorrentFormat
    info_hash: InfoHash
    name: str
    length: int
    piece_length: int
    piece_count: int
    pieces_v1: bytes | None
    pieces_root: bytes | None
    piece_layers: dict[bytes, bytes] = field(hash=False)
    announce: str | None
    announce_list: tuple[tuple[str, ...], ...]
    url_list: tuple[str, ...]
    creation_date: int | None
    created_by: str | None
    comment: str | None
    bucket: str | None
    key: str | None
    version_id: str | None

    @property
    def trackers(self) -> tuple[str, ...]:
        """Every tracker URL, ``announce`` first, without duplicates."""
        urls = [self.announce] if self.announce else []
        urls.extend(url for tier in self.announce_list for url in tier)
        return tuple(dict.fromkeys(urls))


def _info_span(data: bytes) -> tuple[int, int]:
    """Start and end of the top-level ``info`` value in already-validated bencode."""
    pos = 1
    while data[pos] != ord("e"):
        colon = data.index(b":", pos)
        key_end = colon + 1 + int(data[pos:colon])
        value_end = _value_end(data, key_end)
        if data[colon + 1 : key_end] == b"info":
            return key_end, value_end
        pos = value_end
    raise MetainfoError("no info dictionary")


def _value_end(data: bytes, pos: int, max_depth: int | None = None) -> int:
    # Iterative, so deep nesting costs no Python stack.
    depth = 0
    while True:
        token = data[pos]
        if token in (ord("d"), ord("l")):
            depth += 1
            pos += 1
            if max_depth is not None and depth > max_depth:
                raise MetainfoError(f"nested deeper than {max_depth} levels")
        elif token == ord("e"):
            depth -= 1
            pos += 1
        elif token == ord("i"):
            pos = data.index(b"e", pos) + 1
        else:
            colon = data.index(b":", pos)
            length = data[pos:colon]
            # Digits only: int() also takes "-5" and " 5", and a negative length sent this
            # walk back over what it had read, for ever (found by the fuzz test).
            if not length.isdigit():
                raise MetainfoError("malformed string length")
            pos = colon + 1 + int(length)
        if depth == 0:
            return pos


def _text(value: object, what: str) -> str:
    if not isinstance(value, bytes):
        raise MetainfoError(f"{what} must be a string")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MetainfoError(f"{what} is not UTF-8") from exc


def _optional_text(d: dict[bytes, object], key: bytes) -> str | None:
    return _text(d[key], key.decode()) if key in d else None


def _integer(value: object, what: str, *, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise MetainfoError(f"{what} must be an integer >= {minimum}")
    return value


def _dict(value: object, what: str) -> dict[bytes, object]:
    if not isinstance(value, dict):
        raise MetainfoError(f"{what} must be a dictionary")
    return value


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise MetainfoError(f"{what} must be a list")
    return value


def _v1_length(info: dict[bytes, object]) -> int:
    if b"length" in info:
        return _integer(info[b"length"], "length")
    if b"files" not in info:
        raise MetainfoError("v1 info needs length or files")
    return sum(
        _integer(_dict(entry, "file").get(b"length"), "file length")
        for entry in _list(info[b"files"], "files")
    )


def _v2_files(tree: dict[bytes, object]) -> list[tuple[int, bytes | None]]:
    """(length, pieces root) of every file in a BEP 52 file tree."""
    files: list[tuple[int, bytes | None]] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        for name, child in node.items():
            child = _dict(child, "file tree node")
            if name == b"":
                length = _integer(child.get(b"length"), "file length")
                root = child.get(b"pieces root")
                if root is not None and not (isinstance(root, bytes) and len(root) == 32):
                    raise MetainfoError("pieces root must be 32 bytes")
                if length and root is None:
                    raise MetainfoError("non-empty file without pieces root")
                files.append((length, root))
            else:
                stack.append(child)
    return files


def _url_list(value: object) -> tuple[str, ...]:
    # BEP 19 allows a single URL string as well as a list.
    if isinstance(value, bytes):
        return (_text(value, "url-list"),)
    return tuple(_text(url, "url-list entry") for url in _list(value, "url-list"))


def parse_torrent(data: bytes) -> Metainfo:
    """Read a .torrent file; anything malformed raises ``MetainfoError``."""
    try:
        return _parse(data)
    except MetainfoError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        # The explicit checks should catch everything; this keeps the promise if not.
        raise MetainfoError(f"malformed torrent: {exc}") from exc


def _parse(data: bytes) -> Metainfo:
    if not isinstance(data, bytes):
        raise MetainfoError("torrent must be bytes")
    if data[:1] in (b"d", b"l"):
        # The decoder takes superlinear time on deep nesting (1.6 s for 512 Ki levels, 4x
        # what half as many take); no torrent nests deeper than its file tree's paths.
        _value_end(data, 0, MAX_NESTING)
    try:
        top = bdecode(data)
    except Exception as exc:  # the decoder's own error types vary by version
        raise MetainfoError(f"not bencode: {exc}") from exc
    top = _dict(top, "torrent")
    info = _dict(top.get(b"info"), "info")
    start, end = _info_span(data)
    info_bytes = data[start:end]

    has_v1 = b"pieces" in info
    has_v2 = info.get(b"meta version") == 2
    fmt: TorrentFormat
    if has_v1 and has_v2:
        fmt = "hybrid"
    elif has_v1:
        fmt = "v1"
    elif has_v2:
        fmt = "v2"
    else:
        raise MetainfoError("info has neither v1 pieces nor meta version 2")

    name = _text(info.get(b"name"), "name")
    piece_length = _integer(info.get(b"piece length"), "piece length", minimum=1)
    pieces_v1: bytes | None = None
    pieces_root: bytes | None = None
    length = 0
    piece_count = 0
    files: list[tuple[int, bytes | None]] = []
    if has_v2:
        if not is_valid_piece_length(piece_length):
            raise MetainfoError("v2 piece length must be a power of two >= 16 KiB")
        files = _v2_files(_dict(info.get(b"file tree"), "file tree"))
        if not files:
            raise MetainfoError("empty file tree")
        length = sum(file_length for file_length, _ in files)
        # Every v2 file starts on a piece boundary.
        piece_count = sum(-(-file_length // piece_length) for file_length, _ in files)
        if len(files) == 1:
            pieces_root = files[0][1]
    if has_v1:
        pieces = info[b"pieces"]
        if not isinstance(pieces, bytes) or len(pieces) % SHA1_SIZE:
            raise MetainfoError("pieces must be a string of 20-byte digests")
        pieces_v1 = pieces
        v1_length = _v1_length(info)
        if len(pieces) // SHA1_SIZE != -(-v1_length // piece_length):
            raise MetainfoError("pieces does not match length and piece length")
        if len(files) == 1 and v1_length != length:
            raise MetainfoError("v1 and v2 parts of a hybrid disagree on the length")
        # v1 lengths of multi-file hybrids include pad files, so v2 wins when present.
        length = length if has_v2 else v1_length
        piece_count = len(pieces) // SHA1_SIZE

    piece_layers: dict[bytes, bytes] = {}
    for root, layer in _dict(top.get(b"piece layers", {}), "piece layers").items():
        if not (isinstance(layer, bytes) and len(layer) % SHA256_SIZE == 0 and len(root) == 32):
            raise MetainfoError("malformed piece layer")
        piece_layers[root] = layer

    announce_list = tuple(
        tuple(_text(url, "tracker") for url in _list(tier, "tracker tier"))
        for tier in _list(top.get(b"announce-list", []), "announce-list")
    )
    creation_date = top.get(b"creation date")
    return Metainfo(
        info=info_bytes,
        format=fmt,
        info_hash=InfoHash.of(info_bytes, fmt),
        name=name,
        length=length,
        piece_length=piece_length,
        piece_count=piece_count,
        pieces_v1=pieces_v1,
        pieces_root=pieces_root,
        piece_layers=piece_layers,
        announce=_optional_text(top, b"announce"),
        announce_list=announce_list,
        url_list=_url_list(top[b"url-list"]) if b"url-list" in top else (),
        creation_date=_integer(creation_date, "creation date", minimum=-(2**63))
        if creation_date is not None
        else None,
        created_by=_optional_text(top, b"created by"),
        comment=_optional_text(top, b"comment"),
        bucket=_optional_text(info, b"x-amz-bucket"),
        key=_optional_text(info, b"x-amz-key"),
        version_id=_optional_text(info, b"x-s3torrent-version"),
    )
