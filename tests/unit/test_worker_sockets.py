"""`serve --workers N` refuses a data directory too long for its Unix sockets at start-up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from s3torrent.config import Settings, StartupError
from s3torrent.workers import UNIX_PATH_MAX, check_sockets


def _data_dir(tmp_path: Path, room: int) -> Path:
    """A data directory whose path leaves exactly `room` bytes for '/' and a socket's name."""
    base = len(os.fsencode(tmp_path.absolute())) + 1  # the '/' before the padding
    return tmp_path / ("d" * (UNIX_PATH_MAX - room - base))


def test_the_tracker_relays_socket_must_fit_too(tmp_path: Path) -> None:
    # owner.sock and events.sock fit; tracker.sock, the longest name, is one byte over.
    settings = Settings(data_dir=_data_dir(tmp_path, len("/tracker.sock") - 1))
    with pytest.raises(StartupError, match=r"too long a path .*\(tracker\.sock\)"):
        check_sockets(settings)


def test_a_directory_where_every_socket_fits_starts(tmp_path: Path) -> None:
    check_sockets(Settings(data_dir=_data_dir(tmp_path, len("/tracker.sock"))))
