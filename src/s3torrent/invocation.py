"""How a CLI command was invoked: the options every command accepts (before or after the
subcommand), the settings they resolve to (the same the server of the data directory uses),
logging, and startup failures as one line."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from s3torrent.config import Settings, SettingsError, load_settings
from s3torrent.log_output import OneLineFormatter

if TYPE_CHECKING:
    from s3torrent.remote import AdminClient

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Loggers of libraries that narrate routine work at INFO (alembic: each migration step).
QUIET_AT_INFO = ("alembic", "botocore", "boto3", "urllib3", "aiohttp.access")


@functools.cache
def version_text() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("s3torrent")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Keep a common option wherever it was given: before or after the subcommand (the
    later one wins)."""
    if value is not None and value is not False and param.name is not None:
        ctx.find_root().meta[f"s3torrent.{param.name}"] = value
    return value


F = TypeVar("F", bound=Callable[..., Any])


def common_options(f: F) -> F:
    """--config, --data-dir, --endpoint, --profile, --debug and --version, accepted by every
    command and group."""
    f = click.version_option(version_text(), "--version", prog_name="s3torrent")(f)
    f = click.option(
        "--profile",
        expose_value=False,
        callback=_remember,
        help="AWS profile whose keys sign --endpoint requests (default: AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, else AWS_PROFILE).",
    )(f)
    f = click.option(
        "--endpoint",
        metavar="URL",
        expose_value=False,
        callback=_remember,
        help="Run the command against the server at URL (its admin API) instead of a data "
        "directory.",
    )(f)
    f = click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        callback=_remember,
        help="Show the traceback of an error.",
    )(f)
    f = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        expose_value=False,
        callback=_remember,
        help="Data directory (default ./s3torrent-data; S3TORRENT_DATA_DIR).",
    )(f)
    f = click.option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        expose_value=False,
        callback=_remember,
        help="TOML settings file (environment and flags override it). Default: the one the "
        "server of the data directory runs with.",
    )(f)
    return f


def option_value(ctx: click.Context, name: str) -> Any:
    return ctx.find_root().meta.get(f"s3torrent.{name}")


def admin_client(ctx: click.Context) -> AdminClient | None:
    """The admin API client of --endpoint (None: the command works on the data directory)."""
    from s3torrent.remote import AdminClient, RemoteError, credentials

    endpoint = option_value(ctx, "endpoint")
    if not endpoint:
        if option_value(ctx, "profile"):
            raise click.UsageError("--profile signs --endpoint requests: name the server too")
        return None
    try:
        return AdminClient(endpoint, credentials(option_value(ctx, "profile")))
    except RemoteError as exc:
        raise click.ClickException(str(exc)) from None


def _load(config: Path | None, flags: dict[str, Any]) -> Settings:
    try:
        return load_settings(config, **flags)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def recorded_config(data_dir: Path) -> Path | None:
    """The settings file the server of data_dir runs with (recorded by `serve`)."""
    from s3torrent.startup import CONFIG_POINTER

    try:
        recorded = (data_dir / CONFIG_POINTER).read_text().strip()
    except OSError:
        return None
    path = Path(recorded)
    if not path.is_file():
        click.echo(
            f"warning: the server's settings file {path} (recorded in {data_dir}) is gone; "
            "using the environment and defaults",
            err=True,
        )
        return None
    return path


def resolve_settings(
    ctx: click.Context, *, existing: bool = True, recorded: bool = True, **flags: Any
) -> Settings:
    """The settings the server of this data directory uses: --config, else (with recorded)
    the settings file recorded in the data directory; then the environment and flags. With
    existing, the data directory must exist (only `serve` and `init` create one)."""
    config: Path | None = option_value(ctx, "config")
    data_dir: Path | None = option_value(ctx, "data_dir")
    flags = {"data_dir": data_dir, **flags}
    settings = _load(config, flags)
    if config is None and recorded:
        config = recorded_config(settings.data_dir)
        if config is not None:
            settings = _load(config, {**flags, "data_dir": settings.data_dir})
    if existing and settings.metadata_url is None and not settings.data_dir.is_dir():
        raise click.ClickException(
            f"no data directory at {settings.data_dir.absolute()}: name the server's with "
            "--data-dir DIR (S3TORRENT_DATA_DIR) or --config FILE; `s3torrent serve` or "
            "`s3torrent init` creates one"
        )
    return settings


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig: a configured root is left as it is
        handler = logging.StreamHandler()
        handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(level)
    if level != "DEBUG":
        for name in QUIET_AT_INFO:
            logging.getLogger(name).setLevel(logging.WARNING)


def startup_failure(ctx: click.Context, exc: BaseException) -> click.ClickException:
    """A startup failure as one line (the traceback only with --debug)."""
    if option_value(ctx, "debug"):
        raise exc
    return click.ClickException(failure_text(exc))


def failure_text(exc: BaseException) -> str:
    """What a startup failure says on its one line."""
    from s3torrent.config import StartupError
    from s3torrent.extras import MissingExtra

    if isinstance(exc, StartupError | MissingExtra):
        return str(exc)
    return f"the server failed: {type(exc).__name__}: {exc} (--debug shows the traceback)"
