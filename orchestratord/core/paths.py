"""Where things live by default: state, the embedded state file, the control socket.

Kept apart from settings.py (pydantic) because every orchestratorctl call needs one of
these, and a query to the daemon should not pay for importing the models.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def state_home(environ: Mapping[str, str] = os.environ) -> Path:
    """$XDG_STATE_HOME/agent-orchestrator (~/.local/state/agent-orchestrator)."""
    base = environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "agent-orchestrator"


def default_state_file() -> Path:
    """The embedded state database: $ORCHESTRATOR_STATE, else state.db in state_home()."""
    if os.environ.get("ORCHESTRATOR_STATE"):
        return Path(os.environ["ORCHESTRATOR_STATE"])
    return state_home() / "state.db"


# The system daemon's socket (orchestratord.service: RuntimeDirectory=agent-orchestrator).
SYSTEM_SOCKET = Path("/run/agent-orchestrator/control.sock")


def default_socket(environ: Mapping[str, str] = os.environ, euid: int | None = None) -> Path:
    """Where the daemon listens by default: systemd's RuntimeDirectory, else /run for
    root, else the user's own directories. Never a world-writable directory such as
    /tmp, where any local user could bind the name first."""
    if environ.get("RUNTIME_DIRECTORY"):
        return Path(environ["RUNTIME_DIRECTORY"].split(":")[0]) / "control.sock"
    return _own_socket(environ, os.geteuid() if euid is None else euid)


def client_socket(environ: Mapping[str, str] = os.environ, euid: int | None = None,
                  system: Path = SYSTEM_SOCKET) -> Path:
    """Where orchestratorctl looks for a daemon: $ORCHESTRATOR_SOCKET; else the user's
    own daemon if its socket exists; else the system daemon if its socket exists (for
    members of its socket_group); else the user's own path, where no daemon listens, so
    that commands use the embedded state file."""
    if environ.get("ORCHESTRATOR_SOCKET"):
        return Path(environ["ORCHESTRATOR_SOCKET"])
    own = _own_socket(environ, os.geteuid() if euid is None else euid)
    if own.is_socket() or not system.is_socket():
        return own
    return system


def _own_socket(environ: Mapping[str, str], euid: int) -> Path:
    """$XDG_RUNTIME_DIR (private to the user), /run for root, else under state_home()."""
    if environ.get("XDG_RUNTIME_DIR"):
        return Path(environ["XDG_RUNTIME_DIR"]) / "agent-orchestrator" / "control.sock"
    if euid == 0:
        return SYSTEM_SOCKET
    return state_home(environ) / "control.sock"
