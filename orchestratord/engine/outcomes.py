"""How steps end unrun (their trigger rule says no) and which status a run ends with."""

from __future__ import annotations

from collections.abc import Mapping, Set

from ..core.statuses import STEP_FAILING, RunStatus, StepStatus


def unrun(rule: str, deps: Mapping[str, str], tolerated: Set[str]) -> tuple[str, str] | None:
    """None if the rule lets the step run, else the (status, reason) it ends with unrun.
    A failed dependency in `tolerated` (continue_on_error) counts as succeeded."""
    failed = [d for d, s in deps.items() if s in STEP_FAILING and d not in tolerated]
    skipped = [d for d, s in deps.items() if s == StepStatus.SKIPPED]
    if rule in ("all_success", "none_failed") and failed:
        return StepStatus.UPSTREAM_FAILED, f"dependency failed: {', '.join(failed)}"
    if rule == "all_success" and skipped:
        return StepStatus.SKIPPED, f"dependency skipped: {', '.join(skipped)}"
    if rule == "one_failed" and not failed:
        return StepStatus.SKIPPED, "no dependency failed (trigger_rule one_failed)"
    return None


def run_ended(stop_reason: str | None, steps: Mapping[str, str], tolerated: Set[str],
              timeout: float | None) -> tuple[str, str | None]:
    """The (status, error) a run whose steps ended so ends with."""
    if stop_reason == RunStatus.TIMED_OUT:
        return RunStatus.TIMED_OUT, f"workflow timeout of {timeout:g} s expired"
    if stop_reason == RunStatus.CANCELLED:
        return RunStatus.CANCELLED, "cancelled on request"
    failed = [s for s, status in steps.items()
              if status == StepStatus.FAILED and s not in tolerated]
    if failed:
        return RunStatus.FAILED, "failed steps: " + ", ".join(failed)
    return RunStatus.SUCCEEDED, None
