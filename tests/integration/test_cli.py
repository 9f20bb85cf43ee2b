"""orchestratorctl as a process: a workflow file run for real through the embedded engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WORKFLOWS = Path(__file__).parents[2] / "workflows"


def test_run_prints_outputs_and_exit_code(tmp_path):
    """The README's example runs for real through the embedded engine."""
    result = subprocess.run([sys.executable, "-m", "orchestratord.cli", "--state",
                             str(tmp_path / "s.db"), "run", str(WORKFLOWS / "host-facts.yaml"),
                             "-p", "min_free_share=1.5"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)
    assert outputs["enough_space"] is False and 0 <= outputs["free_share"] <= 1
