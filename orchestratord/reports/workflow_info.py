"""A served workflow described for a caller that is about to start it: its params as a
JSON Schema, its steps and their edges, and the DAG as a Mermaid picture.

The daemon's `GET /workflows/NAME` and the MCP server's `describe_workflow` show this;
secret params never show their defaults.
"""

from __future__ import annotations

from typing import Any

from ..core.redact import is_secret_name
from ..language.loader import Definition
from .render import mermaid


def params_schema(definition: Definition) -> dict[str, Any]:
    """The JSON Schema of the params object a run of definition accepts."""
    properties: dict[str, Any] = {}
    required = []
    for name, spec in definition.workflow.params.items():
        prop: dict[str, Any] = {}
        if spec.type:
            prop["type"] = spec.type
        if spec.description:
            prop["description"] = spec.description
        if spec.secret or is_secret_name(name):
            prop["writeOnly"] = True  # a secret: its default is not shown
        elif spec.default is not None:
            prop["default"] = spec.default
        if spec.required:
            required.append(name)
        properties[name] = prop
    return {"type": "object", "properties": properties, "required": required,
            "additionalProperties": False}


def describe_workflow(definition: Definition) -> dict[str, Any]:
    """name, description, file, params (JSON Schema), steps (id, skill, action, edges,
    parallel group) and graph (Mermaid)."""
    graph = definition.graph
    group_of = {m: gid for gid, members in graph.groups.items() for m in members}
    steps = [{"id": n.id, "skill": n.step.skill, "action": n.step.action,
              "depends_on": list(n.deps), "parallel_group": group_of.get(n.id)}
             for n in graph.nodes.values()]
    return {"name": definition.name, "description": definition.workflow.description,
            "file": definition.file, "params": params_schema(definition), "steps": steps,
            "graph": mermaid(graph)}
