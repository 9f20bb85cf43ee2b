"""Daemon settings: one JSON or YAML file, typed known keys, skill sections free-form.

The NixOS module renders `services.agent-orchestrator.settings` (RFC 42) to
/etc/agent-orchestrator/settings.json; without it, every key has a default that works
for an unprivileged user.
"""

from __future__ import annotations

import grp
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..core.errors import DefinitionError
from ..core.paths import default_socket, state_home
from .aidb_settings import AidbSettings
from .model import Retention, Timeout
from .source import load_file
from .step_sandbox import StepSandboxSettings


class WebhookSink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict)


class Alerts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    webhooks: list[WebhookSink] = Field(default_factory=list)
    commands: list[list[str]] = Field(default_factory=list,
                                      description="argv each; the alert arrives as JSON on stdin")
    stale_after: dict[str, Timeout] = Field(
        default_factory=dict, description="workflow -> alert if no success for this long")


class Mcp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allow_run: bool = Field(False, description="`orchestratorctl mcp` may start, cancel, resume "
                                               "and call (else it only reads)")


class Settings(BaseModel):
    """What orchestratord needs to know; `skills.<name>` sections belong to each skill."""

    model_config = ConfigDict(extra="forbid")

    state_dir: Path = Field(default_factory=lambda: Path(
        os.environ.get("STATE_DIRECTORY", "").split(":")[0] or state_home()))
    database: Path | None = Field(None, description="default: <state_dir>/state.db")
    workflows_dir: Path | None = Field(None, description="*.yaml, *.yml, *.json workflows")
    skill_paths: list[Path] = Field(default_factory=list)
    socket: Path = Field(default_factory=default_socket)
    socket_group: str | None = Field(None, description="group allowed on the control socket")
    metrics_listen: str | None = Field(
        None, pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):\d{1,5}$",
        description="host:port serving /metrics only, e.g. 127.0.0.1:9464 or [::1]:9464")
    max_active_runs: int = Field(64, ge=1, le=10000)
    step_timeout: Timeout | None = Field(None, description="default for steps without one")
    kill_grace: Timeout = 5.0
    lease_ttl: Timeout = 15.0
    workspace_retention: Retention | None = Field(
        7 * 86400, description="remove a run's workspace this long after the run ended "
                               "(null: keep them all)")
    alerts: Alerts = Field(default_factory=Alerts)
    step_units: Literal["auto", "always", "never"] = Field(
        "auto", description="run each command step as a transient systemd unit: auto where "
                            "the daemon runs as root under systemd, always (else fail the step), "
                            "never")
    step_sandbox: StepSandboxSettings = Field(default_factory=StepSandboxSettings)
    aidb: AidbSettings = Field(default_factory=AidbSettings)
    skills: dict[str, dict[str, Any]] = Field(default_factory=dict)
    mcp: Mcp = Field(default_factory=Mcp)

    @property
    def database_path(self) -> Path:
        return self.database or self.state_dir / "state.db"

    def engine_settings(self) -> dict[str, Any]:
        """What actions see as ctx.settings."""
        return {"state_dir": str(self.state_dir), "skills": self.skills}


def load_settings(path: str | Path | None, *, host_checks: bool = True) -> Settings:
    """Settings from a file (None: defaults); raises DefinitionError with positions.

    host_checks: also check what depends on the host that will run the daemon (the
    socket group exists). A NixOS build checks the file in a sandbox without the
    system's groups; the module creates the group it names.
    """
    if path is None:
        return Settings()
    doc = load_file(path)
    if doc.problems:
        raise DefinitionError(doc.problems)
    settings, problems = doc.validate(Settings)
    if settings is None:
        raise DefinitionError(problems)
    if host_checks and settings.socket_group and not group_exists(settings.socket_group):
        raise DefinitionError([doc.problem(
            ("socket_group",), f"no group '{settings.socket_group}' on this host; create it "
                               "(users.groups on NixOS) or leave socket_group unset")])
    return settings


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
