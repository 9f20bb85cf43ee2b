"""orchestratord's command line: run the daemon, --check a settings file (what a NixOS
build runs), or --reload the running daemon (what the unit's ExecReload= runs)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from ..core.errors import OrchestratorError
from ..core.statuses import ExitCode
from ..core.version import __version__
from ..language.settings import load_settings
from ..observability import journal
from .service import Daemon

log = logging.getLogger("orchestratord.daemon")
DESCRIPTION = "orchestratord: the long-running daemon around the engine."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="orchestratord", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"orchestratord {__version__}")
    parser.add_argument("--settings", type=Path,
                        default=os.environ.get("ORCHESTRATOR_SETTINGS"),
                        help="settings file (JSON or YAML); default: built-in defaults")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))
    parser.add_argument("--log-target", default="auto",
                        choices=("auto", "journal", "stderr", "console"))
    parser.add_argument("--check", action="store_true",
                        help="check the settings file and exit: 0 if valid, 78 if not "
                             "(what a NixOS build runs on the settings it renders)")
    parser.add_argument("--skip-host-checks", action="store_true",
                        help="with --check: skip what depends on this host (whether "
                             "socket_group exists), for checking in a build sandbox")
    parser.add_argument("--reload", action="store_true",
                        help="ask the running daemon (at the settings' socket) to reread its "
                             "workflows and skills, and return once it has: what the unit's "
                             "ExecReload= runs, so `systemctl reload` waits for the reload")
    args = parser.parse_args(argv)
    if args.check:
        return _check(args.settings, host_checks=not args.skip_host_checks)
    if args.reload:
        return _request_reload(args.settings)
    journal.configure(getattr(logging, args.log_level.upper()), target=args.log_target)
    try:
        settings = load_settings(args.settings)
    except OrchestratorError as exc:
        log.critical("invalid settings: %s", exc)
        return ExitCode.CONFIG  # systemd will not help by restarting
    try:
        asyncio.run(Daemon(settings).main())
    except OrchestratorError as exc:
        log.critical("%s", exc)
        return ExitCode.FAILED
    return ExitCode.SUCCEEDED


def _check(path: Path | None, *, host_checks: bool) -> int:
    """Validate a settings file as the daemon would read it, saying where it is wrong."""
    try:
        load_settings(path, host_checks=host_checks)
    except OrchestratorError as exc:
        print(f"invalid settings:\n{exc}", file=sys.stderr)
        return ExitCode.CONFIG
    print(f"{path or 'built-in defaults'}: valid settings")
    return ExitCode.SUCCEEDED


def _request_reload(path: Path | None) -> int:
    from ..cli.client import request
    try:
        socket = load_settings(path).socket
    except OrchestratorError as exc:
        print(f"orchestratord --reload: invalid settings:\n{exc}", file=sys.stderr)
        return ExitCode.CONFIG
    try:
        answer = request(socket, "POST", "/reload")
    except OrchestratorError as exc:
        print(f"orchestratord --reload: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    for problem in answer["problems"]:
        print(problem, file=sys.stderr)
    print(f"reloaded: {len(answer['workflows'])} workflows, {len(answer['problems'])} problems "
          "(a workflow whose file has problems keeps its previous definition)")
    return ExitCode.SUCCEEDED


if __name__ == "__main__":
    sys.exit(main())
