"""One typed settings object: TOML file < environment (S3TORRENT_*) < command-line flags."""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from s3torrent.forwarding import parse_networks

GiB = 1024**3
MiB = 1024**2


def check_host_port(value: str) -> None:
    """Raise ValueError unless value is 'host:port', '[v6]:port' or ':port' with a valid port."""
    try:
        _host, port = split_host_port(value, 0)
    except ValueError:
        raise ValueError(f'expected "HOST:PORT", e.g. "127.0.0.1:9000", not {value!r}') from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (0-65535)")


def checked_listen(value: Any) -> Any:
    """A listener setting's validator: None, or a string check_host_port accepts (each of a
    comma-separated list where several addresses are allowed is checked by the caller)."""
    if value is None:
        return value
    if not isinstance(value, str):
        raise ValueError(f'expected a string "HOST:PORT", e.g. "127.0.0.1:{value}"')
    check_host_port(value)
    return value


def announced_listen(value: Any) -> Any:
    """checked_listen, for a listener whose port clients are given (in the public URL,
    torrents, peer lists): port 0, any free port, would be announced as 0 and differ from
    worker to worker."""
    value = checked_listen(value)
    if value is not None and split_host_port(value, 1)[1] == 0:
        raise ValueError("port 0 (any free port) cannot be given to clients: choose a port")
    return value


def split_host_port(value: str, default_port: int) -> tuple[str, int]:
    """Split 'host:port', '[v6]:port' or ':port' into its parts."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":")
        return host, int(port) if port else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host or "0.0.0.0", int(port)
    return value, default_port


class Section(BaseModel):
    """A table of settings. Its numbers (sizes, counts, seconds) are never negative: a
    negative limit would not be one. A key it does not know is an error, wherever the table
    comes from (a JSON value such as S3TORRENT_LIMITS='{...}' included), never ignored."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _not_negative(cls, v: Any) -> Any:
        if isinstance(v, int | float) and not isinstance(v, bool) and v < 0:
            raise ValueError("Input should be greater than or equal to 0")
        return v


class LimitSettings(Section):
    max_put_size: int = 5 * GiB
    max_xml_body: int = 2 * MiB
    max_header_size: int = 16 * 1024
    max_user_metadata: int = 2048
    max_keys: int = 1000
    max_delete_objects: int = 1000
    max_chunk_size: int = Field(default=16 * MiB, gt=0)
    shutdown_timeout: float = 30.0
    max_connections: int = 4096
    """Open client connections over every listener (S3, tracker, seeder) together; lowered
    at start to the open file limit (raised to its hard limit) minus file_reserve. At the
    cap, a newcomer from an address holding less than its share gets an idle connection
    closed for it (one that never sent a request first); others are refused."""
    max_connections_per_ip: int = 1024
    """Open client connections from one address (IPv6: one /64) over every listener;
    beyond, refused (HTTP listeners answer 503)."""
    file_reserve: int = 256
    """File descriptors kept free of connections: blobs, the database, outgoing sockets."""
    header_read_timeout: float = 20.0
    """Seconds for a request line and headers to arrive, from the connection's start or the
    end of the previous answer (idle keep-alive included); then the connection is closed."""
    body_idle_timeout: float = 60.0
    """Seconds without a byte of a request body being received; then the connection closes."""
    body_read_timeout: float = 50.0
    """Seconds an S3 handler waits for more body bytes before answering RequestTimeout
    (below body_idle_timeout, so that clients get that answer before the close)."""
    max_post_form_size: int = 20 * 1024
    """Bytes of form fields a browser upload (POST Object) may send before its file, as
    S3 (MaxPostPreDataLengthExceeded beyond)."""


