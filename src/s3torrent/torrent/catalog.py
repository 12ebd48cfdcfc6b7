"""The torrents of stored object versions: piece hashes in the metadata DB, metainfo on demand.

Hashes are recorded in the same transaction that makes a version current (when they were
computed during the upload), or by a background job later (multipart, copies, rehash). The
info dictionary depends only on the version and the format setting; everything outside it
(trackers, web seeds) is built per request from the current settings.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import quote, urlsplit

from s3torrent.config import TorrentSettings
from s3torrent.store.rows import ObjectVersion, TorrentHashes
from s3torrent.store.sealing import seal_mode
from s3torrent.torrent.hasher import PieceHashes, TorrentHasher
from s3torrent.torrent.metainfo import (
    InfoHash,
    TorrentFormat,
    build_info,
    build_torrent,
    magnet_uri,
    piece_layers_for,
    torrent_name,
)
from s3torrent.torrent.pieces import piece_length_for


@dataclass(frozen=True, slots=True)
class TorrentInfo:
    """One version's info dictionary and its hashes, in one format."""

    bucket: str
    key: str
    version_id: str
    name: str
    fmt: TorrentFormat
    hashes: PieceHashes
    info: bytes
    info_hash: InfoHash
    last_modified: float
    # Encrypted at rest: its bytes are read and opened, never sent with sendfile.
    sealed: bool = False
    # The created_at of the bucket the version is of, set by the publication that decided
    # on it (None: not published): the seeder, the web seed and the swarm samples meter
    # under it, so an earlier bucket's bytes never go to a later bucket of the name.
    bucket_created: float | None = None

    @property
    def swarm_ids(self) -> tuple[bytes, ...]:
        return self.info_hash.swarm_ids


def make_info(obj: ObjectVersion, hashes: PieceHashes, fmt: TorrentFormat) -> TorrentInfo:
    name = torrent_name(obj.key)
    info = build_info(
        name=name,
        hashes=hashes,
        bucket=obj.bucket,
        key=obj.key,
        version_id=obj.version_id,
        fmt=fmt,
    )
    return TorrentInfo(
        bucket=obj.bucket,
        key=obj.key,
        version_id=obj.version_id,
        name=name,
        fmt=fmt,
        hashes=hashes,
        info=info,
        info_hash=InfoHash.of(info, fmt),
        last_modified=obj.last_modified,
        sealed=seal_mode(obj.headers) is not None,
    )


_DOT_SEGMENTS = (".", "..")
# Every format a version's info dictionary may be cached in (forgotten together): asked once,
# not per overwrite (typing.get_args walks the Literal each time).
_FORMATS: tuple[TorrentFormat, ...] = get_args(TorrentFormat)

MagnetForm = Literal["btih", "btmh"]


def object_path(bucket: str, key: str) -> str:
    """`bucket/key` as a URL path that names the object after any client normalises it.

    URL normalisers (WHATWG URL in WebTorrent, curl in Transmission) resolve `.` and `..`
    segments, and WHATWG resolves `%2E%2E` too, so `a/../b` would be asked for as `b`. A
    dot segment is therefore joined to the segment before it by `%2F` (`a%2F../b`): no
    segment is a dot segment any more, and the server decodes the path to the same key.
    """
    path = quote(bucket, safe="")
    for segment in key.split("/"):
        path += ("%2F" if segment in _DOT_SEGMENTS else "/") + quote(segment, safe="")
    return path


def object_url(base_url: str, bucket: str, key: str) -> str:
    return f"{base_url}/{object_path(bucket, key)}"


# The web seed's own path (s3torrent.webseed), not the object's URL: its range GETs get the
# seeder's per-piece offload decision while plain GETs stay plain S3.
WEB_SEED_PATH = "/_webseed"


def web_seed_url(base_url: str, info: TorrentInfo) -> str:
    """The BEP 19 `url-list` entry for info: the web seed's path for its swarm. It ends in
    "/", so clients append the torrent's name, which the web seed ignores: one form for v1,
    hybrid and v2, whatever the key (no dot segments or slashes for a client to rewrite)."""
    return f"{base_url}{WEB_SEED_PATH}/{info.swarm_ids[0].hex()}/"


def websocket_url(base_url: str) -> str:
    """base_url with ws:// for http:// and wss:// for https://."""
    scheme, sep, rest = base_url.partition("://")
    return ("wss" if scheme.lower() == "https" else "ws") + sep + rest


