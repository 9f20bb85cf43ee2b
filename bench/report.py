"""The results as one table on stdout, as JSON, and as a plot of the scaling curves."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from .results import Row

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ("section", "measure", "ours", "reference", "ratio", "target", "result", "note")


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return f"{text} {unit}".strip()


def _result(row: Row) -> str:
    if row.value is None:
        return "not run"
    return {True: "ok", False: "MISSED", None: ""}[row.ok]


def table(rows: list[Row]) -> str:
    """A plain-text table: ours, the reference it is compared with, ours / reference."""
    cells = [COLUMNS] + [(r.section, r.name, _num(r.value, r.unit),
                          _num(r.baseline, r.unit) if r.baseline is not None else "",
                          f"{r.ratio:.2f}x" if r.ratio is not None else "",
                          r.target, _result(r), r.note) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip()
             for cell in cells]
    lines.insert(1, "  ".join("-" * w for w in widths[:-1]) + "  ----")
    return "\n".join(lines)


def header(info: dict[str, Any]) -> str:
    m, load = info["machine"], info["load"]
    return (f"agent-orchestrator benchmark, {info['date']}\n"
            f"machine: {m['nproc']} CPUs, {m['cpu']}, Python {m['python']}, {m['system']}\n"
            f"load average (1 min) at start {load['start']:.2f}, at end {load['end']:.2f}"
            " (counts this run's own processes too; ratios are measured interleaved)\n"
            "reference: the bare baseline (engine, commands), the peer (peers: < 1x means"
            " ours is faster), python -c pass (daemon); ratio = ours / reference")


def write_json(info: dict[str, Any], rows: list[Row], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**info, "rows": [r.as_dict() for r in rows]}, indent=2) + "\n")


def plot(rows: list[Row], path: Path) -> str | None:
    """ms/step against N for ours, the bare baseline and each peer; None if no
    matplotlib (the `bench` extra), else the path written."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, shape in zip(axes, ("chain", "fanout"), strict=True):
        series: dict[str, dict[int, float]] = {}
        for r in rows:
            x = r.extra
            if x.get("shape") != shape or "n" not in x:
                continue
            if r.section == "engine":
                series.setdefault("agent-orchestrator", {})[x["n"]] = r.value
                series.setdefault("bare asyncio + 1 commit", {})[x["n"]] = r.baseline
            elif r.section == "peers" and r.baseline is not None:
                series.setdefault(x["peer"], {})[x["n"]] = r.baseline
        for label, points in series.items():
            ns = sorted(points)
            style = "-o" if label == "agent-orchestrator" else "--s" if "bare" in label else ":^"
            ax.plot(ns, [points[n] for n in ns], style, label=label)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("N steps")
        ax.set_title(f"{'chain' if shape == 'chain' else 'fan-out'} of N no-op steps")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms per step (flat = linear scaling)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(f"agent-orchestrator: cost per durable step, {time.strftime('%Y-%m-%d')}")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