class StorageSettings(Section):
    fsync: bool = True
    """fsync every blob and metadata commit before acknowledging a write (power-loss safe).
    Off: blobs are not fsynced and SQLite commits with synchronous=NORMAL (PostgreSQL:
    synchronous_commit off); an acknowledged write still survives kill -9, not power loss."""
    group_commit_max_ops: int = Field(default=256, gt=0)
    inline_max_size: int = 32 * 1024
    """Objects up to this size are stored in their metadata row (0: always in a blob)."""
    blob_delete_delay: float = 2.0
    """Seconds to keep an overwritten version's blob for readers that looked it up already."""
    abandoned_upload_days: float = 7.0
    """Multipart uploads older than this many days are aborted and their parts removed."""
    upload_cleanup_interval: float = Field(default=3600.0, gt=0)
    """Seconds between the clean-ups of abandoned uploads and of orphan blobs."""
    orphan_grace: float = Field(default=3600.0, gt=0)
    """Seconds a blob no metadata row references is left for a write in flight (its blob is
    put in place a moment before its row is committed, on any worker or node) before the
    periodic sweep removes it; two sweeps in a row must find it so. What a worker killed
    between the two left is so removed while the others serve."""
    reserve_bytes: int = 64 * MiB
    """Space kept in a reserve file in data_dir so deletes can commit on a full disk (0: none)."""


class EncryptionSettings(Section):
    """Encryption at rest (SSE-S3, SSE-C); see the README's "Encryption" section."""

    default: Literal["none", "AES256"] = "none"
    """AES256: every new object without encryption headers or a bucket default is SSE-S3, as
    Amazon S3 does since 2023."""
    sse_c_over_http: bool = False
    """Accept SSE-C keys over plain HTTP (S3 refuses them; for local testing only)."""
    master_key_file: Path | None = None
    """The master key file (default: data_dir/sse-master-keys.json), created at first start."""


class TorrentSettings(Section):
    enabled: bool = True
    format: Literal["v1", "hybrid", "v2"] = "v1"
    max_object_size: int = 5 * GiB
    web_seed: bool = True
    extra_trackers: list[str] = Field(default_factory=list)
    disabled_buckets: list[str] = Field(default_factory=list)
    """Buckets whose objects get no torrents (answered as S3 does where torrents are off)."""
    created_by: str = "s3torrent"
    webtorrent_ice_servers: list[str] | None = None
    """STUN/TURN URLs the download page gives WebRTC; unset: WebTorrent's defaults (public
    STUN servers); []: none, for browsers on one network."""
    webtorrent_script_url: str = ""
    """URL of WebTorrent's browser bundle (an ES module, e.g. webtorrent.min.js from the
    webtorrent npm package) for the download page `?torrent&format=html`; empty: the page
    says it is not configured."""
    hash_wait_timeout: float = 30.0
    hash_workers: int = Field(default=2, gt=0)


class TrackerSettings(Section):
    interval: int = 1800
    min_interval: int = 60
    max_numwant: int = 200
    default_numwant: int = 50
    trust_ip_param: bool = False
    udp_listen: str | None = None
    """BEP 15 UDP tracker address(es), comma-separated: '0.0.0.0:6969,[::]:6969'. Off if unset."""
    http_listen: str | None = None
    """HOST:PORT of a separate, lean HTTP listener for /announce and /scrape (the tracker
    also stays on the main listener under /_tracker/). Off if unset."""
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses/networks of reverse proxies whose X-Forwarded-For names the real peer."""
    max_scrape_hashes: int = 64
    max_peers_per_torrent: int = 5000
    max_peers_total: int = 1_000_000
    announce_rate_per_ip: float = 5.0
    """Announces per second per IPv4 address / IPv6 /64, with a burst of announce_rate_burst."""
    announce_rate_burst: float = 60.0
    websocket: bool = True
    """The WebTorrent (WebSocket) tracker at /_tracker/ws on the HTTP listener, for browsers."""
    ws_interval: int = 120
    """Seconds between a browser's announces on its open socket."""
    ws_idle_timeout: float = 300.0
    """A socket with no message for this long is closed."""
    ws_max_message_bytes: int = 65536
    ws_max_offers: int = 10
    """WebRTC offers relayed per announce (WebTorrent sends at most 5)."""
    ws_max_peers_per_swarm: int = 1000
    ws_max_connections_per_ip: int = 32

    _host_port = field_validator("http_listen", mode="before")(announced_listen)

    @field_validator("udp_listen", mode="before")
    @classmethod
    def _udp_host_ports(cls, v: Any) -> Any:
        if isinstance(v, str):
            for address in v.split(","):
                if address.strip():
                    check_host_port(address)
            return v
        return checked_listen(v)

    @property
    def udp_host_ports(self) -> list[tuple[str, int]]:
        if not self.udp_listen:
            return []
        return [split_host_port(a, 6969) for a in self.udp_listen.split(",") if a.strip()]


