"""Calling one action of one skill: a one-step workflow, run like any other.

A call is not a second way to execute: it builds a workflow definition of one step and
hands it to the engine, so the params check, retries, timeout, redaction, journald
fields, metrics, `show`, `report` and exit codes are those of every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .loader import Definition, load_data
from .skill_registry import Registry


def call_name(skill: str, action: str) -> str:
    """The workflow name of a call: `call-<skill>-<action>`, as runs and metrics show it."""
    return f"call-{skill}-{action}"[:64]


def call_definition(registry: Registry, skill: str, action: str,
                    params: Mapping[str, Any] | None = None) -> Definition:
    """The checked one-step definition that calls skill.action with params.

    Raises DefinitionError when the skill or action is unknown or the params do not
    fit the action's schema, as for a workflow file with that one step.
    """
    data = {"workflow": {"name": call_name(skill, action),
                         "description": f"call of {skill}.{action}",
                         "steps": [{"skill": skill, "action": action,
                                    "params": dict(params or {})}],
                         # What a call prints: the action's result, as the step gave it.
                         "outputs": {"result": f"{{{{ steps['{skill}'].result }}}}"}}}
    # The pseudo file names the call in messages; resume finds skills as for a file here.
    return load_data(data, f"<call {skill}.{action}>", registry, Path.cwd())
