"""orchestratorctl in embedded mode as a real child process, and its state file read raw."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable


def ctl(state: Path, *args: str) -> subprocess.Popen:
    """`python -m orchestratord.cli --state STATE ARGS...`, its output captured."""
    return subprocess.Popen([sys.executable, "-m", "orchestratord.cli", "--state", str(state), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "ORCHESTRATOR_SKILL_PATH": ""})


def db(state: Path, sql: str, *args) -> list[tuple]:
    conn = sqlite3.connect(state)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def wait_for(what: str, predicate: Callable[[], object], timeout: float = 30.0) -> object:
    """Poll predicate until it is truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.005)
    return value


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