class MeteringSettings(Section):
    enabled: bool = True
    """Count requests and bytes per bucket, operation and channel (usage reports, /metrics)."""
    flush_interval: float = Field(default=1.0, gt=0)
    """Seconds between flushes of the in-memory counters; a crash loses at most one interval."""
    storage_sample_interval: float = Field(default=300.0, gt=0)
    """Seconds between samples of each bucket's stored bytes (for TimedStorage-ByteHrs)."""
    metrics_listen: str | None = None
    """HOST:PORT of a separate HTTP listener serving Prometheus /metrics. Off if unset."""

    _host_port = field_validator("metrics_listen", mode="before")(checked_listen)


class SeederSettings(Section):
    """The origin seeder on the peer listener: bounds, and how much the origin sends."""

    enabled: bool = True
    mode: Literal["fastest", "offload", "auto"] = "auto"
    """fastest: every peer gets every piece from us; offload: each piece goes out once and
    peers trade the rest; auto: fastest while one peer downloads, offload when several do."""
    max_connections: int = 2000
    max_per_torrent: int = 400
    max_per_ip: int = 32
    handshake_timeout: float = 10.0
    idle_timeout: float = 180.0
    keepalive_interval: float = 120.0
    max_outstanding_requests: int = 250
    """Requests a peer may have outstanding (its `reqq`): beyond it a Fast-extension peer
    gets REJECT_REQUEST, and a peer without the extension is queued (BEP 3 has no refusal)."""
    max_queued_requests: int = 2048
    """Hard cap on queued requests of a peer without the Fast extension; the excess is
    dropped (the peer requests it again)."""
    max_request_length: int = 128 * 1024
    write_high_water: int = 256 * 1024
    """Control bytes queued for one peer above which we stop reading from it."""
    input_rate: int = Field(default=16 * 1024, ge=0)
    """Bytes/s a peer may send us beyond what the bytes we send it earn (one in 256, for its
    requests and HAVEs): past it we stop reading from it for a while, and a peer with more
    than 16 KiB waiting in its socket then is closed. A seed needs little input, and each
    small message costs the loop about a microsecond a byte: four peers flooding keep-alives
    slowed a downloader fivefold. 0: no bound."""
    input_burst: int = Field(default=64 * 1024, ge=4096)
    """Bytes a peer may send at once (its handshakes and bitfield) before `input_rate`."""
    public_host: str | None = None
    """Address advertised in peer lists (default: the host of the public URL)."""
    public_port: int | None = None
    """Port advertised in peer lists (default: the peer_listen port)."""
    choke_interval: float = Field(default=5.0, gt=0)
    unchoke_slots: int = 8
    alone_window: int = 16 * MiB
    """Bytes revealed ahead to a peer that downloads alone (auto mode)."""
    peer_window: int = 2 * MiB
    """Bytes of pieces nobody has yet revealed ahead to each peer when several download."""
    unspread_limit: int = 8 * MiB
    """Bytes a peer may hold first-hand before others have them, while others still need them."""
    stall_timeout: float = 3.0
    """Seconds without progress after which a peer gets pieces others have, from us. Shorter
    starts libtorrent sooner after a web-seed refusal (it leaves its other peers idle for up
    to 5 s), at a cost in origin copies: at 1 s a swarm joining a seeding aria2 cost the
    origin 1.33-1.57 copies of the object instead of under 1.3."""
    swarm_stall_timeout: float = 3.0
    """Seconds a peer fed only by us (nothing from its other peers) waits for more from us."""
    endgame_window: int = Field(default=4 * MiB, ge=0)
    """A peer lacking at most this many bytes counts as stalled after
    `endgame_stall_timeout` instead of `stall_timeout`: a swarm's last pieces are often held
    only by peers that just finished, and a libtorrent seed keeps choking whom it choked as a
    leecher until its next unchoke round (an as-served swarm of 4 waited ~3 s for them in 3
    of 12 runs)."""
    endgame_stall_timeout: float = Field(default=1.0, ge=0)
    remote_grace: float = Field(default=1.0, ge=0)
    """Seconds a peer the swarm gives nothing waits before the pieces only departed peers
    hold come from us: a seed that quit without a `stopped` announce stays remembered (by
    the tracker, and so by the offload policy) for two announce intervals."""
    remote_newcomer_grace: float = Field(default=3.0, ge=0)
    """... and only once a departed peer holding them has been one this long: a client that
    just finished from the web seed and announced itself a seed has yet to meet the swarm."""
    web_seed_hold_agents: list[str] = Field(default_factory=lambda: ["WebTorrent/"])
    """User-Agent prefixes of clients whose web-seed requests wait, unanswered, while their
    peer-wire connection to us serves them (peer/web_hold.py): a web seed that answers
    WebTorrent slows its peer wire 3x. Empty: none."""
    carry_upload_rate: int = 1 * MiB
    """Per-torrent bytes/s cap once connected peers hold every piece (0: no cap)."""
    encryption: Literal["enabled", "disabled"] = "enabled"
    """MSE/PE (BitTorrent protocol encryption) on the peer listener: enabled accepts both
    encrypted and plain handshakes (a plaintext payload after the handshake when the peer
    allows it, RC4 when it insists); disabled accepts plain handshakes only."""
    peer_addresses: list[str] = Field(default_factory=list)
    """Several nodes: every node's seeder as IP:PORT, the same list on each node; all are in
    every peer list (this node's own address is added if missing)."""


