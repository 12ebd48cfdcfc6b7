"""Results: JSON, BENCHMARKS.md and PNG plots."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import Row, Stats


@dataclass(slots=True)
class BenchmarkResult:
    """One benchmark's rows and how and when they were obtained."""

    name: str
    title: str
    description: str
    rows: list[Row]
    seconds: float
    date: str
    commit: str
    quick: bool
    runs: int
    error: str | None = None
    plot: str | None = field(default=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "rows": [r.to_json() for r in self.rows],
            "seconds": self.seconds,
            "date": self.date,
            "commit": self.commit,
            "quick": self.quick,
            "runs": self.runs,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BenchmarkResult:
        return cls(
            name=d["name"],
            title=d["title"],
            description=d["description"],
            rows=[Row.from_json(r) for r in d["rows"]],
            seconds=float(d["seconds"]),
            date=d["date"],
            commit=d["commit"],
            quick=bool(d["quick"]),
            runs=int(d["runs"]),
            error=d.get("error"),
        )


def merge_previous(
    results: list[BenchmarkResult], path: Path, order: Sequence[str], quick: bool
) -> list[BenchmarkResult]:
    """Keep earlier results (same mode) of benchmarks not run this time, in registry order."""
    fresh = {r.name: r for r in results}
    try:
        old = json.loads(path.read_text())
        if bool(old.get("quick")) == quick:
            for d in old.get("benchmarks", []):
                if d["name"] not in fresh and d["name"] in order:
                    fresh[d["name"]] = BenchmarkResult.from_json(d)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return sorted(fresh.values(), key=lambda r: order.index(r.name) if r.name in order else 999)


def write_json(
    path: Path, results: list[BenchmarkResult], machine: Mapping[str, Any], quick: bool
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": dict(machine), "quick": quick, "benchmarks": [r.to_json() for r in results]}
    path.write_text(json.dumps(doc, indent=2) + "\n")


# ---------------------------------------------------------------------------
# Markdown


def fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:,.1f}"
    return f"{x:,.2f}"


def fmt_stats(s: Stats | None, error: str | None) -> str:
    if s is None:
        return "n/a (see below)" if error else "n/a"
    if s.n == 1:
        return fmt(s.median)
    return f"**{fmt(s.median)}** ({fmt(s.minimum)}–{fmt(s.maximum)})"


def _cell(text: str, limit: int = 300) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _met(row: Row) -> str:
    met = row.met
    if met is None:
        return "not measured" if row.target is not None else "—"
    return "met" if met else "**not met**"


def fmt_ratio(r: Row) -> str:
    """The ratio to two decimals; to three when two would round it onto the target on the
    other side of its verdict (0.798 against ≥ 0.8 reads "0.798×", not "0.80×")."""
    if r.ratio is None:
        return "—"
    text = f"{r.ratio:.2f}"
    if r.target is not None and r.target.met(float(text)) != r.target.met(r.ratio):
        text = f"{r.ratio:.3f}"
    return text + "×"


def table(rows: Sequence[Row]) -> list[str]:
    out = [
        "| Metric | Unit | s3torrent median (min–max) | Anchor | Anchor median (min–max) "
        "| s3torrent / anchor | Target | Result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = fmt_ratio(r)
        target = (
            "—" if r.target is None or r.anchor_name is None else r.target.describe(r.anchor_name)
        )
        anchor = fmt_stats(r.anchor, r.anchor_error) if r.anchor_name else "—"
        out.append(
            f"| {_cell(r.metric)} | {r.unit} | {fmt_stats(r.ours, r.ours_error)} "
            f"| {r.anchor_name or '—'} | {anchor} | {ratio} | {target} | {_met(r)} |"
        )
    notes = []
    for r in rows:
        if r.ours_error:
            notes.append(f"{r.metric}: s3torrent failed: {r.ours_error}")
        if r.anchor_error:
            notes.append(f"{r.metric}: {r.anchor_name} failed: {r.anchor_error}")
        if r.note:
            notes.append(f"{r.metric}: {r.note}")
    if notes:
        out.append("")
        out += [f"- {_cell(n, 600)}" for n in dict.fromkeys(notes)]
    return out


def previous_sections(path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """Each benchmark's summary rows and section in an existing report, by name: kept for the
    benchmarks this run has no results for (a fresh checkout has no earlier JSON)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    kept: dict[str, tuple[list[str], list[str]]] = {}
    lines = text.splitlines()
    summary_end = next(
        (
            i
            for i, ln in enumerate(lines)
            if ln.startswith("## ") and i > 0 and not ln.startswith("## Summary")
        ),
        len(lines),
    )
    for ln in lines[:summary_end]:
        if ln.startswith("| ") and not ln.startswith("| Benchmark"):
            name = ln[2:].split(" |", 1)[0].strip()
            kept.setdefault(name, ([], []))[0].append(ln)
    current: list[str] | None = None
    for ln in lines[summary_end:]:
        if ln.startswith("## "):
            name = ln.rsplit("(`", 1)[-1].rstrip(")`") if ln.endswith("`)") else ""
            current = kept.setdefault(name, ([], []))[1] if name else None
            if current is not None:
                current.clear()
        if current is not None:
            current.append(ln)
    return kept


def write_markdown(
    path: Path,
    results: Sequence[BenchmarkResult],
    machine: Mapping[str, Any],
    command: str,
    order: Sequence[str] = (),
) -> None:
    previous = previous_sections(path)
    fresh = {r.name for r in results}
    names = list(order) or [r.name for r in results]
    by_name = {r.name: r for r in results}
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m bench`; do not edit by hand. -->",
        "",
        "s3torrent side by side with anchor tools on the same machine, run alternately "
        "(A B A B ...). Figures are medians with (min–max) over the runs. Benchmarks report; "
        "they never fail on timings. See `bench/README.md` for what each one does.",
        "",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, "
        f"{machine['memory_gib']:.0f} GiB RAM, {machine['os']}",
        f"- Date: {machine['date']}",
        f"- Commit: {machine['commit']}",
        f"- Command: `{command}`",
        "- The machine is shared and noisy; compare ratios rather than absolute figures.",
        "",
        "## Summary",
        "",
        "| Benchmark | Metric | s3torrent / anchor | Target | Result |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        if name not in fresh:
            lines += previous.get(name, ([], []))[0]
            continue
        res = by_name[name]
        for r in res.rows:
            if r.target is None or r.anchor_name is None:
                continue
            ratio = fmt_ratio(r)
            lines.append(
                f"| {res.name} | {_cell(r.metric)} | {ratio} "
                f"| {r.target.describe(r.anchor_name)} | {_met(r)} |"
            )
    for name in names:
        if name not in fresh:
            kept = previous.get(name, ([], []))[1]
            if kept:
                while kept and not kept[-1].strip():
                    kept.pop()
                lines += ["", *kept]
            continue
        res = by_name[name]
        mode = "quick" if res.quick else "full"
        lines += [
            "",
            f"## {res.title} (`{res.name}`)",
            "",
            res.description,
            "",
            f"_{mode} run, {res.runs} runs per subject, {res.seconds:.0f} s, {res.date}, "
            f"commit {res.commit}_",
            "",
        ]
        if res.error:
            lines += [f"**Did not complete:** {_cell(res.error)}", ""]
        if res.rows:
            lines += table(res.rows)
        if res.plot:
            rel = os.path.relpath(res.plot, path.parent)
            lines += ["", f"![{res.name}]({rel})"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------
# Plots


def plot(result: BenchmarkResult, out_dir: Path) -> Path | None:
    """Grouped horizontal bars (median, min–max whiskers) per metric; one panel per unit."""
    rows = [r for r in result.rows if r.ours is not None or r.anchor is not None]
    if not rows:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError:
        return None

    # metric -> subject -> stats, keeping first-seen order
    units: dict[str, dict[str, dict[str, Stats]]] = {}
    for r in rows:
        metrics = units.setdefault(r.unit, {})
        subjects = metrics.setdefault(r.metric, {})
        if r.ours is not None:
            subjects["s3torrent"] = r.ours
        if r.anchor is not None and r.anchor_name:
            subjects[r.anchor_name] = r.anchor
    names = list(dict.fromkeys(["s3torrent", *(r.anchor_name for r in rows if r.anchor_name)]))
    colors = {n: f"C{i}" for i, n in enumerate(names)}
    heights = [len(m) * (len(names) * 0.28 + 0.35) + 0.9 for m in units.values()]
    fig, axes = plt.subplots(
        len(units), 1, figsize=(7.5, sum(heights)), height_ratios=heights, squeeze=False
    )
    bar = 0.8 / len(names)
    for ax, (unit, metrics) in zip(axes[:, 0], units.items(), strict=True):
        top = max(s.maximum for d in metrics.values() for s in d.values())
        for mi, subjects in enumerate(metrics.values()):
            for si, name in enumerate(names):
                y = mi + si * bar
                s = subjects.get(name)
                if s is None:
                    if name == "s3torrent":
                        ax.text(0, y, " s3torrent: n/a", va="center", fontsize=7, color="C0")
                    continue
                err = [[s.median - s.minimum], [s.maximum - s.median]]
                ax.barh(y, s.median, height=bar, color=colors[name], xerr=err, capsize=2)
                ax.text(s.maximum + top * 0.01, y, fmt(s.median), va="center", fontsize=7)
        ax.set_yticks([i + 0.4 - bar / 2 for i in range(len(metrics))])
        ax.set_yticklabels(list(metrics), fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(unit, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlim(0, top * 1.18)
    handles = [Rectangle((0, 0), 1, 1, color=colors[n]) for n in names]
    axes[0, 0].legend(handles, names, fontsize=7, loc="lower right")
    axes[0, 0].set_title(f"{result.title} (median, min–max)", fontsize=9)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{result.name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
