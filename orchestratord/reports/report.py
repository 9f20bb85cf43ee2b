"""Execution reports: what a run did, step by step, as Markdown, JSON or one HTML file.

The report is built once from the state database (run row, steps, attempts, events)
and the definition stored with the run (for the DAG edges) into a plain, JSON-ready
dict with stable keys. Every rendering is a function of that dict alone, so a client
can fetch the model from the daemon and render it locally, and the JSON rendering is
the model itself. Secrets are redacted while the model is built, so no rendering can
leak them.
"""

from __future__ import annotations

import collections
import graphlib
import json
import time
from typing import Any

from ..core.redact import RunRedactor
from ..core.statuses import STEP_FAILURES, EventKind, StepStatus
from ..store.sqlite import Store

REPORT_VERSION = 1
FORMATS = ("md", "json", "html")
STDERR_TAIL_LINES = 20
SUMMARY_CHARS = 80


async def build_report(store: Store, run_id: str, *, now: float | None = None) -> dict[str, Any]:
    """The report model of a run (a run id or unique prefix)."""
    run = await store.get_run(run_id)
    steps = await store.steps(run.id)
    attempts = await store.attempts(run.id)
    events = await store.events(run.id, limit=None)
    # The one place secrets leave: params masked by their specs and names, known secret
    # strings scrubbed from results, errors and stderr. Every rendering reads only this.
    run, steps, attempts = RunRedactor.for_run(run).rows(run, steps, attempts)
    return report_model(run, steps, attempts, events, now=now)


def report_model(run: Any, steps: list[Any], attempts: list[Any], events: list[Any], *,
                 now: float | None = None) -> dict[str, Any]:
    """The report model of rows as the store gives them, their secrets already redacted
    (RunRedactor.rows): for a caller that holds the rows already, such as a step that
    reports on its own run while it runs."""
    deps, groups, declared_rollbacks, routed = _definition_edges(run.definition,
                                                                 [s.step_id for s in steps])
    attempt_rows = [_attempt(a) for a in attempts]
    by_step: dict[str, list[dict[str, Any]]] = {}
    for a in attempt_rows:
        by_step.setdefault(a["step_id"], []).append(a)
    retries = _retries(events, by_step)
    retried = collections.Counter(r["step_id"] for r in retries)
    depth = _depths([s.step_id for s in steps], deps)
    step_rows = [_step(s, by_step.get(s.step_id, []), deps.get(s.step_id, ()), depth[s.step_id],
                       groups.get(s.step_id), retried[s.step_id], routed.get(s.step_id))
                 for s in steps]
    failures = _failures(step_rows, by_step)
    by_status: dict[str, int] = {}
    for row in step_rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    return {
        "report_version": REPORT_VERSION,
        "generated_at": time.time() if now is None else now,
        "run": {
            "id": run.id, "workflow": run.workflow, "status": run.status, "file": run.file,
            "created_at": run.created_at, "started_at": run.started_at,
            "finished_at": run.finished_at, "duration": _span(run.started_at, run.finished_at),
            "params": run.params, "outputs": run.outputs, "error": run.error,
        },
        "summary": {
            "steps": len(step_rows), "by_status": dict(sorted(by_status.items())),
            "attempts": sum(1 for a in attempt_rows if a["kind"] == "action"),
            "retries": len(retries), "failed_steps": [f["step_id"] for f in failures],
            "compensations": sum(1 for a in attempt_rows if a["kind"] == "rollback"),
        },
        "steps": step_rows,
        "edges": [{"from": d, "to": s["id"]} for s in step_rows for d in s["depends_on"]],
        "attempts": attempt_rows,
        "failures": failures,
        "retries": retries,
        "rollback": _rollback(events, by_step, declared_rollbacks),
    }


# -- the model's parts ----------------------------------------------------------------

def _definition_edges(source: dict[str, Any], step_ids: list[str]
                      ) -> tuple[dict[str, tuple[str, ...]], dict[str, str], dict[str, str],
                                 dict[str, str]]:
    """(dependencies, parallel group, declared rollback action, how a routed step chose
    its action) per step, from the definition.

    Only the shape and the graph are rebuilt, not the skills: a report must still draw
    the run of a workflow whose skills have changed or gone since. A definition that no
    longer parses gives a report without edges rather than no report.
    """
    from ..language.graph import build
    from ..language.model import STORED, UNION_TAGS, WorkflowDocument
    from ..language.source import Document
    doc = Document("stored definition", source)
    model, _problems = doc.validate(WorkflowDocument, tags=UNION_TAGS, context=STORED)
    if model is None:
        return {}, {}, {}, {}
    graph, _ = build(model.workflow, doc)
    known = set(step_ids)
    deps = {n.id: tuple(d for d in n.deps if d in known) for n in graph.nodes.values()
            if n.id in known}
    groups = {n.id: n.group for n in graph.nodes.values() if n.group}
    rollbacks = {n.id: (f"{n.step.rollback.skill}.{n.step.rollback.action}"
                        if n.step.rollback.skill else n.step.rollback.action)
                 for n in graph.nodes.values() if n.step.rollback}
    routed = {n.id: n.step.routed for n in graph.nodes.values() if n.step.routed}
    return deps, groups, rollbacks, routed