class TorrentCatalog:
    """Piece hashes per object version, the policy for computing them, and metainfo."""

    def __init__(self, settings: TorrentSettings, *, cache_size: int = 1024) -> None:
        self.settings = settings
        self._cache: OrderedDict[tuple[str, str], TorrentInfo] = OrderedDict()
        self._cache_size = cache_size
        # Set by the node once its UDP tracker listens; empty when it is off.
        self.udp_tracker_ports: list[int] = []
        # The WebSocket tracker's path on the HTTP listener; None when it is off.
        self.ws_tracker_path: str | None = None

    @property
    def fmt(self) -> TorrentFormat:
        return self.settings.format

    @property
    def wants_v1(self) -> bool:
        return self.fmt in ("v1", "hybrid")

    @property
    def wants_v2(self) -> bool:
        return self.fmt in ("v2", "hybrid")

    def hasher_for(self, size: int) -> TorrentHasher | None:
        """A hasher to run inside the upload stream, when this upload can have a torrent."""
        if not self.settings.enabled or size > self.settings.max_object_size:
            return None
        return TorrentHasher(piece_length_for(size), v1=self.wants_v1, v2=self.wants_v2)

    def record_hashes(self, obj: ObjectVersion, hasher: TorrentHasher) -> TorrentHashes:
        """A finished upload's hashes as stored, for its commit (MetadataStore.commit_version)."""
        return self.hashes_to_store(obj, hasher.finish())

    def hashes_to_store(self, obj: ObjectVersion, hashes: PieceHashes) -> TorrentHashes:
        """What to store of obj's hashes: with the swarm ids of its torrent in our format."""
        return stored_hashes(self.info_for(obj, hashes))

    def has_hashes_for_format(self, hashes: PieceHashes) -> bool:
        return (not self.wants_v1 or hashes.has_v1) and (not self.wants_v2 or hashes.has_v2)

    def info_for(self, obj: ObjectVersion, hashes: PieceHashes) -> TorrentInfo:
        """The info dictionary of obj in the current format (cached per version)."""
        ck = (obj.version_id, self.fmt)
        hit = self._cache.get(ck)
        if hit is not None:
            self._cache.move_to_end(ck)
            return hit
        info = make_info(obj, hashes, self.fmt)
        self._cache[ck] = info
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return info

    def forget(self, version_id: str) -> None:
        for fmt in _FORMATS:
            self._cache.pop((version_id, fmt), None)

    def announce_url(self, base_url: str) -> str:
        # `/announce`, not `/_tracker/announce`: libtorrent's (and so qBittorrent's) SSRF
        # mitigation refuses HTTP trackers on loopback and LAN addresses with any other path.
        # The S3 router serves it only with an announce's own query parameters, so a bucket
        # named "announce" stays reachable.
        return f"{base_url}/announce"

    def own_trackers(self, base_url: str) -> list[str]:
        """Our tracker's URLs: HTTP, then BEP 15 UDP on each port it listens on (same host)."""
        urls = [self.announce_url(base_url)]
        host = urlsplit(base_url).hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        urls += [f"udp://{host}:{port}/announce" for port in self.udp_tracker_ports]
        if self.ws_tracker_path is not None:
            # For browsers (WebTorrent); other clients skip a scheme they do not speak.
            urls.append(websocket_url(base_url) + self.ws_tracker_path)
        return urls

    def trackers(self, base_url: str) -> list[str]:
        return [*self.own_trackers(base_url), *self.settings.extra_trackers]

    def announce_tiers(self, base_url: str) -> list[list[str]]:
        # Our URLs are one tracker reached two ways, so one BEP 12 tier: a client uses
        # whichever answers first instead of announcing twice to the same swarm.
        return [self.own_trackers(base_url), *([t] for t in self.settings.extra_trackers)]

    def web_seeds(
        self, base_url: str, info: TorrentInfo, bucket_settings: dict[str, object]
    ) -> list[str]:
        if not self.settings.web_seed or bucket_settings.get("web_seed") is False:
            return []
        url = web_seed_url(base_url, info)
        mirrors = bucket_settings.get("mirrors")
        extra = [str(m) for m in mirrors] if isinstance(mirrors, list) else []
        return [url, *extra]

    def torrent_file(
        self, info: TorrentInfo, base_url: str, bucket_settings: dict[str, object]
    ) -> bytes:
        trackers = self.trackers(base_url)
        return build_torrent(
            info=info.info,
            announce=trackers[0],
            announce_list=self.announce_tiers(base_url),
            url_list=self.web_seeds(base_url, info, bucket_settings),
            creation_date=int(info.last_modified),
            created_by=self.settings.created_by,
            comment=None,
            piece_layers=piece_layers_for(info.hashes) if info.fmt != "v1" else None,
        )

    def magnet(
        self,
        info: TorrentInfo,
        base_url: str,
        bucket_settings: dict[str, object],
        form: MagnetForm = "btih",
    ) -> str:
        """The magnet of info: `btih` where the torrent has a v1 hash, `btmh` added on request.

        rtorrent and lftp refuse any magnet with `xt=urn:btmh`, so a hybrid's default magnet
        carries only its v1 hash (and `xs`, the .torrent's URL, from which v2 clients learn
        the rest); a v2-only torrent has no other hash to name.
        """
        v2 = info.info_hash.v2 if form == "btmh" or info.info_hash.v1 is None else None
        return magnet_uri(
            info_hash_v1=info.info_hash.v1,
            info_hash_v2=v2,
            name=info.name,
            length=info.hashes.length,
            trackers=self.trackers(base_url),
            web_seeds=self.web_seeds(base_url, info, bucket_settings),
            torrent_url=object_url(base_url, info.bucket, info.key) + "?torrent",
        )


def stored_hashes(info: TorrentInfo) -> TorrentHashes:
    """What the metadata store keeps of a version's torrent: its hashes and swarm ids."""
    h = info.hashes
    return TorrentHashes(
        version_id=info.version_id,
        piece_length=h.piece_length,
        pieces_v1=h.pieces_v1,
        pieces_root=h.pieces_root,
        piece_layer=h.piece_layer,
        fmt=info.fmt,
        swarm_v1=info.info_hash.v1,
        swarm_v2=info.info_hash.v2_truncated,
    )


def swarm_ids_stored(stored: TorrentHashes, info: TorrentInfo) -> bool:
    """Whether the swarm ids stored with a version's hashes are those of info."""
    return (stored.swarm_v1, stored.swarm_v2) == (info.info_hash.v1, info.info_hash.v2_truncated)


def piece_hashes(obj: ObjectVersion, stored: TorrentHashes | None) -> PieceHashes | None:
    """The stored hashes of obj as the hasher's value (None stays None)."""
    if stored is None:
        return None
    return PieceHashes(
        length=obj.size,
        piece_length=stored.piece_length,
        pieces_v1=stored.pieces_v1,
        pieces_root=stored.pieces_root,
        piece_layer=stored.piece_layer,
    )
