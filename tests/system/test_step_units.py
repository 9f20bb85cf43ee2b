"""Command steps as transient systemd units: sandbox, limits, kill by cgroup, re-attach,
journal fields and the exposure of a default step unit, under real systemd."""

from __future__ import annotations

import json
import logging
import re
import shlex
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import PROJECT_ROOT, install_project
from .machine import Machine

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]
log = logging.getLogger("orchestratord.tests.system")

ETC = "/etc/agent-orchestrator"
STATE = "/var/lib/agent-orchestrator"
# One command skill that does what its params say; stdlib only.
BOX_PY = textwrap.dedent("""
    import json, os, sys, time
    p = json.load(sys.stdin)
    workspace = os.environ["ORCHESTRATOR_WORKSPACE"]
    print("working on " + os.environ["ORCHESTRATOR_STEP_ID"], file=sys.stderr, flush=True)
    with open(os.path.join(workspace, "ledger"), "a") as f:
        f.write(os.environ["ORCHESTRATOR_STEP_ID"] + "\\n")
    if "write" in p:
        open(p["write"], "w").write("escaped")
    if "alloc_mb" in p:
        hog = [bytearray(1024 * 1024) for _ in range(p["alloc_mb"])]
    if p.get("fork"):
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                with open(os.path.join(workspace, "grandchild"), "w") as f:
                    f.write(str(os.getpid()))
                time.sleep(600)
            os._exit(0)
    time.sleep(p.get("sleep", 0))
    print(json.dumps({"step": os.environ["ORCHESTRATOR_STEP_ID"], "slept": p.get("sleep", 0)}))
""")
ACTIONS = {"actions": {
    "do": {"command": ["python3", "box.py"], "timeout": 120},
    "hog": {"command": ["python3", "box.py"], "timeout": 60, "sandbox": {"MemoryMax": "64M"}},
}}


def one_step(name: str, params: dict, action: str = "do") -> str:
    return json.dumps({"workflow": {"name": name, "steps": [
        {"id": "s0", "skill": "box", "action": action, "params": params}]}})


WORKFLOWS = {
    "escape": one_step("escape", {"write": "/etc/escaped"}),
    "oom": one_step("oom", {"alloc_mb": 512}, action="hog"),
    "forker": one_step("forker", {"fork": True, "sleep": 600}),
    "five": one_step("five", {"sleep": 5}),
    "long": one_step("long", {"sleep": 600}),
}


def write(machine: Machine, path: str, text: str) -> None:
    machine.execute(f"mkdir -p {shlex.quote(str(Path(path).parent))}")
    rc, out = machine.execute(f"cat > {shlex.quote(path)}", input=text.encode())
    assert rc == 0, out


