"""The full-disk classification and the reserve file's life cycle (no full disk needed)."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from s3torrent.store.errors import StorageFull
from s3torrent.store.space import SpaceReserve, storage_full


def _sqlite_error(code: int) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("database or disk is full")
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


class _PgError(Exception):
    sqlstate = "53100"


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        _sqlite_error(13),  # SQLITE_FULL
        _sqlite_error(4874),  # SQLITE_IOERR_SHMSIZE: no room for the -shm file
        sa.exc.OperationalError("COMMIT", {}, _sqlite_error(13)),
        sa.exc.OperationalError("INSERT", {}, _PgError()),
        StorageFull(),
    ],
)
def test_full_disk_errors_are_recognised(exc: BaseException) -> None:
    assert storage_full(exc)


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.EIO, "I/O error"),
        FileNotFoundError(errno.ENOENT, "gone"),
        _sqlite_error(5),  # SQLITE_BUSY
        sa.exc.OperationalError("COMMIT", {}, _sqlite_error(11)),  # SQLITE_CORRUPT
        ValueError("x"),
    ],
)
def test_other_errors_are_not_a_full_disk(exc: BaseException) -> None:
    assert not storage_full(exc)


def test_reserve_is_allocated_released_and_allocated_again(tmp_path: Path) -> None:
    reserve = SpaceReserve(tmp_path / "space-reserve", 1 << 20, recheck_interval=0.0)
    assert reserve.prepare_at_start()
    assert reserve.path.stat().st_size == 1 << 20
    assert reserve.path.stat().st_blocks * 512 >= 1 << 20  # allocated, not sparse
    assert not reserve.full
    reserve.check_writable()

    assert reserve.release()
    assert reserve.full and not reserve.path.exists()
    assert not reserve.release()  # nothing left to give: a second failure is final

    # Space is there again (this disk is not full): the next check restores the reserve.
    reserve.check_writable()
    assert not reserve.full
    assert reserve.path.stat().st_size == 1 << 20


def test_full_store_refuses_until_a_recheck_finds_space(tmp_path: Path) -> None:
    reserve = SpaceReserve(tmp_path / "space-reserve", 4096, recheck_interval=3600.0)
    assert reserve.allocate()
    reserve.mark_full()
    with pytest.raises(StorageFull):
        reserve.check_writable()  # within the recheck interval: refused without looking
    reserve.recheck_interval = 0.0
    reserve.check_writable()
    assert not reserve.full


def test_a_disabled_reserve_needs_no_file(tmp_path: Path) -> None:
    reserve = SpaceReserve(tmp_path / "space-reserve", 0)
    assert reserve.prepare_at_start()
    assert not reserve.path.exists()


def test_a_released_reserve_is_put_back_at_stop(tmp_path: Path) -> None:
    reserve = SpaceReserve(tmp_path / "space-reserve", 1 << 20)
    assert reserve.put_back() == 1 << 20  # none yet: made whole where there is room
    assert reserve.release()
    assert reserve.put_back() == 1 << 20
    assert reserve.path.stat().st_blocks * 512 >= 1 << 20
    assert reserve.put_back() == 1 << 20  # whole already: left alone


def test_a_reserve_is_put_back_partly_when_room_is_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reserve = SpaceReserve(tmp_path / "space-reserve", 1 << 20)
    monkeypatch.setattr(reserve, "free_bytes", lambda: 300_000)
    assert reserve.put_back() == 299_008  # whole blocks of what is free
    assert reserve.path.stat().st_size == 299_008
    # At the next start on a disk without room for the whole reserve, the part is given up
    # so the database can open.
    monkeypatch.setattr(reserve, "allocate", lambda: False)
    assert not reserve.prepare_at_start()
    assert not reserve.path.exists()


def test_a_disabled_reserve_is_not_put_back(tmp_path: Path) -> None:
    reserve = SpaceReserve(tmp_path / "space-reserve", 0)
    assert reserve.put_back() == 0
    assert not reserve.path.exists()
