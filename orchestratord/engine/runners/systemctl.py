"""Small async helpers around `systemctl` and `journalctl`, run as subprocesses.

Bundled skills (health-monitoring, ai-service-management) talk to systemd through its own
command-line tools rather than D-Bus bindings: the tools are on every systemd host, need
no extra dependency, and what they do is exactly what an administrator would type.

`systemctl show` is parsed as KEY=VALUE lines, not with --value: --value prints values in
systemd's internal property order, not in the order asked for.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ...core.errors import OrchestratorError

PROPERTIES = ("LoadState", "ActiveState", "SubState", "Result", "Job")
# Where systemd, as PID 1, marks that it runs (sd_booted(3) checks the same directory).
BOOTED_MARKER = Path("/run/systemd/system")


class SystemdUnavailable(OrchestratorError):
    """systemctl is missing or systemd does not run this host; the message says which."""


class SystemctlError(OrchestratorError):
    """systemctl ran and failed; the message carries its stderr."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class UnitState:
    """What `systemctl show` says of one unit."""

    unit: str
    load_state: str
    active_state: str
    sub_state: str
    result: str
    job: str = ""

    @property
    def found(self) -> bool:
        return self.load_state not in ("not-found", "")

    @property
    def active(self) -> bool:
        return self.active_state == "active"

    @property
    def failed(self) -> bool:
        return self.active_state == "failed"

    @property
    def settled(self) -> bool:
        """No job queued for the unit: its state is an outcome, not a transition."""
        return not self.job

    def describe(self) -> str:
        """e.g. "active (running)", "failed (Result=exit-code)", "not found"."""
        if not self.found:
            if self.load_state == "not-found":
                return "not found"
            return f"load state {self.load_state!r}"
        text = f"{self.active_state} ({self.sub_state})"
        if self.result and self.result != "success":
            text += f", Result={self.result}"
        return text


def unavailable_reason() -> str | None:
    """Why systemctl cannot be used here, or None when it can."""
    if shutil.which("systemctl") is None:
        return f"systemctl not found on PATH ({os.environ.get('PATH', '')})"
    if not BOOTED_MARKER.is_dir():
        return f"systemd is not running on this host ({BOOTED_MARKER} does not exist)"
    return None


def require_systemd() -> None:
    """Raise SystemdUnavailable when systemctl cannot manage units here."""
    reason = unavailable_reason()
    if reason is not None:
        raise SystemdUnavailable(reason)


async def run_tool(*argv: str, timeout: float = 60.0) -> CommandResult:
    """Run a tool without a shell; a tool that does not end in `timeout` s is killed."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # No pager, no colours, no "Warning: ... changed on disk" questions.
            env={**os.environ, "SYSTEMD_PAGER": "", "PAGER": "cat", "SYSTEMD_COLORS": "0"})
    except FileNotFoundError:
        raise SystemdUnavailable(f"{argv[0]} not found on PATH") from None
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise SystemctlError(f"{' '.join(argv)} did not finish within {timeout:g} s", -9) from None
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return CommandResult(proc.returncode or 0, out.decode(errors="replace"),
                         err.decode(errors="replace"))


async def systemctl(*args: str, timeout: float = 60.0) -> CommandResult:
    """`systemctl ARGS`; raises SystemctlError with its stderr when it fails."""
    require_systemd()
    result = await run_tool("systemctl", *args, timeout=timeout)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip() or f"exit status {result.returncode}"
        raise SystemctlError(f"systemctl {' '.join(args)}: {detail}", result.returncode)
    return result


async def show(unit: str) -> UnitState:
    """The load, active and sub state, result and pending job of one unit."""
    out = (await systemctl("show", "-p", ",".join(PROPERTIES), "--", unit)).stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return UnitState(unit=unit, load_state=values.get("LoadState", ""),
                     active_state=values.get("ActiveState", ""),
                     sub_state=values.get("SubState", ""), result=values.get("Result", ""),
                     job=values.get("Job", "").strip())


async def start(unit: str) -> None:
    """Queue a start job and return; the caller waits for the outcome (wait_settled)."""
    await systemctl("start", "--no-block", "--", unit)


async def restart(unit: str) -> None:
    """Queue a restart job and return; the caller waits for the outcome (wait_settled)."""
    await systemctl("restart", "--no-block", "--", unit)


async def stop(unit: str, timeout: float = 120.0) -> None:
    """Stop a unit and wait until it has stopped (systemctl's own blocking job)."""
    await systemctl("stop", "--", unit, timeout=timeout)


async def wait_settled(unit: str, deadline: float, *, interval: float = 0.2,
                       max_interval: float = 1.0) -> tuple[UnitState, bool]:
    """Poll until the unit is active or failed with no job queued, or the deadline passes.

    `deadline` is a loop.time() value. Returns the last state seen and whether it settled
    before the deadline. An inactive unit with no job left has ended too (it exited).
    """
    loop = asyncio.get_running_loop()
    while True:
        state = await show(unit)
        if state.failed or (state.settled and state.active_state in ("active", "inactive")):
            return state, True
        remaining = deadline - loop.time()
        if remaining <= 0:
            return state, False
        await asyncio.sleep(min(interval, remaining))
        interval = min(interval * 1.5, max_interval)


async def journal_tail(unit: str, lines: int = 20) -> str:
    """The unit's last journal lines, or "" when journalctl is missing or fails."""
    if shutil.which("journalctl") is None:
        return ""
    try:
        result = await run_tool("journalctl", "-u", unit, "-n", str(lines), "--no-pager",
                                "-o", "short-iso", timeout=15)
    except (SystemdUnavailable, SystemctlError):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""
