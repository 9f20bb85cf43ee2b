"""Where the daemon listens and where orchestratorctl looks for it."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestratord.core.paths import client_socket, default_socket

USER = 1000


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory for sockets: pytest's tmp_path can be longer than AF_UNIX's 108 bytes
    allow (deep TMPDIRs such as a build sandbox's)."""
    path = Path(tempfile.mkdtemp(prefix="o"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def listening(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    return s


def test_no_socket_in_a_world_writable_directory(tmp_path):
    """Regression: a user without $XDG_RUNTIME_DIR looked for (and a daemon bound)
    /tmp/agent-orchestrator/control.sock, which any local user can create first and so
    receive the params of `run -p`."""
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    own = tmp_path / "state" / "agent-orchestrator" / "control.sock"
    assert default_socket(env, euid=USER) == own
    assert client_socket(env, euid=USER, system=tmp_path / "none.sock") == own


def test_the_system_daemon_is_found_when_the_user_has_none(short_dir):
    """Regression: members of socket_group never looked at /run/agent-orchestrator and
    silently saw an empty private database instead of the system daemon's runs."""
    system = short_dir / "run" / "control.sock"
    with listening(system):
        for env in ({}, {"XDG_RUNTIME_DIR": str(short_dir / "user")}):
            env = {**env, "XDG_STATE_HOME": str(short_dir / "state")}
            assert client_socket(env, euid=USER, system=system) == system


def test_the_users_own_daemon_comes_before_the_system_one(short_dir):
    system, own = short_dir / "run" / "control.sock", short_dir / "user" / "agent-orchestrator" / "control.sock"
    with listening(system), listening(own):
        env = {"XDG_RUNTIME_DIR": str(short_dir / "user")}
        assert client_socket(env, euid=USER, system=system) == own
        assert client_socket({**env, "ORCHESTRATOR_SOCKET": "/x.sock"}, euid=USER,
                             system=system) == Path("/x.sock")


def test_the_daemon_listens_where_systemd_or_the_user_says():
    assert default_socket({"RUNTIME_DIRECTORY": "/run/agent-orchestrator"}, euid=0) == \
        Path("/run/agent-orchestrator/control.sock")
    assert default_socket({}, euid=0) == Path("/run/agent-orchestrator/control.sock")
    assert default_socket({"XDG_RUNTIME_DIR": "/run/user/1000"}, euid=USER) == \
        Path("/run/user/1000/agent-orchestrator/control.sock")
