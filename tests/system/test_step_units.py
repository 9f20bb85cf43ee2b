"""Command steps as transient systemd units, under real systemd: the shared step-units
scenario (tests/scenarios/step_units.py, which the NixOS VM test runs too) part by part,
a restart of the system bus during a step, and the exposure of a default step unit."""

from __future__ import annotations

import json
import logging
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import scenarios

from .conftest import PROJECT_ROOT, install_project
from .machine import Machine

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]
log = logging.getLogger("orchestratord.tests.system")

ETC = "/etc/agent-orchestrator"
SCENARIO = scenarios.namespace("step_units")
PARTS = {part.__name__: part for part in SCENARIO["PARTS"]}


def write(machine: Machine, path: str, text: str) -> None:
    machine.execute(f"mkdir -p {shlex.quote(str(Path(path).parent))}")
    rc, out = machine.execute(f"cat > {shlex.quote(path)}", input=text.encode())
    assert rc == 0, out


@pytest.fixture(scope="module")
def units_machine(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """A container of its own, set up as the step-units scenario says: the daemon with
    step_units: always, the `box` skill and the scenario's workflows."""
    # MemoryMax= is enforced on a cgroup v1 host too: with a memory cgroup of its own.
    machine = Machine(rootfs, log_dir=tmp_path_factory.mktemp("step-units"), delegate_memory=True)
    try:
        machine.start()
        venv = install_project(machine, PROJECT_ROOT)
        machine.succeed(f"ln -sf {venv}/bin/orchestratord {venv}/bin/orchestratorctl /usr/local/bin/")
        units = machine.succeed(f"{venv}/bin/python -c 'import orchestratord, pathlib; print("
                                "pathlib.Path(orchestratord.__file__).parent / \"daemon\" / \"units\")'").strip()
        machine.succeed(f"cp {units}/orchestratord.service /etc/systemd/system/")
        machine.copy_from_host(scenarios.STEP_UNITS / "skills", f"{ETC}/skills")
        for workflow in sorted((scenarios.STEP_UNITS / "workflows").glob("*.json")):
            machine.copy_from_host(workflow, f"{ETC}/workflows/{workflow.name}")
        write(machine, f"{ETC}/settings.json", json.dumps({
            "workflows_dir": f"{ETC}/workflows", "skill_paths": [f"{ETC}/skills"],
            "kill_grace": 2, "step_units": "always"}))
        machine.succeed("systemctl daemon-reload && systemctl start orchestratord")
        yield machine
    finally:
        machine.shutdown()


@pytest.mark.parametrize("part", PARTS)
def test_step_units_scenario(units_machine: Machine, part: str) -> None:
    PARTS[part](units_machine)


def test_a_step_outlives_a_restart_of_the_system_bus(units_machine: Machine) -> None:
    """Regression: `systemctl restart dbus` during a step failed the step (the daemon's bus
    connection broke) although its unit ran on to its end."""
    cursor = units_machine.succeed("journalctl -n 0 --show-cursor --no-pager "
                                   "| sed -n 's/^-- cursor: //p'").strip()
    run_id = SCENARIO["start"](units_machine, "units-five")
    unit = SCENARIO["unit_of"](run_id)
    units_machine.wait_until_succeeds(f"systemctl is-active {unit}")
    units_machine.succeed("sleep 1 && systemctl restart dbus")
    run = SCENARIO["finished"](units_machine, run_id, timeout=90)
    assert run["status"] == "succeeded", run
    assert SCENARIO["steps_of"](run)["s0"]["result"] == {"step": "s0", "slept": 5}, run
    assert SCENARIO["ledger"](units_machine, run_id) == "s0\n", "the step ran more than once"
    said = [r["MESSAGE"] for r in units_machine.journal(
        "-u", "orchestratord.service", f"--after-cursor={cursor}")]
    lost = [m for m in said if m.startswith("lost the system bus")]
    regained = [m for m in said if m.startswith("regained the system bus")]
    assert lost and regained, said
    assert units_machine.succeed(f"ls {SCENARIO['STATE']}/step-units").strip() == ""


def test_exposure_of_a_default_step_unit(units_machine: Machine) -> None:
    run_id = SCENARIO["start"](units_machine, "units-long")
    unit = SCENARIO["unit_of"](run_id)
    units_machine.wait_until_succeeds(f"systemctl is-active {unit}")
    _, out = units_machine.execute(f"systemd-analyze security --no-pager {unit}")
    units_machine.succeed(f"orchestratorctl cancel {run_id}")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out)
    assert match, out
    score = float(match.group(1))
    log.info("systemd-analyze security of a default step unit: %.1f\n%s", score, out)
    print(f"\nexposure of a default step unit: {score}")
    assert score <= 1.5, out
