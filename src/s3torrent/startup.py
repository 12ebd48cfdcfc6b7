"""Starting a node the operator can understand: bind failures and unusable paths as one-line
errors, warnings about settings that work but mislead, the finished hooks of the S3 edge
(metering, access log), and the settings file recorded for the CLI."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from s3torrent.config import Settings, StartupError
from s3torrent.failures import logged_failure
from s3torrent.s3.access_log import AccessLog
from s3torrent.s3.server import FinishedHook

log = logging.getLogger("s3torrent")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def deployment_warnings(settings: Settings) -> list[str]:
    """Settings that work but are probably not what the operator meant."""
    warnings: list[str] = []
    listen_host = settings.http_host_port[0]
    public_host = urlsplit(settings.base_url).hostname or ""
    if _is_loopback(public_host) and not _is_loopback(listen_host):
        warnings.append(
            f"listening on {settings.listen} but the public URL is {settings.base_url}: "
            "torrents and magnets will send other machines to their own loopback address; "
            "set --public-url (public_url) to the address clients use"
        )
    return warnings


@contextlib.contextmanager
def listening(what: str, host: str, port: int, fix: str) -> Iterator[None]:
    """Turn a failure to bind (host, port) into a StartupError that names it and the fix."""
    try:
        yield
    except OSError as exc:
        # aiohttp's messages repeat the address; the system's words for errno suffice.
        if isinstance(exc, socket.gaierror) or not exc.errno or exc.errno < 0:
            reason = exc.strerror or str(exc)  # an unknown host name
        else:
            reason = os.strerror(exc.errno).lower()
        raise StartupError(f"cannot listen for {what} on {host}:{port}: {reason}; {fix}") from exc


def _try_bind(host: str, port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> None:
    """Bind (and release) a socket on host:port as the listeners will (SO_REUSEADDR)."""
    infos = socket.getaddrinfo(host or None, port, type=kind, flags=socket.AI_PASSIVE)
    family, kind, proto, _name, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)


# What each TCP listener is called in a refusal to bind it, and the fix offered.
LISTENER_WORDS = {
    "listen": ("HTTP", "choose another with --listen"),
    "peer_listen": (
        "BitTorrent peers",
        "choose another with --peer-listen, or set seeder.enabled = false",
    ),
    "tracker.http_listen": ("the HTTP tracker", "see tracker.http_listen"),
    "metering.metrics_listen": ("metrics", "see metering.metrics_listen"),
}


def preflight(settings: Settings) -> None:
    """Fail before anything is created or written when a listener's address is taken (the
    listeners themselves bind later, after the data directory is opened)."""
    for name, host, port in settings.tcp_listeners():
        what, fix = LISTENER_WORDS[name]
        with listening(what, host, port, fix):
            _try_bind(host, port)
    for host, port in settings.tracker.udp_host_ports:
        with listening("the UDP tracker", host, port, "see tracker.udp_listen"):
            _try_bind(host, port, socket.SOCK_DGRAM)


def finished_hooks(hooks: list[FinishedHook]) -> FinishedHook | None:
    """One hook calling each of hooks in turn (None when there are none)."""
    if not hooks:
        return None
    if len(hooks) == 1:
        return hooks[0]
    every = tuple(hooks)

    def each(
        request: web.Request, response: web.StreamResponse | None, status: int, seconds: float
    ) -> None:
        for hook in every:
            hook(request, response, status, seconds)

    return each


def open_access_log(destination: str, fmt: str) -> AccessLog:
    try:
        return AccessLog.open(destination, "json" if fmt == "json" else "s3")
    except OSError as exc:
        raise StartupError(
            f"cannot open the access log {destination}: {exc.strerror or exc}; "
            "set logging.access_log_file to a writable file, or '-' for standard output"
        ) from exc


# The file in the data directory naming the server's settings file.
CONFIG_POINTER = "config-path"


def record_config_file(settings: Settings, config_file: Path | None) -> None:
    """Remember (in the data directory) which settings file the server runs with, so that
    CLI commands on this data directory read the same one."""
    path = settings.data_dir / CONFIG_POINTER
    with logged_failure(log, "recording the settings file in the data directory"):
        if config_file is None:
            path.unlink(missing_ok=True)
        else:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(str(config_file.absolute()) + "\n")
            tmp.replace(path)
