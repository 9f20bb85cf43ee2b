"""`orchestratorctl mcp` against a client that does not follow the protocol: raw lines
on its stdin, as no SDK would send them. Embedded on a state file, no daemon."""

from __future__ import annotations

import json
import selectors
import subprocess
import time

import pytest

from .mcp_client import CTL, DEPLOY, server_env

pytestmark = pytest.mark.usefixtures("mcp_sdk")


class RawServer:
    def __init__(self, home, *args: str):
        self.proc = subprocess.Popen([*CTL, "--state", str(home / "state.db"), "mcp", *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(home / "mcp-stderr.log", "wb"),
                                     env=server_env(home))
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)

    def send(self, message: dict | str) -> None:
        line = message if isinstance(message, str) else json.dumps(message)
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def answer(self, request_id: int, timeout: float = 30) -> dict:
        """The response to request_id; what comes before it (errors without an id) is
        skipped."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.selector.select(deadline - time.monotonic()):
                break
            line = self.proc.stdout.readline()
            assert line, f"the server closed stdout (exit {self.proc.poll()})"
            message = json.loads(line)
            if message.get("id") == request_id:
                return message
        raise AssertionError(f"no answer to request {request_id} within {timeout}s")

    def close(self) -> int:
        self.proc.stdin.close()
        return self.proc.wait(timeout=30)


def test_unparseable_and_absurdly_deep_messages_leave_the_server_serving(tmp_path):
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / DEPLOY.name).write_bytes(DEPLOY.read_bytes())
    server = RawServer(tmp_path, "--workflows", str(tmp_path / "workflows"), "--allow-run")
    server.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"}}})
    assert server.answer(1)["result"]["serverInfo"]["name"] == "agent-orchestrator"
    server.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    deep = '{"d":' * 100_000 + "1" + "}" * 100_000
    server.send('{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"start_run",'
                '"arguments":{"workflow":"deploy-nixos-system","params":' + deep + "}}}")
    server.send("\x00\xff not json {{{")
    server.send({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                 "params": {"name": "list_runs", "arguments": {"limit": 10**12}}})
    assert server.answer(3)["result"]["isError"] is True
    server.send({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                 "params": {"name": "list_runs", "arguments": {}}})
    listed = server.answer(4)["result"]
    assert listed["structuredContent"] == {"runs": []}, "the deep request started no run"
    assert server.close() == 0
