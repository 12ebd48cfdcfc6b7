"""Every way `s3torrent serve` cannot start ends in a line naming the cause and the fix, a
non-zero exit and no traceback; and the CLI reads the settings the server uses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT_AK, ROOT_SK, LiveServer, free_port, start_server


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("S3TORRENT_ROOT_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "s3torrent.cli", *args],
        cwd=cwd,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def serve_args(data: Path, *extra: str) -> list[str]:
    return [
        "serve",
        "--data-dir",
        str(data),
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--peer-listen",
        f"127.0.0.1:{free_port()}",
        *extra,
    ]


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "Traceback" not in out, out
    for word in words:
        assert word in result.stderr, result.stderr
    # Nothing generated or shown before the refusal.
    assert "AWS_SECRET_ACCESS_KEY" not in out


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "s3torrent.toml"
    config.write_text('region = "us-east-1"\nlisten = "127.0.0.1:9000\n')
    result = run_cli(*serve_args(tmp_path / "data"), "--config", str(config), cwd=tmp_path)
    assert_refused(result, str(config), "line 2")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('[torrent]\nformat = "v3"\n', ["torrent.format", "'v1', 'hybrid' or 'v2'", "'v3'"]),
        ("listen = 9010\n", ["listen", "HOST:PORT"]),
        ('listen = "127.0.0.1:99999"\n', ["listen", "out of range"]),
    ],
)
def test_invalid_value_names_setting_and_allowed_values(
    tmp_path: Path, toml: str, words: list[str]
) -> None:
    config = tmp_path / "s3torrent.toml"
    config.write_text(toml)
    result = run_cli("--config", str(config), "serve", "--data-dir", "data", cwd=tmp_path)
    assert_refused(result, *words)
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ('lisen = "0.0.0.0:9000"\n', ["'lisen'", "did you mean 'listen'"]),
        ('[torrnt]\nformat = "hybrid"\n', ["'torrnt'", "did you mean 'torrent'"]),
        ('[torrent]\nfromat = "hybrid"\n', ["'torrent.fromat'", "did you mean 'format'"]),
    ],
)
def test_unknown_key_in_file_is_an_error_with_suggestion(
    tmp_path: Path, toml: str, words: list[str]
) -> None:
    config = tmp_path / "s3torrent.toml"
    config.write_text(toml)
    result = run_cli(*serve_args(tmp_path / "data"), "--config", str(config), cwd=tmp_path)
    assert_refused(result, *words)


def test_unknown_environment_variable_is_an_error_with_suggestion(tmp_path: Path) -> None:
    result = run_cli(
        *serve_args(tmp_path / "data"),
        cwd=tmp_path,
        env={"S3TORRENT_TORRENT__FROMAT": "hybrid"},
    )
    assert_refused(result, "S3TORRENT_TORRENT__FROMAT", "S3TORRENT_TORRENT__FORMAT")


def test_invalid_environment_value_names_the_variable(tmp_path: Path) -> None:
    result = run_cli(
        *serve_args(tmp_path / "data"), cwd=tmp_path, env={"S3TORRENT_TORRENT__FORMAT": "v3"}
    )
    assert_refused(result, "torrent.format", "S3TORRENT_TORRENT__FORMAT")


def test_busy_http_port_names_the_address(tmp_path: Path, busy_port: int) -> None:
    data = tmp_path / "data"
    result = run_cli(
        "serve",
        "--data-dir",
        str(data),
        "--listen",
        f"127.0.0.1:{busy_port}",
        "--peer-listen",
        f"127.0.0.1:{free_port()}",
        cwd=tmp_path,
    )
    assert_refused(result, f"127.0.0.1:{busy_port}", "address already in use", "--listen")
    assert not data.exists()  # checked before anything is created


def test_busy_peer_port_is_a_startup_error(tmp_path: Path, busy_port: int) -> None:
    data = tmp_path / "data"
    args = [
        "serve",
        "--data-dir",
        str(data),
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--peer-listen",
        f"127.0.0.1:{busy_port}",
    ]
    result = run_cli(*args, cwd=tmp_path)
    assert_refused(result, f"127.0.0.1:{busy_port}", "--peer-listen", "seeder.enabled = false")
    assert not data.exists()


def test_busy_peer_port_is_fine_with_the_seeder_off(tmp_path: Path, busy_port: int) -> None:
    srv = LiveServer(
        data_dir=tmp_path / "data",
        port=free_port(),
        peer_port=busy_port,
        env={"S3TORRENT_SEEDER__ENABLED": "false"},
    )
    srv.start()
    try:
        assert srv.proc is not None and srv.proc.poll() is None
    finally:
        srv.stop()


def test_unusable_data_dir_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    data = blocker / "data"
    result = run_cli(*serve_args(data), cwd=tmp_path)
    assert_refused(result, str(data), "--data-dir")
    assert len((result.stderr).strip().splitlines()) <= 2


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_data_dir_names_the_path(tmp_path: Path) -> None:
    parent = tmp_path / "locked"
    parent.mkdir(mode=0o500)
    result = run_cli(*serve_args(parent / "data"), cwd=tmp_path)
    assert_refused(result, str(parent / "data"), "Permission denied")


def test_bad_log_level_lists_the_levels(tmp_path: Path) -> None:
    result = run_cli(*serve_args(tmp_path / "data"), "--log-level", "LOUD", cwd=tmp_path)
    assert_refused(result, "--log-level", "'LOUD'", "debug", "info")


def test_debug_shows_the_traceback(tmp_path: Path, busy_port: int) -> None:
    result = run_cli(
        "serve",
        "--debug",
        "--data-dir",
        str(tmp_path / "data"),
        "--listen",
        f"127.0.0.1:{busy_port}",
        "--peer-listen",
        f"127.0.0.1:{free_port()}",
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr


# ---- one configuration for server and CLI ----


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    """A server started with --config (hybrid torrents), whose data dir records that file."""
    tmp = tmp_path_factory.mktemp("configured")
    config = tmp / "s3torrent.toml"
    config.write_text('[torrent]\nformat = "hybrid"\n')
    srv = start_server(tmp, "--config", str(config))
    yield srv, config
    srv.stop()


def cli_env() -> dict[str, str]:
    return {"S3TORRENT_ROOT_ACCESS_KEY": ROOT_AK, "S3TORRENT_ROOT_SECRET_KEY": ROOT_SK}


@pytest.mark.parametrize("where", ["before", "after", "group"])
def test_data_dir_and_config_accepted_before_or_after_the_subcommand(
    configured: tuple[LiveServer, Path], tmp_path: Path, where: str
) -> None:
    srv, config = configured
    opts = ["--data-dir", str(srv.data_dir), "--config", str(config)]
    name = f"placed-{where}"
    if where == "before":
        args = [*opts, "user", "add", name]
    elif where == "after":
        args = ["user", "add", name, *opts]
    else:
        args = ["user", *opts, "add", name]
    result = run_cli(*args, cwd=tmp_path, env=cli_env())
    assert result.returncode == 0, result.stderr
    listed = run_cli("user", "list", "--data-dir", str(srv.data_dir), cwd=tmp_path)
    assert name in listed.stdout


def test_cli_refuses_to_create_a_data_directory(tmp_path: Path) -> None:
    result = run_cli("user", "add", "alice", cwd=tmp_path, env=cli_env())
    assert_refused(result, "no data directory", str(tmp_path / "s3torrent-data"), "--data-dir")
    assert not (tmp_path / "s3torrent-data").exists()


def test_init_creates_the_data_directory(tmp_path: Path) -> None:
    result = run_cli("init", "--data-dir", str(tmp_path / "d"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "metadata.sqlite3").exists()
    added = run_cli("--data-dir", str(tmp_path / "d"), "user", "add", "carol", cwd=tmp_path)
    assert added.returncode == 0, added.stderr


def test_cli_reads_the_servers_recorded_config(
    configured: tuple[LiveServer, Path], tmp_path: Path
) -> None:
    """`torrent show` without --config uses the file the server runs with (hybrid)."""
    srv, _config = configured
    from tests.conftest import make_client

    s3 = make_client(srv.endpoint)
    s3.create_bucket(Bucket="recorded")
    s3.put_object(Bucket="recorded", Key="k", Body=b"x" * 1000, ACL="public-read")
    result = run_cli(
        "torrent", "show", "recorded", "k", "--data-dir", str(srv.data_dir), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "format: hybrid" in result.stdout
    assert "info-hash v2" in result.stdout


def test_version_and_short_help_everywhere(tmp_path: Path) -> None:
    version = run_cli("--version", cwd=tmp_path)
    assert version.returncode == 0 and "s3torrent" in version.stdout
    for args in (["-h"], ["serve", "-h"], ["user", "add", "-h"], ["torrent", "show", "-h"]):
        result = run_cli(*args, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        assert "Usage:" in result.stdout
        assert "--data-dir" in result.stdout


def test_loopback_public_url_on_a_public_listener_warns(tmp_path: Path) -> None:
    port = free_port()
    srv = LiveServer(data_dir=tmp_path / "data", port=port, peer_port=free_port())
    srv.extra_args = ["--listen", f"0.0.0.0:{port}"]
    srv.start()
    try:
        assert srv.log_path is not None
        log = srv.log_path.read_text()
        assert "WARNING" in log and "--public-url" in log
    finally:
        srv.stop()
