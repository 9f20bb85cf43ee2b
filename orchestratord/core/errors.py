"""The one exception tree of orchestratord.

    OrchestratorError
     ├── DefinitionError      a workflow or skill definition is invalid (all its problems)
     ├── ExpressionError      a `when` or `{{ }}` expression cannot be parsed or evaluated
     ├── ParamsError          the params given to a run do not fit the workflow's params
     ├── WorkflowNotFound     no workflow of that name is served (invalid input, like params)
     ├── StepFailure          a step's action failed; `retryable` says whether to try again
     │    └── StepTimeout     the action ran past its timeout and was stopped
     ├── StoreError           the state database cannot be used
     │    ├── RunNotFound     no run with that id
     │    └── LeaseHeld       another live process drives that run
     └── RunStateError        the run is in a state that forbids the request

Lower-level errors (yaml, pydantic, sqlite, aiohttp, OSError) are translated where they
enter, so callers handle these classes only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class OrchestratorError(Exception):
    """Base of every error orchestratord raises on purpose."""


@dataclass(frozen=True, order=True)
class Problem:
    """One finding in a definition file, located for a person to fix."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column,
                "path": self.path, "message": self.message}


class DefinitionError(OrchestratorError):
    """A definition is invalid; carries every problem found, not only the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ExpressionError(OrchestratorError):
    """An expression cannot be parsed or evaluated; the message says why."""


class ParamsError(OrchestratorError):
    """The params given to a run are unknown, missing or of the wrong type."""


class WorkflowNotFound(OrchestratorError):
    """No workflow of that name is served; `name` is the name asked for."""

    def __init__(self, name: str, known: list[str]):
        self.name = name
        super().__init__(f"no workflow '{name}' (known: {', '.join(sorted(known)) or 'none'})")


class StepFailure(OrchestratorError):
    """A step's action failed.

    `retryable` marks failures worth another attempt (exit 75, HTTP 5xx, connection
    errors, unhealthy checks); `result` carries whatever the action reported anyway.
    """

    kind = "failed"

    def __init__(self, message: str, *, retryable: bool = False, result: Any = None,
                 exit_code: int | None = None, stderr_tail: str = ""):
        super().__init__(message)
        self.retryable = retryable
        self.result = result
        self.exit_code = exit_code
        self.stderr_tail = stderr_tail

    @property
    def reason(self) -> str:
        """How the retry policy classifies this failure: retryable, timeout or failed."""
        return "retryable" if self.retryable else self.kind


class StepTimeout(StepFailure):
    """The action ran past its timeout; its processes were terminated."""

    kind = "timeout"


class StoreError(OrchestratorError):
    """The state database cannot be opened, migrated or written."""


class RunNotFound(StoreError):
    """No run has that id."""


class LeaseHeld(StoreError):
    """Another live process holds the lease of the run."""


class RunStateError(OrchestratorError):
    """The run's state forbids the request (e.g. resuming a run that succeeded)."""
