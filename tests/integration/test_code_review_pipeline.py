"""The example code-review pipeline, unchanged, end to end against a local repository.

`repo: user/repo` in the example means https://github.com/user/repo; git's own URL rewriting
(url.<dir>/.insteadOf, given through GIT_CONFIG_* variables) sends that to a repository
made here, so the run is real and offline. The CLI runs as a subprocess, as a user runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).parents[2]
SEED = ROOT / "workflows" / "code-review-pipeline.yaml"
SKILLS = ROOT / "workflows" / "skills"
# The CLI's entry point, not a console script: the Nix check phase has none beside the
# interpreter.
CTL = [sys.executable, "-m", "orchestratord.cli"]

APP_V1 = 'def greet(name):\n    return f"hello {name}"\n'
# The second commit brings what pyflakes sees: an unused import and an undefined name.
APP_V2 = ('import os\n\n\ndef greet(name):\n    return f"hello {name}"\n\n\n'
          'def fetch(url):\n    return requets.get(url)\n')
PASSING = "from app import greet\n\n\ndef test_greet():\n    assert greet('x') == 'hello x'\n"
FAILING = PASSING + "\n\ndef test_shout():\n    assert greet('x') == 'HELLO X'\n"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True, env=GIT_IDENTITY).stdout.strip()


GIT_IDENTITY = {**os.environ, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.org",
                "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.org"}


def make_repo(path: Path, test_file: str = PASSING) -> list[str]:
    """A repository with two commits; returns their ids, oldest first."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "app.py").write_text(APP_V1)
    (path / "tests").mkdir()
    (path / "tests" / "conftest.py").write_text(
        "import sys, pathlib\nsys.path.insert(0, str(pathlib.Path(__file__).parents[1]))\n")
    (path / "tests" / "test_app.py").write_text(test_file)
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "greet")
    first = git(path, "rev-parse", "HEAD")
    (path / "app.py").write_text(APP_V2)
    (path / "deploy.sh").write_text("#!/bin/sh\nif [ -n \"$1\" ]; then\n  echo ok\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "fetch and deploy")
    return [first, git(path, "rev-parse", "HEAD")]


@pytest.fixture
def github(tmp_path: Path) -> Path:
    """<tmp>/github stands in for https://github.com/."""
    root = tmp_path / "github"
    root.mkdir()
    return root


def environment(github: Path) -> dict[str, str]:
    return {**os.environ,
            # python3 of the skills' shebangs is this environment's, with pyflakes and pytest.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{github}/.insteadOf",
            "GIT_CONFIG_VALUE_0": "https://github.com/"}


def ctl(tmp_path: Path, github: Path, *args: str) -> subprocess.CompletedProcess:
    # --skills: the workflows made here use the skills beside the example workflows.
    return subprocess.run([*CTL, "--state", str(tmp_path / "state" / "state.db"),
                           "--skills", str(SKILLS), *args],
                          cwd=tmp_path, env=environment(github), capture_output=True, text=True,
                          timeout=240)


def run_and_show(tmp_path: Path, github: Path, *args: str) -> tuple[dict, dict[str, Any]]:
    """Run a workflow; returns (run result, steps by id as stored)."""
    done = ctl(tmp_path, github, "run", *args, "--json")
    assert done.stdout, done.stderr
    result = json.loads(done.stdout)
    shown = ctl(tmp_path, github, "show", result["run_id"], "--json")
    assert shown.returncode == 0, shown.stderr
    return result, {s["step_id"]: s for s in json.loads(shown.stdout)["steps"]}


def test_the_example_pipeline_imports_reviews_tests_and_reports(tmp_path: Path, github: Path) -> None:
    commits = make_repo(github / "user" / "repo")

    result, steps = run_and_show(tmp_path, github, str(SEED))

    assert result["status"] == "succeeded", (result, {k: s["error"] for k, s in steps.items()})
    assert list(steps) == ["project-import", "code-review", "webapp-testing", "internal-comms"]
    assert all(s["status"] == "succeeded" for s in steps.values())

    imported = steps["project-import"]["result"]
    workspace = tmp_path / "state" / "workspaces" / result["run_id"]
    assert imported["path"] == str(workspace)
    assert imported["commit"] == commits[1] == git(workspace, "rev-parse", "HEAD")
    assert imported["branch"] == "main"
    assert imported["source"] == "https://github.com/user/repo"

    review = steps["code-review"]["result"]
    assert review["head"] == commits[1] and review["base"] == commits[0]
    # app.py: 9 lines where there were 2 (both kept); deploy.sh: 3 new lines.
    assert {(f["path"], f["status"], f["insertions"], f["deletions"]) for f in review["files"]} \
        == {("app.py", "M", 7, 0), ("deploy.sh", "A", 3, 0)}
    assert (review["files_changed"], review["insertions"], review["deletions"]) == (2, 10, 0)
    assert review["linters"]["python"] == "pyflakes"
    findings = {(f["file"], f["line"], f["message"]) for f in review["findings"]}
    assert ("app.py", 1, "'os' imported but unused") in findings
    assert ("app.py", 9, "undefined name 'requets'") in findings
    assert any(f == "deploy.sh" and "end of file" in m for f, _, m in findings), findings
    assert "+    return requets.get(url)" in review["diff"]

    tests = steps["webapp-testing"]["result"]
    assert tests["ok"] is True and tests["skipped"] is False
    assert (tests["passed"], tests["failed"], tests["errors"]) == (1, 0, 0)
    assert tests["exit_code"] == 0 and tests["command"].endswith("-m pytest -q")

    report_path = Path(steps["internal-comms"]["result"]["path"])
    report = report_path.read_text()
    for step_id in steps:
        assert step_id in report
    assert commits[1][:12] in report or commits[1] in report


def test_a_missing_repository_fails_the_import_clearly_and_is_not_retried(
        tmp_path: Path, github: Path) -> None:
    (tmp_path / "wf.yaml").write_text(
        "workflow:\n  name: import-missing\n  steps:\n"
        "    - {skill: project-import, action: import_github, params: {repo: user/missing}}\n")

    result, steps = run_and_show(tmp_path, github, str(tmp_path / "wf.yaml"))

    assert result["status"] == "failed"
    step = steps["project-import"]
    assert step["status"] == "failed" and step["attempts"] == 1
    assert "repository https://github.com/user/missing not found" in step["error"]


def test_failing_tests_fail_the_step_with_their_counts(tmp_path: Path, github: Path) -> None:
    make_repo(github / "user" / "repo", test_file=FAILING)
    (tmp_path / "wf.yaml").write_text(
        "workflow:\n  name: tests-fail\n  steps:\n"
        "    - {skill: project-import, action: import_github, params: {repo: user/repo}}\n"
        "    - {skill: webapp-testing, action: run_tests}\n")

    result, steps = run_and_show(tmp_path, github, str(tmp_path / "wf.yaml"))

    assert result["status"] == "failed"
    step = steps["webapp-testing"]
    assert step["status"] == "failed" and step["attempts"] == 1
    assert "tests failed: 1 passed, 1 failed" in step["error"]
    assert "-m pytest -q" in step["error"]
    assert (step["result"]["ok"], step["result"]["passed"], step["result"]["failed"]) == (
        False, 1, 1)
