"""python -m bench [NAME ...] [--quick] [--runs N] [--out BENCHMARKS.md]"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import platform
import shlex
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bench import report
from bench.harness import (
    BENCH_DIR,
    BENCHMARKS,
    REPO_DIR,
    Context,
    Row,
    Unavailable,
    core_count,
    cpu_model,
    ensure_pip,
    git_commit,
    load_benchmark,
    terminate_on_signals,
)

OUT_DIR = BENCH_DIR / "out"
PLOTS_DIR = BENCH_DIR / "plots"
# Per-benchmark time box: no new run starts after it (a started run is bounded by its own timeouts).
TIME_BOX = {True: 60.0, False: 900.0}
# Runs per subject unless --runs says otherwise.
RUNS = {True: 2, False: 5}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except (OSError, ValueError):
        pass
    return 0.0


def machine_info() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": core_count(),
        "memory_gib": memory_gib(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench", description="Side-by-side benchmarks of s3torrent and anchors."
    )
    p.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks ({', '.join(BENCHMARKS)})")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test while developing: small sizes, short runs, all in under 3 minutes",
    )
    p.add_argument(
        "--runs", type=int, help=f"runs per subject (default {RUNS[False]}; quick {RUNS[True]})"
    )
    p.add_argument(
        "--out",
        type=Path,
        help="markdown report (default BENCHMARKS.md at the repo root; quick: bench/out/)",
    )
    p.add_argument(
        "--time-box",
        type=float,
        help=f"seconds per benchmark before runs stop (default {TIME_BOX[False]:.0f}; "
        f"quick {TIME_BOX[True]:.0f})",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--list", action="store_true", help="list benchmarks and exit")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite the report and plots from the last results of this mode, run nothing",
    )
    args = p.parse_args(argv)
    if args.runs is not None and not 1 <= args.runs <= 50:
        p.error("--runs must be between 1 and 50")
    return args


def print_rows(rows: list[Row]) -> None:
    for r in rows:
        ours = "n/a" if r.ours is None else report.fmt(r.ours.median)
        anchor = "n/a" if r.anchor is None else report.fmt(r.anchor.median)
        ratio = "" if r.ratio is None else f"  ratio {report.fmt_ratio(r)}"
        met = "" if r.met is None else ("  target met" if r.met else "  TARGET NOT MET")
        vs = f" vs {r.anchor_name} {anchor}" if r.anchor_name else ""
        log(f"  = {r.metric}: s3torrent {ours}{vs} {r.unit}{ratio}{met}")
        for err in (r.ours_error, r.anchor_error):
            if err:
                log(f"    ! {err}")
        if r.note:
            log(f"    ({r.note})")


def run_one(name: str, quick: bool, runs: int, time_box: float, workroot: Path, commit: str,
            keep: bool) -> report.BenchmarkResult:  # fmt: skip
    module = load_benchmark(name)
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workroot))
    ctx = Context(quick, runs, workdir, time.monotonic() + time_box, log)
    log(f"{name}: {module.TITLE}")
    started = time.monotonic()
    rows: list[Row] = []
    error: str | None = None
    try:
        rows = module.run(ctx)
    except Unavailable as e:
        error = str(e)
    except Exception as e:  # one broken benchmark must not lose the others' results
        error = f"{type(e).__name__}: {e}"
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    seconds = time.monotonic() - started
    if error:
        log(f"  ! {name} did not complete: {error}")
    print_rows(rows)
    log(f"  ({name} took {seconds:.0f} s)")
    return report.BenchmarkResult(
        name=name,
        title=module.TITLE,
        description=module.DESCRIPTION,
        rows=rows,
        seconds=seconds,
        date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        commit=commit,
        quick=quick,
        runs=runs,
        error=error,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name in BENCHMARKS:
            print(f"{name}: {load_benchmark(name).TITLE}")
        return 0
    names = args.names or list(BENCHMARKS)
    for name in names:
        load_benchmark(name)  # unknown names fail before anything starts
    quick: bool = args.quick
    runs = args.runs or RUNS[quick]
    time_box = args.time_box or TIME_BOX[quick]
    out = args.out or (OUT_DIR / "BENCHMARKS.md" if quick else REPO_DIR / "BENCHMARKS.md")
    machine = machine_info()
    log(f"{machine['cpu']}, {machine['cores']} cores; {'quick' if quick else 'full'}, {runs} runs")

    results: list[report.BenchmarkResult] = []
    began = time.monotonic()
    workroot = Path(tempfile.mkdtemp(prefix="s3torrent-bench-"))
    with terminate_on_signals():
        try:
            for name in [] if args.report_only else names:
                results.append(
                    run_one(name, quick, runs, time_box, workroot, machine["commit"], args.keep)
                )
        finally:
            if args.keep:
                log(f"scratch kept in {workroot}")
            else:
                shutil.rmtree(workroot, ignore_errors=True)

    ensure_pip("matplotlib", module="matplotlib")
    # Full results are kept in the repository beside BENCHMARKS.md, so a run of some
    # benchmarks in a fresh checkout keeps the others' figures; quick ones stay in bench/out.
    mode_json = BENCH_DIR / "results-full.json" if not quick else OUT_DIR / "results-quick.json"
    results = report.merge_previous(results, mode_json, list(BENCHMARKS), quick)
    # Plotting takes a few tenths of a second per benchmark: spread over the cores.
    with ProcessPoolExecutor(max(1, min(len(results), core_count()))) as pool:
        pngs = list(pool.map(report.plot, results, itertools.repeat(OUT_DIR)))
    # The committed plots follow the committed report only: a run written elsewhere (--out)
    # keeps its plots in bench/out.
    committed = out.resolve() == (REPO_DIR / "BENCHMARKS.md").resolve()
    for res, png in zip(results, pngs, strict=True):
        if png is not None and not quick and committed:
            PLOTS_DIR.mkdir(exist_ok=True)
            png = Path(shutil.copy2(png, PLOTS_DIR / png.name))
        res.plot = str(png) if png else None
    for path in (OUT_DIR / "results.json", mode_json):
        report.write_json(path, results, machine, quick)
    command = shlex.join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    report.write_markdown(out, results, machine, command, list(BENCHMARKS))
    log(f"done in {time.monotonic() - began:.0f} s: {out}, {OUT_DIR / 'results.json'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted; every started process was stopped")
        sys.exit(130)
