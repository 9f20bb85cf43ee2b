"""The Markdown report's rendering of a report model, without a run behind it."""

from __future__ import annotations

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
    assert "| s | k.a | failed | 1 | 1.0 s | x \\| y z |" in md
    assert "````\n```\nfence\n````" in md  # the fence outgrows the backticks inside
