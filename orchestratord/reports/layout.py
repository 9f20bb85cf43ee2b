"""Geometry of the HTML report's pictures: the timeline (Gantt) and the DAG.

Plain arithmetic on the report model, no graph-drawing dependency: the timeline maps
time to x, one row per step (and per compensated step); the DAG is a layered drawing
with the layer of a step its topological depth, ordered within a layer by the mean
position of its dependencies to keep edges short and crossings few. The template turns
these shapes into inline SVG.
"""

from __future__ import annotations

import math
from typing import Any

from ..core.durations import format_duration

# Timeline
ROW, BAR, PLOT_W, AXIS_H, CHAR_W = 24, 14, 900, 28, 7.2
# DAG. A layer wider than PER_ROW wraps onto more rows: edges then cross nodes, but a
# fan-out of fifty stays readable, where one row would need metres of scrolling.
NODE_W, NODE_H, GAP_X, GAP_Y, PER_ROW, MARGIN = 230, 52, 26, 46, 10, 12


def timeline(report: dict[str, Any]) -> dict[str, Any]:
    """Rows, bars and axis ticks; one bar per attempt and per compensation attempt."""
    run, attempts = report["run"], report["attempts"]
    t0 = _first([run["started_at"], run["created_at"], *(a["started_at"] for a in attempts)])
    ends = [run["finished_at"], *(a["finished_at"] or report["generated_at"] for a in attempts)]
    t1 = max([t for t in ends if t is not None] + [t0])
    span = max(t1 - t0, 1e-3)

    rows: list[dict[str, Any]] = []
    for step in report["steps"]:
        # A step that never ran has no bar: its row says why instead.
        rows.append({"key": ("action", step["id"]), "label": step["id"], "kind": "action",
                     "note": None if step["attempts"] else step["status"].replace("_", " ")})
    compensated = [a["step_id"] for a in (report["rollback"] or {}).get("actions", [])
                   if a["attempts"]]
    for step_id in compensated:
        rows.append({"key": ("rollback", step_id), "label": f"↺ {step_id}", "kind": "rollback",
                     "note": None})
    label_w = min(260, max(110, int(CHAR_W * max((len(r["label"]) for r in rows), default=8)) + 16))
    row_of = {r["key"]: i for i, r in enumerate(rows)}
    for i, r in enumerate(rows):
        r["y"] = AXIS_H + i * ROW
        r["text_y"] = r["y"] + ROW / 2 + 4
        r["label"] = _clip(r["label"], (label_w - 16) / CHAR_W)

    bars = []
    for a in attempts:
        row = row_of.get(("rollback" if a["kind"] == "rollback" else "action", a["step_id"]))
        if row is None:
            continue
        start = a["started_at"]
        end = a["finished_at"] if a["finished_at"] is not None else report["generated_at"]
        x = label_w + (start - t0) / span * PLOT_W
        w = max(2.0, (max(end, start) - start) / span * PLOT_W)
        what = "compensation" if a["kind"] == "rollback" else "attempt"
        title = (f"{a['step_id']} {'rollback ' if a['kind'] == 'rollback' else ''}attempt "
                 f"{a['attempt']}: {a['status']}, {format_duration(a['duration'])}"
                 + (f" — {a['error']}" if a["error"] else ""))
        bars.append({"x": round(x, 2), "y": AXIS_H + row * ROW + (ROW - BAR) / 2,
                     "w": round(min(w, label_w + PLOT_W - x + 2), 2), "h": BAR,
                     "kind": what, "step": a["step_id"], "attempt": a["attempt"],
                     "status": a["status"], "title": title})

    ticks = [{"x": round(label_w + t / span * PLOT_W, 2), "label": _offset(t)}
             for t in _ticks(span)]
    height = AXIS_H + len(rows) * ROW + 6
    return {"width": label_w + PLOT_W + 20, "height": height, "label_w": label_w,
            "plot_w": PLOT_W, "axis_y": AXIS_H - 6, "rows": rows, "bars": bars,
            "ticks": ticks, "span": span}


