"""`orchestratorctl mcp --http` as a real process: the streamable HTTP transport on a
loopback port, every request with the bearer token from a file, against a real daemon."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

import pytest

from .mcp_client import CTL, DEPLOY, Progress, http_session, server_env, text

pytestmark = pytest.mark.usefixtures("mcp_sdk")

TOKEN = "0123456789abcdef0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(proc: subprocess.Popen, port: int, log, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited {proc.returncode}: {log.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s: "
                         f"{log.read_text()}")


@pytest.fixture
def http_server(env, daemon):
    """The daemon serving the deploy workflow, and `mcp --http` in front of it."""
    shutil.copy(DEPLOY, env / "workflows")
    daemon().notify.wait_for("READY=1")
    (env / "token").write_text(TOKEN + "\n")
    port = free_port()
    log = env / "mcp-http.log"
    proc = subprocess.Popen([*CTL, "--socket", str(env / "run" / "control.sock"), "mcp",
                             "--allow-run", "--http", f"127.0.0.1:{port}",
                             "--token-file", str(env / "token")],
                            env=server_env(env), stderr=open(log, "wb"))
    try:
        wait_listening(proc, port, log)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, log.read_text()


async def test_with_the_token_an_agent_deploys_and_reads_the_report(http_server):
    async with http_session(http_server, TOKEN) as session:
        assert "start_run" in {t.name for t in (await session.list_tools()).tools}
        progress = Progress()
        result = await session.call_tool("start_run", {"workflow": "deploy-nixos-system",
                                                       "wait": True},
                                         progress_callback=progress)
        run = json.loads(text(result))
        assert run["status"] == "succeeded", run
        assert progress.seen[-1][2] == f"run {run['run_id']} succeeded"
        report = text(await session.call_tool("get_report", {"run_id": run["run_id"]}))
        assert run["run_id"] in report


async def test_without_the_token_every_request_is_401(http_server):
    import httpx2
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}}}
    headers = {"Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient() as http:
        for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            answer = await http.post(http_server, json=initialize, headers={**headers, **auth})
            assert answer.status_code == 401, auth
            assert answer.headers["www-authenticate"].startswith("Bearer")
        answer = await http.post(http_server, json=initialize,
                                 headers={**headers, "Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200
    with pytest.raises(Exception):
        async with http_session(http_server, "not-the-token") as session:
            await session.list_tools()


@pytest.mark.parametrize("args, status, message", [
    (["--http", "0.0.0.0:8765", "--token-file", "token"], 2, "expected a loopback address"),
    (["--http", "127.0.0.1:8765"], 78, "--http needs --token-file"),
    (["--http", "127.0.0.1:8765", "--token-file", "missing"], 78, "cannot read the bearer"),
    (["--http", "127.0.0.1:8765", "--token-file", "short"], 78, "at least 16 characters"),
])
def test_the_http_transport_refuses_to_start_unsafely(tmp_path, args, status, message):
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "short").write_text("abc\n")
    done = subprocess.run([*CTL, "--state", str(tmp_path / "state.db"), "mcp", *args],
                          cwd=tmp_path, env=server_env(tmp_path), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == status and message in done.stderr, done
