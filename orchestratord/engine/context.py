"""What a running action knows about where it runs: passed in, never global."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.statuses import EventKind
from ..store.workspaces import workspace_dir

# journald MESSAGE_IDs of run lifecycle records: random 128-bit ids, generated once
# (`python -c 'import uuid; print(uuid.uuid4().hex)'`) and never changed, as journald
# catalogs expect.
MESSAGE_IDS = {
    EventKind.RUN_STARTED: "f446608fec154ea3937484243ef77427",
    EventKind.RUN_SUCCEEDED: "dae3034fb2f641d0bf0eff6a1de3aca9",
    EventKind.RUN_FAILED: "4def8be22be84f989496f502ade47ca4",
}


@dataclass(frozen=True)
class StepContext:
    """The identity of one attempt of one step, and the services it may use.

    `log` carries the structured fields (WORKFLOW, RUN_ID, STEP_ID, SKILL, ACTION,
    ATTEMPT) so that every record an action writes can be filtered by run and step.
    `settings` is the daemon's settings mapping; skills read their own section of it.
    `run_view` returns the run as stored so far (its run, steps, attempts and events
    rows), its secrets masked, for skills such as status reports; it is None where no
    store is attached.
    `on_spawn` is awaited with the pid of a process group a runner starts, before the
    group is given any work, so that the store knows what to stop if the driver dies.
    """

    run_id: str
    workflow: str
    step_id: str
    skill: str
    action: str
    attempt: int
    idempotency_key: str
    log: logging.LoggerAdapter
    skill_dir: Path | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    run_view: Any = None
    on_spawn: Callable[[int], Awaitable[None]] | None = None

    @property
    def workspace(self) -> Path | None:
        """The run's workspace: <state_dir>/workspaces/<run_id>, shared by its steps.

        One step leaves files there (a clone, a build) for the next to use, the way a CI
        job's steps share a checkout, so no workflow has to thread paths through params.
        Retries and resumes of the run see the same directory; the daemon removes it
        `workspace_retention` after the run ended (workspaces.py). It is not created here:
        most steps never use it, and a skill that writes to it creates it.
        None where the settings name no state directory.
        """
        state_dir = (self.settings or {}).get("state_dir")
        return workspace_dir(state_dir, self.run_id) if state_dir else None

    def env(self) -> dict[str, str]:
        """Environment variables that tell a command which step and attempt it is."""
        env = {
            "ORCHESTRATOR_RUN_ID": self.run_id,
            "ORCHESTRATOR_WORKFLOW": self.workflow,
            "ORCHESTRATOR_STEP_ID": self.step_id,
            "ORCHESTRATOR_SKILL": self.skill,
            "ORCHESTRATOR_ACTION": self.action,
            "ORCHESTRATOR_ATTEMPT": str(self.attempt),
            "ORCHESTRATOR_IDEMPOTENCY_KEY": self.idempotency_key,
        }
        if self.skill_dir is not None:
            env["ORCHESTRATOR_SKILL_DIR"] = str(self.skill_dir)
        if self.workspace is not None:
            env["ORCHESTRATOR_WORKSPACE"] = str(self.workspace)
        return env


class StepLogger(logging.LoggerAdapter):
    """A logger adapter whose records carry journald fields in `extra`; a call's own
    `extra={"fields": {...}}` adds to them (LoggerAdapter alone would drop the call's)."""

    def __init__(self, logger: logging.Logger, fields: dict[str, Any]):
        super().__init__(logger, {"fields": fields})
        self.fields = fields

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]
                ) -> tuple[Any, MutableMapping[str, Any]]:
        own = (kwargs.get("extra") or {}).get("fields") or {}
        kwargs["extra"] = {"fields": {**self.fields, **own}}
        return msg, kwargs


def step_logger(name: str, **fields: Any) -> StepLogger:
    """A logger adapter whose records carry journald fields in `extra`."""
    return StepLogger(logging.getLogger(name), fields)
