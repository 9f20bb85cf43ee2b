"""The state database's rows as Python values: one frozen dataclass a table, read by
column name (sqlite3.Row), never by position; JSON columns decoded."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class RunRow:
    id: str
    workflow: str
    status: str
    params: dict[str, Any]
    definition: dict[str, Any]
    file: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    outputs: Any
    error: str | None
    lease_owner: str | None
    lease_expires: float | None
    cancel_requested: bool


@dataclass(frozen=True)
class StepRow:
    # The columns of that name (the table has more, for statistics): see STEP_COLUMNS.
    run_id: str
    step_id: str
    position: int
    skill: str
    action: str
    status: str
    attempts: int
    failed_attempts: int
    params: Any
    result: Any
    error: str | None
    started_at: float | None
    finished_at: float | None
    finished_seq: int | None
    not_before: float | None  # earliest start of the next attempt (a retry back-off)

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


STEP_COLUMNS = ", ".join(f.name for f in fields(StepRow))


@dataclass(frozen=True)
class AttemptRow:
    run_id: str
    step_id: str
    kind: str
    attempt: int
    status: str
    started_at: float
    finished_at: float | None
    error: str | None
    exit_code: int | None
    stderr_tail: str | None
    process: str | None  # identity of its process group's leader (processes.py)


ATTEMPT_COLUMNS = ", ".join(f.name for f in fields(AttemptRow))


@dataclass(frozen=True)
class Event:
    seq: int
    run_id: str
    ts: float
    type: str
    step_id: str | None
    attempt: int | None
    data: dict[str, Any]


EVENT_COLUMNS = ", ".join(f.name for f in fields(Event))


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def named(row: sqlite3.Row) -> dict[str, Any]:
    return {name: row[name] for name in row.keys()}  # noqa: SIM118 - a Row is no mapping


def run_row(r: sqlite3.Row) -> RunRow:
    return RunRow(id=r["id"], workflow=r["workflow"], status=r["status"],
                  params=loads(r["params"]), definition=loads(r["definition"]),
                  file=r["file"], created_at=r["created_at"], started_at=r["started_at"],
                  finished_at=r["finished_at"], outputs=loads(r["outputs"]), error=r["error"],
                  lease_owner=r["lease_owner"], lease_expires=r["lease_expires"],
                  cancel_requested=bool(r["cancel_requested"]))


def step_row(r: sqlite3.Row) -> StepRow:
    return StepRow(**{**named(r), "params": loads(r["params"]), "result": loads(r["result"])})
