"""The MCP server's backend without a daemon: the engine in this process, on the state
file, with the workflows of a directory (the settings' workflows_dir, or --workflows).

Runs started here are driven by this process, as `orchestratorctl run FILE` drives
its run: when the server stops, a run still going is left interrupted, and
`orchestratorctl resume RUN` (or resume_run) continues it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..core.errors import OrchestratorError, RunStateError, WorkflowNotFound
from ..core.redact import RunRedactor
from ..core.statuses import FINAL
from ..core.suggest import did_you_mean
from ..daemon.api import run_json
from ..engine.engine import Engine, check_resumable
from ..language.catalog import Catalog, load_catalog
from ..language.loader import Definition, stored_definition
from ..language.settings import Settings
from ..language.skill_routing import router_of
from ..observability.alerts import AlertManager
from ..reports.report import build_report
from ..reports.workflow_info import describe_workflow
from ..skills.describe import describe, describe_all, document
from ..store.sqlite import Store

log = logging.getLogger("orchestratord.mcp")


class EmbeddedBackend:
    """An engine on the state file, driving the runs this server starts."""

    def __init__(self, state: Path, settings: Settings, workflows_dir: Path | None,
                 skill_paths: list[Path]):
        self.where = str(state)
        self._state, self._settings = state, settings
        self._workflows_dir, self._skill_paths = workflows_dir, skill_paths
        self.catalog = Catalog()
        self._store: Store | None = None
        self._engine: Engine | None = None
        self._alerts: AlertManager | None = None
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._changed = asyncio.Event()  # set, then replaced, on each engine event

    async def open(self) -> EmbeddedBackend:
        self.catalog = load_catalog(self._workflows_dir, self._skill_paths)
        self._store = store = await Store.open(self._state)
        # As for embedded runs of the CLI: what skills write lives beside the state file.
        self._engine = Engine(store, settings={"state_dir": str(self._state.parent.resolve()),
                                               "skills": self._settings.skills})
        self._alerts = AlertManager(store, self._settings.alerts)
        self._engine.listeners += [self._alerts, self._on_event]
        return self

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()  # the run is left interrupted, resumable
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self._alerts is not None:
            await self._alerts.close(grace=30.0)
        if self._engine is not None:
            await self._engine.close()
        if self._store is not None:
            await self._store.close()

    @property
    def store(self) -> Store:
        assert self._store is not None, "open() first"
        return self._store

    @property
    def engine(self) -> Engine:
        assert self._engine is not None, "open() first"
        return self._engine

    def _on_event(self, event: dict[str, Any]) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _spawn(self, run_id: str, work: Any) -> None:
        async def guarded() -> None:
            try:
                await work
            except RunStateError as exc:  # e.g. an old attempt it cannot stop: the run shows it
                log.warning("run %s: %s", run_id, exc)
            except Exception:  # a bug must not take the server down with it
                log.exception("run %s failed inside the engine", run_id)
        task = asyncio.create_task(guarded(), name=f"run-{run_id}")
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run_id, None))

    def _stored(self, run: Any) -> Definition:
        return stored_definition(run.definition, run.file, self.catalog.skills)

    def _served(self, name: str) -> Definition:
        definition = self.catalog.workflows.get(name)
        if definition is None:
            raise WorkflowNotFound(name, list(self.catalog.workflows))
        return definition

    async def list_workflows(self) -> list[dict[str, Any]]:
        return [{"name": d.name, "description": d.workflow.description, "file": d.file,
                 "steps": len(d.graph.nodes)} for d in self.catalog.workflows.values()]

    async def describe_workflow(self, name: str) -> dict[str, Any]:
        return describe_workflow(self._served(name))

    async def _start(self, definition: Definition, params: dict[str, Any]) -> str:
        run_id = await self.engine.start(definition, params)
        self._spawn(run_id, self.engine.drive(run_id, definition))
        return run_id

    async def start_run(self, workflow: str, params: dict[str, Any]) -> str:
        return await self._start(self._served(workflow), params)

    async def call_skill(self, skill: str, action: str, params: dict[str, Any]) -> str:
        from ..language.calls import call_definition
        return await self._start(call_definition(self.catalog.skills, skill, action, params), {})

    async def get_run(self, run_id: str) -> dict[str, Any]:
        run = await self.store.get_run(run_id)
        run, steps, attempts = RunRedactor.for_run(run).rows(
            run, await self.store.steps(run.id), await self.store.attempts(run.id))
        return {**run_json(run), "steps": [asdict(s) for s in steps],
                "attempts": [asdict(a) for a in attempts]}

    async def list_runs(self, workflow: str | None, status: str | None,
                        limit: int) -> list[dict[str, Any]]:
        runs = await self.store.list_runs(workflow=workflow, status=status, limit=limit)
        return [run_json(RunRedactor.for_run(r).rows(r)[0]) for r in runs]

    async def report(self, run_id: str) -> dict[str, Any]:
        return await build_report(self.store, run_id)

    async def events(self, run_id: str, after: int) -> AsyncIterator[dict[str, Any]]:
        run = await self.store.get_run(run_id)
        redacted = RunRedactor.for_run(run)
        while True:
            changed = self._changed
            events = await self.store.events(run.id, after=after)
            for event in events:
                after = event.seq
                yield redacted(asdict(event))
            if not events and (await self.store.get_run(run.id)).status in FINAL:
                return
            try:  # woken by this engine's events; runs driven elsewhere are polled
                await asyncio.wait_for(changed.wait(), 1.0)
            except TimeoutError:
                pass

    async def last_seq(self, run_id: str) -> int:
        seq = 0
        while events := await self.store.events(run_id, after=seq):  # a batch at a time
            seq = events[-1].seq
        return seq

    async def cancel_run(self, run_id: str) -> None:
        run = await self.store.get_run(run_id)
        await self.engine.cancel_run(run.id, self._stored(run))

    async def resume_run(self, run_id: str) -> str:
        run = await self.store.get_run(run_id)
        if run.id in self._tasks:
            raise RunStateError(f"run {run.id} is running")
        check_resumable(run)  # a tool error to the agent, not a line in the log
        self._spawn(run.id, self.engine.resume(run.id, self._stored(run)))
        return run.id

    async def list_skills(self) -> list[dict[str, Any]]:
        return describe_all(self.catalog.skills)

    async def read_skill(self, name: str) -> dict[str, Any]:
        skill = self.catalog.skills.get(name)
        if skill is None:
            known = self.catalog.skills.skills
            raise OrchestratorError(f"no skill '{name}'{did_you_mean(name, known)}")
        return {**describe(skill), "document": document(skill)}

    async def route(self, text: str, limit: int) -> dict[str, Any]:
        return router_of(self.catalog.skills).route(text, limit).as_dict()
