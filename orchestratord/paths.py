"""Where things live by default: state, the embedded state file, the control socket.

Kept apart from settings.py (pydantic) because every orchestratorctl call needs one of
these, and a query to the daemon should not pay for importing the models.
"""

from __future__ import annotations

import os
from pathlib import Path


def state_home() -> Path:
    """$XDG_STATE_HOME/agent-orchestrator (~/.local/state/agent-orchestrator)."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "agent-orchestrator"


def default_state_file() -> Path:
    """The embedded state database: $ORCHESTRATOR_STATE, else state.db in state_home()."""
    if os.environ.get("ORCHESTRATOR_STATE"):
        return Path(os.environ["ORCHESTRATOR_STATE"])
    return state_home() / "state.db"


def default_socket() -> Path:
    """systemd's RuntimeDirectory, else the user's runtime dir, else /run (root)."""
    if os.environ.get("RUNTIME_DIRECTORY"):
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0]) / "control.sock"
    base = os.environ.get("XDG_RUNTIME_DIR") or ("/run" if os.geteuid() == 0 else "/tmp")
    return Path(base) / "agent-orchestrator" / "control.sock"
