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
