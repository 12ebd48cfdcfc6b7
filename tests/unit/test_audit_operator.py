"""Operator audit: settings that must stop the server with a line naming them, and secrets
that must never appear in what the server says about its settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3torrent.config import SettingsError, load_settings


@pytest.mark.parametrize(
    ("toml", "secret"),
    [
        (
            'root_access_key = "AKIDEXAMPLE"\nroot_secret_key = 918273645546372819\n',
            "918273645546372819",
        ),
        ("[blobs]\nsecret_key = 918273645546372819\n", "918273645546372819"),
        ('metadata_url = ["postgresql://u:pa55word@db/s3"]\n', "pa55word"),
        ("redis_url = 1234567890\n", "1234567890"),
    ],
)
def test_an_invalid_secret_is_named_but_never_shown(tmp_path: Path, toml: str, secret: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(toml)
    with pytest.raises(SettingsError) as err:
        load_settings(config)
    assert ("secret_key" in str(err.value)) or ("_url" in str(err.value))
    assert secret not in str(err.value)


@pytest.mark.parametrize(
    "toml",
    [
        "[limits]\nmax_put_size = -5\n",
        "[limits]\nshutdown_timeout = -1.0\n",
        "[storage]\ninline_max_size = -1\n",
        "[seeder]\nmax_per_ip = -3\n",
        "[tracker]\ninterval = -60\n",
        "[torrent]\nmax_object_size = -1\n",
        "[metering]\nflush_interval = 0\n",
        "[storage]\nupload_cleanup_interval = 0\n",
        "[jobs]\npoll_interval = 0\n",
        "[seeder]\nchoke_interval = 0\n",
        "[torrent]\nhash_workers = 0\n",
        "[storage]\ngroup_commit_max_ops = 0\n",
        "[limits]\nmax_chunk_size = 0\n",
    ],
)
def test_a_negative_size_or_a_zero_period_is_refused(tmp_path: Path, toml: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(toml)
    section, rest = toml.strip("[").split("]\n")
    name = f"{section}.{rest.split(' =')[0]}"
    with pytest.raises(SettingsError, match=rf"{name} = .*greater than"):
        load_settings(config)


def test_zero_where_zero_means_none_is_accepted(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        "[storage]\ninline_max_size = 0\nreserve_bytes = 0\n[seeder]\ncarry_upload_rate = 0\n"
    )
    settings = load_settings(config)
    assert settings.storage.inline_max_size == 0 and settings.seeder.carry_upload_rate == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("metadata_url", "postgres://u:pa55word@db/s3"),
        ("metadata_url", "mysql://db/s3"),
        ("metadata_url", "/var/lib/s3torrent/metadata.sqlite3"),
        ("redis_url", "localhost:6379"),
        ("redis_url", "http://u:pa55word@localhost:6379/0"),
        ("blobs_url", "/srv/blobs"),
        ("blobs_url", "s3:/bucket"),
    ],
)
def test_a_url_of_an_unknown_kind_is_refused_with_the_kinds(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=rf"{name} = .*://") as err:
        load_settings(None, **{name: value})
    assert "pa55word" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("metadata_url", "sqlite:////var/lib/s3torrent/m.sqlite3"),
        ("metadata_url", "postgresql://u:p@db/s3"),
        ("metadata_url", "postgresql+psycopg://u:p@db/s3"),
        ("redis_url", "redis://localhost:6379/0"),
        ("redis_url", "rediss://:p@localhost:6380/1"),
        ("redis_url", "unix:///run/redis.sock"),
        ("blobs_url", "s3://bucket/prefix"),
        ("blobs_url", "s3://bucket"),
    ],
)
def test_the_url_kinds_the_server_opens_are_accepted(name: str, value: str) -> None:
    assert getattr(load_settings(None, **{name: value}), name) == value


@pytest.mark.parametrize(
    ("section", "name", "value"),
    [
        ("tracker", "http_listen", "127.0.0.1:99999"),
        ("tracker", "http_listen", "x:y"),
        ("tracker", "udp_listen", "127.0.0.1:6969,127.0.0.1:99999"),
        ("tracker", "udp_listen", "0.0.0.0:udp"),
        ("metering", "metrics_listen", "x:y"),
        ("metering", "metrics_listen", "[::1]:123456"),
    ],
)
def test_every_listener_address_is_checked_by_name(section: str, name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=rf"{section}\.{name} = "):
        load_settings(None, **{section: {name: value}})


def test_valid_listener_addresses_pass() -> None:
    settings = load_settings(
        None,
        tracker={"http_listen": "127.0.0.1:6970", "udp_listen": "0.0.0.0:6969,[::]:6969"},
        metering={"metrics_listen": "[::1]:9100"},
    )
    assert settings.tracker.udp_host_ports == [("0.0.0.0", 6969), ("::", 6969)]


def test_an_unknown_key_in_a_json_table_from_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A whole table as JSON in one variable: its keys are settings as much as the file's.
    monkeypatch.setenv("S3TORRENT_LIMITS", '{"max_put_siz": 5}')
    with pytest.raises(SettingsError, match="max_put_siz"):
        load_settings(None)


def test_a_json_table_from_the_environment_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("S3TORRENT_LIMITS", '{"max_put_size": 5}')
    assert load_settings(None).limits.max_put_size == 5


@pytest.mark.parametrize(
    ("flags", "names"),
    [
        ({"listen": "127.0.0.1:6881"}, ("listen", "peer_listen")),
        ({"listen": "127.0.0.1:9000", "peer_listen": "0.0.0.0:9000"}, ("listen", "peer_listen")),
        (
            {"listen": "[::1]:9000", "tracker": {"http_listen": "[::]:9000"}},
            ("listen", "tracker.http_listen"),
        ),
        (
            {"peer_listen": "127.0.0.1:7000", "metering": {"metrics_listen": "127.0.0.1:7000"}},
            ("peer_listen", "metering.metrics_listen"),
        ),
    ],
)
def test_two_listeners_on_one_port_are_refused_by_name(
    flags: dict[str, object], names: tuple[str, str]
) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(None, **flags)
    assert all(name in str(err.value) for name in names), str(err.value)


@pytest.mark.parametrize(
    "flags",
    [
        {"listen": "127.0.0.1:6881", "seeder": {"enabled": False}},
        {"listen": "127.0.0.1:9000", "peer_listen": "127.0.0.2:9000"},
        {
            "listen": "127.0.0.1:7000",
            "metering": {"metrics_listen": "127.0.0.1:7000", "enabled": False},
        },
    ],
)
def test_listeners_that_do_not_meet_are_accepted(flags: dict[str, object]) -> None:
    load_settings(None, **flags)


@pytest.mark.parametrize(
    "flags",
    [
        {"listen": "127.0.0.1:0"},
        {"peer_listen": "127.0.0.1:0"},
        {"tracker": {"http_listen": "127.0.0.1:0"}},
    ],
)
def test_port_zero_where_clients_are_given_the_port_is_refused(flags: dict[str, object]) -> None:
    # Any free port: each worker would get its own, and torrents and the public URL say ":0".
    with pytest.raises(SettingsError, match="port 0"):
        load_settings(None, **flags)


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("S3TORRENT_LIMITS", "notjson"),
        ("S3TORRENT_TRUSTED_PROXIES", "10.0.0.1"),
        ("S3TORRENT_TORRENT__EXTRA_TRACKERS", "http://t.example/announce"),
    ],
)
def test_a_list_or_table_variable_that_is_not_json_is_named(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=rf"{var}\b.*JSON"):
        load_settings(None)


def test_a_key_pair_split_between_the_file_and_the_environment_is_one_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The access key in the settings file, the secret kept out of it in the environment.
    config = tmp_path / "c.toml"
    config.write_text('root_access_key = "AKIDEXAMPLE"\n')
    monkeypatch.setenv("S3TORRENT_ROOT_SECRET_KEY", "s3cr3t-value-123")
    settings = load_settings(config)
    assert (settings.root_access_key, settings.root_secret_key) == (
        "AKIDEXAMPLE",
        "s3cr3t-value-123",
    )


def test_settings_are_judged_together_not_the_environment_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('peer_listen = "127.0.0.1:7000"\n')
    monkeypatch.setenv("S3TORRENT_LISTEN", "127.0.0.1:6881")
    assert load_settings(config).peer_host_port == ("127.0.0.1", 7000)
