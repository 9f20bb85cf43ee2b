"""The progress lines of a followed run (cli/progress.py)."""

from __future__ import annotations

import io

from orchestratord.cli.progress import Progress


def _lines(*events: dict) -> list[str]:
    out = io.StringIO()
    progress = Progress(out, live=False)
    for event in events:
        progress({"run_id": "r1", "workflow": "deploy", **event})
    return out.getvalue().splitlines()


def test_a_retry_and_a_missing_sandbox_are_not_read_as_the_step_ending():
    """Regression: every step_* event was printed as the step's end ("? build retry") and
    took the step off the running line while it still ran."""
    out = io.StringIO()
    progress = Progress(out, live=False)
    progress({"type": "step_started", "step_id": "build", "attempt": 1})
    progress({"type": "step_sandbox_unavailable", "step_id": "build", "attempt": 1,
              "reason": "systemd is not PID 1"})
    assert progress.running == {"build": 1}
    progress({"type": "step_retry", "step_id": "build", "attempt": 1, "delay": 2.0})
    assert progress.running == {"build": 1}
    progress({"type": "step_succeeded", "step_id": "build", "status": "succeeded"})
    assert progress.running == {}
    lines = out.getvalue().splitlines()
    assert lines[1] == "  ! build runs without its sandbox: systemd is not PID 1"
    assert lines[2] == "  ↻ build retries in 2.0s"
    assert lines[3].startswith("✓ build succeeded (")
    assert not any("?" in line for line in lines)


def test_a_run_prints_its_start_and_its_end():
    lines = _lines({"type": "run_started"},
                   {"type": "run_failed", "status": "failed", "error": "step build failed"})
    assert lines == ["run r1 of deploy started", "run r1 failed: step build failed"]
