"""One typed settings object: TOML file < environment (S3TORRENT_*) < command-line flags."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

GiB = 1024**3
MiB = 1024**2


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


class LimitSettings(BaseModel):
    max_put_size: int = 5 * GiB
    max_xml_body: int = 2 * MiB
    max_header_size: int = 16 * 1024
    max_user_metadata: int = 2048
    max_keys: int = 1000
    max_delete_objects: int = 1000
    max_chunk_size: int = 16 * MiB
    shutdown_timeout: float = 30.0
    max_connections: int = 4096
    body_read_timeout: float = 120.0


class StorageSettings(BaseModel):
    fsync: bool = True
    """fsync every blob and metadata commit before acknowledging a write."""
    group_commit_max_ops: int = 256
    blob_delete_delay: float = 2.0
    """Seconds to keep an overwritten version's blob for readers that looked it up already."""
    abandoned_upload_days: float = 7.0
    """Multipart uploads older than this many days are aborted and their parts removed."""
    upload_cleanup_interval: float = 3600.0


class TorrentSettings(BaseModel):
    enabled: bool = True
    format: Literal["v1", "hybrid", "v2"] = "v1"
    max_object_size: int = 5 * GiB
    web_seed: bool = True
    extra_trackers: list[str] = Field(default_factory=list)
    disabled_buckets: list[str] = Field(default_factory=list)
    """Buckets whose objects get no torrents (answered as S3 does where torrents are off)."""
    created_by: str = "s3torrent"
    hash_wait_timeout: float = 30.0
    hash_workers: int = 2


class TrackerSettings(BaseModel):
    interval: int = 1800
    min_interval: int = 60
    max_numwant: int = 200
    default_numwant: int = 50
    trust_ip_param: bool = False
    udp_listen: str | None = None


class Settings(BaseSettings):
    """All settings of one s3torrent node."""

    model_config = SettingsConfigDict(
        env_prefix="S3TORRENT_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path("./s3torrent-data")
    listen: str = "127.0.0.1:9000"
    peer_listen: str = "0.0.0.0:6881"
    public_url: str | None = None
    region: str = "us-east-1"
    domain: str | None = None
    root_access_key: str | None = None
    root_secret_key: str | None = None
    metadata_url: str | None = None
    limits: LimitSettings = Field(default_factory=LimitSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    torrent: TorrentSettings = Field(default_factory=TorrentSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v

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
        return split_host_port(self.peer_listen, 6881)

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url
        host, port = self.http_host_port
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def database_url(self) -> str:
        return self.metadata_url or f"sqlite:///{self.data_dir / 'metadata.sqlite3'}"


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_settings(config_file: Path | None = None, **flags: Any) -> Settings:
    """Build settings from an optional TOML file, the environment and flags (None = unset)."""
    file_values: dict[str, Any] = {}
    if config_file is not None:
        with config_file.open("rb") as fh:
            file_values = {k.replace("-", "_"): v for k, v in tomllib.load(fh).items()}
    env_only = Settings()
    env_set = env_only.model_dump(exclude_unset=True)
    merged = _deep_merge(file_values, env_set)
    merged = _deep_merge(merged, {k: v for k, v in flags.items() if v is not None})
    return Settings.model_validate(merged) if merged else Settings()
