"""orchestratorctl in embedded mode as a real child process, and its state file read raw."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path


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


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []
