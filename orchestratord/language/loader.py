"""Workflow files -> checked, ready-to-run definitions.

Stages: parse (YAML/JSON with positions) -> shape (pydantic) -> graph (names, edges,
cycles) -> meaning (skills, actions, params against their schemas, expressions and what
they reference). Every problem of a stage is collected; a later stage runs only where the
earlier one left something to check, so one mistake is not reported five times.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jsonschema

from ..core.errors import DefinitionError, ExpressionError, ParamsError, Problem
from ..core.redact import is_secret_name
from ..core.suggest import did_you_mean
from . import aggregate, expr
from .graph import Graph, build
from .model import STORED, UNION_TAGS, Workflow, WorkflowDocument
from .skill_registry import Registry, Skill, discover, search_path
from .source import Document, Path_, load_file, parse_text
from .step_routes import resolve_steps
from .targets import resolve


@dataclass(frozen=True)
class Definition:
    """A workflow that passed every check, with the skills it runs."""

    workflow: Workflow
    graph: Graph
    skills: Registry
    file: str
    source: dict[str, Any]  # the document as JSON, stored with each run for resume

    @property
    def name(self) -> str:
        return self.workflow.name

    def skill(self, name: str) -> Skill:
        skill = self.skills.get(name)
        assert skill is not None, f"checked at load time: {name}"
        return skill

    def select(self, selector: aggregate.Selector) -> tuple[str, ...]:
        """The steps an aggregate (`steps_matching`, `results`) reads, in declaration order."""
        return aggregate.select(selector, self._capabilities)

    @cached_property
    def _capabilities(self) -> dict[str, tuple[str, ...]]:
        return step_capabilities(self.graph, self.skills)


def step_capabilities(graph: Graph, skills: Registry) -> dict[str, tuple[str, ...]]:
    """What each step's action declares, with its skill's, by step id in declaration order."""
    out = {}
    for node in graph.nodes.values():
        skill = skills.get(node.step.skill or "")
        action = skill.actions.get(node.step.action or "") if skill else None
        out[node.id] = (*skill.capabilities, *action.capabilities) if skill and action else ()
    return out


def load_workflow(path: str | Path, *, skill_paths: Iterable[str | Path] = (),
                  registry: Registry | None = None) -> Definition:
    """Load and check a workflow file; raises DefinitionError listing every problem.

    Skills come from `registry` if given, else from the search path: bundled skills,
    $ORCHESTRATOR_SKILL_PATH, `skill_paths`, and the `skills/` directory beside the file.
    """
    path = Path(path)
    doc = load_file(path)
    if registry is None:
        registry = discover(search_path([*skill_paths, path.parent / "skills"]))
    return check_document(doc, registry, path.parent)


def load_text(text: str, file: str, registry: Registry, directory: Path, *,
              stored: bool = False) -> Definition:
    """Like load_workflow, for a definition held in memory (API bodies, stored runs)."""
    return check_document(parse_text(text, file, json_only=file.endswith(".json")),
                          registry, directory, stored=stored)


def load_data(data: dict[str, Any], file: str, registry: Registry, directory: Path, *,
              stored: bool = False) -> Definition:
    """Check an already parsed definition (e.g. the copy stored with a run)."""
    return load_text(json.dumps(data), file, registry, directory, stored=stored)


def stored_definition(source: dict[str, Any], file: str, registry: Registry) -> Definition:
    """The definition a run started with (stored with it), checked against today's skills.

    Routed steps keep the skill and action they resolved to when the run started.
    """
    return load_data(source, file, registry, Path(file).parent, stored=True)


def check_document(doc: Document, registry: Registry, directory: Path, *,
                   stored: bool = False) -> Definition:
    # Problems such as duplicate keys leave data to check further; syntax errors do not.
    problems = list(doc.problems)
    if doc.data is None and problems:
        raise DefinitionError(problems)
    if not isinstance(doc.data, dict):
        raise DefinitionError([doc.problem((), "expected a mapping with a 'workflow:' key")])
    model, shape_problems = doc.validate(WorkflowDocument, tags=UNION_TAGS,
                                         context=STORED if stored else None)
    if model is None:
        raise DefinitionError(problems + shape_problems)
    skills, skill_problems = registry.merged(model.skills, doc.file, directory, doc)
    problems += skill_problems
    workflow, route_problems = resolve_steps(model.workflow, skills, doc)
    if route_problems:  # an unresolved step has no name yet to build the graph with
        raise DefinitionError(problems + route_problems)
    model = model.model_copy(update={"workflow": workflow})
    graph, graph_problems = build(model.workflow, doc)
    problems += graph_problems
    problems += _check_steps(model.workflow, graph, skills, doc, acyclic=not graph_problems)
    if problems:
        raise DefinitionError(problems)
    source = model.model_dump(mode="json", exclude_unset=True)
    return Definition(model.workflow, graph, skills, doc.file, source)


def _check_steps(workflow: Workflow, graph: Graph, skills: Registry, doc: Document,
                 acyclic: bool) -> list[Problem]:
    problems: list[Problem] = []
    declared = set(workflow.params)
    names = set(graph.nodes) | set(graph.groups)
    capabilities = step_capabilities(graph, skills)

    def refs(at: Path_, compiled: Any, step_id: str | None) -> None:
        for name in sorted(compiled.param_refs - declared):
            problems.append(doc.problem(at, f"params.{name} is not a workflow param"
                                        + did_you_mean(name, declared)))
        for name in sorted(compiled.step_refs):
            if name not in names:
                problems.append(doc.problem(at, f"steps.{name}: no such step"
                                            + did_you_mean(name, names)))
            elif step_id is not None and acyclic and not graph.is_upstream(name, step_id):
                problems.append(doc.problem(at, f"steps.{name} has not finished when step "
                                            f"'{step_id}' starts: add '{name}' to its depends_on"))
        for selector in sorted(compiled.selectors, key=str):
            problems.extend(doc.problem(at, p) for p in _selection_problems(
                selector, capabilities, graph, step_id if acyclic else None))

    def compile_at(at: Path_, value: Any, step_id: str | None, condition: bool = False) -> Any:
        try:
            compiled = expr.Expression.compile(value) if condition else expr.compile_value(value)
        except ExpressionError as exc:
            problems.append(doc.problem(at, str(exc)))
            return None
        refs(at, compiled, step_id)
        return compiled

    for node in graph.nodes.values():
        step, at = node.step, node.path
        action = _action(skills, node.skill, node.action, at, doc, problems)
        params = compile_at(at + ("params",), step.params, node.id)
        if step.when is not None:
            compile_at(at + ("when",), step.when, node.id, condition=True)
        if action is not None and params is not None and action.params is not None:
            problems += _params_problems(doc, at + ("params",), step.params, action.params)
        rollback = step.rollback or (action.rollback if action else None)
        if rollback is not None:
            where = at + ("rollback",) if step.rollback else at + ("action",)
            _action(skills, rollback.skill or node.skill, rollback.action, where, doc, problems,
                    rollback=True)
            if rollback.params is not None:
                # A compensation runs after the step itself, so it may read its result.
                compile_at(where + ("params",), rollback.params, None)
    compile_at(("workflow", "outputs"), workflow.outputs, None)
    return problems


def _selection_problems(selector: aggregate.Selector, capabilities: dict[str, tuple[str, ...]],
                        graph: Graph, step_id: str | None) -> list[str]:
    """An aggregate must select some step, and only steps finished before step_id starts."""
    selected = aggregate.select(selector, capabilities)
    if not selected:
        ids = list(capabilities)
        return [f"no step {selector} (step ids: {', '.join(ids[:12])}"
                f"{', ...' if len(ids) > 12 else ''})"]
    if step_id is None:
        return []
    if step_id in selected:
        return [f"step '{step_id}' reads the steps {selector}, itself among them: select "
                "only steps that finish before it"]
    early = [sid for sid in selected if not graph.is_upstream(sid, step_id)]
    if not early:
        return []
    return [f"the steps {selector} include {', '.join(map(repr, early))}, not finished "
            f"when step '{step_id}' starts: add "
            f"{'it (or its' if len(early) == 1 else 'them (or their'} group) to its depends_on"]


def _action(skills: Registry, skill_name: str, action_name: str, at: Path_, doc: Document,
            problems: list[Problem], rollback: bool = False) -> Any:
    skill = skills.get(skill_name)
    what = "rollback " if rollback else ""
    if skill is None:
        problems.append(doc.problem(at + (() if rollback else ("skill",)),
                                    f"unknown {what}skill '{skill_name}'"
                                    + did_you_mean(skill_name, skills.skills)))
        return None
    if not skill.actions:
        problems.append(doc.problem(at + (() if rollback else ("skill",)),
                                    f"skill '{skill_name}' has no actions the orchestrator can "
                                    f"run (add actions.yaml beside {skill.origin})"))
        return None
    action = skill.actions.get(action_name)
    if action is None:
        hint = did_you_mean(action_name, skill.actions) or \
            f" (it has: {', '.join(sorted(skill.actions))})"
        problems.append(doc.problem(
            at + (() if rollback else ("action",)),
            f"skill '{skill_name}' has no {what}action '{action_name}'{hint}"))
        return None
    if action.python is not None:
        try:
            resolve(action.python)
        except ValueError as exc:
            problems.append(doc.problem(at + (() if rollback else ("action",)),
                                        f"action '{action_name}' of skill '{skill_name}': {exc}"))
    return action


def _params_problems(doc: Document, at: Path_, params: dict[str, Any],
                     schema: dict[str, Any]) -> list[Problem]:
    """Static params checked against the action's schema; templated ones at run time."""
    templated = {k for k, v in params.items() if not expr.compile_value(v).is_static}
    validator = jsonschema.validators.validator_for(schema)(schema)
    out = []
    for error in validator.iter_errors(params):
        where = tuple(error.absolute_path)
        if where and where[0] in templated:
            continue
        out.append(doc.problem(at + where, f"{error.message} (params schema of the action)"))
    return out


_PARAM_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list,
    "object": dict}


def bind_params(workflow: Workflow, given: dict[str, Any]) -> dict[str, Any]:
    """The params of a run: given values over declared defaults, checked."""
    problems = [f"unknown param '{k}'" + did_you_mean(k, workflow.params)
                for k in given if k not in workflow.params]
    bound: dict[str, Any] = {}
    for name, spec in workflow.params.items():
        if name in given:
            value = given[name]
        elif spec.required:
            problems.append(f"param '{name}' is required" +
                            (f": {spec.description}" if spec.description else ""))
            continue
        else:
            value = spec.default
        expected = _PARAM_TYPES.get(spec.type or "")
        if expected and value is not None and (
                not isinstance(value, expected) or
                (spec.type != "boolean" and isinstance(value, bool))):
            got = "a secret" if spec.secret or is_secret_name(name) else repr(value)
            problems.append(f"param '{name}' must be of type {spec.type} (got {got})")
        bound[name] = value
    if problems:
        raise ParamsError("; ".join(problems))
    return bound
