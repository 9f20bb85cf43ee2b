"""A test whose tool or extra is missing skips here and fails under CI=true."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pytest_without_mcp(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    """The MCP tests in a child pytest where the SDK cannot be imported."""
    (tmp_path / "no_mcp.py").write_text("import sys\nsys.modules['mcp'] = None  # unimportable\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no_mcp",
                           "-p", "no:cacheprovider", "-p", "no:randomly",
                           "tests/integration/test_mcp_hostile.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_without_the_mcp_extra_its_tests_skip_and_say_why(tmp_path: Path) -> None:
    done = pytest_without_mcp(tmp_path, ci=None)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " skipped" in done.stdout and " failed" not in done.stdout, done.stdout


def test_under_ci_a_missing_mcp_extra_fails_its_tests(tmp_path: Path) -> None:
    """Regression: importorskip skipped the MCP tests on CI too, where the extra must be
    installed, so a broken install passed unnoticed."""
    done = pytest_without_mcp(tmp_path, ci="true")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Python module mcp is not installed (the MCP SDK" in done.stdout
    assert "CI=true: this test must run there" in done.stdout
