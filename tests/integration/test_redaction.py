"""Secrets reach the action and nothing else: not the journal, the events, the API or the CLI.

One run carries three kinds of secret: a workflow param declared `secret: true`, a
workflow param whose name says so (api_token), and a step param the action's schema
marks `"secret": true`. A second step prints them to stderr and fails, so they also
travel through error messages and stderr tails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from orchestratord.daemon.service import Daemon
from orchestratord.language.settings import Settings
from tests.conftest import py_command

PIN = "wf-secret-7a1b"
LOGIN = "step-secret-3c9d"
TOKEN = "tok-default-55e1"
SECRETS = (PIN, LOGIN, TOKEN)

WRITE = py_command("""
    import json, sys
    p = json.load(sys.stdin)
    with open(p["out"], "w") as f:
        json.dump(p, f)
    print(json.dumps({"ok": True}))
""")

LEAK = py_command("""
    import json, sys
    p = json.load(sys.stdin)
    print(f"denied: login {p['login']} pin {p['pin']}", file=sys.stderr)
    sys.exit(1)
""")

SECRET_LOGIN = {"type": "object", "properties": {"login": {"type": "string", "secret": True}}}


def write_workflow(directory: Path, out: Path, *, rollback: bool = False) -> Path:
    doc = {
        "workflow": {
            "name": "secretive",
            "params": {"pin": {"secret": True, "required": True},
                       "api_token": {"default": TOKEN}},
            **({"on_failure": "rollback"} if rollback else {}),
            "steps": [
                {"id": "use", "skill": "vault", "action": "use",
                 "params": {"out": str(out), "login": LOGIN, "pin": "{{ params.pin }}",
                            "header": "Bearer {{ params.pin }}",
                            "api_token": "{{ params.api_token }}", "user": "alice"}},
                {"id": "leak", "skill": "vault", "action": "leak",
                 "params": {"login": LOGIN, "pin": "{{ params.pin }}"}},
            ],
        },
        "skills": {"vault": {"actions": {
            "use": {"command": WRITE, "params": SECRET_LOGIN,
                    "rollback": {"action": "undo"}},
            "undo": {"command": WRITE},
            "leak": {"command": LEAK, "params": SECRET_LOGIN},
        }}},
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "secretive.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def assert_clean(where: str, text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {where}: {text[:2000]}"


def table_dump(db: Path, table: str) -> str:
    with sqlite3.connect(db) as conn:
        return json.dumps(conn.execute(f"SELECT * FROM {table}").fetchall())


def ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestratord.cli", *args],
                          capture_output=True, text=True, timeout=60)


async def actl(*args: str) -> tuple[int, str, str]:
    """orchestratorctl as a child process, without blocking the daemon's event loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchestratord.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


def record_text(record: logging.LogRecord) -> str:
    return " ".join([record.getMessage(), record.exc_text or "",
                     json.dumps(getattr(record, "fields", None) or {}, default=str)])


