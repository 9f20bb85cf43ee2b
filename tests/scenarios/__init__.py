"""End-to-end scenarios shared by the container tests and the NixOS VM tests.

Each scenario file (deploy.py, health_failure.py, service_startup.py, step_units.py) defines
`run(machine) -> None` and uses only the NixOS test driver's machine API (succeed,
fail, execute, wait_for_unit, wait_until_succeeds, systemctl) and the standard library.
It imports nothing from the project but `scenario_common` (this directory's helpers for
asking orchestratorctl about runs): the container tests (tests/system/test_scenarios.py)
and the VM tests (nix/tests/) both put this directory on sys.path and exec the file's
text, so what runs is the same.

What a scenario expects of its machine is written at the top of its file. Everything a
machine must have is here, as data both layers read:

- `machine/skills.json`: the `skills` section of the daemon settings
  (/etc/agent-orchestrator/settings.json in the container; `settings.skills` in Nix via
  `lib.importJSON`).
- `machine/workflows/*.json`: workflows besides the example, served by the daemon.
- the example deploy-nixos-system steps served as workflow `deploy`
  (Nix: `workflows.deploy`), so that `systemctl start orchestrator@deploy` runs them.
- the unit `agent-orchestrator-example-model.service` (shipped in orchestratord/daemon/units/),
  listening on 127.0.0.1:8088, startable by the daemon.

step_units.py has a machine of its own (`machine/step-units/`: the `box` skill and its
workflows, with `step_units: always`), set up by tests/system/test_step_units.py and
nix/tests/step-units.nix; it is not among SCENARIOS, which share one machine.

Only the machine setup differs between the layers (paths, how files get there); the
scenario text does not.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
MACHINE = HERE / "machine"
SKILLS_SETTINGS = MACHINE / "skills.json"
WORKFLOWS = MACHINE / "workflows"
SCENARIOS = ("deploy", "health_failure", "service_startup")
STEP_UNITS = MACHINE / "step-units"


def load(name: str) -> Callable[[Any], None]:
    """The `run` of a scenario, from exec'ing its file as the VM test driver does."""
    return namespace(name)["run"]


def namespace(name: str) -> dict[str, Any]:
    """What a scenario file defines (its `run` and the parts it is made of), exec'd."""
    path = HERE / f"{name}.py"
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))  # for `import scenario_common`, as the VM test does
    defined: dict[str, Any] = {"__name__": f"scenario_{name}", "__file__": str(path)}
    exec(compile(path.read_text(), str(path), "exec"), defined)
    return defined
