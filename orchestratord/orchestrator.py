"""The Python API of the specification: AgentOrchestrator and its typed results.

    async with AgentOrchestrator(state="state.db", skill_paths=["skills"]) as orch:
        result = await orch.execute_workflow("deploy.yaml", {"host": "web1"})
        checks = await orch.execute_parallel([SkillExecution("health-monitoring", "check")])

Every execution is a recorded run on the same durable store the CLI and the daemon use
(`orchestratorctl show RUN` shows it, `resume RUN` continues it): workflows run through
the engine, and a single action is a one-step run (calls.call_definition).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.paths import default_state_file
from .core.statuses import RunStatus
from .engine.engine import Engine
from .language.calls import call_definition
from .language.loader import Definition, load_data, load_workflow
from .language.skill_registry import Registry, discover, search_path
from .language.skill_routing import Route, router_of
from .store.sqlite import StepRow, Store


@dataclass(frozen=True)
class SkillExecution:
    """One action of one skill to execute, with its params."""

    skill: str
    action: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SkillResult:
    """What one step did: its status, result or error, attempts and duration (seconds)."""

    skill: str
    action: str
    status: str
    result: Any = None
    error: str | None = None
    attempts: int = 0
    duration: float | None = None
    run_id: str = ""
    step_id: str = ""

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.SUCCEEDED


@dataclass(frozen=True)
class WorkflowResult:
    """A run's outcome: its id, status, outputs and each step's SkillResult by step id."""

    run_id: str
    workflow: str
    status: str
    outputs: Any = None
    error: str | None = None
    steps: dict[str, SkillResult] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == RunStatus.SUCCEEDED


class AgentOrchestrator:
    """Runs workflows and skill actions as recorded runs on one state file."""

    def __init__(self, state: str | Path | None = None, skill_paths: Iterable[str | Path] = (),
                 *, settings: Mapping[str, Any] | None = None):
        self.state = Path(state or default_state_file())
        self.skill_paths = [Path(p) for p in skill_paths]
        self._settings = dict(settings or {})
        self.registry: Registry = Registry()
        self._store: Store | None = None
        self._engine: Engine | None = None

    async def __aenter__(self) -> AgentOrchestrator:
        self.registry = discover(search_path(self.skill_paths))
        self._store = await Store.open(self.state)
        # As for embedded runs of the CLI: what skills write lives beside the state file.
        settings = {"state_dir": str(self.state.parent.resolve()), **self._settings}
        self._engine = Engine(self._store, settings=settings)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.close()
            self._engine = None
        if self._store is not None:
            await self._store.close()
            self._store = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("use AgentOrchestrator as `async with AgentOrchestrator(...)`")
        return self._engine

    async def execute_workflow(self, workflow: str | Path | Mapping[str, Any] | Definition,
                               context: Mapping[str, Any] | None = None) -> WorkflowResult:
        """Run a workflow (file path, mapping in the workflow format, or loaded definition)
        with context as its params; raises DefinitionError or ParamsError when invalid."""
        definition = self._definition(workflow)
        run = await self.engine.run(definition, dict(context or {}))
        steps = await self.engine.store.steps(run.run_id)
        return WorkflowResult(run.run_id, definition.name, run.status, run.outputs, run.error,
                              {row.step_id: _skill_result(row) for row in steps})

    async def call(self, skill: str, action: str,
                   params: Mapping[str, Any] | None = None) -> SkillResult:
        """Run one action as a recorded one-step run."""
        result = await self.execute_workflow(call_definition(self.registry, skill, action, params))
        (step,) = result.steps.values()
        return step

    async def execute_parallel(self, executions: Sequence[SkillExecution]) -> list[SkillResult]:
        """Run every execution at once, each a recorded run; results in the given order."""
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self.call(e.skill, e.action, e.params))
                     for e in executions]
        return [t.result() for t in tasks]

    async def execute_sequence(self, executions: Sequence[SkillExecution]) -> list[SkillResult]:
        """Run executions one after another; stops after the first that does not succeed."""
        results = []
        for e in executions:
            results.append(await self.call(e.skill, e.action, e.params))
            if not results[-1].ok:
                break
        return results

    def route(self, text: str, limit: int = 5) -> Route:
        """Which skill and action fit a request (see skills.routing)."""
        return router_of(self.registry).route(text, limit)

    def _definition(self, workflow: Any) -> Definition:
        if isinstance(workflow, Definition):
            return workflow
        if isinstance(workflow, (str, Path)):
            return load_workflow(workflow, skill_paths=self.skill_paths)
        return load_data(dict(workflow), "<workflow>", self.registry, Path.cwd())


def _skill_result(row: StepRow) -> SkillResult:
    return SkillResult(row.skill, row.action, row.status, row.result, row.error, row.attempts,
                       row.duration, row.run_id, row.step_id)
