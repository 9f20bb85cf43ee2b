"""What the MCP server needs of an orchestrator, and the daemon's answer to it.

The server's tools speak to a Backend: the daemon over its control socket (here), or
an orchestrator embedded on the state file (embedded.py), as orchestratorctl does.
Both answer with the JSON shapes of the control API, secrets already redacted, and
raise the errors the CLI prints (errors.OrchestratorError and its kin).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from ..cli.client import Client


class Backend(Protocol):
    """An orchestrator seen from the MCP server; every method may raise OrchestratorError."""

    where: str  # for messages: the socket or the state file

    async def list_workflows(self) -> list[dict[str, Any]]: ...
    async def describe_workflow(self, name: str) -> dict[str, Any]: ...
    async def start_run(self, workflow: str, params: dict[str, Any]) -> str: ...
    async def call_skill(self, skill: str, action: str, params: dict[str, Any]) -> str: ...
    async def get_run(self, run_id: str) -> dict[str, Any]: ...
    async def list_runs(self, workflow: str | None, status: str | None,
                        limit: int) -> list[dict[str, Any]]: ...
    async def report(self, run_id: str) -> dict[str, Any]: ...
    def events(self, run_id: str, after: int) -> AsyncIterator[dict[str, Any]]:
        """The run's events after seq `after`, until the run has ended."""
        ...
    async def last_seq(self, run_id: str) -> int:
        """The seq of the run's latest event (0 if none): where following a resume starts."""
        ...
    async def cancel_run(self, run_id: str) -> None: ...
    async def resume_run(self, run_id: str) -> str: ...
    async def list_skills(self) -> list[dict[str, Any]]: ...
    async def read_skill(self, name: str) -> dict[str, Any]: ...
    async def route(self, text: str, limit: int) -> dict[str, Any]: ...
    async def close(self) -> None: ...


def _run_path(run_id: str, tail: str = "") -> str:
    return f"/runs/{quote(run_id, safe='')}{tail}"


class DaemonBackend:
    """The daemon, over its control socket: it drives the runs; this server only asks."""

    def __init__(self, socket: Path):
        self.where = str(socket)
        self._client = Client(socket)

    async def open(self) -> DaemonBackend:
        await self._client.__aenter__()
        return self

    async def close(self) -> None:
        await self._client.__aexit__(None, None, None)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        return await self._client.call(method, path, body)

    async def list_workflows(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/workflows")

    async def describe_workflow(self, name: str) -> dict[str, Any]:
        described = await self._call("GET", f"/workflows/{quote(name, safe='')}")
        return {k: described[k] for k in ("name", "description", "file", "params")} | {
            "steps": described["nodes"], "graph": described["graph"]}

    async def start_run(self, workflow: str, params: dict[str, Any]) -> str:
        body = {"workflow": workflow, "params": params}
        return (await self._call("POST", "/runs", body))["run_id"]

    async def call_skill(self, skill: str, action: str, params: dict[str, Any]) -> str:
        body = {"skill": skill, "action": action, "params": params}
        return (await self._call("POST", "/calls", body))["run_id"]

    async def get_run(self, run_id: str) -> dict[str, Any]:
        return await self._call("GET", _run_path(run_id))

    async def list_runs(self, workflow: str | None, status: str | None,
                        limit: int) -> list[dict[str, Any]]:
        query = {k: v for k, v in (("workflow", workflow), ("status", status)) if v}
        return await self._call("GET", "/runs?" + urlencode({**query, "limit": limit}))

    async def report(self, run_id: str) -> dict[str, Any]:
        return await self._call("GET", _run_path(run_id, "/report?format=json"))

    async def events(self, run_id: str, after: int) -> AsyncIterator[dict[str, Any]]:
        async for event in self._client.events(quote(run_id, safe=""), after=after):
            yield event

    async def last_seq(self, run_id: str) -> int:
        seq = 0
        while True:  # the daemon answers a bounded batch at a time
            batch = [e["seq"] async for e in self._client.events(
                quote(run_id, safe=""), after=seq, follow=False)]
            if not batch:
                return seq
            seq = batch[-1]

    async def cancel_run(self, run_id: str) -> None:
        await self._call("POST", _run_path(run_id, "/cancel"))

    async def resume_run(self, run_id: str) -> str:
        return (await self._call("POST", _run_path(run_id, "/resume")))["run_id"]

    async def list_skills(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/skills")

    async def read_skill(self, name: str) -> dict[str, Any]:
        return await self._call("GET", f"/skills/{quote(name, safe='')}")

    async def route(self, text: str, limit: int) -> dict[str, Any]:
        return await self._call("POST", "/route", {"text": text, "limit": limit})
