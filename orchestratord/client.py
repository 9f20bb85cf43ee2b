"""A client of the daemon's control API over its unix socket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp

from .errors import OrchestratorError, RunNotFound, RunStateError


class DaemonError(OrchestratorError):
    """The daemon refused a request or cannot be reached."""


class Client:
    def __init__(self, socket: Path):
        self.socket = socket
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(self.socket)),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            async with self._session.request(method, f"http://orchestratord{path}",
                                             json=body) as response:
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, ValueError) as exc:
            raise DaemonError(f"cannot reach orchestratord at {self.socket}: {exc}") from None
        if response.status == 404:
            raise RunNotFound(data.get("error", "not found"))
        if response.status == 409:
            raise RunStateError(data.get("error", "conflict"))
        if response.status >= 400:
            raise DaemonError(data.get("error", f"HTTP {response.status}"))
        return data

    async def events(self, run_id: str, *, after: int = 0,
                     follow: bool = True) -> AsyncIterator[dict[str, Any]]:
        """The run's events, streamed until the run ends when follow is set."""
        url = f"http://orchestratord/runs/{run_id}/events?after={after}&follow={int(follow)}"
        try:
            async with self._session.get(url) as response:
                if response.status >= 400:
                    raise DaemonError((await response.json(content_type=None)).get("error"))
                async for line in response.content:
                    if line.strip():
                        yield json.loads(line)
        except aiohttp.ClientError as exc:  # refused, reset, or cut mid-stream (restart)
            raise DaemonError(f"lost orchestratord at {self.socket}: {exc}") from None
