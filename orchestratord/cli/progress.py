"""Run progress for people: a live line on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ..core.durations import format_duration
from ..core.statuses import EventKind, StepStatus, ended_status, event_subject

_MARKS = {StepStatus.SUCCEEDED: "✓", StepStatus.FAILED: "✗", StepStatus.SKIPPED: "-",
          StepStatus.UPSTREAM_FAILED: "✗", StepStatus.CANCELLED: "✗",
          StepStatus.COMPENSATED: "↺", StepStatus.COMPENSATION_FAILED: "✗"}


class Progress:
    """An engine listener that prints what a run does as it happens."""

    def __init__(self, out: TextIO = sys.stderr, *, live: bool | None = None):
        self.out = out
        self.live = out.isatty() if live is None else live
        self.started: dict[str, float] = {}
        self.running: dict[str, int] = {}
        self._line = ""

    def __call__(self, event: dict[str, Any]) -> None:
        kind, step = event["type"], event.get("step_id")
        subject, what = event_subject(kind)
        if kind in (EventKind.STEP_STARTED, EventKind.COMPENSATION_STARTED) and step is not None:
            self.started.setdefault(step, time.monotonic())
            self.running[step] = event.get("attempt", 1)
            if not self.live:
                what = "rollback" if kind == EventKind.COMPENSATION_STARTED else "attempt"
                self._print(f"  … {step} ({what} {event.get('attempt', 1)})")
        elif kind == EventKind.STEP_RETRY and step is not None:
            self._print(f"  ↻ {step} retries in {format_duration(event.get('delay', 0))}")
        elif kind == EventKind.STEP_SANDBOX_UNAVAILABLE and step is not None:
            self._print(f"  ! {step} runs without its sandbox: {event.get('reason', '')}")
        elif isinstance(ended_status(kind), StepStatus) and step is not None:
            self.running.pop(step, None)
            took = time.monotonic() - self.started.pop(step, time.monotonic())
            status = event.get("status", what)
            shown = event.get("error") and status != StepStatus.SKIPPED
            detail = f": {event['error']}" if shown else ""
            count = f"[{event['ended']}/{event['total']}] " if "total" in event else ""
            self._print(f"{count}{_MARKS.get(status, '?')} {step} {status.replace('_', ' ')}"
                        f" ({format_duration(took)}){detail}")
        elif kind in (EventKind.RUN_STARTED, EventKind.RUN_RESUMED):
            self._print(f"run {event['run_id']} of {event['workflow']} "
                        f"{'resumed' if kind == EventKind.RUN_RESUMED else 'started'}")
        elif subject == "run" and kind != EventKind.RUN_CREATED:
            extra = f": {event['error']}" if event.get("error") else ""
            status = event.get("status", what).replace("_", " ")
            self._print(f"run {event['run_id']} {status}{extra}")
        self._draw()

    def _print(self, text: str) -> None:
        if self.live and self._line:
            self.out.write("\r\033[K")
        self.out.write(text + "\n")
        self._line = ""

    def _draw(self) -> None:
        if not self.live:
            self.out.flush()
            return
        line = ", ".join(f"{s}" + (f" (attempt {a})" if a > 1 else "")
                         for s, a in list(self.running.items())[:4])
        line = f"running: {line}" if line else ""
        self.out.write("\r\033[K" + line[:200])
        self._line = line
        self.out.flush()
