"""The `orchestratorctl mcp` subcommand: which backend, which transport, how much allowed."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from ..core.statuses import ExitCode

EX_CONFIG = 78


def add_command(sub: Any) -> None:
    c = sub.add_parser("mcp", help="serve the Model Context Protocol (stdio; --http for "
                                   "streamable HTTP) to agent hosts")
    c.add_argument("--allow-run", action="store_true",
                   help="allow tools that start, cancel, resume or call (default: read-only; "
                        "also the settings' mcp.allow_run)")
    c.add_argument("--http", metavar="HOST:PORT",
                   help="serve streamable HTTP at http://HOST:PORT/mcp (loopback only) "
                        "instead of stdio; needs --token-file")
    c.add_argument("--token-file", type=Path, metavar="FILE",
                   help="the bearer token HTTP clients must send")
    c.add_argument("--workflows", type=Path, metavar="DIR",
                   help="without a daemon: the workflows to serve (default: the settings' "
                        "workflows_dir)")
    c.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        import mcp  # noqa: F401  (the SDK is an extra)
    except ImportError:
        print("orchestratorctl: the MCP server needs the `mcp` extra: "
              "pip install 'agent-orchestrator[mcp]'", file=sys.stderr)
        return ExitCode.CANNOT_PROCEED
    from ..cli.embedded import embedded_settings
    from .http import ConfigError, loopback_address, read_token
    settings = embedded_settings()
    try:
        token = None
        if args.http:
            loopback_address(args.http)
            if args.token_file is None:
                raise ConfigError("--http needs --token-file FILE (the bearer token)")
            token = read_token(args.token_file)
        elif args.token_file:
            raise ValueError("--token-file goes with --http")
    except ValueError as exc:
        print(f"orchestratorctl: {exc}", file=sys.stderr)
        return ExitCode.INVALID
    except ConfigError as exc:
        print(f"orchestratorctl: {exc}", file=sys.stderr)
        return EX_CONFIG
    allow_run = args.allow_run or settings.mcp.allow_run
    # asyncio imported here, not above: every orchestratorctl command loads this module
    # (its parser), and a query against the daemon runs without asyncio (test_daemon.py).
    import asyncio
    try:
        asyncio.run(_serve(args, settings, allow_run, token))
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    return ExitCode.SUCCEEDED


async def _backend(args: argparse.Namespace, settings: Any) -> Any:
    from ..cli.common import socket_path, use_daemon
    if use_daemon(args):
        from .backend import DaemonBackend
        return await DaemonBackend(socket_path(args)).open()
    from ..core.paths import default_state_file
    from .embedded import EmbeddedBackend
    state = Path(args.state or default_state_file())
    workflows = args.workflows or settings.workflows_dir
    skills = [*settings.skill_paths, *map(Path, args.skills)]
    return await EmbeddedBackend(state, settings, workflows, skills).open()


async def _serve(args: argparse.Namespace, settings: Any, allow_run: bool,
                 token: str | None) -> None:
    import asyncio

    from .server import build_server
    backend = await _backend(args, settings)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    if args.http is None:  # the HTTP server stops on SIGTERM itself, gracefully
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        server = build_server(backend, allow_run=allow_run)
        if args.http:
            from .http import serve_http
            await serve_http(server, args.http, token or "")
        else:
            await server.run_stdio_async()
    finally:
        if args.http is None:
            loop.remove_signal_handler(signal.SIGTERM)
        await backend.close()
