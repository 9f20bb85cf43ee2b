"""Collecting the results of many steps in one expression: `steps_matching` and `results`.

    steps_matching('check-*')                  [{id, status, result, error, attempts,
                                                 duration}, ...] of the steps whose id
                                                 matches the glob, in declaration order
    steps_matching(capability='health.check')  ... whose action declares the capability
    results('check-*')                         the results of those that succeeded

Both arguments may be given (a step must match both). They are string literals, so what
an expression reads is known when the workflow loads: the loader checks, as for
`steps.x`, that every selected step has finished before the reading step starts, and an
empty selection is an error there. At run time the caller passes the selection it made
from the definition under SELECTIONS_KEY, a name no expression can reach.

Cost: one entry per selected step, built from views the caller already holds and
charged to the evaluation's budget; so a call with literal arguments is cheap.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes

from ..core.errors import ExpressionError
from ..core.statuses import StepStatus
from .sandbox import Budget

NAMES = ("steps_matching", "results")
SELECTIONS_KEY = "_selections"


@dataclass(frozen=True)
class Selector:
    """Which steps an aggregate reads: an id glob, a declared capability, or both."""

    pattern: str | None = None
    capability: str | None = None

    @property
    def key(self) -> str:
        return f"{self.pattern or ''}\0{self.capability or ''}"

    def __str__(self) -> str:
        """As messages name it: "matching 'check-*'", "declaring capability 'x.y'"."""
        parts = [f"matching {self.pattern!r}"] if self.pattern is not None else []
        parts += [f"declaring capability {self.capability!r}"] if self.capability else []
        return " and ".join(parts)

    def matches(self, step_id: str, capabilities: Iterable[str]) -> bool:
        return (self.pattern is None or fnmatch.fnmatchcase(step_id, self.pattern)) and \
            (self.capability is None or self.capability in capabilities)


def select(selector: Selector, capabilities: Mapping[str, Iterable[str]]) -> tuple[str, ...]:
    """Ids of the steps selector reads, in the order of `capabilities` (declaration)."""
    return tuple(sid for sid, caps in capabilities.items() if selector.matches(sid, caps))


def calls(tree: nodes.Node) -> list[nodes.Call]:
    """The aggregate calls in an expression's tree."""
    found = [tree, *tree.find_all(nodes.Call)] if isinstance(tree, nodes.Call) \
        else list(tree.find_all(nodes.Call))
    return [c for c in found if isinstance(c.node, nodes.Name) and c.node.name in NAMES]


def selector_of(call: nodes.Call, source: str) -> Selector:
    """What one call reads; ExpressionError unless its arguments are string literals."""
    name = call.node.name  # type: ignore[attr-defined]
    usage = (f"expression {source!r}: {name}() takes a step id pattern and/or "
             f"capability='...' as string literals, e.g. {name}('check-*') or "
             f"{name}(capability='health.check')")
    if call.dyn_args or call.dyn_kwargs or len(call.args) > 1 or \
            any(k.key != "capability" for k in call.kwargs):
        raise ExpressionError(usage)
    values = [*call.args, *(k.value for k in call.kwargs)]
    if not values or not all(isinstance(v, nodes.Const) and isinstance(v.value, str)
                             and v.value for v in values):
        raise ExpressionError(usage)
    pattern = call.args[0].value if call.args else None  # type: ignore[attr-defined]
    capability = call.kwargs[0].value.value if call.kwargs else None  # type: ignore[attr-defined]
    return Selector(pattern, capability)


def functions(scope: Mapping[str, Any], budget: Budget) -> dict[str, Callable[..., Any]]:
    """The aggregate functions of one evaluation over scope."""
    steps = scope.get("steps") or {}
    chosen = scope.get(SELECTIONS_KEY) or {}

    def steps_matching(pattern: str | None = None, capability: str | None = None) -> list:
        selector = Selector(pattern, capability)
        ids = chosen.get(selector.key)
        if ids is None:  # the caller selected for what the expression says, always
            raise ExpressionError(f"the steps {selector} were not selected for this evaluation")
        budget.charge(7 * len(ids), f"steps {selector}")  # an entry: a mapping of six keys
        return [{"id": sid, **steps[sid]} for sid in ids]

    def results(pattern: str | None = None, capability: str | None = None) -> list:
        return [s["result"] for s in steps_matching(pattern, capability)
                if s["status"] == StepStatus.SUCCEEDED]

    return {"steps_matching": steps_matching, "results": results}
