"""What the subcommands of orchestratorctl share: where a command goes (the daemon's
control socket, or the embedded state file) and the argument types they parse."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..core.paths import client_socket


def whole_number(highest: int) -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to highest (what the daemon accepts)."""
    def parse(text: str) -> int:
        try:
            value = int(text) if len(text) <= 20 else 0
        except ValueError:
            value = 0
        if not 1 <= value <= highest:
            raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {highest}, "
                                             f"got {text[:40]!r}")
        return value
    return parse


def runs_limit(text: str) -> int:
    from .client import MAX_RUNS_LISTED
    return whole_number(MAX_RUNS_LISTED)(text)


def socket_path(args: argparse.Namespace) -> Path:
    return args.socket or client_socket()


def quoted_run(run: str) -> str:
    """A run id (or prefix) as one path segment: `/`, `?`, `%` and `#` in it are text."""
    from urllib.parse import quote
    return quote(run, safe="")


def use_daemon(args: argparse.Namespace) -> bool:
    """Whether runs/show/report/resume/cancel go to the daemon."""
    return args.state is None and socket_path(args).is_socket()