async def test_daemon_keeps_secrets_out_of_logs_events_api_and_cli(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="orchestratord")
    out = tmp_path / "received.json"
    write_workflow(tmp_path / "workflows", out)
    sock = tmp_path / "run" / "control.sock"
    settings = Settings(state_dir=tmp_path / "state", workflows_dir=tmp_path / "workflows",
                        socket=sock, kill_grace=1)
    daemon = Daemon(settings, handle_signals=False)
    await daemon.start()
    try:
        run_id = await daemon.start_run("secretive", {"pin": PIN})
        task = daemon.tasks.get(run_id)
        if task is not None:
            await asyncio.wait_for(task, 60)
        run = await daemon.store.get_run(run_id)
        assert run.status == "failed"

        # The action got the real values, templated ones included.
        received = json.loads(out.read_text())
        assert received["login"] == LOGIN and received["pin"] == PIN
        assert received["header"] == f"Bearer {PIN}" and received["api_token"] == TOKEN

        # The failing step's error says what happened, without the secrets.
        steps = {s.step_id: s for s in await daemon.store.steps(run_id)}
        assert "denied: login *** pin ***" in steps["leak"].error
        assert steps["use"].params["login"] == "***" and steps["use"].params["user"] == "alice"
        assert steps["use"].params["header"] == "Bearer ***"

        db = settings.database_path
        for table in ("events", "steps", "attempts"):
            assert_clean(f"the {table} table", table_dump(db, table))

        connector = aiohttp.UnixConnector(path=str(sock))
        async with aiohttp.ClientSession(connector=connector) as http:
            for path in (f"/runs/{run_id}", f"/runs/{run_id}/events", "/runs",
                         "/workflows/secretive"):
                async with http.get(f"http://orchestratord{path}") as response:
                    assert response.status == 200, path
                    assert_clean(f"GET {path}", await response.text())
            async with http.get(f"http://orchestratord/runs/{run_id}") as response:
                shown = await response.json()
            assert shown["params"] == {"pin": "***", "api_token": "***"}

        code, stdout, stderr = await actl("--socket", str(sock), "show", run_id, "--json")
        assert code == 0, stderr
        assert json.loads(stdout)["id"] == run_id
        assert_clean("orchestratorctl show --json (daemon)", stdout + stderr)
        code, stdout, stderr = await actl("--state", str(db), "show", run_id, "--json")
        assert code == 0, stderr
        assert json.loads(stdout)["params"]["pin"] == "***"
        assert_clean("orchestratorctl show --json (state file)", stdout + stderr)
        code, stdout, stderr = await actl("--state", str(db), "runs", "--json")
        assert_clean("orchestratorctl runs --json", stdout + stderr)
    finally:
        await daemon.close()

    # The stderr line quoting the secrets was logged, scrubbed.
    texts = [record_text(r) for r in caplog.records]
    assert any("denied: login *** pin ***" in t for t in texts), texts
    assert_clean("the log records", "\n".join(texts))


def test_embedded_cli_run_and_show(tmp_path):
    out = tmp_path / "received.json"
    workflow = write_workflow(tmp_path, out)
    db = tmp_path / "state.db"
    result = ctl("--state", str(db), "-vv", "run", str(workflow), "-p", f"pin={PIN}", "--json")
    assert result.returncode == 1, result.stderr  # the leak step fails
    assert "denied: login *** pin ***" in result.stderr
    assert_clean("orchestratorctl run output", result.stdout + result.stderr)
    assert json.loads(out.read_text())["pin"] == PIN
    run_id = json.loads(result.stdout)["run_id"]
    for args in (("show", run_id), ("show", run_id, "--json"), ("runs", "--json")):
        shown = ctl("--state", str(db), *args)
        assert shown.returncode == 0, shown.stderr
        assert run_id in shown.stdout
        assert_clean(f"orchestratorctl {' '.join(args)}", shown.stdout + shown.stderr)


def test_a_bad_secret_param_is_not_echoed(tmp_path):
    workflow = write_workflow(tmp_path, tmp_path / "out.json")
    doc = json.loads(workflow.read_text())
    doc["workflow"]["params"]["pin"]["type"] = "integer"
    workflow.write_text(json.dumps(doc))
    result = ctl("--state", str(tmp_path / "state.db"), "run", str(workflow), "-p", f"pin={PIN}")
    assert result.returncode == 2
    assert "param 'pin' must be of type integer (got a secret)" in result.stderr
    assert_clean("the params error", result.stderr)


def test_rollback_receives_the_real_params(tmp_path):
    """Attempt params are stored redacted; compensation renders them again, unredacted."""
    out = tmp_path / "received.json"
    workflow = write_workflow(tmp_path, out, rollback=True)
    db = tmp_path / "state.db"
    result = ctl("--state", str(db), "run", str(workflow), "-p", f"pin={PIN}", "--json")
    assert result.returncode == 5, result.stderr  # rolled back
    # `undo` wrote the params it was given over what `use` wrote: the same, real values.
    received = json.loads(out.read_text())
    assert received["login"] == LOGIN and received["pin"] == PIN
    assert_clean("the events table", table_dump(db, "events"))


@pytest.fixture(autouse=True)
def _no_daemon_socket(monkeypatch, tmp_path):
    # The CLI asks a daemon when its default socket exists; these tests mean the state file.
    monkeypatch.setenv("ORCHESTRATOR_SOCKET", str(tmp_path / "no-daemon.sock"))
