"""Version ids: random hex for versions with a blob, time-ordered for the others."""

from __future__ import annotations

import itertools
import os

import pytest

from s3torrent.s3.errors import S3Error
from s3torrent.s3.versioning import parse_version_id
from s3torrent.store.objects import ObjectStore
from s3torrent.store.rows import new_row_version_id


def test_row_version_ids_sort_after_blob_ids_and_after_each_other() -> None:
    """What keeps the unique indexes of version ids appending at their right edge."""
    ids = [new_row_version_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and i.isalnum() and i.startswith("v") for i in ids)
    # Made one after another, they never sort backwards (same microsecond: random order).
    assert all(a[:16] <= b[:16] for a, b in itertools.pairwise(ids))
    blob_ids = [ObjectStore.new_version_id() for _ in range(2000)]
    assert max(blob_ids) < min(ids)


def test_every_id_we_make_is_accepted_back_and_others_are_refused() -> None:
    for made in (new_row_version_id(), ObjectStore.new_version_id(), "null"):
        assert parse_version_id(made) == made
    for bad in ("v" * 32, "V" + "0" * 31, "x" + "0" * 31, "0" * 31, "0" * 33, "", "../../x"):
        with pytest.raises(S3Error):
            parse_version_id(bad)


def test_random_halves_are_read_ahead_yet_never_shared_with_a_forked_child() -> None:
    """The random half comes from a buffer of the kernel's bits: a child made by fork after
    the buffer was filled must not hand out the parent's next bits (two workers writing
    the same key would otherwise collide)."""
    new_row_version_id()  # the buffer now holds bits the child would inherit
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, then gone at once
        try:
            os.write(write, "".join(new_row_version_id()[16:] for _ in range(4)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    os.waitpid(pid, 0)
    ours = [new_row_version_id()[16:] for _ in range(4)]
    theirs = [child[i : i + 16] for i in range(0, len(child), 16)]
    assert len(theirs) == 4 and not set(ours) & set(theirs)
    # More ids than one read of the kernel's bits serves: still all distinct.
    many = {new_row_version_id()[16:] for _ in range(3000)}
    assert len(many) == 3000
