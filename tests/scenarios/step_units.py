"""Scenario: each command step runs in its own hardened systemd unit.

The machine must have (see tests/scenarios/__init__.py):
- orchestratord.service (Restart=on-failure) running as root under systemd, with settings
  `step_units: always`, `kill_grace: 2`, state in /var/lib/agent-orchestrator, and the
  skill `box` of machine/step-units/skills/ on its skill path (python3 on its PATH);
- the workflows of machine/step-units/workflows/ (units-escape, units-oom, units-forker,
  units-five, units-long);
- `orchestratorctl`, `journalctl`, `pgrep` on PATH; for `out_of_memory`, a memory
  controller the machine's systemd manages: in its cgroup v2 hierarchy, or a writable
  cgroup v1 memory hierarchy (tests/system/memcg.py delegates one into a container).

It checks: a step that writes outside its workspace fails with the reason while its
workspace was writable; a step over its MemoryMax= fails as out of memory; cancelling a
double-forking step leaves no process; a 5 s step whose daemon is killed with SIGKILL
after 1 s runs exactly once and its result is collected after the restart; the step's
stderr is in the journal with RUN_ID, STEP_ID, SKILL, ACTION and ATTEMPT. Each part is a
function of its own, so a layer can run (or skip, saying why) one part.
"""

from __future__ import annotations

import json
import time

from scenario_common import finished, json_of, steps_of

STATE = "/var/lib/agent-orchestrator"


def start(machine, workflow: str) -> str:
    return json_of(machine.succeed(f"orchestratorctl run {workflow} --json"))["run_id"]


def unit_of(run_id: str, attempt: int = 1) -> str:
    return f"orchestrator-step-{run_id}-s0-{attempt}.service"


def ledger(machine, run_id: str) -> str:
    """One line per time the step's command ran."""
    return machine.succeed(f"cat {STATE}/workspaces/{run_id}/ledger")


def writing_outside_the_workspace(machine) -> None:
    run = finished(machine, start(machine, "units-escape"))
    s0 = steps_of(run)["s0"]
    assert run["status"] == "failed", run
    assert "Read-only file system: '/etc/escaped'" in s0["error"], s0
    machine.fail("test -e /etc/escaped")
    assert ledger(machine, run["id"]) == "s0\n"  # its own workspace was writable


def memory_controller(machine) -> bool:
    """Whether the machine's systemd can enforce MemoryMax=: cgroup v2 with the memory
    controller, or a cgroup v1 memory hierarchy mounted read-write."""
    rc, _ = machine.execute("grep -qw memory /sys/fs/cgroup/cgroup.controllers || "
                            "findmnt -no OPTIONS /sys/fs/cgroup/memory | grep -q '^rw'")
    return rc == 0


def out_of_memory(machine) -> None:
    assert memory_controller(machine), "MemoryMax= needs a memory controller systemd manages"
    # The step asks for 512 MB and has a 60 s timeout: failing well before that is no hang.
    run = finished(machine, start(machine, "units-oom"), timeout=30)
    s0 = steps_of(run)["s0"]
    assert run["status"] == "failed", run
    assert "ran out of memory (MemoryMax=64M)" in s0["error"], s0
    recorded = [(a["status"], a["error"]) for a in run["attempts"] if a["step_id"] == "s0"]
    assert len(recorded) == 1 and "ran out of memory" in recorded[0][1], run["attempts"]
    machine.fail(f"systemctl is-active {unit_of(run['id'])}")


def cancelling_a_double_forking_step(machine) -> None:
    run_id = start(machine, "units-forker")
    grandchild = f"{STATE}/workspaces/{run_id}/grandchild"
    machine.wait_until_succeeds(f"test -s {grandchild}")
    pid = machine.succeed(f"cat {grandchild}").strip()
    machine.succeed(f"kill -0 {pid}")  # it runs, in another session than the step
    machine.succeed(f"orchestratorctl cancel {run_id}")
    assert finished(machine, run_id)["status"] == "cancelled"
    machine.fail(f"kill -0 {pid}")
    machine.fail("pgrep -f 'box[.]py'")  # the pattern does not match this shell
    machine.wait_until_fails(f"systemctl is-active {unit_of(run_id)}")


def killing_the_daemon_during_a_step(machine) -> None:
    run_id = start(machine, "units-five")
    machine.wait_until_succeeds(f"systemctl is-active {unit_of(run_id)}")
    time.sleep(1)
    pid = machine.succeed("systemctl show -p MainPID --value orchestratord.service").strip()
    machine.succeed(f"kill -9 {pid}")
    # the unit is not the daemon's child: it goes on while the daemon restarts
    machine.succeed(f"systemctl is-active {unit_of(run_id)}")
    run = finished(machine, run_id, timeout=90)
    after = machine.succeed("systemctl show -p MainPID --value orchestratord.service").strip()
    assert after not in (pid, "0"), f"the daemon was not restarted (MainPID {after})"
    assert run["status"] == "succeeded", run
    assert steps_of(run)["s0"]["result"] == {"step": "s0", "slept": 5}, run
    assert ledger(machine, run_id) == "s0\n", "the step ran more than once"
    machine.fail(f"systemctl list-units --all --no-legend 'orchestrator-step-{run_id}-*' "
                 "| grep -q .")
    assert machine.succeed(f"ls {STATE}/step-units").strip() == "", "an attempt was not collected"


def stderr_in_the_journal(machine) -> None:
    run_id = start(machine, "units-five")
    finished(machine, run_id)
    machine.succeed("journalctl --sync")
    out = machine.succeed(f"journalctl --no-pager -o json RUN_ID={run_id} "
                          f"_SYSTEMD_UNIT={unit_of(run_id)}")
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    said = [r for r in records if r.get("MESSAGE") == "working on s0"]
    assert said, records
    assert {(r["STEP_ID"], r["SKILL"], r["ACTION"], r["ATTEMPT"], r["WORKFLOW"]) for r in said} \
        == {("s0", "box", "do", "1", "units-five")}, said


PARTS = (writing_outside_the_workspace, out_of_memory, cancelling_a_double_forking_step,
         killing_the_daemon_during_a_step, stderr_in_the_journal)


def run(machine) -> None:
    machine.wait_for_unit("orchestratord.service")
    for part in PARTS:
        part(machine)
