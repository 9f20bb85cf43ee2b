"""connections.Guard on a real aiohttp server over a real unix socket: idle connections
time out, a full house makes room for newcomers, busy connections are never cut."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from orchestratord.daemon.connections import Guard


async def serve(tmp_path, guard: Guard):
    release = asyncio.Event()

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"done": True})

    app = web.Application(middlewares=[guard.middleware])
    app.router.add_get("/health", health)
    app.router.add_get("/slow", slow)
    app.router.add_post("/echo", _echo)
    runner = web.AppRunner(app)
    await runner.setup()
    path = str(tmp_path / "api.sock")
    server = await asyncio.get_running_loop().create_unix_server(guard.factory(runner.server), path)
    return path, release, server, runner


async def _echo(request: web.Request) -> web.Response:
    return web.json_response(await request.json())


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), seconds) == b""
    except TimeoutError:
        return False


async def ask(path: str, target: str = "/health") -> bytes:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


async def test_a_request_that_never_completes_is_closed_after_the_idle_timeout(tmp_path):
    """Regression: a half-sent request line, header or body held its connection (and a
    file descriptor) for ever."""
    guard = Guard(limit=16, idle_timeout=0.5)
    path, _, server, runner = await serve(tmp_path, guard)
    try:
        partials = [b"GET /hea", b"GET /health HTTP/1.1\r\nHost: x\r\n",
                    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"a\":"]
        streams = []
        for data in partials:
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(data)
            streams.append((reader, writer))
        started = time.monotonic()
        for reader, _ in streams:
            assert await closed_within(reader, 3), "a half-sent request was kept open"
        assert 0.4 < time.monotonic() - started < 2.5
        assert len(guard) == 0 and guard.expired == 3
        assert b"200 OK" in await ask(path)  # and the server serves on
    finally:
        server.close()
        await runner.cleanup()


async def test_a_full_house_of_idle_clients_makes_room_and_busy_ones_are_kept(tmp_path):
    guard = Guard(limit=4, idle_timeout=30)
    path, release, server, runner = await serve(tmp_path, guard)
    try:
        idle = [await asyncio.open_unix_connection(path) for _ in range(4)]
        for _, writer in idle:
            writer.write(b"GET /heal")
        await asyncio.sleep(0.1)
        # The fifth client is served: the longest idle made room for it.
        assert b"200 OK" in await ask(path)
        assert await closed_within(idle[0][0], 2) and guard.evicted >= 1
        # Connections serving a request are never cut to make room: with every place
        # taken by one, a newcomer is closed at once instead.
        slow = [asyncio.create_task(ask(path, "/slow")) for _ in range(4)]
        await asyncio.sleep(0.3)
        reader, _ = await asyncio.open_unix_connection(path)
        assert await closed_within(reader, 2) and guard.refused == 1
        release.set()
        assert all(b"200 OK" in answer for answer in await asyncio.gather(*slow))
    finally:
        server.close()
        await runner.cleanup()