class BlobSettings(Section):
    """The S3-compatible blob backend (used when blobs_url is s3://bucket/prefix)."""

    endpoint_url: str | None = None
    """http(s)://host:port of MinIO, Ceph RGW, ...; unset: AWS S3."""
    region: str = "us-east-1"
    access_key: str | None = None
    secret_key: str | None = None
    """Unset: boto3's usual credential chain (environment, profile, instance role)."""
    part_size: int = 8 * MiB
    """Bytes buffered per multipart part (memory per upload in flight)."""
    read_ahead: int = 1 * MiB
    """Smaller reads (seeder blocks) fetch this much at once and cache it."""
    cache_bytes: int = 64 * MiB
    orphan_grace: float = 3600.0
    """Seconds an unreferenced blob or unfinished upload is left for another node's write in
    flight before startup cleanup removes it."""
    max_connections: int = 32
    connect_timeout: float = Field(default=5.0, gt=0)
    """Seconds to wait for a connection to the backend."""
    read_timeout: float = Field(default=15.0, gt=0)
    """Seconds to wait for the backend's next byte; a call is tried `max_attempts` times in
    all, so a backend that stops answering fails a request within about their product."""
    max_attempts: int = Field(default=3, ge=1)


class JobSettings(Section):
    claim_ttl: float = Field(default=30.0, gt=0)
    """Seconds a node's claim on a hashing job lasts without a heartbeat (then another node
    takes it over)."""
    poll_interval: float = Field(default=5.0, gt=0)
    """Seconds between looks for unclaimed or expired jobs."""


