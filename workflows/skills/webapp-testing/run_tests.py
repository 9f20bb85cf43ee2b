#!/usr/bin/env python3
"""webapp-testing run_tests: run a repository's own test command and count the results.

Params (JSON on stdin): path (default $ORCHESTRATOR_WORKSPACE, where project-import puts
the run's checkout), command (argv; default: detected from the repository), timeout
(seconds, default 900).

The command is what the repository declares: a `test` target in its Makefile, else
`scripts.test` of package.json (`npm test`, after `npm ci`/`npm install` when
node_modules is missing), else pytest when the repository looks like a pytest project.
Its output goes to the step's log line by line; counts are read from the summary lines
of pytest, jest and mocha, and the exit status decides.

Exit status: 0 with the result as JSON on stdout (also when there is nothing to run:
`skipped: true`); 1 when tests fail, time out or cannot start, with the counts in the
message; 75 when installing npm dependencies fails (most likely the network).
"""

from __future__ import annotations

import collections
import configparser
import importlib.util
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

EX_TEMPFAIL = 75
PYTEST_NO_TESTS = 5
NPM_PLACEHOLDER = "no test specified"
TAIL = 400
COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|passing|failing|"
                   r"pending|total)\b")
PYTEST_SUMMARY = re.compile(r"\b(?:\d+ \w+(?:, )?)+.* in [\d.]+s\b|no tests ran in")
MOCHA = ("passing", "failing", "pending")
UNITTEST_RAN = re.compile(r"^Ran (\d+) tests? in ")
UNITTEST_TALLY = re.compile(r"(failures|errors|skipped)=(\d+)")
MAKE_TEST = re.compile(r"^test\s*:(?!=)", re.M)
KILL_GRACE = 5.0

child: subprocess.Popen | None = None


def fail(message: str, *, retryable: bool = False) -> NoReturn:
    print(message, file=sys.stderr)
    sys.exit(EX_TEMPFAIL if retryable else 1)


def read_params() -> dict[str, Any]:
    # Their types and ranges are checked before this runs, against actions.yaml's schema.
    text = sys.stdin.read().strip()
    try:
        params = json.loads(text) if text else {}
    except ValueError as exc:
        fail(f"params: not JSON: {exc}")
    if not isinstance(params, dict):
        fail("params: expected an object")
    return params


def repository(value: str | None) -> Path:
    if value:
        path = Path(value).expanduser()
    elif os.environ.get("ORCHESTRATOR_WORKSPACE"):
        path = Path(os.environ["ORCHESTRATOR_WORKSPACE"])
        if not path.exists():
            fail(f"params.path: not given, and the run's workspace {path} does not exist; "
                 "import a repository first (project-import import_github) or give path")
    else:
        fail("params.path: not given, and $ORCHESTRATOR_WORKSPACE (set for steps the "
             "orchestrator runs) is not set")
    if not path.is_dir():
        fail(f"params.path: {path} is not a directory")
    return path


# -- what to run ---------------------------------------------------------------------------

def detect(repo: Path) -> tuple[list[list[str]], str] | None:
    """(commands to run in order, why) for the repository, or None if it declares no tests."""
    for name in ("GNUmakefile", "makefile", "Makefile"):
        makefile = repo / name
        if makefile.is_file() and MAKE_TEST.search(makefile.read_text(errors="replace")):
            return [["make", "test"]], f"{name} has a test target"
    package = repo / "package.json"
    if package.is_file():
        try:
            manifest = json.loads(package.read_text())
        except ValueError as exc:
            fail(f"package.json is not JSON: {exc}")
        script = (manifest.get("scripts") or {}).get("test")
        if script and NPM_PLACEHOLDER not in script:
            commands = [["npm", "test"]]
            if (manifest.get("dependencies") or manifest.get("devDependencies")) \
                    and not (repo / "node_modules").exists():
                install = "ci" if (repo / "package-lock.json").exists() else "install"
                commands.insert(0, ["npm", install, "--no-audit", "--no-fund"])
            return commands, "package.json has scripts.test"
    why = pytest_project(repo)
    if why:
        if importlib.util.find_spec("pytest") is None:
            fail(f"the repository has pytest tests ({why}), but pytest is not installed "
                 f"for {sys.executable}")
        return [[sys.executable, "-m", "pytest", "-q"]], why
    return None


def pytest_project(repo: Path) -> str | None:
    """Why the repository looks like a pytest project, or None."""
    for name in ("pytest.ini", "conftest.py"):
        if (repo / name).is_file():
            return f"{name} exists"
    for name, section in (("tox.ini", "pytest"), ("setup.cfg", "tool:pytest")):
        if (repo / name).is_file():
            config = configparser.ConfigParser(interpolation=None)
            try:
                config.read(repo / name)
            except configparser.Error:
                continue
            if config.has_section(section):
                return f"{name} has [{section}]"
    pyproject = repo / "pyproject.toml"
    if pyproject.is_file() and "[tool.pytest" in pyproject.read_text(errors="replace"):
        return "pyproject.toml configures pytest"
    for name in ("tests", "test"):
        if (repo / name).is_dir():
            return f"{name}/ directory exists"
    if any(repo.glob("test_*.py")) or any(repo.glob("*_test.py")):
        return "test files at the top level"
    return None


# -- running -------------------------------------------------------------------------------

