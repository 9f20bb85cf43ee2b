"""Text renderings for people: DAG pictures (Mermaid, Graphviz) and run tables."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..core.durations import format_duration, format_span
from ..core.statuses import AttemptStatus

if TYPE_CHECKING:  # run tables are printed by daemon queries, which need no models
    from ..language.graph import Graph


def mermaid(graph: Graph) -> str:
    """The DAG as a Mermaid flowchart; parallel groups are subgraphs."""
    ids = {node_id: f"n{i}" for i, node_id in enumerate(graph.nodes)}
    lines = ["flowchart TD"]
    grouped = {m for members in graph.groups.values() for m in members}

    def box(node_id: str) -> str:
        step = graph.nodes[node_id].step
        return f'{ids[node_id]}["{node_id}<br/><small>{step.skill}.{step.action}</small>"]'

    for gid, members in graph.groups.items():
        lines.append(f'  subgraph {gid.replace("-", "_")}["{gid} (parallel)"]')
        lines += [f"    {box(m)}" for m in members]
        lines.append("  end")
    lines += [f"  {box(n)}" for n in graph.nodes if n not in grouped]
    lines += [f"  {ids[d]} --> {ids[n.id]}" for n in graph.nodes.values() for d in n.deps]
    return "\n".join(lines)


def dot(graph: Graph) -> str:
    """The DAG in Graphviz dot; parallel groups are clusters."""
    lines = ["digraph workflow {", "  rankdir=TB;", '  node [shape=box, style=rounded];']
    for i, (gid, members) in enumerate(graph.groups.items()):
        lines.append(f'  subgraph cluster_{i} {{ label={json.dumps(gid + " (parallel)")};')
        lines += [f"    {json.dumps(m)};" for m in members]
        lines.append("  }")
    for node in graph.nodes.values():
        label = f"{node.id}\\n{node.step.skill}.{node.step.action}"
        lines.append(f'  {json.dumps(node.id)} [label="{label}"];')
        lines += [f"  {json.dumps(d)} -> {json.dumps(node.id)};" for d in node.deps]
    lines.append("}")
    return "\n".join(lines)


def _when(ts: float | None) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _table(header: list[str], rows: Iterable[list[str]]) -> str:
    rows = [header] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def run_table(runs: list[Any]) -> str:
    if not runs:
        return "no runs"
    return _table(["RUN", "WORKFLOW", "STATUS", "CREATED", "DURATION"],
                  ([r.id, r.workflow, r.status, _when(r.created_at),
                    format_span(r.started_at, r.finished_at)] for r in runs))


def run_details(run: Any, steps: list[Any], attempts: list[Any]) -> str:
    tries: dict[str, list[Any]] = {}
    for a in attempts:
        tries.setdefault(a.step_id, []).append(a)
    head = [f"run       {run.id}", f"workflow  {run.workflow}", f"status    {run.status}",
            f"created   {_when(run.created_at)}",
            f"duration  {format_span(run.started_at, run.finished_at)}"]
    if run.params:
        head.append(f"params    {json.dumps(run.params)}")
    if run.error:
        head.append(f"error     {run.error}")
    if run.outputs:
        head.append(f"outputs   {json.dumps(run.outputs)}")
    table = _table(["STEP", "SKILL.ACTION", "STATUS", "ATTEMPTS", "DURATION", "DETAIL"],
                   ([s.step_id, f"{s.skill}.{s.action}", s.status, s.attempts,
                     format_span(s.started_at, s.finished_at), (s.error or "")[:100]]
                    for s in steps))
    failures = [f"  {a.step_id} {a.kind} attempt {a.attempt}: {a.status}: {a.error}"
                for s in steps for a in tries.get(s.step_id, [])
                if a.status not in (AttemptStatus.SUCCEEDED, AttemptStatus.RUNNING)]
    return "\n".join(head + ["", table] + (["", "failed attempts:"] + failures if failures else []))


def stats_table(stats: list[Any]) -> str:
    """Per skill/action statistics (orchestratord.stats.ActionStats) as a table."""
    if not stats:
        return "no steps ran in this period"
    return _table(["SKILL.ACTION", "COUNT", "SUCCESS", "P50", "P95", "MAX", "RETRIES/RUN"],
                  ([f"{s.skill}.{s.action}", s.count, f"{s.success_rate:.1%}",
                    format_duration(s.p50), format_duration(s.p95), format_duration(s.max),
                    f"{s.retries_per_run:.2f}"] for s in stats))

