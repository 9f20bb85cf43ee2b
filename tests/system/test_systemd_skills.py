"""The skills' integration tests that need systemd as PID 1, run where it is: in the container.

On the host they skip (no systemd); here they run against the package as installed in
the container, under its real systemd: unit checks, a transient unit started and stopped
by ai-service-management, a failing unit whose result and journal the failure reports.
"""

from __future__ import annotations

import shlex
import xml.etree.ElementTree as ET

import pytest

from .conftest import EXTRAS, PROJECT_ROOT
from .machine import Machine

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

WORKDIR = "/opt/agent-orchestrator-tests"
FILES = ("tests/integration/test_skill_health.py", "tests/integration/test_skill_services.py")
# The tests of those files that skip without systemd: each must pass here, not skip.
UNDER_SYSTEMD = {"test_unit_checks_under_systemd", "test_start_waits_for_active_and_stop_stops",
                 "test_start_of_a_failing_unit_reports_result_and_journal"}


def test_systemd_dependent_skill_tests_pass_under_real_systemd(machine: Machine,
                                                               installed_project: str) -> None:
    venv = installed_project
    links = "$(for d in /wheels/*; do printf -- '--find-links %s ' \"$d\"; done)"
    machine.succeed(f"{venv}/bin/pip install --disable-pip-version-check --no-index {links} "
                    f"'agent-orchestrator[{EXTRAS}]'", timeout=600)
    # The tests and their configuration, not the sources: they test the installed package.
    machine.succeed(f"rm -rf {WORKDIR} && mkdir -p {WORKDIR}")
    machine.copy_from_host(PROJECT_ROOT / "tests", f"{WORKDIR}/tests")
    machine.copy_from_host(PROJECT_ROOT / "pyproject.toml", f"{WORKDIR}/pyproject.toml")

    rc, out = machine.execute(
        f"cd {WORKDIR} && {venv}/bin/python -m pytest -p no:cacheprovider -q -rs "
        f"--junitxml={WORKDIR}/junit.xml {' '.join(map(shlex.quote, FILES))}", timeout=600)
    assert rc == 0, out

    report = ET.fromstring(machine.succeed(f"cat {WORKDIR}/junit.xml"))
    outcome = {}
    for case in report.iter("testcase"):
        kinds = {child.tag for child in case} & {"skipped", "failure", "error"}
        outcome[case.get("name")] = kinds.pop() if kinds else "passed"
    assert {name: outcome.get(name) for name in UNDER_SYSTEMD} == dict.fromkeys(UNDER_SYSTEMD,
                                                                               "passed"), out
    assert "failure" not in outcome.values() and "error" not in outcome.values(), out
