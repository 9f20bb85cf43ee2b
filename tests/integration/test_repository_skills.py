"""The code-review pipeline's command skills, each run as the runner runs it.

Params go in as JSON on stdin, the result comes out on stdout, and the exit status says
ok (0), retryable (75) or failed; real git repositories, real test suites, real sockets.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.test_code_review_pipeline import FAILING, GIT_IDENTITY, git, make_repo
from tests.waiting import died_sync

SKILLS = Path(__file__).parents[2] / "workflows" / "skills"
IMPORT = SKILLS / "project-import" / "import_github.py"
REVIEW = SKILLS / "code-review" / "review_changes.py"
TESTS = SKILLS / "webapp-testing" / "run_tests.py"


def run(script: Path, params: dict[str, Any], workspace: Path | None = None,
        **env: str) -> tuple[int, Any, str]:
    """(exit status, result or None, stderr) of one run of a skill script."""
    environ = {**GIT_IDENTITY, **env,
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    environ.pop("ORCHESTRATOR_WORKSPACE", None)
    if workspace is not None:
        environ["ORCHESTRATOR_WORKSPACE"] = str(workspace)
    done = subprocess.run([str(script)], input=json.dumps(params), capture_output=True,
                          text=True, cwd=script.parent, env=environ, timeout=120)
    result = json.loads(done.stdout) if done.returncode == 0 else None
    return done.returncode, result, done.stderr


def last_line(stderr: str) -> str:
    """What the step's error message shows."""
    return stderr.strip().splitlines()[-1]


# -- project-import ------------------------------------------------------------------------

def test_import_a_local_path_then_again_into_the_same_workspace(tmp_path: Path) -> None:
    commits = make_repo(tmp_path / "origin")
    workspace = tmp_path / "ws"

    code, first, _ = run(IMPORT, {"repo": str(tmp_path / "origin")}, workspace)
    assert code == 0 and first["commit"] == commits[1] and first["updated"] is False
    (workspace / "leftover.txt").write_text("from an earlier attempt")

    # A retry lands in what the first attempt left and ends at the same place.
    code, again, _ = run(IMPORT, {"repo": str(tmp_path / "origin")}, workspace)
    assert code == 0 and again["commit"] == commits[1] and again["updated"] is True
    assert not (workspace / "leftover.txt").exists()


def test_import_a_tag_or_commit_detaches(tmp_path: Path) -> None:
    commits = make_repo(tmp_path / "origin")
    git(tmp_path / "origin", "tag", "v1", commits[0])
    code, tagged, _ = run(IMPORT, {"repo": str(tmp_path / "origin"), "ref": "v1"}, tmp_path / "a")
    assert code == 0 and (tagged["commit"], tagged["branch"]) == (commits[0], None)
    code, pinned, _ = run(IMPORT, {"repo": str(tmp_path / "origin"), "ref": commits[0][:10]},
                          tmp_path / "b")
    assert code == 0 and pinned["commit"] == commits[0]


def test_import_an_unknown_ref_fails_naming_it(tmp_path: Path) -> None:
    make_repo(tmp_path / "origin")
    code, _, stderr = run(IMPORT, {"repo": str(tmp_path / "origin"), "ref": "nope"}, tmp_path / "ws")
    assert code == 1
    assert last_line(stderr) == f"params.ref: 'nope' is not a branch, tag or commit of {tmp_path / 'origin'}"


def test_an_unreachable_remote_is_retryable(tmp_path: Path) -> None:
    # Bound and held, never listened on: refused for as long as the socket is open (a
    # port let go before the run could be taken by another process meanwhile).
    with socket.socket() as unlistened:
        unlistened.bind(("127.0.0.1", 0))
        port = unlistened.getsockname()[1]
        code, _, stderr = run(IMPORT, {"repo": f"http://127.0.0.1:{port}/user/repo.git"},
                              tmp_path / "ws")
    assert code == 75
    assert last_line(stderr).startswith(f"cannot reach http://127.0.0.1:{port}/user/repo.git")


def test_import_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    make_repo(tmp_path / "origin")
    mine = tmp_path / "mine"
    make_repo(mine)
    code, _, stderr = run(IMPORT, {"repo": str(tmp_path / "origin")}, mine)
    assert code == 1 and "project-import did not create" in last_line(stderr)
    code, _, stderr = run(IMPORT, {"repo": "not a repo"}, tmp_path / "ws")
    assert code == 1 and last_line(stderr).startswith("params.repo: 'not a repo' is not a URL")


# -- code-review ---------------------------------------------------------------------------

def test_review_a_range_and_a_root_commit(tmp_path: Path) -> None:
    commits = make_repo(tmp_path / "repo")
    code, root, _ = run(REVIEW, {"path": str(tmp_path / "repo"), "head": commits[0]})
    assert code == 0 and root["base"] is None and root["findings"] == []
    assert {f["path"] for f in root["files"]} == {"app.py", "tests/conftest.py",
                                                  "tests/test_app.py"}

    code, both, _ = run(REVIEW, {"path": str(tmp_path / "repo"), "base": commits[0]})
    assert code == 0 and both["head"] == commits[1] and both["files_changed"] == 2


def test_review_can_fail_on_findings(tmp_path: Path) -> None:
    make_repo(tmp_path / "repo")
    code, _, stderr = run(REVIEW, {"path": str(tmp_path / "repo"), "fail_on_findings": True})
    assert code == 1
    assert last_line(stderr) == ("review found problems: 2 files changed, 10 insertions(+), "
                                 "0 deletions(-); 3 findings")


def test_review_without_a_repository_says_what_to_do(tmp_path: Path) -> None:
    code, _, stderr = run(REVIEW, {}, tmp_path / "never-made")
    assert code == 1 and "import a repository first" in last_line(stderr)
    code, _, stderr = run(REVIEW, {"path": str(tmp_path)})
    assert code == 1 and last_line(stderr) == f"params.path: {tmp_path} is not a git repository"


# -- webapp-testing ------------------------------------------------------------------------

def test_failing_tests_report_their_counts(tmp_path: Path) -> None:
    make_repo(tmp_path / "repo", test_file=FAILING)
    code, _, stderr = run(TESTS, {}, tmp_path / "repo")
    assert code == 1
    assert last_line(stderr).startswith("tests failed: 1 passed, 1 failed (exit status 1: ")
    assert "FAILED tests/test_app.py::test_shout" in stderr   # the output reached the log


def test_a_makefile_test_target_comes_first(tmp_path: Path) -> None:
    make_repo(tmp_path / "repo")
    (tmp_path / "repo" / "Makefile").write_text(
        "test:\n\t@echo '3 passed, 1 skipped in 0.01s'\n")
    code, result, _ = run(TESTS, {"path": str(tmp_path / "repo")})
    assert code == 0 and result["command"] == "make test"
    assert (result["passed"], result["skipped_tests"]) == (3, 1)


def test_nothing_to_run_is_skipped_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("no tests here\n")
    code, result, _ = run(TESTS, {"path": str(tmp_path)})
    assert code == 0 and result["skipped"] is True and result["ok"] is True
    assert result["reason"].startswith("no test command found")


def test_a_test_run_over_its_timeout_is_stopped_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    code, _, stderr = run(TESTS, {"path": str(tmp_path), "timeout": 1, "command": [
        "sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"]})
    assert code == 1 and last_line(stderr).startswith("tests timed out after 1 s")
    died_sync(int(pidfile.read_text()), "the test command's child `sleep 300`")
