"""A client of the daemon's control API over its unix socket.

One-shot queries (`runs`, `show`, `cancel`, ...) use the standard library's http.client:
importing aiohttp costs more than the whole query, and a CLI is started per command.
Following a run's event stream is long-lived and async, so it uses aiohttp, imported
only when a stream is opened.
"""

from __future__ import annotations

import http.client
import json
import socket as socket_
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..core.errors import OrchestratorError, ParamsError, RunNotFound, RunStateError

HOST = "orchestratord"
CONNECT_TIMEOUT = 5.0
# The most `runs` lists at once, the API's limit and the CLI's (embedded too). Here, not
# in the store: the CLI checks --limit before it knows whether a daemon answers, and a
# query to the daemon must not import the store (aiosqlite, asyncio: 30 ms).
MAX_RUNS_LISTED = 1000


class DaemonError(OrchestratorError):
    """The daemon refused a request or cannot be reached."""


class InvalidRequest(DaemonError, ParamsError):
    """The daemon refused the request itself (HTTP 400: params, a definition): invalid
    input, so the CLI exits 2 as for the same mistake embedded."""


def _checked(status: int, data: Any) -> Any:
    """The response body, or the error the daemon's status code stands for."""
    message = data.get("error") if isinstance(data, dict) else None
    if status == 404:
        raise RunNotFound(message or "not found")
    if status == 409:
        raise RunStateError(message or "conflict")
    if status == 400:  # invalid input (unknown workflow, bad params): exit 2, as if checked here
        raise InvalidRequest(message or "bad request")
    if status >= 400:
        raise DaemonError(message or f"HTTP {status}")
    return data


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float | None):
        super().__init__(HOST, timeout=timeout)
        self.path = str(path)

    def connect(self) -> None:
        sock = socket_.socket(socket_.AF_UNIX, socket_.SOCK_STREAM)
        # A blocking connect waits for room in a busy daemon's backlog (up to the send
        # timeout); with a Python timeout set it would fail at once with EAGAIN.
        sock.setsockopt(socket_.SOL_SOCKET, socket_.SO_SNDTIMEO, _timeval(CONNECT_TIMEOUT))
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        sock.setsockopt(socket_.SOL_SOCKET, socket_.SO_SNDTIMEO, _timeval(0))
        sock.settimeout(self.timeout)
        self.sock = sock


def as_rows(items: list[dict[str, Any]]) -> list[SimpleNamespace]:
    """Records from the daemon as objects with attributes, as the renderers take rows."""
    return [SimpleNamespace(**item) for item in items]


def _timeval(seconds: float) -> bytes:
    return struct.pack("ll", int(seconds), int(seconds % 1 * 1e6))


def request(socket: Path, method: str, path: str, body: Any = None,
            timeout: float | None = None) -> Any:
    """One request to the daemon; returns the decoded JSON body."""
    conn = _UnixConnection(socket, timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        raw = response.read()
        data = json.loads(raw) if raw else None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DaemonError(f"cannot reach orchestratord at {socket}: {exc}") from None
    finally:
        conn.close()
    return _checked(response.status, data)


class Client:
    """An async session, for following runs; requests go through aiohttp."""

    def __init__(self, socket: Path):
        self.socket = socket
        self._session: Any = None

    async def __aenter__(self) -> Client:
        import aiohttp

        self._aiohttp = aiohttp
        self._session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=str(self.socket)),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            async with self._session.request(method, f"http://{HOST}{path}",
                                             json=body) as response:
                data = await response.json(content_type=None)
        except (self._aiohttp.ClientError, ValueError) as exc:
            raise DaemonError(f"cannot reach orchestratord at {self.socket}: {exc}") from None
        return _checked(response.status, data)

    async def events(self, run_id: str, *, after: int = 0,
                     follow: bool = True) -> AsyncIterator[dict[str, Any]]:
        """The run's events, streamed until the run ends when follow is set."""
        url = f"http://{HOST}/runs/{run_id}/events?after={after}&follow={int(follow)}"
        try:
            async with self._session.get(url) as response:
                if response.status >= 400:
                    _checked(response.status, await response.json(content_type=None))
                async for line in response.content:
                    if line.strip():
                        yield json.loads(line)
        except self._aiohttp.ClientError as exc:  # refused, reset, or cut mid-stream (restart)
            raise DaemonError(f"lost orchestratord at {self.socket}: {exc}") from None
