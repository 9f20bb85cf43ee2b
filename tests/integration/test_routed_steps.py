"""Workflows whose steps choose their action by `route:` or `capability:`, run for real."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import py_command, write_skill, write_workflow


def ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestratord.cli", *args],
                          capture_output=True, text=True, timeout=120)


def says(name: str, gate: str | None = None) -> list[str]:
    """A command answering with its own name; with a gate file, failing until it exists."""
    check = f"if not os.path.exists({gate!r}): sys.exit(3)" if gate else ""
    return py_command(f"""
        import json, os, sys
        {check}
        json.dump({{"by": {name!r}}}, sys.stdout)
    """)


FACTS = "collect the facts about this machine"
WORKFLOW = f"""
    workflow:
      name: routed
      outputs:
        facts: "{{{{ steps['host-facts'].result.by }}}}"
        kernel: "{{{{ steps['kernel-facts'].result.by }}}}"
      steps:
        - route: "{FACTS}"
        - capability: facts.kernel
"""


def facts_workflow(tmp_path, skill_root, gate: str | None = None):
    """WORKFLOW and the two skills its steps resolve to (host-facts waiting for gate)."""
    write_skill(skill_root, "host-facts", {"collect": {
        "command": says("host-facts", gate=gate), "examples": [FACTS]}})
    write_skill(skill_root, "kernel-facts", {"read": {
        "command": says("kernel-facts"), "capabilities": ["facts.kernel"]}})
    return write_workflow(tmp_path, WORKFLOW)


def test_route_and_capability_steps_run_and_are_recorded(tmp_path, skill_root):
    path = facts_workflow(tmp_path, skill_root)
    state = ["--state", str(tmp_path / "state.db")]

    done = ctl(*state, "run", str(path), "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["outputs"] == {"facts": "host-facts", "kernel": "kernel-facts"}
    shown = json.loads(ctl(*state, "show", run["run_id"], "--json").stdout)
    assert [(s["step_id"], s["skill"], s["action"], s["status"]) for s in shown["steps"]] == [
        ("host-facts", "host-facts", "collect", "succeeded"),
        ("kernel-facts", "kernel-facts", "read", "succeeded")]
    assert "host-facts.collect" in ctl(*state, "show", run["run_id"]).stdout
    report = json.loads(ctl(*state, "report", run["run_id"], "--format", "json").stdout)
    assert [s["routed"] for s in report["steps"]] == [f"route: {FACTS}",
                                                      "capability: facts.kernel"]
    assert f"host-facts.collect (route: {FACTS})" in ctl(*state, "report", run["run_id"]).stdout


def test_a_resumed_run_keeps_its_recorded_resolution(tmp_path, skill_root):
    """Guards against resume re-routing: a skill added after the run started that would
    now win the route must not replace the action the run recorded."""
    gate = tmp_path / "gate"
    path = facts_workflow(tmp_path, skill_root, gate=str(gate))
    state = ["--state", str(tmp_path / "state.db")]
    failed = ctl(*state, "run", str(path), "--json")
    assert failed.returncode == 1, failed.stderr
    run_id = json.loads(failed.stdout)["run_id"]

    write_skill(skill_root, "machine-facts", {"collect": {
        "command": says("machine-facts"), "capabilities": ["facts.kernel"],
        "examples": [FACTS, "collect facts about the machine", "machine facts"]}},
        description="collect the facts about this machine, every fact of the machine")
    routed = ctl("--skills", str(skill_root), "route", FACTS, "--json")
    now = json.loads(routed.stdout)
    assert now["status"] == "matched" and now["candidates"][0]["skill"] == "machine-facts"
    assert ctl(*state, "validate", str(path)).returncode == 2, "the capability is now ambiguous"

    gate.touch()
    resumed = ctl(*state, "resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["outputs"] == {"facts": "host-facts",
                                                     "kernel": "kernel-facts"}
    shown = json.loads(ctl(*state, "show", run_id, "--json").stdout)
    assert [(s["skill"], s["action"]) for s in shown["steps"]] == [
        ("host-facts", "collect"), ("kernel-facts", "read")]
