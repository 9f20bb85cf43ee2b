"""A damaged state database: every command exits 7 naming it and what to do.

`show` and `report` once crashed with an sqlite3.DatabaseError traceback (exit 1): the
store translated SQLite's errors where it opened the file and wrote to it, not where it
read. Every page of every table but the schema version is overwritten here, so the file
opens and migrates, and fails at the first read or write of a run.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ECHO

DEADLINE = 60.0


def ctl(state: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestratord.cli", "--state", str(state),
                           *args], capture_output=True, text=True, timeout=DEADLINE,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory) -> tuple[Path, str, Path]:
    """(database, id of a run in it, a workflow file), the database damaged."""
    root = tmp_path_factory.mktemp("damaged")
    workflow = root / "wf.yaml"
    workflow.write_text("workflow: {name: w, steps: [{skill: s, action: go}]}\n"
                        f"skills: {{s: {{actions: {{go: {{command: {json.dumps(ECHO)}}}}}}}}}\n")
    state = root / "state.db"
    assert ctl(state, "run", str(workflow)).returncode == 0
    [run] = json.loads(ctl(state, "runs", "--json").stdout)
    with sqlite3.connect(state) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = [r for (r,) in conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE rootpage > 0 AND "
            "tbl_name != 'schema_version'")]
    conn.close()
    with open(state, "r+b") as file:
        for page in roots:
            file.seek((page - 1) * page_size)
            file.write(b"\xde\xad\xbe\xef" * (page_size // 4))
    return state, run["id"], workflow


@pytest.mark.parametrize("command", ["runs", "show RUN", "report RUN", "report RUN --format html",
                                     "stats", "resume RUN", "cancel RUN", "run FILE"])
def test_every_command_exits_7_naming_the_damaged_database(damaged, command):
    state, run_id, workflow = damaged
    args = command.replace("RUN", run_id).replace("FILE", str(workflow)).split()
    proc = ctl(state, *args)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 7, proc.stderr
    assert f"state database {state} is damaged" in proc.stderr
    assert "move it aside" in proc.stderr and "restore it from a backup" in proc.stderr


def test_a_file_of_garbage_is_named_damaged_too(tmp_path):
    state = tmp_path / "state.db"
    state.write_bytes(b"not a database, whatever was written here " * 200)
    proc = ctl(state, "show", "abc")
    assert proc.returncode == 7 and "Traceback" not in proc.stderr
    assert f"state database {state} is damaged (file is not a database)" in proc.stderr
