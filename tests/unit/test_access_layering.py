"""The access layer stands alone: it never imports the S3 edge, whose errors it must not use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import s3torrent.access


def test_importing_access_loads_nothing_from_the_s3_edge() -> None:
    probe = (
        "import sys, s3torrent.access; "
        "print(sorted(m for m in sys.modules if m.startswith('s3torrent.s3')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_no_access_module_names_the_s3_package() -> None:
    package = Path(s3torrent.access.__file__).parent
    offenders = [
        path.name for path in package.glob("*.py") if "s3torrent.s3" in path.read_text("utf-8")
    ]
    assert offenders == []