@pytest.fixture(scope="module")
def units_machine(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """A container of its own, the daemon with step_units: always."""
    machine = Machine(rootfs, log_dir=tmp_path_factory.mktemp("step-units"))
    try:
        machine.start()
        venv = install_project(machine, PROJECT_ROOT)
        machine.succeed(f"ln -sf {venv}/bin/orchestratord {venv}/bin/orchestratorctl /usr/local/bin/")
        units = machine.succeed(f"{venv}/bin/python -c 'import orchestratord, pathlib; print("
                                "pathlib.Path(orchestratord.__file__).parent / \"daemon\" / \"units\")'").strip()
        machine.succeed(f"cp {units}/orchestratord.service /etc/systemd/system/")
        write(machine, f"{ETC}/skills/box/SKILL.md", "---\nname: box\ndescription: test box\n---\n")
        write(machine, f"{ETC}/skills/box/box.py", BOX_PY)
        write(machine, f"{ETC}/skills/box/actions.yaml", json.dumps(ACTIONS))
        write(machine, f"{ETC}/settings.json", json.dumps({
            "workflows_dir": f"{ETC}/workflows", "skill_paths": [f"{ETC}/skills"],
            "kill_grace": 2, "step_units": "always"}))
        for name, text in WORKFLOWS.items():
            write(machine, f"{ETC}/workflows/{name}.json", text)
        machine.succeed("systemctl daemon-reload && systemctl start orchestratord")
        yield machine
    finally:
        machine.shutdown()


def start(machine: Machine, workflow: str) -> str:
    return json.loads(machine.succeed(f"orchestratorctl run {workflow} --json"))["run_id"]


def finished(machine: Machine, run_id: str, timeout: float = 120) -> dict:
    machine.wait_until_succeeds(
        f"orchestratorctl show {run_id} --json | python3 -c 'import json, sys; "
        "sys.exit(json.load(sys.stdin)[\"status\"] in (\"running\", \"pending\", "
        "\"interrupted\"))'", timeout=timeout)
    return json.loads(machine.succeed(f"orchestratorctl show {run_id} --json"))


def step(shown: dict) -> dict:
    return next(s for s in shown["steps"] if s["step_id"] == "s0")


def unit_of(run_id: str, attempt: int = 1) -> str:
    return f"orchestrator-step-{run_id}-s0-{attempt}.service"


def test_a_step_writing_outside_its_workspace_fails_with_the_reason(units_machine: Machine) -> None:
    shown = finished(units_machine, start(units_machine, "escape"))
    assert shown["status"] == "failed"
    assert "Read-only file system: '/etc/escaped'" in step(shown)["error"], step(shown)
    units_machine.fail("test -e /etc/escaped")
    # ... while its own workspace was writable
    assert units_machine.succeed(f"cat {STATE}/workspaces/{shown['id']}/ledger") == "s0\n"


def test_a_step_over_memory_max_fails_as_out_of_memory(units_machine: Machine) -> None:
    rc, _ = units_machine.execute("grep -qw memory /sys/fs/cgroup/cgroup.controllers")
    if rc != 0:
        # A property of the host's cgroup layout (a cgroup v1 host delegates no memory
        # controller to the container), not something an install could bring: a skip
        # with its reason, also under CI=true.
        pytest.skip("the container has no memory controller (the host delegates none to it)")
    shown = finished(units_machine, start(units_machine, "oom"), timeout=60)
    assert shown["status"] == "failed"
    assert "ran out of memory (MemoryMax=)" in step(shown)["error"], step(shown)


def test_cancelling_a_double_forking_step_leaves_no_process(units_machine: Machine) -> None:
    run_id = start(units_machine, "forker")
    grandchild = f"{STATE}/workspaces/{run_id}/grandchild"
    units_machine.wait_until_succeeds(f"test -s {grandchild}")
    pid = units_machine.succeed(f"cat {grandchild}").strip()
    units_machine.succeed(f"kill -0 {pid}")  # it runs, in another session than the step
    units_machine.succeed(f"orchestratorctl cancel {run_id}")
    assert finished(units_machine, run_id)["status"] == "cancelled"
    units_machine.fail(f"kill -0 {pid}")
    units_machine.fail("pgrep -f 'box[.]py'")  # the pattern does not match this shell
    units_machine.wait_until_fails(f"systemctl is-active {unit_of(run_id)}")


def test_a_step_whose_daemon_is_killed_runs_once_and_is_collected(units_machine: Machine) -> None:
    run_id = start(units_machine, "five")
    units_machine.wait_until_succeeds(f"systemctl is-active {unit_of(run_id)}")
    units_machine.succeed("sleep 1")
    pid = units_machine.succeed("systemctl show -p MainPID --value orchestratord").strip()
    units_machine.succeed(f"kill -9 {pid}")
    # the unit is not the daemon's child: it goes on while the daemon restarts
    units_machine.succeed(f"systemctl is-active {unit_of(run_id)}")
    shown = finished(units_machine, run_id, timeout=90)
    assert units_machine.succeed("systemctl show -p MainPID --value orchestratord").strip() != pid
    assert shown["status"] == "succeeded", shown
    assert step(shown)["result"] == {"step": "s0", "slept": 5}
    ledger = units_machine.succeed(f"cat {STATE}/workspaces/{run_id}/ledger")
    assert ledger == "s0\n", f"the step ran more than once: {ledger!r}"
    units_machine.fail(f"systemctl list-units --all --no-legend 'orchestrator-step-{run_id}-*' | grep -q .")
    assert units_machine.succeed(f"ls {STATE}/step-units").strip() == ""


def test_stderr_is_in_the_journal_with_the_step_fields(units_machine: Machine) -> None:
    run_id = start(units_machine, "five")
    finished(units_machine, run_id)
    records = units_machine.journal(f"RUN_ID={run_id}", f"_SYSTEMD_UNIT={unit_of(run_id)}")
    said = [r for r in records if r.get("MESSAGE") == "working on s0"]
    assert said, records
    assert {(r["STEP_ID"], r["SKILL"], r["ACTION"], r["ATTEMPT"], r["WORKFLOW"]) for r in said} \
        == {("s0", "box", "do", "1", "five")}


def test_exposure_of_a_default_step_unit(units_machine: Machine) -> None:
    run_id = start(units_machine, "long")
    unit = unit_of(run_id)
    units_machine.wait_until_succeeds(f"systemctl is-active {unit}")
    _, out = units_machine.execute(f"systemd-analyze security --no-pager {unit}")
    units_machine.succeed(f"orchestratorctl cancel {run_id}")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert match, out
    score = float(match.group(1))
    log.info("systemd-analyze security of a default step unit: %.1f\n%s", score, out)
    print(f"\nexposure of a default step unit: {score}")
    assert score <= 1.5, out
