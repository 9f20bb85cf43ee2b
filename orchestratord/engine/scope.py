"""What a run's expressions (`when`, `{{ }}`, aggregates) see of it: its params, each
step's view (status, result, error, attempts, duration), a parallel group's members side
by side, and the steps each aggregate selects."""

from __future__ import annotations

from typing import Any

from ..core.statuses import STEP_FAILING, StepStatus
from ..language import aggregate
from ..language.loader import Definition


def expression_scope(definition: Definition, run_id: str, params: dict[str, Any],
                     views: dict[str, dict[str, Any]], refs: frozenset[str] | None,
                     selectors: frozenset[aggregate.Selector]) -> dict[str, Any]:
    """params, the referenced steps (all if None), run; and the steps each aggregate
    selects (read by `aggregate`, not by name)."""
    graph = definition.graph
    chosen = {s.key: definition.select(s) for s in selectors}
    names = views.keys() | graph.groups.keys() if refs is None else refs
    names = names | {sid for ids in chosen.values() for sid in ids}
    steps = {}
    for name in names:
        members = graph.groups.get(name)
        steps[name] = group_view({m: views[m] for m in members}) if members else views[name]
    return {"params": params, "steps": steps,
            "run": {"id": run_id, "workflow": definition.name},
            aggregate.SELECTIONS_KEY: chosen}


def step_view(status: str, result: Any, error: str | None, attempts: int,
          duration: float | None) -> dict[str, Any]:
    return {"status": status, "result": result, "error": error, "attempts": attempts,
            "duration": duration}


def group_view(members: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A parallel group as expressions see it: its members' results side by side."""
    statuses = {v["status"] for v in members.values()}
    status = (StepStatus.SUCCEEDED if statuses == {StepStatus.SUCCEEDED} else
              StepStatus.FAILED if statuses & STEP_FAILING else
              StepStatus.SKIPPED if statuses == {StepStatus.SKIPPED} else "mixed")
    return {"status": status, "result": {k: v["result"] for k, v in members.items()},
            "steps": members}