def _attempt(a: Any) -> dict[str, Any]:
    return {"step_id": a.step_id, "kind": a.kind, "attempt": a.attempt, "status": a.status,
            "started_at": a.started_at, "finished_at": a.finished_at,
            "duration": _span(a.started_at, a.finished_at), "error": a.error,
            "exit_code": a.exit_code, "stderr_tail": _tail(a.stderr_tail)}


def _step(s: Any, attempts: list[dict[str, Any]], deps: tuple[str, ...], depth: int,
          group: str | None, retries: int, routed: str | None) -> dict[str, Any]:
    tries = sum(1 for a in attempts if a["kind"] == "action")
    return {"id": s.step_id, "skill": s.skill, "action": s.action, "routed": routed,
            "group": group,
            "depends_on": list(deps), "depth": depth, "status": s.status,
            "attempts": tries, "retries": retries,
            "started_at": s.started_at, "finished_at": s.finished_at,
            # A step that never ran (skipped, upstream failed) took no time.
            "duration": s.duration if tries else None,
            "params": s.params, "result": s.result, "result_summary": _summary(s.result),
            "error": s.error}


def _retries(events: list[Any], by_step: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each retry the engine scheduled, with the failed attempt that caused it."""
    out = []
    for e in events:
        if e.type != EventKind.STEP_RETRY:
            continue
        failed = next((a for a in by_step.get(e.step_id or "", [])
                       if a["kind"] == "action" and a["attempt"] == e.attempt), {})
        out.append({"step_id": e.step_id, "attempt": e.attempt, "at": e.ts,
                    "delay": e.data.get("delay"), "status": failed.get("status"),
                    "error": failed.get("error")})
    return out


def _failures(steps: list[dict[str, Any]], by_step: dict[str, list[dict[str, Any]]]
              ) -> list[dict[str, Any]]:
    """Why each failed step (or compensation) failed, with the stderr of its last tries."""
    out = []
    for s in steps:
        if s["status"] not in STEP_FAILURES:
            continue
        kind = "rollback" if s["status"] == StepStatus.COMPENSATION_FAILED else "action"
        tries = [a for a in by_step.get(s["id"], []) if a["kind"] == kind]
        last = tries[-1] if tries else {}
        with_stderr: dict[str, Any] = next((a for a in reversed(tries) if a["stderr_tail"]), {})
        out.append({"step_id": s["id"], "kind": kind, "status": s["status"],
                    "error": last.get("error") if kind == "rollback" else s["error"],
                    "attempt": last.get("attempt"), "exit_code": last.get("exit_code"),
                    "stderr_tail": with_stderr.get("stderr_tail")})
    return out


def _depths(step_ids: list[str], deps: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """Topological depth: 0 for roots, else one more than the deepest dependency."""
    try:
        order = list(graphlib.TopologicalSorter({sid: deps.get(sid, ()) for sid in step_ids})
                     .static_order())
    except graphlib.CycleError:  # never stored (checked before a run starts): draw a column
        return {sid: i for i, sid in enumerate(step_ids)}
    depth: dict[str, int] = {}
    for sid in order:
        depth[sid] = 1 + max((depth[d] for d in deps.get(sid, ())), default=-1)
    return {sid: depth[sid] for sid in step_ids}


def _rollback(events: list[Any], by_step: dict[str, list[dict[str, Any]]],
              declared: dict[str, str]) -> dict[str, Any] | None:
    start = next((e for e in events if e.type == EventKind.RUN_ROLLING_BACK), None)
    if start is None:
        return None
    order = list(start.data.get("steps", []))
    actions = []
    for step_id in order:
        tries = [a for a in by_step.get(step_id, []) if a["kind"] == "rollback"]
        if not tries:
            actions.append({"step_id": step_id, "action": None, "status": StepStatus.SKIPPED,
                            "attempts": 0, "started_at": None, "finished_at": None,
                            "duration": None, "error": "no rollback action declared",
                            "stderr_tail": None})
            continue
        last = tries[-1]
        actions.append({"step_id": step_id, "action": declared.get(step_id),
                        "status": last["status"], "attempts": len(tries),
                        "started_at": tries[0]["started_at"], "finished_at": last["finished_at"],
                        "duration": _span(tries[0]["started_at"], last["finished_at"]),
                        "error": last["error"], "stderr_tail": last["stderr_tail"]})
    return {"started_at": start.ts, "order": order, "actions": actions}


def _span(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round(end - start, 6)


def _tail(text: str | None) -> str | None:
    if not text:
        return None
    return "\n".join(text.splitlines()[-STDERR_TAIL_LINES:])


def _summary(result: Any) -> str:
    if result is None:
        return ""
    text = json.dumps(result, separators=(", ", ": "), default=str)
    return text if len(text) <= SUMMARY_CHARS else text[:SUMMARY_CHARS - 1] + "…"


# -- renderings -----------------------------------------------------------------------

def render(report: dict[str, Any], fmt: str) -> str:
    """The report in one of FORMATS."""
    if fmt == "json":
        return render_json(report)
    if fmt == "md":
        from .markdown import render_markdown
        return render_markdown(report)
    if fmt == "html":
        from .html import render_html
        return render_html(report)
    raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")


def render_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, default=str) + "\n"
