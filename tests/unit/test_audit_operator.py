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
