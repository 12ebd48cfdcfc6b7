"""Settings: unknown keys (file and environment) with suggestions, values checked with the
setting's name and source, and the peer listener following the HTTP listener's host."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3torrent.config import (
    SettingsError,
    load_settings,
    unknown_environment,
    unknown_keys,
)


def test_unknown_keys_suggest_the_closest_name() -> None:
    problems = unknown_keys({"lisen": "x", "torrent": {"fromat": "v1"}, "seeder": {"mode": "auto"}})
    assert problems == [
        "unknown setting 'lisen' (did you mean 'listen'?)",
        "unknown setting 'torrent.fromat' (did you mean 'format'?)",
    ]


def test_known_keys_of_every_section_pass() -> None:
    assert unknown_keys({"limits": {"max_put_size": 1}, "logging": {"access_log": False}}) == []


def test_unknown_environment_variables_but_not_the_test_knobs() -> None:
    env = {
        "S3TORRENT_LISEN": "x",
        "S3TORRENT_SEEDER__MODDE": "auto",
        "S3TORRENT_SEEDER__MODE": "auto",
        "S3TORRENT_TEST_METADATA": "postgres",
        "S3TORRENT_FUZZ_EXAMPLES": "10",
        "HOME": "/root",
    }
    problems = unknown_environment(env)
    assert len(problems) == 2
    assert "S3TORRENT_LISEN (did you mean 'S3TORRENT_LISTEN'?)" in problems[0]
    assert "'S3TORRENT_SEEDER__MODE'" in problems[1]


def test_toml_error_names_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('region = "x"\n[torrent\n')
    with pytest.raises(SettingsError, match=r"c\.toml: not valid TOML: .*line 2"):
        load_settings(config)


def test_invalid_value_names_setting_allowed_values_and_source(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[torrent]\nformat = "v3"\n')
    with pytest.raises(SettingsError) as err:
        load_settings(config)
    assert "torrent.format" in str(err.value) and "'v1', 'hybrid' or 'v2'" in str(err.value)
    assert str(config) in str(err.value)


@pytest.mark.parametrize("listen", ["nohost:port", "1.2.3.4:70000"])
def test_bad_listen_address_from_a_flag(listen: str) -> None:
    with pytest.raises(SettingsError, match="--listen"):
        load_settings(None, listen=listen)


def test_peer_listener_follows_the_http_host_unless_set() -> None:
    assert load_settings(None, listen="127.0.0.1:9000").peer_host_port == ("127.0.0.1", 6881)
    assert load_settings(None, listen="10.0.0.5:9000").peer_host_port == ("10.0.0.5", 6881)
    explicit = load_settings(None, listen="127.0.0.1:9000", peer_listen="0.0.0.0:7000")
    assert explicit.peer_host_port == ("0.0.0.0", 7000)
