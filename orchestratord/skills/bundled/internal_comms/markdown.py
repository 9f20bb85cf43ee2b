"""The Markdown of a status report: a run as stored, for people to read at a glance.

Results are shown in short (a few scalar fields, sizes of lists), because the table is
for scanning; the full results stay in the state database (`orchestratorctl show RUN`).
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable
from typing import Any

FAILED = frozenset({"failed", "upstream_failed", "cancelled", "compensation_failed"})
CELL_MAX = 120
DIGEST = re.compile(r"[0-9a-f]{32,}")  # hashes, commit ids: the first 12 say enough
ERROR_MAX = 2000


def render_report(run: Any, steps: Iterable[Any], *, title: str | None = None,
                  now: float | None = None) -> str:
    """Markdown of run (a store RunRow) and its steps (StepRows), as they stand now."""
    steps = sorted(steps, key=lambda s: s.position)
    lines = [f"# {_inline(title or f'Run {run.id} of {run.workflow}')}", "",
             f"- Workflow: `{run.workflow}`",
             f"- Run: `{run.id}`",
             f"- Status: **{run.status}**",
             f"- Started: {_when(run.started_at or run.created_at)}"]
    if run.finished_at:
        lines.append(f"- Finished: {_when(run.finished_at)}")
    lines.append(f"- Reported: {_when(now)}")
    lines.append(f"- Steps: {_counts(steps)}")
    lines += ["", "| Step | Action | Status | Duration | Attempts | Key results |",
              "|---|---|---|---|---|---|"]
    for s in steps:
        lines.append("| " + " | ".join([
            _cell(s.step_id), _cell(f"{s.skill}.{s.action}"), _cell(s.status),
            _duration(s.started_at, s.finished_at), _attempts(s),
            _cell(summarise(s.result)) or "-"]) + " |")
    failures = [s for s in steps if s.status in FAILED or (s.error and s.status != "succeeded")]
    if failures:
        lines += ["", "## Failures"]
        for s in failures:
            lines += ["", f"### {_inline(s.step_id)} ({s.status})", "",
                      "```text", _fence_safe((s.error or "no error recorded")[:ERROR_MAX]),
                      "```"]
    return "\n".join(lines) + "\n"


def summarise(result: Any, limit: int = CELL_MAX) -> str:
    """A result in one short line: scalar fields as k=v, lists and objects by size."""
    if result is None:
        return ""
    if isinstance(result, dict):
        parts = [f"{key}={_short(value)}" for key, value in result.items()]
        text = ", ".join(parts)
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


def _counts(steps: list[Any]) -> str:
    counts: dict[str, int] = {}
    for s in steps:
        counts[s.status] = counts.get(s.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in counts.items()) or "none"


def _attempts(step: Any) -> str:
    # Failed attempts are news when the step got through in the end (it was retried).
    if step.failed_attempts and step.status not in FAILED:
        return f"{step.attempts} ({step.failed_attempts} failed)"
    return str(step.attempts)


def _duration(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "-"
    seconds = end - start
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes >= 60:
        return f"{minutes // 60}h {minutes % 60:02d}m"
    return f"{minutes}m {seconds:02d}s"


def _when(ts: float | None) -> str:
    when = datetime.datetime.fromtimestamp(ts, datetime.UTC) if ts else \
        datetime.datetime.now(datetime.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(text: str) -> str:
    """Table cell text: one line, pipes escaped so the table keeps its columns."""
    return _inline(text).replace("|", "\\|")


def _inline(text: str) -> str:
    return " ".join(str(text).split())


def _fence_safe(text: str) -> str:
    # A ``` inside an error message would end the code block early.
    return text.replace("```", "'''")