def dag(report: dict[str, Any]) -> dict[str, Any]:
    """Nodes placed in layers by depth, and edges as curves from parent to child."""
    steps = report["steps"]
    layers: dict[int, list[dict[str, Any]]] = {}
    for s in steps:
        layers.setdefault(s["depth"], []).append(s)
    x_of: dict[str, float] = {}
    placed: list[dict[str, Any]] = []
    row = 0
    position = {s["id"]: i for i, s in enumerate(steps)}
    widest = min(PER_ROW, max((len(v) for v in layers.values()), default=1))
    width = widest * (NODE_W + GAP_X) - GAP_X
    for depth in sorted(layers):
        members = layers[depth]
        # Order by where the dependencies sit, else by position in the workflow.
        members.sort(key=lambda s: (_mean([x_of[d] for d in s["depends_on"] if d in x_of],
                                          default=math.inf), position[s["id"]]))
        for chunk_start in range(0, len(members), PER_ROW):
            chunk = members[chunk_start:chunk_start + PER_ROW]
            used = len(chunk) * (NODE_W + GAP_X) - GAP_X
            left = MARGIN + (width - used) / 2
            for k, s in enumerate(chunk):
                x = left + k * (NODE_W + GAP_X)
                y = MARGIN + row * (NODE_H + GAP_Y)
                x_of[s["id"]] = x
                what = f"{s['skill']}.{s['action']}"
                title = f"{s['id']} ({what}): {s['status']}" + (f" — {s['error']}"
                                                                 if s["error"] else "")
                placed.append({
                    "id": s["id"], "status": s["status"], "x": round(x, 2), "y": y,
                    "w": NODE_W, "h": NODE_H, "label": _clip(s["id"], 30),
                    "sub": _clip(what, 36), "info": _clip(_node_info(s), (NODE_W - 20) / 6.9),
                    "title": title})
            row += 1
    at = {n["id"]: n for n in placed}
    edges = []
    for e in report["edges"]:
        a, b = at.get(e["from"]), at.get(e["to"])
        if a is None or b is None:
            continue
        x1, y1 = a["x"] + NODE_W / 2, a["y"] + NODE_H
        x2, y2 = b["x"] + NODE_W / 2, b["y"] - 2
        bend = max(GAP_Y / 2, (y2 - y1) / 2)
        edges.append({"from": e["from"], "to": e["to"],
                      "d": f"M{x1:.1f},{y1:.1f} C{x1:.1f},{y1 + bend:.1f} "
                           f"{x2:.1f},{y2 - bend:.1f} {x2:.1f},{y2:.1f}"})
    height = MARGIN * 2 + max(row, 1) * (NODE_H + GAP_Y) - GAP_Y
    return {"width": width + 2 * MARGIN, "height": height, "nodes": placed, "edges": edges}


def _node_info(step: dict[str, Any]) -> str:
    parts = [step["status"].replace("_", " ")]
    if step["attempts"] > 1:
        parts.append(f"{step['attempts']} tries")
    if step["duration"] is not None:
        parts.append(format_duration(step["duration"]))
    return " · ".join(parts)


def _first(values: list[float | None]) -> float:
    return next((v for v in values if v is not None), 0.0)


def _mean(values: list[float], *, default: float) -> float:
    return sum(values) / len(values) if values else default


def _clip(text: str, chars: float) -> str:
    n = max(4, int(chars))
    return text if len(text) <= n else text[:n - 1] + "…"


def _ticks(span: float) -> list[float]:
    """About six round offsets from the run's start: 1, 2 or 5 times a power of ten."""
    raw = span / 6
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if step >= 60:  # minutes and hours read better in round 1, 2, 5, 10, 15, 30 min
        step = next((s for s in (60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 21600, 43200)
                     if s >= raw), 86400)
    count = int(span / step + 1e-9)
    return [i * step for i in range(count + 1)]


def _offset(seconds: float) -> str:
    if seconds == 0:
        return "0"
    if seconds < 1:
        return f"+{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"+{seconds:g} s"
    if seconds < 3600:
        return f"+{seconds / 60:g} min"
    return f"+{seconds / 3600:g} h"
