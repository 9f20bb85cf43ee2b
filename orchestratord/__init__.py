"""agent-orchestrator: durable workflows of agent skills under systemd.

    from orchestratord import AgentOrchestrator, SkillExecution
"""

from __future__ import annotations

from typing import Any

from .core.version import __version__
__all__ = ["AgentOrchestrator", "SkillExecution", "SkillResult", "WorkflowResult",
           "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the CLI and daemon import this package for __version__ and
    # should not pay for the engine when they answer --version.
    if name in __all__:
        from . import orchestrator
        return getattr(orchestrator, name)
    raise AttributeError(f"module 'orchestratord' has no attribute {name!r}")