class CorsSettings(Section):
    """Cross-origin requests from browsers, for buckets that set no CORS configuration."""

    public_default: bool = True
    """Anonymously readable objects (and their web seed and ?torrent) answer GET and HEAD
    from any origin, exposing Content-Range, ETag and Accept-Ranges, unless the bucket has
    its own CORS configuration. It adds response headers only: it never grants access."""
    public_default_max_age: int = 3000
    """Seconds a browser may cache the default rule's preflight answer."""


class LifecycleSettings(Section):
    """The background worker that applies buckets' lifecycle rules."""

    enabled: bool = True
    day_seconds: float = Field(default=86400.0, gt=0)
    """Length of a lifecycle "day" in seconds (86400; tests shorten it to expire at once)."""
    interval: float = Field(default=3600.0, gt=0)
    """Seconds between lifecycle passes (the node holding the lifecycle lease runs them)."""
    batch_size: int = Field(default=500, ge=1, le=10000)
    """Objects read and evaluated per step of a pass; the cursor is saved after each."""
    lease_ttl: float = Field(default=60.0, gt=0)
    """Seconds the lifecycle lease lasts without renewal (then another node takes over)."""
    max_loop_share: float = Field(default=0.05, gt=0, le=1)
    """While requests are waiting, the share of the event loop a pass may keep (it rests in
    proportion between steps); 1: never rest. GETs during a pass of 1,000,000 objects, against
    their rate without one (bench/lifecycle.py, 2026-12-05): 0.68-0.69x at 0.2, 0.80-0.82x at
    0.1, 0.91-0.93x at 0.05, where the pass slowed from about 15.5 to 14.4 thousand objects/s."""


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class LoggingSettings(Section):
    """What the server writes about itself: the log level and the access log."""

    level: LogLevel = "INFO"
    access_log: bool = True
    """One line per S3 request (written while `level` is INFO or DEBUG)."""
    access_log_format: Literal["s3", "json"] = "s3"
    """s3: the field order of Amazon S3 server access logs; json: one JSON object per line."""
    access_log_file: str = "-"
    """Where access log lines go: a file (appended to) or '-' for standard output."""
    bucket_log_interval: float = Field(default=60.0, gt=0)
    """Seconds between deliveries of server access logs into target buckets (PutBucketLogging)."""

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.upper() if isinstance(v, str) else v


