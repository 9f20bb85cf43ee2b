"""The SDK's own MCP client against `orchestratorctl mcp` as a real process: over stdio
(the server a child of the client, as an agent host starts it) or over HTTP."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: without the SDK, the tests' mcp_sdk fixture says so
    from mcp import ClientSession

CTL = [sys.executable, "-m", "orchestratord.cli"]
DEPLOY = Path(__file__).parents[2] / "workflows" / "deploy-nixos-system.yaml"


def server_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "HOME": str(home), "XDG_STATE_HOME": str(home / "xdg-state"),
           "XDG_RUNTIME_DIR": str(home / "xdg-run")}
    for name in ("ORCHESTRATOR_STATE", "ORCHESTRATOR_SOCKET", "ORCHESTRATOR_SETTINGS"):
        env.pop(name, None)
    return env


@contextlib.asynccontextmanager
async def stdio_session(home: Path, *args: str, stderr: Path | None = None
                        ) -> AsyncIterator[ClientSession]:
    """A client session with `orchestratorctl ARGS` (ending in `mcp ...`) over stdio."""
    from mcp import ClientSession, StdioServerParameters, stdio_client
    server = StdioServerParameters(command=CTL[0], args=[*CTL[1:], *args], env=server_env(home))
    with open(stderr or home / "mcp-stderr.log", "a") as errlog:
        async with stdio_client(server, errlog=errlog) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=120) as session:
                await session.initialize()
                yield session


@contextlib.asynccontextmanager
async def http_session(url: str, token: str) -> AsyncIterator[ClientSession]:
    import httpx2
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=120) as session:
                await session.initialize()
                yield session


def text(result: Any) -> str:
    """The text of a tool result (or of a resource read)."""
    items = getattr(result, "content", None) or result.contents
    return "".join(getattr(c, "text", "") for c in items)


class Progress:
    """A progress callback that keeps what it was told."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float | None, str | None]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.seen.append((progress, total, message))