def run(argv: list[str], repo: Path, timeout: float) -> tuple[int, list[str], bool]:
    """Run argv in repo; its output goes to our stderr. Returns (status, last lines, timed out)."""
    global child
    print(f"$ {shlex.join(argv)}", file=sys.stderr, flush=True)
    try:
        # Its own process group, so a timeout stops the whole test run (pytest-xdist
        # workers, a dev server npm started) and not this script with it.
        child = subprocess.Popen(argv, cwd=repo, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 start_new_session=True, env={**os.environ, "CI": "true"})
    except OSError as exc:
        fail(f"cannot run {shlex.join(argv)}: {exc.strerror} ({argv[0]} not installed?)")
    expired = threading.Event()
    timer = threading.Timer(timeout, lambda: (expired.set(), stop_child()))
    timer.daemon = True
    timer.start()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL)
    assert child.stdout is not None
    for raw in child.stdout:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        tail.append(line)
        print(line, file=sys.stderr, flush=True)
    status = child.wait()
    timer.cancel()
    return status, list(tail), expired.is_set()


def stop_child(*_: Any) -> None:
    """SIGTERM the test run's group, SIGKILL it after a grace period."""
    if child is None or child.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + KILL_GRACE
        while time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        if child.poll() is not None:
            return


def on_terminate(signum: int, _frame: Any) -> None:
    # The orchestrator stops this step (step timeout, cancel): take the tests down too.
    stop_child()
    sys.exit(128 + signum)


# -- reading the results -------------------------------------------------------------------

def counts(lines: list[str]) -> tuple[dict[str, int | None], str | None]:
    """passed/failed/errors/skipped from the last summary found (pytest, jest, mocha,
    unittest), and its line; None counts when the output has no summary we know."""
    for i in range(len(lines) - 1, -1, -1):
        text = lines[i].strip().strip("=").strip()
        found = {word: int(n) for n, word in COUNT.findall(text)}
        if found and (PYTEST_SUMMARY.search(text) or text.startswith("Tests:")):
            return ({"passed": found.get("passed", 0), "failed": found.get("failed", 0),
                     "errors": found.get("errors", found.get("error", 0)),
                     "skipped": found.get("skipped", 0)}, text)
        if any(w in found for w in MOCHA):   # one line each for passing, failing, pending
            for other in lines[max(0, i - 3):i]:
                found.update((w, int(n)) for n, w in COUNT.findall(other) if w in MOCHA)
            return ({"passed": found.get("passing", 0), "failed": found.get("failing", 0),
                     "errors": 0, "skipped": found.get("pending", 0)}, text)
        ran = UNITTEST_RAN.match(text)
        if ran:
            verdict = next((line.strip() for line in lines[i + 1:] if line.strip()), "")
            tally = {k: int(v) for k, v in UNITTEST_TALLY.findall(verdict)}
            failed, errors = tally.get("failures", 0), tally.get("errors", 0)
            skipped = tally.get("skipped", 0)
            return ({"passed": int(ran[1]) - failed - errors - skipped, "failed": failed,
                     "errors": errors, "skipped": skipped}, f"{text}: {verdict}")
    return {"passed": None, "failed": None, "errors": None, "skipped": None}, None


def describe(found: dict[str, int | None]) -> str:
    if found["passed"] is None:
        return "no counts in the output"
    return ", ".join(f"{n} {word}" for word, n in found.items() if n or word == "passed")


def skip(repo: Path, reason: str, command: str | None, status: int | None) -> None:
    """Nothing to test is not a failure: say so, with the reason."""
    print(f"skipped: {reason}", file=sys.stderr)
    json.dump({"ok": True, "skipped": True, "reason": reason, "passed": 0, "failed": 0,
               "errors": 0, "skipped_tests": 0, "command": command, "exit_code": status,
               "path": str(repo)}, sys.stdout)


def main() -> None:
    signal.signal(signal.SIGTERM, on_terminate)
    params = read_params()
    repo = repository(params.get("path"))
    timeout = float(params.get("timeout", 900))
    if params.get("command"):
        commands, why = [params["command"]], "params.command"
    else:
        detected = detect(repo)
        if detected is None:
            reason = ("no test command found: no Makefile test target, no scripts.test in "
                      "package.json, no pytest configuration or tests/ directory")
            skip(repo, reason, None, None)
            return
        commands, why = detected
    print(f"test command: {shlex.join(commands[-1])} ({why})", file=sys.stderr)
    started = time.monotonic()
    for install in commands[:-1]:
        status, _, timed_out = run(install, repo, timeout)
        if status != 0:
            fail(f"{shlex.join(install)} failed with status {status}"
                 + (" (timed out)" if timed_out else "") + "; the tests did not run",
                 retryable=True)
    argv = commands[-1]
    status, tail, timed_out = run(argv, repo, timeout)
    found, summary_line = counts(tail)
    shown = shlex.join(argv)
    if timed_out:
        fail(f"tests timed out after {timeout:g} s: {describe(found)} "
             f"({shown})")
    pytest_run = argv[1:3] == ["-m", "pytest"]
    if pytest_run and status == PYTEST_NO_TESTS:
        skip(repo, "pytest collected no tests", shown, status)
        return
    # The telling keys first: reports show a result's first fields. Failed tests keep
    # it too: a failing command's stdout is its failed step's result.
    json.dump({"ok": status == 0, "passed": found["passed"], "failed": found["failed"],
               "errors": found["errors"], "skipped_tests": found["skipped"],
               "summary": summary_line or f"exit status {status}", "command": shown,
               "skipped": False, "exit_code": status, "detected_by": why, "path": str(repo),
               "duration": round(time.monotonic() - started, 3)}, sys.stdout)
    if status != 0:
        sys.stdout.flush()
        fail(f"tests failed: {describe(found)} (exit status {status}: {shown})")


if __name__ == "__main__":
    main()
