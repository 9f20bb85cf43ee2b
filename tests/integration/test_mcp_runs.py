"""The tools that change something, with --allow-run: cancel_run, resume_run and
call_skill against a real daemon, and a whole run embedded on a state file (no daemon)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ECHO, py_command, write_skill
from tests.waiting import file_words, until_async

from .embedded import db
from .mcp_client import CTL, DEPLOY, Progress, server_env, stdio_session, text

pytestmark = pytest.mark.usefixtures("mcp_sdk")

# Records that it ran, then waits for its gate file (when given one) to exist.
GATED = py_command("""
    import json, os, sys, time
    p = json.load(sys.stdin)
    with open(p["ledger"], "a") as f:
        f.write(os.environ["ORCHESTRATOR_STEP_ID"] + "\\n")
    deadline = time.monotonic() + 120
    while p.get("gate") and not os.path.exists(p["gate"]):
        if time.monotonic() > deadline:
            sys.exit("the gate never opened")
        time.sleep(0.05)
    print(json.dumps({"ok": True}))
""")


def gated_workflow(ledger: Path, gate: Path) -> str:
    return (f"workflow:\n  name: gated\n  steps:\n"
            f"    - {{id: first, skill: gate, action: work, params: {{ledger: {ledger}}}}}\n"
            f"    - {{id: second, skill: gate, action: work, depends_on: [first], "
            f"params: {{ledger: {ledger}, gate: {gate}}}}}\n")


async def call(session: Any, tool: str, args: dict[str, Any], **kw: Any) -> Any:
    result = await session.call_tool(tool, args, **kw)
    assert not result.is_error, text(result)
    return json.loads(text(result))


@pytest.fixture
def served(env, daemon):
    """A daemon serving the gated workflow and an echo skill; (home, socket, ledger, gate)."""
    ledger, gate = env / "ledger", env / "gate"
    skills = env / "workflows" / "skills"
    write_skill(skills, "gate", {"work": {"command": GATED}})
    write_skill(skills, "tool", {"echo": {"command": ECHO}}, description="Echo what it is given")
    (env / "workflows" / "gated.yaml").write_text(gated_workflow(ledger, gate))
    d = daemon()
    d.notify.wait_for("READY=1")
    return env, str(env / "run" / "control.sock"), ledger, gate


async def test_cancel_then_resume_through_the_daemon(served):
    home, sock, ledger, gate = served
    async with stdio_session(home, "--socket", sock, "mcp", "--allow-run") as session:
        started = await call(session, "start_run", {"workflow": "gated"})
        run_id = started["run_id"]

        await until_async("the gated step to start", file_words(ledger, 2))
        cancelled = await call(session, "cancel_run", {"run_id": run_id[:8]})
        assert cancelled["run_id"] == run_id and cancelled["cancel_requested"] is True
        await until_async("the run to end cancelled", lambda: db(
            home / "state" / "state.db", "SELECT status FROM runs WHERE id = ?", run_id)
            == [("cancelled",)])

        gate.touch()
        progress = Progress()
        resumed = await call(session, "resume_run", {"run_id": run_id, "wait": True},
                             progress_callback=progress)
        assert resumed["status"] == "succeeded", resumed
        assert [s["status"] for s in resumed["steps"]] == ["succeeded", "succeeded"]
        assert ledger.read_text().split() == ["first", "second", "second"], \
            "the step that had succeeded ran again"
        # Only this resume's events: not the earlier `run cancelled` as if it were the end.
        messages = [m for _, _, m in progress.seen]
        assert f"run {run_id} cancelled" not in messages, messages
        assert messages[-1] == f"run {run_id} succeeded", messages
        values = [p for p, _, _ in progress.seen]
        assert values == sorted(values) and values[-1] == 3, progress.seen

        again = await session.call_tool("resume_run", {"run_id": run_id})
        assert again.is_error
        assert f"run {run_id} succeeded; nothing to resume" in text(again)


async def test_call_skill_is_a_recorded_run_through_the_daemon(served):
    home, sock, _, _ = served
    async with stdio_session(home, "--socket", sock, "mcp", "--allow-run") as session:
        called = await call(session, "call_skill", {"skill": "tool", "action": "echo",
                                                    "params": {"x": [1, 2]}})
        assert called["status"] == "succeeded", called
        assert called["outputs"]["result"] == {"params": {"x": [1, 2]}}
        shown = await call(session, "get_run", {"run_id": called["run_id"]})
        assert shown["steps"][0]["result"] == {"params": {"x": [1, 2]}}
        unknown = await session.call_tool("call_skill", {"skill": "tool", "action": "nope"})
        assert unknown.is_error and "has no action 'nope'" in text(unknown)


async def test_a_workflow_runs_embedded_without_a_daemon(tmp_path):
    """`orchestratorctl --state S mcp --workflows D --allow-run`: this process drives the
    run on the state file; the CLI then finds it there."""
    workflows, state = tmp_path / "workflows", tmp_path / "state.db"
    workflows.mkdir()
    shutil.copy(DEPLOY, workflows)
    args = ["--state", str(state), "mcp", "--workflows", str(workflows), "--allow-run"]
    async with stdio_session(tmp_path, *args) as session:
        listed = await call(session, "list_workflows", {})
        assert [w["name"] for w in listed["workflows"]] == ["deploy-nixos-system"]
        progress = Progress()
        run = await call(session, "start_run", {"workflow": "deploy-nixos-system",
                                                "wait": True}, progress_callback=progress)
        assert run["status"] == "succeeded", run
        assert progress.seen[-1][2] == f"run {run['run_id']} succeeded"
        report = text(await session.call_tool("get_report", {"run_id": run["run_id"]}))
        assert run["run_id"] in report
        again = await session.call_tool("resume_run", {"run_id": run["run_id"]})
        assert again.is_error and "nothing to resume" in text(again)
    shown = subprocess.run([*CTL, "--state", str(state), "show", run["run_id"], "--json"],
                           capture_output=True, text=True, timeout=60, env=server_env(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "succeeded"
