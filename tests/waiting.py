"""Bounded waits for tests: poll until something holds or fail, saying what never happened.

A wait without a deadline turns a broken engine into a suite that hangs until the global
pytest-timeout; these fail at their own deadline with a message naming what they waited
for, and what was last seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

INTERVAL = 0.01


def _probes(what: str, probe: Callable[[], Any], timeout: float) -> Iterator[Any]:
    """probe()'s results until one is true; AssertionError once the deadline has passed."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        yield got
        if got:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}; last saw {got!r}")


def until(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    """probe() until it returns something true, and return that; AssertionError at the deadline."""
    for got in _probes(what, probe, timeout):
        if got:
            return got
        time.sleep(INTERVAL)


async def until_async(what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
    """until(), yielding to the event loop between probes (the thing waited for may run on it)."""
    for got in _probes(what, probe, timeout):
        if got:
            return got
        await asyncio.sleep(INTERVAL)


def file_words(path: Path, at_least: int) -> Callable[[], list[str] | None]:
    """A probe: the whitespace-separated words of path once it has at_least of them."""
    def probe() -> list[str] | None:
        try:
            words = path.read_text().split()
        except FileNotFoundError:
            return None
        return words if len(words) >= at_least else None
    return probe


def process_state(pid: int) -> str | None:
    """The state letter of pid in /proc (R, S, Z, ...), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def running(pid: int) -> bool:
    """Whether pid runs; a zombie (dead, its reaper slow or absent) does not."""
    return process_state(pid) not in (None, "Z")


async def died(pid: int, what: str, timeout: float = 10.0) -> None:
    """Wait until pid is dead (or a zombie).

    SIGKILL is sent before the code under test returns, but the kernel finishes a
    process's exit on its own time: on a loaded machine it takes a moment.
    """
    await until_async(f"{what} (pid {pid}) to die", lambda: not running(pid), timeout)


def died_sync(pid: int, what: str, timeout: float = 10.0) -> None:
    """died() for tests without an event loop."""
    until(f"{what} (pid {pid}) to die", lambda: not running(pid), timeout)
