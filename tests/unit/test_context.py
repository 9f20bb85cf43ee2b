"""The step context: what a command learns from its environment about where it runs."""

from __future__ import annotations

import logging
from pathlib import Path

from orchestratord.engine.context import StepContext, step_logger


def context(run_id: str = "abc123", **settings: object) -> StepContext:
    return StepContext(run_id=run_id, workflow="w", step_id="s", skill="k", action="a",
                       attempt=1, idempotency_key=f"{run_id}/s", log=step_logger("test"),
                       settings=settings)


def test_the_run_workspace_lives_under_the_state_dir_by_run_id(tmp_path: Path) -> None:
    ctx = context(state_dir=str(tmp_path))
    assert ctx.workspace == tmp_path / "workspaces" / "abc123"
    assert ctx.env()["ORCHESTRATOR_WORKSPACE"] == str(tmp_path / "workspaces" / "abc123")
    # Naming it must not create it: most steps never use a workspace.
    assert not (tmp_path / "workspaces").exists()


def test_steps_of_one_run_share_a_workspace_and_runs_do_not(tmp_path: Path) -> None:
    one, same, other = (context("r1", state_dir=str(tmp_path)),
                        context("r1", state_dir=str(tmp_path)),
                        context("r2", state_dir=str(tmp_path)))
    assert one.workspace == same.workspace != other.workspace


def test_no_state_dir_means_no_workspace() -> None:
    ctx = context()
    assert ctx.workspace is None
    assert "ORCHESTRATOR_WORKSPACE" not in ctx.env()


def test_a_records_own_fields_add_to_the_step_loggers() -> None:
    """Regression: LoggerAdapter replaced a call's `extra`, so "step s skipped" records
    lost the STEP_ID they named."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("orchestratord.test_context")
    logger.addHandler(handler)
    try:
        log = step_logger("orchestratord.test_context", WORKFLOW="w", RUN_ID="r1")
        log.warning("step s skipped", extra={"fields": {"STEP_ID": "s", "RUN_ID": "r1"}})
    finally:
        logger.removeHandler(handler)
    [record] = records
    assert record.fields == {"WORKFLOW": "w", "RUN_ID": "r1", "STEP_ID": "s"}
