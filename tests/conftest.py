"""Shared fixtures: real skill directories and workflow files in tmp_path."""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import pytest
import yaml

PY = sys.executable


def unavailable(reason: str, *, module_level: bool = False) -> NoReturn:
    """Skip a test that cannot run here, saying why; under CI=true, where everything it
    needs is installed (scripts/setup, .ci/run), fail instead: CI never skips in silence."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this test must run there, not skip)", pytrace=False)
    pytest.skip(reason, allow_module_level=module_level)


def require_tool(name: str, install: str, *, module_level: bool = False) -> str:
    """The path of an external tool a test needs, or unavailable() saying how to install it."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed ({install})", module_level=module_level)
    return path


def require_module(name: str, install: str) -> ModuleType:
    """pytest.importorskip with the CI guard of unavailable()."""
    try:
        return importlib.import_module(name)
    except ImportError:
        unavailable(f"Python module {name} is not installed ({install})")


def write_skill(root: Path, name: str, actions: dict[str, Any], *, description: str = "",
                concurrency: int | None = None) -> Path:
    """A skill directory: SKILL.md with frontmatter plus actions.yaml."""
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "SKILL.md").write_text(
        f"---\nname: {name}\ndescription: {description or 'test skill ' + name}\n"
        f"version: 1.0.0\n---\n\n# {name}\n")
    doc: dict[str, Any] = {"actions": actions}
    if concurrency:
        doc["concurrency"] = concurrency
    (directory / "actions.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return directory


def py_command(code: str) -> list[str]:
    """argv running Python code; the code reads params from stdin as JSON."""
    return [PY, "-c", textwrap.dedent(code)]


ECHO = py_command("""
    import json, sys
    params = json.load(sys.stdin)
    json.dump({"params": params}, sys.stdout)
""")


@pytest.fixture
def skill_root(tmp_path: Path) -> Path:
    """A skills/ directory beside the workflow files of a test."""
    root = tmp_path / "skills"
    root.mkdir()
    return root


@pytest.fixture
def seed_skills(skill_root: Path) -> Path:
    """Small real command skills with the names and actions the example workflows use."""
    for skill, actions in {
        "nixos-deployment": ["generate_config"], "health-monitoring": ["check"],
        "ai-service-management": ["start", "stop"], "project-import": ["import_github"],
        "code-review": ["review_changes"], "webapp-testing": ["run_tests"],
        "internal-comms": ["status_report"],
    }.items():
        write_skill(skill_root, skill, {a: {"command": ECHO} for a in actions})
    return skill_root


def write_workflow(directory: Path, text: str, name: str = "wf.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path
