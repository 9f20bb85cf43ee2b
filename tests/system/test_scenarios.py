"""The shared scenarios (tests/scenarios/) in a Debian container with real systemd.

The container is set up as tests/scenarios/__init__.py says a scenario machine must be:
the project installed with its units, the daemon settings' skills section from
tests/scenarios/machine/skills.json, the example deploy workflow (copied unchanged, and
served once more under the name `deploy`, as the NixOS module's `workflows.deploy` would),
the scenario workflows, and the example model service. Then each scenario's `run(machine)`
runs exactly as the NixOS VM tests run it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests import scenarios

from .conftest import PROJECT_ROOT, install_project
from .machine import Machine

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

ETC = "/etc/agent-orchestrator"
SEED = PROJECT_ROOT / "workflows" / "deploy-nixos-system.yaml"
BIN = ("orchestratord", "orchestratorctl", "orchestrator-example-model")


def write(machine: Machine, path: str, text: str) -> None:
    machine.execute(f"mkdir -p {shlex.quote(str(Path(path).parent))}")
    rc, out = machine.execute(f"cat > {shlex.quote(path)}", input=text.encode())
    assert rc == 0, out


def settings() -> dict:
    """The container's daemon settings: paths here, the skills section shared with the VM."""
    return {"workflows_dir": f"{ETC}/workflows", "kill_grace": 2,
            "skills": json.loads(scenarios.SKILLS_SETTINGS.read_text())}


def deploy_alias() -> str:
    """The example deploy workflow, served as `deploy`: its steps unchanged, only the name.

    The daemon names a workflow by its `workflow.name`; `orchestrator@deploy` needs one
    named deploy. The NixOS module names a workflow by its attribute (workflows.deploy).
    """
    seed = yaml.safe_load(SEED.read_text())
    return json.dumps({**seed, "workflow": {**seed["workflow"], "name": "deploy"}}, indent=2)


def set_up(machine: Machine) -> None:
    venv = install_project(machine, PROJECT_ROOT)
    machine.succeed(" ".join(["ln -sf", *(f"{venv}/bin/{b}" for b in BIN), "/usr/local/bin/"]))
    units = machine.succeed(f"{venv}/bin/python -c 'import orchestratord, pathlib; "
                            "print(pathlib.Path(orchestratord.__file__).parent / \"daemon\" / \"units\")'").strip()
    machine.succeed(f"cp {units}/*.service /etc/systemd/system/")
    write(machine, f"{ETC}/settings.json", json.dumps(settings(), indent=2))
    machine.copy_from_host(SEED, f"{ETC}/workflows/{SEED.name}")
    write(machine, f"{ETC}/workflows/deploy.json", deploy_alias())
    for workflow in sorted(scenarios.WORKFLOWS.glob("*.json")):
        machine.copy_from_host(workflow, f"{ETC}/workflows/{workflow.name}")
    machine.succeed("systemctl daemon-reload && systemctl start orchestratord.service")


@pytest.fixture(scope="module")
def scenario_machine(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """A container of its own: the scenarios change settings and units other tests rely on."""
    machine = Machine(rootfs, log_dir=tmp_path_factory.mktemp("scenarios"))
    try:
        machine.start()
        set_up(machine)
        yield machine
    finally:
        machine.shutdown()


def test_machine_serves_what_the_scenarios_expect(scenario_machine: Machine) -> None:
    served = scenario_machine.succeed("orchestratorctl workflows")
    names = {line.split("\t")[0] for line in served.splitlines() if "\t" in line}
    expected = {"deploy", "deploy-nixos-system",
                *(json.loads(p.read_text())["workflow"]["name"]
                  for p in scenarios.WORKFLOWS.glob("*.json"))}
    assert expected <= names, served
    # The example file is served byte for byte as written.
    copied = scenario_machine.succeed(f"cat {ETC}/workflows/{SEED.name}")
    assert copied == SEED.read_text()


@pytest.mark.parametrize("name", scenarios.SCENARIOS)
def test_scenario(scenario_machine: Machine, name: str) -> None:
    scenarios.load(name)(scenario_machine)


def test_example_deploy_workflow_runs_unchanged_by_its_own_name(scenario_machine: Machine) -> None:
    scenario_machine.succeed("systemctl start orchestrator@deploy-nixos-system")
    runs = json.loads(scenario_machine.succeed(
        "orchestratorctl runs --workflow deploy-nixos-system --json"))
    assert runs[0]["status"] == "succeeded", runs[0]
