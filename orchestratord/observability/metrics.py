"""Prometheus metrics of runs and steps, fed by the engine's events.

`Metrics` is an engine listener that owns its own CollectorRegistry: a process may hold
several engines (tests do), and the global registry would mix their counts and refuse
a second set of the same names. Counters count what this process saw since it started,
as Prometheus expects (rates survive restarts through `rate()`); the one value that
must survive a restart, the last success of each workflow, is loaded from the state
database at start-up.

Durations are measured here with a monotonic clock, from a step's first attempt to its
end (back-off waits included, as an operator waiting for it experiences it) and from a
run's start (or resume) to its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from ..core.statuses import FINAL, STEP_ENDED, EventKind, RunStatus, event_subject
from ..core.version import __version__

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Steps run from milliseconds (python actions) to hours (a NixOS rebuild); runs longer.
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
RUN_BUCKETS = (0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)

ROLLBACK_OUTCOME = {RunStatus.ROLLED_BACK: "succeeded", RunStatus.ROLLBACK_FAILED: "failed"}


class Metrics:
    """An engine listener keeping Prometheus metrics; `exposition()` renders them."""

    def __init__(self, *, version: str = __version__,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time):
        self.registry = CollectorRegistry(auto_describe=True)
        self.clock, self.wall_clock = clock, wall_clock
        r, p = self.registry, "orchestrator"
        Info(f"{p}_build", "Version of orchestratord", registry=r).info({"version": version})
        self.runs_started = Counter(f"{p}_runs_started", "Runs started (not resumed)",
                                    ["workflow"], registry=r)
        self.runs_finished = Counter(f"{p}_runs_finished", "Runs that reached a final status",
                                     ["workflow", "outcome"], registry=r)
        self.steps_finished = Counter(f"{p}_steps_finished", "Steps that reached a final status",
                                      ["workflow", "skill", "action", "outcome"], registry=r)
        self.step_attempts = Counter(f"{p}_step_attempts", "Attempts of step actions started",
                                     ["skill", "action"], registry=r)
        self.step_retries = Counter(f"{p}_step_retries",
                                    "Attempts that retried an action after a failed attempt",
                                    ["skill", "action"], registry=r)
        self.step_duration = Histogram(f"{p}_step_duration_seconds",
                                       "Time from a step's first attempt to its end",
                                       ["skill", "action"], buckets=STEP_BUCKETS, registry=r)
        self.run_duration = Histogram(f"{p}_run_duration_seconds",
                                      "Time from a run's start or resume to its end",
                                      ["workflow"], buckets=RUN_BUCKETS, registry=r)
        self.runs_in_progress = Gauge(f"{p}_runs_in_progress", "Runs being driven now",
                                      ["workflow"], registry=r)
        self.steps_in_progress = Gauge(f"{p}_steps_in_progress",
                                       "Steps started and not yet ended", registry=r)
        self.rollbacks = Counter(f"{p}_rollbacks", "Rollbacks of failed runs by outcome",
                                 ["workflow", "outcome"], registry=r)
        self.last_success = Gauge(f"{p}_last_success_timestamp_seconds",
                                  "When the workflow last succeeded (Unix time)",
                                  ["workflow"], registry=r)
        self._runs: dict[str, tuple[str, float]] = {}      # run id -> (workflow, start)
        self._steps: dict[str, dict[str, float]] = {}      # run id -> step id -> start

    # -- feeding ------------------------------------------------------------------------

    def __call__(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type", "")
        subject, _ = event_subject(kind)
        if kind in (EventKind.RUN_STARTED, EventKind.RUN_RESUMED):
            self._run_began(event, resumed=kind == EventKind.RUN_RESUMED)
        elif kind == EventKind.STEP_STARTED:
            self._attempt_began(event)
        elif subject == "step" and event.get("status") in STEP_ENDED:
            self._step_ended(event)
        elif subject == "run" and event.get("status") in FINAL:
            self._run_ended(event)

    def _run_began(self, event: Mapping[str, Any], *, resumed: bool) -> None:
        run_id, workflow = event["run_id"], event["workflow"]
        if run_id in self._runs:  # a second start of a run we drive: not a new run
            return
        if not resumed:
            self.runs_started.labels(workflow).inc()
        self._runs[run_id] = (workflow, self.clock())
        self._steps[run_id] = {}
        self.runs_in_progress.labels(workflow).inc()

    def _attempt_began(self, event: Mapping[str, Any]) -> None:
        skill, action = event.get("skill", ""), event.get("action", "")
        self.step_attempts.labels(skill, action).inc()
        steps = self._steps.setdefault(event["run_id"], {})
        if event["step_id"] in steps:
            self.step_retries.labels(skill, action).inc()
        else:
            steps[event["step_id"]] = self.clock()
            self.steps_in_progress.inc()

    def _step_ended(self, event: Mapping[str, Any]) -> None:
        skill, action = event.get("skill", ""), event.get("action", "")
        self.steps_finished.labels(event["workflow"], skill, action, event["status"]).inc()
        started = self._steps.get(event["run_id"], {}).pop(event["step_id"], None)
        if started is not None:  # steps skipped or failed upstream never ran: no duration
            self.step_duration.labels(skill, action).observe(max(0.0, self.clock() - started))
            self.steps_in_progress.dec()

    def _run_ended(self, event: Mapping[str, Any]) -> None:
        run_id, status = event["run_id"], event["status"]
        workflow, started = self._runs.pop(run_id, (event["workflow"], None))
        self.steps_in_progress.dec(len(self._steps.pop(run_id, {})))
        if started is not None:
            self.runs_in_progress.labels(workflow).dec()
        if status == RunStatus.INTERRUPTED:  # resumed later; neither finished nor failed
            return
        self.runs_finished.labels(workflow, status).inc()
        if started is not None:
            self.run_duration.labels(workflow).observe(max(0.0, self.clock() - started))
        if status in ROLLBACK_OUTCOME:
            self.rollbacks.labels(workflow, ROLLBACK_OUTCOME[status]).inc()
        if status == RunStatus.SUCCEEDED:
            self.last_success.labels(workflow).set(self.wall_clock())

    def load_last_success(self, last: Mapping[str, float]) -> None:
        """Seed the last success per workflow (from the state database at start-up)."""
        for workflow, ts in last.items():
            self.last_success.labels(workflow).set(ts)

    # -- reading ------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The metrics in the Prometheus text format (serve with CONTENT_TYPE)."""
        return generate_latest(self.registry)
