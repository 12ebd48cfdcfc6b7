"""Benchmark harness: registry, alternation, statistics, processes and tool installation."""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent

# Benchmark modules, in the order they run. A new benchmark is one module with
# `TITLE`, `DESCRIPTION` and `run(ctx) -> list[Row]`, plus one line here.
BENCHMARKS: dict[str, str] = {
    "s3_large": "bench.s3_large",
    "s3_small": "bench.s3_small",
    "tracker": "bench.tracker",
    "seeder": "bench.seeder",
    "swarm": "bench.swarm",
    "swarm_field": "bench.swarm_field",
    "metering": "bench.metering",
    "hashing": "bench.hashing",
    "scale": "bench.scale",
    "sse": "bench.sse",
    "versioning": "bench.versioning",
    "lifecycle": "bench.lifecycle",
    "browsers": "bench.browsers",
    "workers": "bench.workers",
}


class Unavailable(Exception):
    """A subject (server or tool) cannot be measured on this machine right now."""


# ---------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class Stats:
    """Summary of one subject's samples."""

    median: float
    minimum: float
    maximum: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        return cls(statistics.median(values), min(values), max(values), len(values))


@dataclass(slots=True)
class Samples:
    """The values one subject produced, or why it produced none."""

    name: str
    values: list[float] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def stats(self) -> Stats | None:
        return Stats.of(self.values) if self.values else None


@dataclass(frozen=True, slots=True)
class Target:
    """ours/anchor ratio we aim for; `higher_is_better` says which side of it passes."""

    ratio: float
    higher_is_better: bool = True
    # Our own aim where the issue asks only for a measurement: shown and judged like a
    # target, and named as an aim so nobody reads it as the issue's.
    aim: bool = False

    def met(self, ratio: float) -> bool:
        return ratio >= self.ratio if self.higher_is_better else ratio <= self.ratio

    def describe(self, anchor: str) -> str:
        sign = "≥" if self.higher_is_better else "≤"
        text = f"{sign} {self.ratio:g}× {anchor}"
        return f"{text} (our aim; the issue sets none)" if self.aim else text


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a results table: ours against one anchor for one metric."""

    metric: str
    unit: str
    ours: Stats | None
    anchor_name: str | None = None
    anchor: Stats | None = None
    target: Target | None = None
    ours_error: str | None = None
    anchor_error: str | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.anchor is None or self.anchor.median == 0:
            return None
        return self.ours.median / self.anchor.median

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        if self.target is None:
            return None
        if ratio is None:
            return None
        return self.target.met(ratio)

    def to_json(self) -> dict[str, Any]:
        def stats(s: Stats | None) -> dict[str, float] | None:
            if s is None:
                return None
            return {"median": s.median, "min": s.minimum, "max": s.maximum, "n": s.n}

        return {
            "metric": self.metric,
            "unit": self.unit,
            "ours": stats(self.ours),
            "anchor_name": self.anchor_name,
            "anchor": stats(self.anchor),
            "ratio": self.ratio,
            "target": None
            if self.target is None
            else {
                "ratio": self.target.ratio,
                "higher_is_better": self.target.higher_is_better,
                "aim": self.target.aim,
            },
            "met": self.met,
            "ours_error": self.ours_error,
            "anchor_error": self.anchor_error,
            "note": self.note,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Row:
        def stats(s: Mapping[str, float] | None) -> Stats | None:
            if s is None:
                return None
            return Stats(s["median"], s["min"], s["max"], int(s["n"]))

        t = d.get("target")
        return cls(
            metric=d["metric"],
            unit=d["unit"],
            ours=stats(d.get("ours")),
            anchor_name=d.get("anchor_name"),
            anchor=stats(d.get("anchor")),
            target=None
            if t is None
            else Target(t["ratio"], t["higher_is_better"], bool(t.get("aim", False))),
            ours_error=d.get("ours_error"),
            anchor_error=d.get("anchor_error"),
            note=d.get("note", ""),
        )


def compare(
    metric: str,
    unit: str,
    ours: Samples,
    anchor: Samples | None = None,
    target: Target | None = None,
    note: str = "",
) -> Row:
    """Build a row from the samples of ours and (optionally) one anchor."""
    notes = [note] if note else []
    notes += ours.notes + (anchor.notes if anchor else [])
    return Row(
        metric=metric,
        unit=unit,
        ours=ours.stats,
        anchor_name=anchor.name if anchor else None,
        anchor=anchor.stats if anchor else None,
        target=target,
        ours_error=ours.error,
        anchor_error=anchor.error if anchor else None,
        note="; ".join(dict.fromkeys(notes)),
    )


# ---------------------------------------------------------------------------
# Context and alternation


@dataclass(slots=True)
class Context:
    """What a benchmark module gets: mode, run count, a scratch directory, a deadline."""

    quick: bool
    runs: int
    workdir: Path
    deadline: float  # time.monotonic() after which no new run starts
    log: Callable[[str], None]

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def scratch(self, name: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.workdir))
        return path


Subject = tuple[str, Callable[[], float]]


def alternate(
    ctx: Context, subjects: Sequence[Subject], runs: int | None = None, *, balanced: bool = False
) -> list[Samples]:
    """Measure subjects in turn (A B A B ...), `runs` rounds, each call returning one value.

    `balanced`: every other round runs them in reverse order (A B, B A, A B ...), so neither
    always follows the other (a run's leftovers, such as the writeback of a 1 GiB fsync,
    fall on both alike). Only for subjects that do not depend on each other's order.

    A subject that raises is reported with its error and not called again; the
    others keep going. Rounds stop early when the context's deadline passes.
    """
    rounds = ctx.runs if runs is None else runs
    samples = [Samples(name) for name, _ in subjects]
    for i in range(rounds):
        if ctx.remaining() <= 0:
            for s in samples:
                s.notes.append(f"time box reached after {i} of {rounds} runs")
            break
        order = list(zip(subjects, samples, strict=True))
        if balanced and i % 2:
            order.reverse()
        for (name, measure), s in order:
            if s.error is not None:
                continue
            try:
                value = measure()
            except Unavailable as e:
                s.error = str(e)
            except Exception as e:  # a broken subject must not end the suite
                s.error = f"{type(e).__name__}: {e}"
            else:
                s.values.append(value)
                ctx.log(f"    {name} run {i + 1}/{rounds}: {value:,.1f}")
            if s.error is not None:
                ctx.log(f"    {name}: {s.error}")
    return samples


class BenchmarkModule(Protocol):
    TITLE: str
    DESCRIPTION: str

    def run(self, ctx: Context) -> list[Row]: ...


def load_benchmark(name: str) -> ModuleType:
    if name not in BENCHMARKS:
        raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
    return importlib.import_module(BENCHMARKS[name])


# ---------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_live: set[subprocess.Popen[bytes]] = set()


def stop_process(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop a process started with `spawn` and everything in its process group."""
    _live.discard(proc)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
    # The leader may be gone while children of its group linger.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def stop_all() -> None:
    for proc in list(_live):
        stop_process(proc, grace=2.0)


