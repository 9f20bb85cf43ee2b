"""Fixtures of the integration layer: a real state database, a real daemon process."""

from __future__ import annotations

import json

import pytest

from orchestratord.store.sqlite import Store
from tests.conftest import require_module

from .daemon_process import Daemon


@pytest.fixture
async def store(tmp_path):
    """A fresh SQLite state file in tmp_path, opened and migrated as the daemon does."""
    s = await Store.open(tmp_path / "state.db")
    yield s
    await s.close()


@pytest.fixture
def mcp_sdk() -> None:
    """The MCP tests need the SDK (the `mcp` extra); skipped without it, failed on CI."""
    require_module("mcp", "the MCP SDK, the `mcp` extra: pip install -e '.[mcp]'")


@pytest.fixture
def env(tmp_path):
    """tmp_path set up for a daemon: settings.json, an empty workflows/ directory."""
    (tmp_path / "workflows").mkdir()
    settings = {"state_dir": str(tmp_path / "state"), "workflows_dir": str(tmp_path / "workflows"),
                "socket": str(tmp_path / "run" / "control.sock"), "kill_grace": 1}
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    return tmp_path


@pytest.fixture
def daemon(env):
    """Starts daemons on env (daemon(nofile=None, **extra_environment)); kills what is left at the end."""
    started = []

    def start(nofile: int | None = None, **extra_env: str) -> Daemon:
        d = Daemon(env, extra_env, nofile=nofile)
        started.append(d)
        return d
    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait(timeout=30)
