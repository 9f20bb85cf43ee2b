"""Collecting the results of many steps into one step's params and the run's outputs."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ECHO, py_command, write_skill, write_workflow

PROBE = py_command("""
    import json, os, sys
    params = json.load(sys.stdin)
    if params.get("fail"):
        json.dump({"host": params["host"], "up": False}, sys.stdout)
        sys.exit(3)
    json.dump({"host": params["host"], "up": True}, sys.stdout)
""")

KEEP = py_command("""
    import json, pathlib, sys
    params = json.load(sys.stdin)
    pathlib.Path(params["out"]).write_text(json.dumps(params))
""")


def ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestratord.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_results_of_many_steps_reach_a_step_and_the_outputs(tmp_path, skill_root):
    write_skill(skill_root, "probe", {"ping": {"command": PROBE, "capabilities": ["host.ping"]}})
    write_skill(skill_root, "notes", {"write": {"command": ECHO}})
    path = write_workflow(tmp_path, """
        workflow:
          name: fleet
          outputs:
            up: "{{ results('ping-*') | map(attribute='host') | list }}"
            seen: "{{ steps_matching(capability='host.ping') | map(attribute='status') | list }}"
            count: "{{ results(capability='host.ping') | length }}"
          steps:
            - parallel:
                - {id: ping-web, skill: probe, action: ping, params: {host: web}}
                - {id: ping-db, skill: probe, action: ping, params: {host: db}}
                - {id: ping-old, skill: probe, action: ping, params: {host: old}, when: "false"}
                - {id: ping-mail, skill: probe, action: ping, continue_on_error: true,
                   params: {host: mail, fail: true}}
            - id: summary
              skill: notes
              action: write
              trigger_rule: all_done
              params:
                up: "{{ results('ping-*') }}"
                all: "{{ steps_matching('ping-*') | map(attribute='id') | list }}"
    """)
    state = ["--state", str(tmp_path / "state.db")]
    done = ctl(*state, "run", str(path), "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["outputs"] == {"up": ["web", "db"], "count": 2,
                              "seen": ["succeeded", "succeeded", "skipped", "failed"]}
    shown = json.loads(ctl(*state, "show", run["run_id"], "--json").stdout)
    summary = next(s for s in shown["steps"] if s["step_id"] == "summary")
    assert summary["result"]["params"] == {
        "up": [{"host": "web", "up": True}, {"host": "db", "up": True}],
        "all": ["ping-web", "ping-db", "ping-old", "ping-mail"]}, "declaration order"


def test_validate_names_an_aggregate_that_reads_unfinished_steps(tmp_path, skill_root):
    write_skill(skill_root, "probe", {"ping": {"command": PROBE}})
    path = write_workflow(tmp_path, """
        workflow:
          name: fleet
          steps:
            - {id: ping-web, skill: probe, action: ping, params: {host: web}}
            - {id: ping-db, skill: probe, action: ping, params: {host: db}, depends_on: []}
            - {id: report, skill: probe, action: ping, depends_on: [ping-web],
               params: {host: "{{ results('ping-*') | length }}"}}
    """)
    checked = ctl("validate", str(path))
    assert checked.returncode == 2
    assert (f"{path}:7:16: steps[2].params: the steps matching 'ping-*' include 'ping-db', not "
            "finished when step 'report' starts: add it (or its group) to its depends_on") in checked.stderr + checked.stdout


def test_a_compensation_collects_results_of_many_steps(tmp_path, skill_root):
    """Guards aggregates in rollback params: compensation renders them through the
    same scope as a step's params, in place (`length`) and in the evaluation worker
    (`map`)."""
    write_skill(skill_root, "probe", {"ping": {"command": PROBE, "capabilities": ["host.ping"]}})
    write_skill(skill_root, "notes", {"write": {"command": ECHO}, "keep": {"command": KEEP}})
    out = tmp_path / "undone.json"
    path = write_workflow(tmp_path, """
        workflow:
          name: fleet
          on_failure: rollback
          steps:
            - parallel:
                - {id: ping-web, skill: probe, action: ping, params: {host: web}}
                - {id: ping-db, skill: probe, action: ping, params: {host: db}}
            - id: record
              skill: notes
              action: write
              rollback:
                action: keep
                params:
                  out: OUT
                  hosts: "{{ results('ping-*') | map(attribute='host') | list }}"
                  count: "{{ results(capability='host.ping') | length }}"
            - {id: breaks, skill: probe, action: ping, params: {host: x, fail: true}}
    """.replace("OUT", str(out)))
    state = ["--state", str(tmp_path / "state.db")]
    done = ctl(*state, "run", str(path), "--json")
    run = json.loads(done.stdout)
    assert run["status"] == "rolled_back", done.stderr
    shown = json.loads(ctl(*state, "show", run["run_id"], "--json").stdout)
    undo = [a for a in shown["attempts"] if a["step_id"] == "record" and a["kind"] == "rollback"]
    assert [a["status"] for a in undo] == ["succeeded"], undo
    assert json.loads(out.read_text()) == {"out": str(out), "hosts": ["web", "db"], "count": 2}