atexit.register(stop_all)


def spawn(
    cmd: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running process in its own process group, output to `log_path`."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    _live.add(proc)
    return proc


@dataclass(frozen=True, slots=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_bounded(
    cmd: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Completed:
    """Run a command to completion in its own process group, killing the group on timeout."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(cmd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=None if env is None else dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    _live.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as e:
        stop_process(proc, grace=1.0)
        raise TimeoutError(f"{Path(cmd[0]).name} exceeded {timeout:.0f} s") from e
    finally:
        stop_process(proc, grace=1.0)
    seconds = time.perf_counter() - start
    return Completed(
        proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"), seconds
    )


def compile_c(workdir: Path, name: str, *libs: str) -> Path | None:
    """Build bench/NAME.c (a load generator of ours) into workdir; None without a C
    compiler or if it does not build."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    exe = workdir / name
    source = Path(__file__).with_name(f"{name}.c")
    res = run_bounded([cc, "-O2", "-o", str(exe), str(source), *libs], timeout=120)
    return exe if res.returncode == 0 else None


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """Status of a GET to a loopback URL, or None when nothing answers."""
    req = urllib.request.Request(url, method="GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (OSError, ValueError):
        return None


def wait_ready(
    proc: subprocess.Popen[bytes],
    url: str,
    *,
    timeout: float,
    ok: Callable[[int], bool],
    log_path: Path,
    name: str,
) -> None:
    """Poll `url` until `ok(status)`; raise Unavailable if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Unavailable(f"{name} exited with {proc.returncode}: {tail(log_path)}")
        status = http_status(url)
        if status is not None and ok(status):
            return
        time.sleep(0.1)
    raise Unavailable(f"{name} not ready after {timeout:.0f} s: {tail(log_path)}")


def tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


@contextlib.contextmanager
def terminate_on_signals() -> Iterator[None]:
    """Turn SIGINT/SIGTERM/SIGHUP into exceptions so every `finally` runs, then stop leftovers.

    Only the first signal interrupts; later ones are ignored so the clean-up itself
    (bounded by the stop timeouts) is not cut short.
    """
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def handler(signum: int, _frame: object) -> None:
        for s in signals:
            signal.signal(s, signal.SIG_IGN)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        stop_all()
        for s, h in previous.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------
# Tools


def _may_install() -> bool:
    return os.environ.get("BENCH_NO_INSTALL", "") == ""


def ensure_apt(package: str, *, binary: str) -> str | None:
    """Path of `binary`, installing the Debian `package` if it is missing; None if impossible."""
    found = shutil.which(binary) or _sbin(binary)
    if found or not _may_install() or shutil.which("apt-get") is None:
        return found
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with contextlib.suppress(TimeoutError, OSError):
        print(f"installing {package} (apt) ...", file=sys.stderr)
        if run_bounded(
            [*sudo, "apt-get", "install", "-y", package], timeout=600, env=env
        ).returncode:
            run_bounded([*sudo, "apt-get", "update"], timeout=600, env=env)
            run_bounded([*sudo, "apt-get", "install", "-y", package], timeout=600, env=env)
    return shutil.which(binary) or _sbin(binary)


def _sbin(binary: str) -> str | None:
    for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        p = Path(d) / binary
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def ensure_pip(requirement: str, *, module: str) -> bool:
    """True when `module` imports, installing `requirement` with pip first if needed."""
    if _importable(module):
        return True
    if not _may_install():
        return False
    with contextlib.suppress(TimeoutError, OSError):
        print(f"installing {requirement} (pip) ...", file=sys.stderr)
        run_bounded([sys.executable, "-m", "pip", "install", requirement], timeout=900)
    importlib.invalidate_caches()
    return _importable(module)


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def git_commit() -> str:
    try:
        out = run_bounded(["git", "rev-parse", "--short", "HEAD"], timeout=10, cwd=REPO_DIR)
        # The suite's own outputs (written by earlier benchmarks of the same run) are not
        # changes to the code measured.
        outputs = [":!BENCHMARKS.md", ":!bench/results-full.json", ":!bench/plots", ":!bench/out"]
        dirty = run_bounded(
            ["git", "status", "--porcelain", "--", ".", *outputs], timeout=10, cwd=REPO_DIR
        )
    except (TimeoutError, OSError):
        return "unknown"
    commit = out.stdout.strip() if out.returncode == 0 else "no commit"
    return commit + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def core_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
