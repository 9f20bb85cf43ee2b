"""The execution report as Markdown: for a terminal, a ticket or a chat message.

Rendered from the report model (report.build_report) alone. Text that came from a step
(errors, results, stderr) is escaped for table cells or fenced in code blocks, so a
stray `|` or backtick cannot break the layout.
"""

from __future__ import annotations

import json
from typing import Any

from .formatting import took, when


def render_markdown(report: dict[str, Any]) -> str:
    run = report["run"]
    out = [f"# Run {run['id']} of {_cell(run['workflow'])}: {run['status']}", ""]
    out += _summary(report)
    out += _steps(report["steps"])
    out += _failures(report["failures"], run.get("error"))
    out += _retries(report["retries"])
    out += _rollback(report["rollback"])
    if run["outputs"] is not None:
        out += ["## Outputs", "", *_fenced(json.dumps(run["outputs"], indent=2, default=str),
                                           "json"), ""]
    return "\n".join(out).rstrip() + "\n"


def _summary(report: dict[str, Any]) -> list[str]:
    run, summary = report["run"], report["summary"]
    counts = ", ".join(f"{n} {status.replace('_', ' ')}"
                       for status, n in summary["by_status"].items())
    rows = [
        ("Workflow", _cell(run["workflow"])), ("Run", f"`{run['id']}`"),
        ("Status", f"**{run['status']}**"), ("Definition", _cell(run["file"])),
        ("Started", when(run["started_at"])), ("Finished", when(run["finished_at"])),
        ("Duration", took(run["duration"])),
        ("Steps", f"{summary['steps']} ({counts})" if counts else str(summary["steps"])),
        ("Attempts", f"{summary['attempts']}, of which {summary['retries']} retries"),
    ]
    if summary["compensations"]:
        rows.append(("Rollback attempts", str(summary["compensations"])))
    if run["error"]:
        rows.append(("Error", _cell(run["error"])))
    lines = ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    if run["params"]:
        lines += ["**Params**", "", *_fenced(json.dumps(run["params"], indent=2, default=str),
                                             "json"), ""]
    return lines


def _steps(steps: list[dict[str, Any]]) -> list[str]:
    lines = ["## Steps", "",
             "| Step | Skill.action | Status | Attempts | Duration | Result |",
             "|---|---|---|---:|---:|---|"]
    for s in steps:
        detail = s["result_summary"] or (s["error"] or "")
        routed = f" ({_cell(s['routed'])})" if s.get("routed") else ""
        lines.append(f"| {_cell(s['id'])} | {_cell(s['skill'])}.{_cell(s['action'])}{routed} "
                     f"| {s['status']} | {s['attempts']} | {took(s['duration'])} "
                     f"| {_cell(detail, code=bool(s['result_summary']))} |")
    return lines + [""]


def _failures(failures: list[dict[str, Any]], run_error: str | None) -> list[str]:
    if not failures:
        return []
    lines = ["## Failures", ""]
    for f in failures:
        what = "rollback of " if f["kind"] == "rollback" else ""
        where = f" (attempt {f['attempt']}" + (f", exit status {f['exit_code']}"
                                               if f["exit_code"] is not None else "") + ")" \
            if f["attempt"] else ""
        lines += [f"### {what}{_cell(f['step_id'])}: {f['status'].replace('_', ' ')}", "",
                  f"Reason{where}: {_cell(f['error'] or 'unknown')}", ""]
        if f["stderr_tail"]:
            lines += ["stderr (last lines):", "", *_fenced(f["stderr_tail"]), ""]
    return lines


def _retries(retries: list[dict[str, Any]]) -> list[str]:
    if not retries:
        return []
    lines = ["## Retries", "", "| Step | Attempt | Outcome | Retried after | Error |",
             "|---|---:|---|---:|---|"]
    for r in retries:
        delay = took(r["delay"]) if r["delay"] is not None else "-"
        lines.append(f"| {_cell(r['step_id'])} | {r['attempt']} | {r['status'] or '-'} "
                     f"| {delay} | {_cell(r['error'] or '')} |")
    return lines + [""]


def _rollback(rollback: dict[str, Any] | None) -> list[str]:
    if rollback is None:
        return []
    order = ", ".join(rollback["order"]) or "nothing had succeeded"
    lines = ["## Rollback", "", f"Started {when(rollback['started_at'])}; compensating in "
             f"reverse completion order: {_cell(order)}", "",
             "| Step | Compensation | Status | Attempts | Duration | Error |",
             "|---|---|---|---:|---:|---|"]
    for a in rollback["actions"]:
        action = "-" if a["status"] == "skipped" else a["action"] or "the action's own"
        lines.append(f"| {_cell(a['step_id'])} | {_cell(action)} "
                     f"| {a['status']} | {a['attempts']} | {took(a['duration'])} "
                     f"| {_cell(a['error'] or '')} |")
    return lines + [""]


def _cell(text: Any, *, code: bool = False) -> str:
    """Text safe inside a table cell: one line, pipes escaped."""
    flat = " ".join(str(text).split()).replace("|", "\\|")
    if code and flat:
        ticks = "``" if "`" in flat else "`"
        return f"{ticks} {flat} {ticks}" if ticks == "``" else f"`{flat}`"
    return flat


def _fenced(text: str, lang: str = "") -> list[str]:
    """A code block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in text.split("\n") for run in _backtick_runs(run)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + lang, text, fence]


def _backtick_runs(line: str) -> list[str]:
    runs, current = [], ""
    for ch in line:
        if ch == "`":
            current += ch
        elif current:
            runs.append(current)
            current = ""
    return runs + ([current] if current else [])
