"""Where a skill's command comes from: relative paths stay inside the skill's directory.

`command: [../../../bin/sh]` and a missing `scripts/x.sh` once passed validate, and
the first ran /bin/sh: the command ran with the skill's directory as its working
directory, so a relative path could name any program on the machine.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import yaml

from orchestratord.core.errors import DefinitionError, StepFailure
from orchestratord.engine.context import StepContext, step_logger
from orchestratord.engine.runners import run_action
from orchestratord.language.loader import load_workflow
from orchestratord.skills import load_skill_dir
from tests.conftest import write_workflow


def skill(root: Path, command: list[str], *, script: str | None = None, mode: int = 0o755) -> Path:
    directory = root / "s"
    (directory / "scripts").mkdir(parents=True)
    (directory / "SKILL.md").write_text("---\nname: s\ndescription: d\n---\n")
    (directory / "actions.yaml").write_text(
        "actions:\n  go:\n    command: " + yaml.safe_dump(command, default_flow_style=True))
    if script is not None:
        (directory / script).write_text("#!/bin/sh\necho '{}'\n")
        (directory / script).chmod(mode)
    return directory


def problems_of(directory: Path) -> list[str]:
    found, problems = load_skill_dir(directory)
    assert (found is None) == bool(problems)
    return [str(p) for p in problems]


def test_a_path_out_of_the_skill_is_refused_at_its_line(tmp_path):
    directory = skill(tmp_path, ["../../../bin/sh"])
    assert problems_of(directory) == [
        f"{directory}/actions.yaml:3:15: actions.go.command[0]: command '../../../bin/sh' "
        f"leads out of the skill's directory {directory.resolve()}"]


def test_a_missing_script_is_refused(tmp_path):
    directory = skill(tmp_path, ["scripts/x.sh"])
    assert problems_of(directory) == [
        f"{directory}/actions.yaml:3:15: actions.go.command[0]: command 'scripts/x.sh': "
        f"no such file in the skill's directory {directory.resolve()}"]


def test_a_script_that_cannot_run_is_refused(tmp_path):
    directory = skill(tmp_path, ["scripts/x.sh"], script="scripts/x.sh", mode=0o644)
    [problem] = problems_of(directory)
    assert problem.endswith("command 'scripts/x.sh' is not executable "
                            f"(chmod +x {directory.resolve()}/scripts/x.sh)")


def test_a_symlink_out_of_the_skill_is_refused(tmp_path):
    directory = skill(tmp_path, ["./scripts/x.sh"])
    (directory / "scripts" / "x.sh").symlink_to("/bin/sh")
    [problem] = problems_of(directory)
    assert "command './scripts/x.sh' leads out of the skill's directory" in problem


@pytest.mark.parametrize("command", [["python3", "-c", "pass"], ["./scripts/x.sh"],
                                     ["scripts/x.sh"],
                                     # a store path of a system not yet built: checked when run
                                     ["/nix/store/00000000000000000000000000000000-x/bin/x"]])
def test_names_on_path_absolute_paths_and_scripts_of_the_skill_load(tmp_path, command):
    directory = skill(tmp_path, command, script="scripts/x.sh")
    assert problems_of(directory) == []


def test_inline_skills_are_confined_to_the_workflow_directory(tmp_path):
    path = write_workflow(tmp_path, """
        workflow:
          name: w
          steps: [{skill: local, action: go}]
        skills:
          local:
            actions:
              go: {command: [../escape.sh]}
    """)
    with pytest.raises(DefinitionError) as info:
        load_workflow(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:7:22: skills.local.actions.go.command[0]: command '../escape.sh' leads "
        f"out of the skill's directory {tmp_path.resolve()}"]


def test_the_runner_checks_again_what_changed_since_loading(tmp_path):
    """A script replaced by a symlink out of the skill after validation is not run."""
    directory = skill(tmp_path, ["scripts/x.sh"], script="scripts/x.sh")
    found, _ = load_skill_dir(directory)
    os.unlink(directory / "scripts" / "x.sh")
    (directory / "scripts" / "x.sh").symlink_to("/bin/sh")
    ctx = StepContext(run_id="r", workflow="w", step_id="s", skill="s", action="go", attempt=1,
                      idempotency_key="r/s", log=step_logger("orchestratord.step"),
                      skill_dir=found.directory)
    with pytest.raises(StepFailure, match="leads out of the skill's directory"):
        asyncio.run(run_action(found.actions["go"], {}, ctx, http_session=None))


def test_the_runner_runs_the_script_of_the_skill(tmp_path):
    directory = skill(tmp_path, ["scripts/x.sh"], script="scripts/x.sh")
    found, _ = load_skill_dir(directory)
    ctx = StepContext(run_id="r", workflow="w", step_id="s", skill="s", action="go", attempt=1,
                      idempotency_key="r/s", log=step_logger("orchestratord.step"),
                      skill_dir=found.directory)
    assert asyncio.run(run_action(found.actions["go"], {}, ctx, http_session=None)) == {}
