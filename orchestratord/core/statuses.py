"""Statuses of runs, steps and attempts, the event kinds of the event log, and the exit
codes of orchestratorctl and orchestrator@NAME.service: each defined once, here.

They are StrEnum/IntEnum so that they compare equal to, and are stored as, the plain
strings and numbers the database, the API, the journal and older state files hold.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Literal


class RunStatus(StrEnum):
    """Where a run is (runs.status)."""

    PENDING = "pending"                  # created, no driver has started it yet
    RUNNING = "running"                  # a driver holds its lease and runs steps (or rolls back)
    SUCCEEDED = "succeeded"              # every step ended well and the outputs rendered
    FAILED = "failed"                    # a step failed (and on_failure is not rollback)
    CANCELLED = "cancelled"              # stopped on request
    TIMED_OUT = "timed_out"              # the workflow's timeout passed
    ROLLED_BACK = "rolled_back"          # it failed and every compensation succeeded
    ROLLBACK_FAILED = "rollback_failed"  # it failed and a compensation failed too
    INTERRUPTED = "interrupted"          # its host stopped mid-run; resumable


class StepStatus(StrEnum):
    """Where a step of a run is (steps.status)."""

    PENDING = "pending"                          # not started (or reset for a resume)
    RUNNING = "running"                          # an attempt of its action is under way
    SUCCEEDED = "succeeded"                      # its action succeeded
    FAILED = "failed"                            # its action failed for good
    SKIPPED = "skipped"                          # its `when` or trigger rule said no
    UPSTREAM_FAILED = "upstream_failed"          # a step it depends on failed
    CANCELLED = "cancelled"                      # the run was stopped while it waited or ran
    COMPENSATED = "compensated"                  # rolled back: its compensation succeeded
    COMPENSATION_FAILED = "compensation_failed"  # rolled back: its compensation failed


class AttemptStatus(StrEnum):
    """How one attempt of an action (or a compensation) went (attempts.status)."""

    RUNNING = "running"          # under way
    SUCCEEDED = "succeeded"      # returned a result
    FAILED = "failed"            # failed (retryable or not: the step's retry policy decides)
    TIMEOUT = "timeout"          # ran past its timeout and was stopped
    CANCELLED = "cancelled"      # the run was cancelled or timed out while it ran
    INTERRUPTED = "interrupted"  # its process died with its driver; re-run on resume


# A run in one of these has ended; it is resumed only as a redrive of its failed steps.
TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED,
                      RunStatus.TIMED_OUT, RunStatus.ROLLED_BACK, RunStatus.ROLLBACK_FAILED})
# Where following a run stops: it ended, or its host stopped under it.
FINAL = TERMINAL | {RunStatus.INTERRUPTED}
# Ended for good: their steps are not run again, so resuming has nothing to do.
FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.ROLLED_BACK, RunStatus.ROLLBACK_FAILED})

# A step in one of these has ended (its dependents may be considered).
STEP_ENDED = frozenset({StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED,
                        StepStatus.UPSTREAM_FAILED, StepStatus.CANCELLED})
# Ended steps that fail their run (unless continue_on_error tolerates them).
STEP_FAILING = frozenset({StepStatus.FAILED, StepStatus.UPSTREAM_FAILED, StepStatus.CANCELLED})
# Steps whose action succeeded (a rolled-back step's did, before its compensation ran);
# a tuple, as its order is that of the SQL of the stats index (store/stats.py).
ACTION_SUCCEEDED = (StepStatus.SUCCEEDED, StepStatus.COMPENSATED,
                    StepStatus.COMPENSATION_FAILED)
# Steps whose own error reports and alerts explain: an upstream_failed step's cause is
# the step it depends on, which is listed itself.
STEP_FAILURES = frozenset({StepStatus.FAILED, StepStatus.CANCELLED,
                           StepStatus.COMPENSATION_FAILED})


class EventKind(StrEnum):
    """The kinds of the append-only event log (events.type); triggers project them onto
    the runs, steps and attempts tables (store/migrations.py)."""

    RUN_CREATED = "run_created"                            # the run row was written
    RUN_STARTED = "run_started"                            # a driver began it
    RUN_RESUMED = "run_resumed"                            # a driver took it up again
    RUN_SUCCEEDED = "run_succeeded"                        # ended: succeeded
    RUN_FAILED = "run_failed"                              # ended: failed
    RUN_CANCELLED = "run_cancelled"                        # ended: cancelled
    RUN_TIMED_OUT = "run_timed_out"                        # ended: timed out
    RUN_ROLLED_BACK = "run_rolled_back"                    # ended: rolled back
    RUN_ROLLBACK_FAILED = "run_rollback_failed"            # ended: rollback failed
    RUN_INTERRUPTED = "run_interrupted"                    # its host stopped under it
    RUN_CANCEL_REQUESTED = "run_cancel_requested"          # someone asked to cancel it
    RUN_ROLLING_BACK = "run_rolling_back"                  # it compensates from here on
    RUN_REDRIVE = "run_redrive"                            # failed steps reset for a resume
    RUN_RECOVERED = "run_recovered"                        # in-flight steps reset for a resume
    STEP_STARTED = "step_started"                          # an attempt of the action began
    COMPENSATION_STARTED = "compensation_started"          # an attempt of the rollback began
    ATTEMPT_PROCESS = "attempt_process"                    # the attempt's process identity
    ATTEMPT_FAILED = "attempt_failed"                      # an attempt failed
    STEP_RETRY = "step_retry"                              # a retry is scheduled
    STEP_SUCCEEDED = "step_succeeded"                      # the step ended: succeeded
    STEP_FAILED = "step_failed"                            # the step ended: failed
    STEP_SKIPPED = "step_skipped"                          # the step ended: skipped
    STEP_UPSTREAM_FAILED = "step_upstream_failed"          # the step ended: upstream failed
    STEP_CANCELLED = "step_cancelled"                      # the step ended: cancelled
    STEP_COMPENSATED = "step_compensated"                  # its compensation succeeded
    STEP_COMPENSATION_FAILED = "step_compensation_failed"  # its compensation failed
    STEP_SANDBOX_UNAVAILABLE = "step_sandbox_unavailable"  # ran without its systemd unit

    @classmethod
    def run_ended(cls, status: str) -> EventKind:
        """The event that ends a run with this status."""
        return cls(f"run_{status}")

    @classmethod
    def step_ended(cls, status: str) -> EventKind:
        """The event that ends a step with this status."""
        return cls(f"step_{status}")


def event_subject(kind: str) -> tuple[Literal["run", "step"] | None, str]:
    """What an event of this kind is about, "run" or "step", and what happened to it:
    ("step", "retry") for step_retry, ("run", "timed_out") for run_timed_out; (None,
    kind) for the kinds of attempts (attempt_failed, compensation_started). A kind this
    version does not know (a newer daemon's) is split alike."""
    subject, underscore, what = kind.partition("_")
    if underscore and subject == "run":
        return "run", what
    if underscore and subject == "step":
        return "step", what
    return None, kind


def ended_status(kind: str) -> RunStatus | StepStatus | None:
    """The status an event of this kind leaves its run or step in: RunStatus.FAILED for
    run_failed, StepStatus.FAILED for step_failed (they compare equal: tell them apart
    by type); None for the kinds that end nothing (run_created, step_started, step_retry)."""
    subject, what = event_subject(kind)
    if subject is None or kind not in _EVENT_KINDS:
        return None
    statuses = RunStatus if subject == "run" else StepStatus
    try:
        return statuses(what)
    except ValueError:
        return None


_EVENT_KINDS = frozenset(EventKind)


class ExitCode(IntEnum):
    """Exit statuses of orchestratorctl and of orchestrator@NAME.service (README.md)."""

    SUCCEEDED = 0         # the run (or command) succeeded
    FAILED = 1            # the run failed
    INVALID = 2           # invalid input: definition, params, usage
    CANCELLED = 3         # the run was cancelled
    TIMED_OUT = 4         # the run timed out
    ROLLED_BACK = 5       # the run failed and was rolled back
    ROLLBACK_FAILED = 6   # the run failed and its rollback failed too
    CANNOT_PROCEED = 7    # state database, lease held by another process, run state
    CONFIG = 78           # EX_CONFIG: the daemon's settings are unusable
    INTERRUPTED = 130     # the run was interrupted (resumable), as after SIGINT

    @classmethod
    def of_run(cls, status: str) -> ExitCode:
        """The exit status that reports a run's outcome; a status this version does not
        know (a newer daemon's) is a failure."""
        return cls.__members__.get(status.upper(), cls.FAILED)
