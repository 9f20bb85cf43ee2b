"""Bounds on the control API's clients: how many connections, and for how long idle.

Anyone allowed on the control socket (root and `socket_group`) must not be able to take
the daemon's file descriptors from the steps it runs, nor hold connections for ever:

- at most `limit` connections at once, well below the process's file limit, so that
  steps always find descriptors for their pipes and files;
- a connection without a request being handled (idle, or still sending its request
  line, headers or body) is closed `idle_timeout` seconds after it became so: a request
  must arrive whole within that time;
- when a new connection finds the limit reached, the connection idle for longest makes
  room for it: clients that send nothing cannot lock out the next `/health`. If every
  connection is serving a request, the new one is closed at once.

aiohttp has neither bound for a connection that never completes a request, so each
connection's protocol is wrapped here, and a middleware (`Guard.middleware`) tells the
guard when a request is being served.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import resource
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("orchestratord.api")

MAX_CONNECTIONS = 256
IDLE_TIMEOUT = 15.0
# Connections not yet accepted wait in the kernel and cost the daemon no descriptor.
# asyncio also accepts up to this many at once before it reads any of them: more would
# let a burst of idle clients crowd out one whose request is there.
BACKLOG = 128


def default_limit() -> int:
    """MAX_CONNECTIONS, or a quarter of the file limit if that is lower: the other
    three quarters stay for the database, steps' pipes and whatever skills open."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(8, min(MAX_CONNECTIONS, soft // 4))


class _Connection(asyncio.Protocol):
    """One client connection: delegates to aiohttp's protocol, reports to the guard."""

    def __init__(self, guard: Guard, inner: asyncio.Protocol):
        self.guard, self.inner = guard, inner
        self.transport: asyncio.BaseTransport | None = None
        self.serving = 0  # requests being handled now (a handler runs)
        self._expiry: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self.guard.admit(self):
            self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class Guard:
    """The connections of the API's listeners, bounded (see the module's docstring)."""

    def __init__(self, limit: int | None = None, idle_timeout: float = IDLE_TIMEOUT):
        self.limit = limit or default_limit()
        self.idle_timeout = idle_timeout
        self._all: set[_Connection] = set()
        # Idle connections, longest idle first: the next to make room.
        self._idle: collections.OrderedDict[_Connection, None] = collections.OrderedDict()
        self._by_protocol: dict[Any, _Connection] = {}
        self.refused = 0
        self.evicted = 0
        self.expired = 0
        self._listeners: list[asyncio.AbstractServer] = []

    async def listen_unix(self, make_protocol: Callable[[], Any], path: str) -> None:
        """Serve make_protocol's connections on a unix socket, bounded."""
        self._listeners.append(await asyncio.get_running_loop().create_unix_server(
            self.factory(make_protocol), path, backlog=BACKLOG))

    async def listen_tcp(self, make_protocol: Callable[[], Any], host: str,
                         port: int) -> tuple[Any, ...]:
        """Serve make_protocol's connections on TCP, bounded; the address bound."""
        listener = await asyncio.get_running_loop().create_server(
            self.factory(make_protocol), host, port, backlog=BACKLOG)
        self._listeners.append(listener)
        return listener.sockets[0].getsockname()

    def close_listeners(self) -> None:
        """Accept no more connections (those open stay until their server closes them)."""
        for listener in self._listeners:
            listener.close()
        self._listeners.clear()

    def factory(self, make_protocol: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for loop.create_server/create_unix_server."""
        def make() -> asyncio.Protocol:
            inner = make_protocol()
            connection = _Connection(self, inner)
            self._by_protocol[inner] = connection
            return connection
        return make

    def __len__(self) -> int:
        return len(self._all)

    # -- the connection's life ----------------------------------------------------------

    def admit(self, connection: _Connection) -> bool:
        if len(self._all) >= self.limit:
            if self._idle:
                oldest = next(iter(self._idle))
                self.evicted += 1
                self._drop(oldest)
            else:
                self.refused += 1
                if self.refused == 1 or self.refused % 1000 == 0:
                    log.warning("control API: %d connections, all serving requests; "
                                "refused a new one (%d so far)", len(self._all), self.refused)
                self._by_protocol.pop(connection.inner, None)
                connection.inner = None  # type: ignore[assignment]  # never started
                connection.close()
                return False
        self._all.add(connection)
        self._idle_from_now(connection)
        return True

    def forget(self, connection: _Connection) -> None:
        self._all.discard(connection)
        self._idle.pop(connection, None)
        self._by_protocol.pop(connection.inner, None)
        if connection._expiry is not None:
            connection._expiry.cancel()
            connection._expiry = None

    def _drop(self, connection: _Connection) -> None:
        self.forget(connection)
        connection.close()

    def _idle_from_now(self, connection: _Connection) -> None:
        self._idle[connection] = None
        self._idle.move_to_end(connection)
        if connection._expiry is not None:
            connection._expiry.cancel()
        connection._expiry = asyncio.get_running_loop().call_later(
            self.idle_timeout, self._expire, connection)

    def _expire(self, connection: _Connection) -> None:
        connection._expiry = None
        if connection in self._idle:
            self.expired += 1
            self._drop(connection)

    def _serving(self, protocol: Any, delta: int) -> None:
        connection = self._by_protocol.get(protocol)
        if connection is None or connection not in self._all:
            return
        connection.serving += delta
        if connection.serving == 1 and delta > 0:
            self._idle.pop(connection, None)
            if connection._expiry is not None:
                connection._expiry.cancel()
                connection._expiry = None
        elif connection.serving == 0:
            self._idle_from_now(connection)

    # -- requests -----------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Read the whole body while the connection still counts as idle (its time runs),
        then serve the request with the connection marked busy."""
        if request.body_exists:
            try:
                await request.read()  # kept by aiohttp for the handler's request.json()
            except (ConnectionResetError, RuntimeError):
                # Closed while still sending (idle too long, or it made room for another);
                # aiohttp says so with either, depending on when the read began.
                if request.transport is not None and not request.transport.is_closing():
                    raise
                return web.Response(status=408)  # to no one: aiohttp drops it
        self._serving(request.protocol, +1)
        try:
            return await handler(request)
        finally:
            self._serving(request.protocol, -1)
