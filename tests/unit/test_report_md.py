"""The Markdown report's rendering of a report model, without a run behind it."""

from __future__ import annotations

from orchestratord.reports.formatting import when
from orchestratord.reports.markdown import render_markdown


def test_markdown_cells_survive_pipes_and_backticks():
    model = {
        "run": {"id": "r1", "workflow": "w", "status": "failed", "file": "w.yaml",
                "created_at": 0.0, "started_at": 0.0, "finished_at": 1.0, "duration": 1.0,
                "params": {}, "outputs": None, "error": "a | b"},
        "summary": {"steps": 1, "by_status": {"failed": 1}, "attempts": 1, "retries": 0,
                    "failed_steps": ["s"], "compensations": 0},
        "steps": [{"id": "s", "skill": "k", "action": "a", "status": "failed", "attempts": 1,
                   "duration": 1.0, "result_summary": "", "error": "x | y\nz"}],
        "failures": [{"step_id": "s", "kind": "action", "status": "failed", "error": "x | y",
                      "attempt": 1, "exit_code": 1, "stderr_tail": "```\nfence"}],
        "retries": [], "rollback": None,
    }
    md = render_markdown(model)
    assert "| s | k.a | failed | 1 | 1.0s | x \\| y z |" in md
    assert "````\n```\nfence\n````" in md  # the fence outgrows the backticks inside


def test_a_brief_report_of_a_run_in_progress():
    """The status message internal-comms posts: a list, key fields, retries in the cell,
    and the moment the report was taken (the run has not finished)."""
    model = {
        "generated_at": 100.0,
        "run": {"id": "r1", "workflow": "w", "status": "running", "file": "w.yaml",
                "created_at": 0.0, "started_at": 0.0, "finished_at": None, "duration": None,
                "params": {"a": 1}, "outputs": None, "error": None},
        "summary": {"steps": 1, "by_status": {"succeeded": 1}, "attempts": 2, "retries": 1,
                    "failed_steps": [], "compensations": 0},
        "steps": [{"id": "s", "skill": "k", "action": "a", "status": "succeeded",
                   "attempts": 2, "retries": 1, "duration": 0.5, "error": None,
                   "result": {"commit": "ab" * 20, "files": [1, 2]},
                   "result_summary": '{"commit": "abab…"}'}],
        "failures": [], "retries": [{"step_id": "s", "attempt": 1, "status": "failed",
                                     "delay": 0.0, "error": "x"}], "rollback": None,
    }
    md = render_markdown(model, title="Nightly", brief=True)
    assert md.startswith("# Nightly\n\n- Workflow: w\n")
    assert f"- Reported: {when(100.0)}\n" in md
    assert "| s | k.a | succeeded | 2 (1 failed) | 500ms | commit=abababababab, files=[2 items] |" \
        in md
    assert "## Retries" not in md and "**Params**" not in md
    assert "| Reported |" in render_markdown(model)  # the full shape says when, too
