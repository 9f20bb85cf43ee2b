"""Where the daemon listens and where orchestratorctl looks for it."""

from __future__ import annotations

import socket
from pathlib import Path

from orchestratord.paths import client_socket, default_socket

USER = 1000


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


def test_the_system_daemon_is_found_when_the_user_has_none(tmp_path):
    """Regression: members of socket_group never looked at /run/agent-orchestrator and
    silently saw an empty private database instead of the system daemon's runs."""
    system = tmp_path / "run" / "control.sock"
    with listening(system):
        for env in ({}, {"XDG_RUNTIME_DIR": str(tmp_path / "user")}):
            env = {**env, "XDG_STATE_HOME": str(tmp_path / "state")}
            assert client_socket(env, euid=USER, system=system) == system


def test_the_users_own_daemon_comes_before_the_system_one(tmp_path):
    system, own = tmp_path / "run" / "control.sock", tmp_path / "user" / "agent-orchestrator" / "control.sock"
    with listening(system), listening(own):
        env = {"XDG_RUNTIME_DIR": str(tmp_path / "user")}
        assert client_socket(env, euid=USER, system=system) == own
        assert client_socket({**env, "ORCHESTRATOR_SOCKET": "/x.sock"}, euid=USER,
                             system=system) == Path("/x.sock")


def test_the_daemon_listens_where_systemd_or_the_user_says():
    assert default_socket({"RUNTIME_DIRECTORY": "/run/agent-orchestrator"}, euid=0) == \
        Path("/run/agent-orchestrator/control.sock")
    assert default_socket({}, euid=0) == Path("/run/agent-orchestrator/control.sock")
    assert default_socket({"XDG_RUNTIME_DIR": "/run/user/1000"}, euid=USER) == \
        Path("/run/user/1000/agent-orchestrator/control.sock")
