"""Steps that choose their action by `route:` (a request in words) or `capability:`.

They are resolved once, when the workflow loads, over the same skills the loader checks
against: the result is an ordinary step with `skill` and `action` set, so naming,
dependencies and every later check treat it like one written out. The resolution is
kept in the definition stored with a run (beside the route, see model.STORED), so a
resumed run does what it started with even if the skill set changed since.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import Problem
from ..core.suggest import did_you_mean
from .model import ParallelGroup, Step, Workflow
from .skill_registry import Registry
from .skill_routing import router_of
from .source import Document, Path_

CANDIDATES_SHOWN = 5


def resolve_steps(workflow: Workflow, skills: Registry, doc: Document
                  ) -> tuple[Workflow, list[Problem]]:
    """The workflow with every routed step resolved to a skill and action, and the
    problems of those that resolve to none or to several."""
    problems: list[Problem] = []
    router: Any = None

    def resolved(step: Step, at: Path_) -> Step:
        nonlocal router
        if step.routed is None or step.skill is not None:
            return step  # written out, or pinned by a stored run
        router = router or router_of(skills)
        if step.capability is not None:
            pair = _by_capability(router, step.capability, at, doc, problems)
        else:
            pair = _by_route(router, step.route or "", at, doc, problems)
        if pair is None:
            return step
        return step.model_copy(update={"skill": pair[0], "action": pair[1]})

    base: Path_ = ("workflow", "steps")
    items: list[Any] = []
    for i, item in enumerate(workflow.steps):
        if isinstance(item, ParallelGroup):
            members = [resolved(m, base + (i, "parallel", j)) for j, m in enumerate(item.parallel)]
            items.append(item.model_copy(update={"parallel": members}))
        else:
            items.append(resolved(item, base + (i,)))
    return workflow.model_copy(update={"steps": items}), problems


def _by_capability(router: Any, capability: str, at: Path_, doc: Document,
                   problems: list[Problem]) -> tuple[str, str] | None:
    pairs = router.capability(capability)
    if len(pairs) == 1:
        return pairs[0]
    where = at + ("capability",)
    if not pairs:
        known = sorted(router.by_capability)
        hint = did_you_mean(capability, known) or (
            f" (declared ones: {', '.join(known[:12])}{', ...' if len(known) > 12 else ''})"
            if known else " (no skill declares any)")
        problems.append(doc.problem(where, f"no action declares capability '{capability}'{hint}"))
    else:
        names = ", ".join(f"{s}.{a}" for s, a in pairs[:CANDIDATES_SHOWN])
        problems.append(doc.problem(where, f"capability '{capability}' is declared by "
                                    f"{len(pairs)} actions: {names}; name one with skill "
                                    "and action"))
    return None


def _by_route(router: Any, text: str, at: Path_, doc: Document,
              problems: list[Problem]) -> tuple[str, str] | None:
    answer = router.route(text, CANDIDATES_SHOWN)
    if answer.best is not None:
        return answer.best.skill, answer.best.action
    shown = ", ".join(f"{c.skill}.{c.action} ({c.score:g})" for c in answer.candidates)
    if answer.status == "ambiguous":
        message = (f"route {text!r} is ambiguous: {shown} fit about equally; use words "
                   "that tell them apart, or name skill and action")
    else:
        closest = f" (closest: {shown})" if shown else ""
        message = (f"route {text!r} matches no skill's action{closest}; name skill and "
                   "action, or add the request to the `examples` of the action that serves it")
    problems.append(doc.problem(at + ("route",), message + f" (`orchestratorctl route "
                                                          f"{text!r}` shows why)"))
    return None