class Settings(BaseSettings):
    """All settings of one s3torrent node."""

    model_config = SettingsConfigDict(
        env_prefix="S3TORRENT_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path("./s3torrent-data")
    listen: str = "127.0.0.1:9000"
    peer_listen: str | None = None
    """HOST:PORT of the peer listener (default: the HTTP listener's host, port 6881)."""
    public_url: str | None = None
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses or networks of reverse proxies (TLS in front of us) whose X-Forwarded-For
    and X-Forwarded-Proto name the client and its scheme, on every channel (forwarding.py)."""
    region: str = "us-east-1"
    domain: str | None = None
    root_access_key: str | None = None
    root_secret_key: str | None = None
    metadata_url: str | None = None
    redis_url: str | None = None
    """redis://host:port/db: tracker registry and events shared by every node."""
    blobs_url: str | None = None
    """s3://bucket/prefix: blobs in an S3-compatible store (default: data_dir/blobs)."""
    node_id: str | None = None
    """This node's name in job claims and events (default: one kept in data_dir/node-id)."""
    workers: int | None = Field(default=None, ge=1, le=1024)
    """Server processes sharing the S3 listener (default: one per usable core)."""
    quick_reads: bool = True
    """GetObject and HeadObject of objects stored in their metadata row, and PutObject of
    a body no larger than those that arrived whole with its head, answered on the main
    listener without aiohttp's request machinery (s3/quick.py; same layers, access
    decision, metering and logs). false: aiohttp answers every S3 request."""
    blobs: BlobSettings = Field(default_factory=BlobSettings)
    jobs: JobSettings = Field(default_factory=JobSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    torrent: TorrentSettings = Field(default_factory=TorrentSettings)
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    seeder: SeederSettings = Field(default_factory=SeederSettings)
    metering: MeteringSettings = Field(default_factory=MeteringSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    cors: CorsSettings = Field(default_factory=CorsSettings)
    lifecycle: LifecycleSettings = Field(default_factory=LifecycleSettings)

    _host_port = field_validator("listen", "peer_listen", mode="before")(announced_listen)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        parse_networks(v)
        return v

    @field_validator("metadata_url", "redis_url", "blobs_url")
    @classmethod
    def _url_kind(cls, v: str | None, info: ValidationInfo) -> str | None:
        # A URL the server cannot open would fail later, deep in a driver, without its name.
        if v is None:
            return v
        allowed = URL_KINDS[str(info.field_name)]
        parts = urlsplit(v)
        # A file (sqlite:///path, unix:///path) or a host (postgresql://host/db, s3://bucket).
        where = parts.path.strip("/") if parts.scheme in ("sqlite", "unix") else parts.netloc
        if parts.scheme not in allowed or not where:
            kinds = ", ".join(f"{k}://..." for k in allowed)
            raise ValueError(f"expected a URL of one of: {kinds}")
        return v

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v

    @field_validator("root_access_key", "root_secret_key")
    @classmethod
    def _empty_is_unset(cls, v: str | None) -> str | None:
        return v or None

    @model_validator(mode="after")
    def _root_keys_together(self) -> Settings:
        # Half a key pair would silently generate the other half: refuse instead.
        if (self.root_access_key is None) != (self.root_secret_key is None):
            raise ValueError(
                "set both S3TORRENT_ROOT_ACCESS_KEY and S3TORRENT_ROOT_SECRET_KEY, or neither"
            )
        if self.root_secret_key is not None and len(self.root_secret_key) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"the root secret key must be at least {MIN_SECRET_LENGTH} characters long"
            )
        return self

    @model_validator(mode="after")
    def _listeners_apart(self) -> Settings:
        # Two of our own listeners on one port: the second fails to bind at start, blaming
        # "address already in use" on a port the operator believes free.
        used = self.tcp_listeners()
        for i, (name, host, port) in enumerate(used):
            for other, other_host, other_port in used[:i]:
                if port == other_port and port != 0 and _hosts_meet(host, other_host):
                    raise ValueError(
                        f"{other} and {name} both listen on port {port} of {host}: "
                        "give each listener a port of its own"
                    )
        return self

    def tcp_listeners(self) -> list[tuple[str, str, int]]:
        """(setting, host, port) of each TCP listener this node opens."""
        out = [("listen", *self.http_host_port)]
        if self.seeder.enabled:
            out.append(("peer_listen", *self.peer_host_port))
        if self.tracker.http_listen:
            out.append(("tracker.http_listen", *split_host_port(self.tracker.http_listen, 6969)))
        if self.metering.enabled and self.metering.metrics_listen:
            metrics = split_host_port(self.metering.metrics_listen, 9100)
            out.append(("metering.metrics_listen", *metrics))
        return out

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags (init) beat the environment, which beats the TOML file (passed as defaults).
        return (init_settings, env_settings)

    @property
    def http_host_port(self) -> tuple[str, int]:
        return split_host_port(self.listen, 9000)

    @property
    def peer_host_port(self) -> tuple[str, int]:
        if self.peer_listen is None:
            # Where the HTTP listener is: a server kept on loopback keeps its peers there too.
            return self.http_host_port[0], 6881
        return split_host_port(self.peer_listen, 6881)

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url
        host, port = self.http_host_port
        # A wildcard's own family's loopback: '[::]' listens on IPv6 only (IPV6_V6ONLY, as
        # asyncio does), so until 2026-12-07 its torrents named a tracker and a web seed
        # at 127.0.0.1, where nothing listened, and so did the origin in peer lists.
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def worker_count(self) -> int:
        """`workers`, or the number of cores this process may run on."""
        if self.workers is not None:
            return self.workers
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return max(1, os.cpu_count() or 1)

    @property
    def database_url(self) -> str:
        return self.metadata_url or f"sqlite:///{self.data_dir / 'metadata.sqlite3'}"


MIN_SECRET_LENGTH = 8

WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


def _hosts_meet(a: str, b: str) -> bool:
    """Whether listeners on hosts a and b would contend for a port (one is a wildcard)."""
    return a == b or a in WILDCARD_HOSTS or b in WILDCARD_HOSTS


# The URL schemes each URL setting can name (SQLAlchemy's, redis-py's, the S3 blob store's).
URL_KINDS: dict[str, tuple[str, ...]] = {
    "metadata_url": ("sqlite", "postgresql", "postgresql+psycopg"),
    "redis_url": ("redis", "rediss", "unix"),
    "blobs_url": ("s3",),
}


def url_place(url: str) -> str:
    """Where a URL setting points (host:port, or a file's path), without its credentials:
    for messages and logs."""
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or parts.path


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


class StartupError(Exception):
    """Something the operator must fix before the server can start; the message says what
    and how (printed without a traceback)."""


class SettingsError(StartupError):
    """The settings cannot be read or are invalid."""


ENV_PREFIX = "S3TORRENT_"
# Variables with the prefix that are not settings (the test suite's knobs): never an error.
NOT_SETTINGS = frozenset({"FUZZ_EXAMPLES", "REQUIRE_ENGINES"})
NOT_SETTINGS_PREFIXES = ("TEST_",)


def _suggestion(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_keys(
    values: Mapping[str, Any], model: type[BaseModel] | None = None, path: str = ""
) -> list[str]:
    """Each key of values (nested tables included) that model (default: Settings) has no
    field for, with a suggestion of the closest known name."""
    if model is None:
        model = Settings
    problems: list[str] = []
    fields = model.model_fields
    for key, value in values.items():
        name = f"{path}{key}"
        field = fields.get(key)
        if field is None:
            problems.append(f"unknown setting {name!r}{_suggestion(key, sorted(fields))}")
            continue
        sub = field.annotation
        if isinstance(value, Mapping) and isinstance(sub, type) and issubclass(sub, BaseModel):
            problems += unknown_keys(value, sub, f"{name}.")
    return problems


def unknown_environment(environ: Mapping[str, str]) -> list[str]:
    """S3TORRENT_* variables that name no setting (a typo would be silently ignored)."""
    problems: list[str] = []
    for var in environ:
        if not var.upper().startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        if rest.upper() in NOT_SETTINGS or rest.upper().startswith(NOT_SETTINGS_PREFIXES):
            continue
        model: type[BaseModel] = Settings
        parts = rest.split("__")
        for depth, part in enumerate(parts):
            field = model.model_fields.get(part)
            if field is None:
                known = [
                    ENV_PREFIX + "__".join([*parts[:depth], f]).upper() for f in model.model_fields
                ]
                guess = ENV_PREFIX + "__".join([*parts[:depth], part]).upper()
                problems.append(
                    f"unknown setting in the environment: {var}{_suggestion(guess, known)}"
                )
                break
            sub = field.annotation
            if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
                break
            model = sub
    return problems


def _env_annotation(var: str) -> Any:
    """The type of the setting an S3TORRENT_* variable names (None: no setting)."""
    model: type[BaseModel] = Settings
    parts = var[len(ENV_PREFIX) :].lower().split("__")
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return None
        sub = field.annotation
        if depth + 1 < len(parts) and isinstance(sub, type) and issubclass(sub, BaseModel):
            model = sub
            continue
        return sub
    return None


def _is_structured(annotation: Any) -> bool:
    """Whether a setting of this type is read from the environment as JSON (pydantic-settings
    decodes lists, dicts and tables so)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    origin = get_origin(annotation)
    if origin in (list, dict, set, tuple):
        return True
    return origin in (Union, UnionType) and any(_is_structured(a) for a in get_args(annotation))


def _not_json(environ: Mapping[str, str]) -> list[str]:
    """S3TORRENT_* variables of a list or a table whose value is not JSON."""
    problems = []
    for var, value in environ.items():
        if not var.upper().startswith(ENV_PREFIX) or not _is_structured(_env_annotation(var)):
            continue
        try:
            json.loads(value)
        except ValueError:
            problems.append(
                f"{var} is not valid JSON: a list or a table from the environment is written "
                """in JSON, e.g. S3TORRENT_TRUSTED_PROXIES='["10.0.0.5"]'"""
            )
    return problems


def _read_toml(config_file: Path) -> dict[str, Any]:
    try:
        with config_file.open("rb") as fh:
            values = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        # The message ends with "(at line N, column M)".
        raise SettingsError(f"{config_file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise SettingsError(
            f"cannot read the settings file {config_file}: {exc.strerror}"
        ) from None
    return {k.replace("-", "_"): v for k, v in values.items()}


def _source(loc: tuple[int | str, ...], flags: Mapping[str, Any], config_file: Path | None) -> str:
    """Where the value at loc came from: a flag, an environment variable or the file."""
    top = str(loc[0]) if loc else ""
    if flags.get(top) is not None:
        return f"--{top.replace('_', '-')}"
    var = ENV_PREFIX + "__".join(str(p) for p in loc).upper()
    for name in os.environ:
        if name.upper() == var or name.upper() == ENV_PREFIX + top.upper():
            return f"environment {name}"
    return str(config_file) if config_file is not None else "settings"


def _is_secret(loc: tuple[int | str, ...]) -> bool:
    """Whether the setting at loc may hold a secret (a key, or a URL with a password), whose
    value an error message must not repeat: it would reach logs and terminals."""
    names = [p for p in loc if isinstance(p, str)]
    return bool(names) and ("secret" in names[-1] or names[-1].endswith("_url"))


def _validation_problems(
    exc: ValidationError, flags: Mapping[str, Any], config_file: Path | None
) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        name = ".".join(str(p) for p in loc)
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not name:
            problems.append(msg)
            continue
        got = err.get("input")
        hidden = isinstance(got, dict | list) or _is_secret(loc)
        shown = "" if hidden else f" (got {got!r})"
        problems.append(f"{name} = {msg}{shown} [from {_source(loc, flags, config_file)}]")
    return problems


def load_settings(config_file: Path | None = None, **flags: Any) -> Settings:
    """Build settings from an optional TOML file, the environment and flags (None = unset).

    Raises SettingsError naming every problem: unreadable TOML (file, line), unknown keys in
    the file or the environment (with the closest known name), invalid values (the setting,
    what is allowed, and where the value came from).
    """
    file_values = _read_toml(config_file) if config_file is not None else {}
    problems = [f"{config_file}: {p}" for p in unknown_keys(file_values)]
    problems += unknown_environment(os.environ)
    problems += _not_json(os.environ)
    if problems:
        raise SettingsError("; ".join(problems))
    set_flags = {k: v for k, v in flags.items() if v is not None}
    try:
        # The environment's values as given, judged only once merged: a rule across settings
        # (a root key pair, listeners' ports) may have its parts in different places.
        env_set = EnvSettingsSource(Settings)()
        merged = _deep_merge(_deep_merge(file_values, env_set), set_flags)
        return Settings.model_validate(merged) if merged else Settings()
    except ValidationError as exc:
        raise SettingsError(
            "invalid settings: " + "; ".join(_validation_problems(exc, set_flags, config_file))
        ) from None
