"""The streamable HTTP transport: loopback only, every request with the bearer token.

The token is read from a file (a systemd credential, a file only its user reads), never
from the command line, where `ps` would show it. Requests without it get 401 before
they reach the SDK's app.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("orchestratord.mcp")


class ConfigError(Exception):
    """The HTTP transport cannot start as configured; the message says what to change."""


def loopback_address(listen: str) -> tuple[str, int]:
    """(host, port) of "127.0.0.1:8765" or "[::1]:8765"; raises ValueError unless the
    host is a loopback address, since the transport has no TLS."""
    host, sep, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        if not sep or not ipaddress.ip_address(host).is_loopback:
            raise ValueError
        number = int(port)
        if not 0 < number < 65536:
            raise ValueError
    except ValueError:
        raise ValueError(f"--http {listen!r}: expected a loopback address and port, such as "
                         "127.0.0.1:8765 or [::1]:8765 (the MCP HTTP transport has no TLS)") \
            from None
    return host, number


def read_token(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the bearer token from {path}: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    if len(token) < 16:
        raise ConfigError(f"{path}: the bearer token must be at least 16 characters "
                          "(e.g. `openssl rand -hex 32 > FILE`)")
    return token


class BearerToken:
    """ASGI middleware: HTTP requests need `Authorization: Bearer <token>`."""

    def __init__(self, app: Any, token: str):
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps({"error": "missing or wrong bearer token"}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"www-authenticate", b'Bearer realm="orchestrator"')]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


async def serve_http(server: Any, listen: str, token: str) -> None:
    """Serve the MCPServer at http://LISTEN/mcp until SIGTERM or SIGINT, then shut down
    gracefully and return (so that the backend is closed: runs driven here end
    interrupted, resumable)."""
    import asyncio
    import signal

    import uvicorn

    class Server(uvicorn.Server):
        # uvicorn re-raises a caught SIGTERM once it has stopped, which would kill the
        # process before the backend closes; this loop's handlers stop it instead.
        def capture_signals(self) -> Any:
            return contextlib.nullcontext()

    host, port = loopback_address(listen)
    app = BearerToken(server.streamable_http_app(host=host), token)
    http = Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                 lifespan="on"))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, setattr, http, "should_exit", True)
    log.warning("MCP server listening on http://%s/mcp", listen)
    try:
        await http.serve()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
