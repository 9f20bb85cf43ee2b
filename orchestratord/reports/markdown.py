"""The execution report as Markdown: for a terminal, a ticket or a chat message.

Rendered from the report model (report.build_report) alone. Text that came from a step
(errors, results, stderr) is escaped for table cells or fenced in code blocks, so a
stray `|` or backtick cannot break the layout.

Two shapes of one rendering: the full report (`orchestratorctl report`) and, with
`brief`, the status message internal-comms writes and posts while the run goes on.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..core.durations import format_duration
from ..core.statuses import STEP_FAILURES, StepStatus
from .formatting import when

CELL_MAX = 120
DIGEST = re.compile(r"[0-9a-f]{32,}")  # hashes, commit ids: the first 12 say enough


def render_markdown(report: dict[str, Any], *, title: str | None = None,
                    brief: bool = False) -> str:
    """The report as Markdown; `title` replaces the heading.

    `brief` is a status message for people scanning a chat or a ticket: the summary as
    a list, results as a few key fields, retries counted in the Attempts column, and no
    params, Retries or Outputs sections. Failures and a rollback are told in full in
    both shapes.
    """
    run = report["run"]
    heading = title or f"Run {run['id']} of {run['workflow']}: {run['status']}"
    out = [f"# {_inline(heading)}", ""]
    out += _summary(report, brief)
    out += _steps(report["steps"], brief)
    out += _failures(report["failures"], run.get("error"))
    if not brief:
        out += _retries(report["retries"])
    out += _rollback(report["rollback"])
    if run["outputs"] is not None and not brief:
        out += ["## Outputs", "", *_fenced(json.dumps(run["outputs"], indent=2, default=str),
                                           "json"), ""]
    return "\n".join(out).rstrip() + "\n"


def key_fields(result: Any, limit: int = CELL_MAX) -> str:
    """A result in one short line: scalar fields as k=v, lists and objects by size."""
    if result is None:
        return ""
    if isinstance(result, dict):
        text = ", ".join(f"{key}={_short(value)}" for key, value in result.items())
    else:
        text = _short(result, 200)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _short(value: Any, limit: int = 40) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, list):
        return f"[{len(value)} items]" if len(value) != 1 else "[1 item]"
    if isinstance(value, dict):
        return f"{{{len(value)} keys}}"
    text = str(value)
    if DIGEST.fullmatch(text):
        return text[:12]
    if len(text) <= limit:
        return text
    # Of a long path the end says most (the file); of other text, the beginning.
    return "…" + text[-(limit - 1):] if text.startswith("/") else text[:limit - 1] + "…"


def _summary(report: dict[str, Any], brief: bool) -> list[str]:
    run, summary = report["run"], report["summary"]
    counts = ", ".join(f"{n} {status.replace('_', ' ')}"
                       for status, n in summary["by_status"].items())
    rows = [
        ("Workflow", _cell(run["workflow"])), ("Run", f"`{run['id']}`"),
        ("Status", f"**{run['status']}**"), ("Definition", _cell(run["file"])),
        ("Started", when(run["started_at"])), ("Finished", when(run["finished_at"])),
        # A run still going: the report tells it as it stood at this moment.
        *([("Reported", when(report["generated_at"]))] if run["finished_at"] is None else []),
        ("Duration", format_duration(run["duration"])),
        ("Steps", f"{summary['steps']} ({counts})" if counts else str(summary["steps"])),
        ("Attempts", f"{summary['attempts']}, of which {summary['retries']} retries"),
    ]
    if summary["compensations"]:
        rows.append(("Rollback attempts", str(summary["compensations"])))
    if run["error"]:
        rows.append(("Error", _cell(run["error"])))
    if brief:
        return [*(f"- {k}: {v}" for k, v in rows), ""]
    lines = ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows), ""]
    if run["params"]:
        lines += ["**Params**", "", *_fenced(json.dumps(run["params"], indent=2, default=str),
                                             "json"), ""]
    return lines


def _steps(steps: list[dict[str, Any]], brief: bool) -> list[str]:
    lines = ["## Steps", "",
             "| Step | Skill.action | Status | Attempts | Duration | Result |",
             "|---|---|---|---:|---:|---|"]
    for s in steps:
        result = key_fields(s["result"]) if brief else s["result_summary"]
        detail = result or (s["error"] or "")
        routed = f" ({_cell(s['routed'])})" if s.get("routed") else ""
        attempts = str(s["attempts"])
        # Without a Retries section, failed tries are news when the step got through.
        if brief and s["retries"] and s["status"] not in STEP_FAILURES:
            attempts += f" ({s['retries']} failed)"
        lines.append(f"| {_cell(s['id'])} | {_cell(s['skill'])}.{_cell(s['action'])}{routed} "
                     f"| {s['status']} | {attempts} | {format_duration(s['duration'])} "
                     f"| {_cell(detail, code=bool(result) and not brief)} |")
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
        lines.append(f"| {_cell(r['step_id'])} | {r['attempt']} | {r['status'] or '-'} "
                     f"| {format_duration(r['delay'])} | {_cell(r['error'] or '')} |")
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
        action = "-" if a["status"] == StepStatus.SKIPPED else a["action"] or "the action's own"
        lines.append(f"| {_cell(a['step_id'])} | {_cell(action)} "
                     f"| {a['status']} | {a['attempts']} | {format_duration(a['duration'])} "
                     f"| {_cell(a['error'] or '')} |")
    return lines + [""]


def _inline(text: Any) -> str:
    return " ".join(str(text).split())


def _cell(text: Any, *, code: bool = False) -> str:
    """Text safe inside a table cell: one line, pipes escaped."""
    flat = _inline(text).replace("|", "\\|")
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
