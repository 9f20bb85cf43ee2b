"""agent-orchestrator: durable workflows of agent skills under systemd.

The public API, curated: what a program embedding the orchestrator may rely on. Anything
else under orchestratord/ is the package's own and may move (README.md, "Layout").

    from orchestratord import AgentOrchestrator, SkillExecution
"""

from __future__ import annotations

from typing import Any

from .core.errors import (
    DefinitionError,
    OrchestratorError,
    ParamsError,
    Problem,
    RunNotFound,
    RunStateError,
    StepFailure,
    WorkflowNotFound,
)
from .core.statuses import ExitCode, RunStatus, StepStatus
from .core.version import __version__

# The embedding API (orchestrator.py) is imported on first use: the CLI and the daemon
# import this package for __version__ and should not pay for the engine when they
# answer --version.
_LAZY = frozenset({"AgentOrchestrator", "SkillExecution", "SkillResult", "WorkflowResult"})

__all__ = [
    # embedding: run skills and workflows from Python
    "AgentOrchestrator", "SkillExecution", "SkillResult", "WorkflowResult",
    # outcomes
    "RunStatus", "StepStatus", "ExitCode",
    # errors: every one the API raises is an OrchestratorError
    "OrchestratorError", "DefinitionError", "ParamsError", "Problem", "WorkflowNotFound",
    "StepFailure", "RunNotFound", "RunStateError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import orchestrator
        return getattr(orchestrator, name)
    raise AttributeError(f"module 'orchestratord' has no attribute {name!r}")
