"""The unit runner: each attempt of a command step as its own transient systemd service.

`orchestrator-step-<run>-<step>-<attempt>.service` is started over D-Bus with the action's
argv, the step's environment and its sandbox (step_sandbox.py); systemd, not the daemon,
is its parent. The command protocol is unchanged, carried by files in the attempt's own
directory under <state_dir>/step-units/, which PID 1 opens before it drops privileges:
`stdin` holds the params, `stdout` receives the result, and a privileged ExecStopPost=
writes `status` with SERVICE_RESULT, EXIT_CODE, EXIT_STATUS and the OOM kills its cgroup
counted (unit_status.py). stderr goes to the journal
with RUN_ID, STEP_ID, SKILL, ACTION and ATTEMPT.

Because all of that outlives the daemon, a daemon that died while the unit ran finds the
attempt's directory when the step is driven again and re-attaches instead of starting the
command again: it waits for the unit, if it still runs, and collects what it left. A
restart of the system bus is no restart of the daemon: the bus connection is made again
(systemd_bus.py) and the wait goes on. An attempt's directory is removed once its outcome
is handed to the engine, so it is adopted at most once. A timeout or a cancel stops the
unit: systemd kills its whole cgroup. When the daemon itself stops (`detach()`), running
units are left to finish, to be collected after the restart.

At a system shutdown the daemon is stopped first and its step units after it: each unit
is ordered Before= the daemon's own service (stop order is the reverse of start order).
So the daemon leaves the run interrupted while the unit still runs; the shutdown then
stops the unit, and ExecStopPost= records that a start job for shutdown.target was
queued when it stopped. After boot the attempt is not a failure of the step: it is
interrupted, and its command runs again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ...core.errors import StepFailure, StepTimeout
from ...core.statuses import EventKind
from ...language import step_sandbox
from ...language.model import ActionSpec
from ...language.step_sandbox import StepSandboxSettings
from .. import shutdown
from ..context import StepContext
from .command import EX_TEMPFAIL, TAIL_LINES, _result
from .systemctl import BOOTED_MARKER, SystemctlError, SystemdUnavailable, run_tool
from .systemd_bus import BusLost, SystemdBus, SystemdBusError
from .unit_status import WRITE_STATUS, memory_limit, out_of_memory

log = logging.getLogger("orchestratord.engine")

DIRECTORY = "step-units"
USEC = 1_000_000
# systemd's own exit statuses (systemd.exec(5)): the step never ran its command.
SETUP_FAILURES = {
    200: "could not change to its working directory", 203: "could not execute its command",
    217: "could not switch to its User=", 226: "could not set up its file system namespace "
    "(does every ReadWritePaths= exist?)", 228: "could not apply its SystemCallFilter=",
}
Record = Callable[..., Awaitable[Any]]


def escape(text: str) -> str:
    """A string as a unit name may hold it: other bytes as \\xNN, like systemd-escape."""
    return "".join(c if c.isascii() and (c.isalnum() or c in "_.") else
                   "".join(f"\\x{b:02x}" for b in c.encode()) for c in text)


def unit_prefix(ctx: StepContext) -> str:
    kind = "rollback-" if ctx.idempotency_key.endswith("/rollback") else ""
    return f"orchestrator-step-{escape(ctx.run_id)}-{escape(ctx.step_id)}-{kind}"


class StepUnits:
    """Starts, watches and collects step units; one per daemon, sharing one bus connection."""

    def __init__(self, mode: str, sandbox: StepSandboxSettings, state_dir: Path, *,
                 kill_grace: float = 5.0, record: Record | None = None):
        self.mode, self.sandbox, self.kill_grace = mode, sandbox, kill_grace
        self.directory = Path(state_dir) / DIRECTORY
        self.record = record
        self.detaching = False
        self.daemon_unit: str | None = None  # the service the daemon runs in, if any
        self._bus: SystemdBus | None = None
        self._unavailable: str | None = None
        self._connect = asyncio.Lock()

    # -- whether a step runs in a unit --------------------------------------------------

    async def applies(self, action: ActionSpec, ctx: StepContext) -> bool:
        """True to run this command step in a unit; False to run it as a child, as before.

        Raises StepFailure when a unit is required (step_units: always, or a requested
        sandbox with step_sandbox.unavailable: error) and cannot be had.
        """
        reason = await self._why_unavailable()
        if reason is None:
            return True
        requested = action.sandbox or ctx.skill in self.sandbox.skills
        if self.mode == "always" or (requested and self.sandbox.unavailable == "error"):
            why = "step_units is always" if self.mode == "always" else \
                f"skill {ctx.skill!r} or its action {ctx.action!r} asks for a sandbox"
            raise StepFailure(f"{why}, but steps cannot run in systemd units here: {reason}; "
                              "run the daemon under systemd as root, or set step_units: auto "
                              "and step_sandbox.unavailable: warn to run steps unsandboxed")
        if requested:
            ctx.log.warning("running step %s without its sandbox: %s", ctx.step_id, reason)
            if self.record is not None:
                await self.record(ctx.run_id, EventKind.STEP_SANDBOX_UNAVAILABLE,
                                  step_id=ctx.step_id, attempt=ctx.attempt,
                                  data={"policy": "warn", "reason": reason})
        return False

    async def _why_unavailable(self) -> str | None:
        if self.mode == "never":
            return "step_units is never"
        async with self._connect:
            if self._bus is None and self._unavailable is None:
                if not BOOTED_MARKER.is_dir():
                    self._unavailable = f"systemd is not PID 1 ({BOOTED_MARKER} does not exist)"
                elif os.geteuid() != 0:
                    self._unavailable = "the daemon does not run as root"
                else:
                    try:
                        self._bus = await SystemdBus.connect()
                    except SystemdBusError as exc:
                        self._unavailable = str(exc)
                    else:
                        self.daemon_unit = await self._own_service(self._bus)
        return self._unavailable

    @staticmethod
    async def _own_service(bus: SystemdBus) -> str | None:
        try:
            return await bus.service_of(os.getpid())
        except SystemdBusError as exc:  # steps still run, unordered against the daemon
            log.warning("cannot tell which service the daemon runs in (%s): at shutdown its "
                        "step units may be stopped before it, and their steps fail", exc)
            return None

    def detach(self) -> None:
        """The daemon stops: leave running units alone, to be collected after the restart."""
        self.detaching = True

    async def close(self) -> None:
        if self._bus is not None:
            await self._bus.close()
            self._bus = None

    # -- one attempt --------------------------------------------------------------------

    async def run(self, action: ActionSpec, params: Any, ctx: StepContext, *,
                  timeout: float | None = None, max_output: int = 16 * 1024 * 1024) -> Any:
        """Run (or re-attach to) one attempt's unit; its JSON result or StepFailure."""
        bus = self._bus
        assert bus is not None, "applies() first"
        argv = list(action.command or ())
        adopted = self._adoptable(ctx)
        if adopted is not None:
            ctx.log.info("step %s: re-attached to %s, started before the daemon restarted",
                         ctx.step_id, adopted)
            await self._wait(bus, adopted)
            if not _stopped_by_shutdown(self.directory / adopted):
                return await self._collect(adopted, argv, max_output)
            ctx.log.warning("step %s: %s was stopped by a system shutdown; running it again",
                            ctx.step_id, adopted)
            shutil.rmtree(self.directory / adopted, ignore_errors=True)
        unit = f"{unit_prefix(ctx)}{ctx.attempt}.service"
        await self._start(bus, unit, action, params, ctx, timeout)
        await self._wait(bus, unit)
        return await self._collect(unit, argv, max_output)

    async def _wait(self, bus: SystemdBus, unit: str) -> None:
        try:
            await bus.wait_ended(unit)
        except asyncio.CancelledError:
            if not self.detaching:
                try:
                    await _uninterrupted(self._stop(bus, unit))
                except BusLost as exc:
                    log.error("cannot stop %s: %s; it runs until it ends or is stopped "
                              "(systemctl stop %s)", unit, exc, unit)
            raise
        except BusLost as exc:  # the unit runs on; its directory stays, to be adopted
            raise StepFailure(f"lost track of {unit}: {exc}; it may still run (systemctl "
                              f"status {unit}): the step's next attempt re-attaches to it",
                              retryable=True) from None

    def _adoptable(self, ctx: StepContext) -> str | None:
        """The unit of an earlier attempt whose outcome never reached the engine."""
        pattern = re.compile(re.escape(unit_prefix(ctx)) + r"(\d+)\.service")
        found = [(int(m.group(1)), entry.name) for entry in _entries(self.directory)
                 if (m := pattern.fullmatch(entry.name)) and int(m.group(1)) < ctx.attempt]
        return max(found)[1] if found else None

    async def _start(self, bus: SystemdBus, unit: str, action: ActionSpec, params: Any,
                     ctx: StepContext, timeout: float | None) -> None:
        where = self.directory / unit
        where.mkdir(parents=True, mode=0o700)
        (where / "stdin").write_text(json.dumps(params))
        (where / "stdout").touch(mode=0o600)
        properties = self._properties(unit, action, ctx, timeout)
        try:
            await bus.start_transient(unit, properties)
        except SystemdBusError as exc:
            shutil.rmtree(where, ignore_errors=True)
            raise StepFailure(f"cannot start {unit}: {exc}") from None

    def _properties(self, unit: str, action: ActionSpec, ctx: StepContext,
                    timeout: float | None) -> list[tuple[str, str, Any]]:
        assert action.command is not None
        argv = list(action.command)
        cwd = ctx.skill_dir or ctx.workspace or Path("/")
        path = os.environ.get("PATH", os.defpath)
        program = str(cwd / argv[0]) if "/" in argv[0] and not argv[0].startswith("/") \
            else shutil.which(argv[0], path=path) or argv[0]
        env = {"PATH": path, **{k: os.environ[k] for k in ("LANG", "TZ") if k in os.environ},
               **action.env, **ctx.env()}
        sandbox = step_sandbox.merge(self.sandbox.default, self.sandbox.skills.get(ctx.skill),
                                     action.sandbox)
        writable = list(sandbox.get("ReadWritePaths", []))
        if ctx.workspace is not None:
            ctx.workspace.mkdir(parents=True, exist_ok=True)
            writable.append(str(ctx.workspace))
        sandbox["ReadWritePaths"] = writable
        where = self.directory / unit
        fields = {"RUN_ID": ctx.run_id, "WORKFLOW": ctx.workflow, "STEP_ID": ctx.step_id,
                  "SKILL": ctx.skill, "ACTION": ctx.action, "ATTEMPT": str(ctx.attempt)}
        props: list[tuple[str, str, Any]] = [
            ("Description", "s", f"orchestrator step {ctx.step_id} of run {ctx.run_id} "
                                 f"({ctx.skill}.{ctx.action}, attempt {ctx.attempt})"),
            ("Type", "s", "exec"),
            ("ExecStart", "a(sasb)", [(program, argv, False)]),
            ("ExecStopPostEx", "a(sasas)", [(sys.executable, [
                sys.executable, "-I", "-c", WRITE_STATUS, str(where / "status"),
                *shutdown.list_jobs_argv()], ["privileged"])]),
            ("WorkingDirectory", "s", str(cwd)),
            ("Environment", "as", [f"{k}={v}" for k, v in env.items()]),
            ("StandardInputFile", "s", str(where / "stdin")),
            ("StandardOutputFile", "s", str(where / "stdout")),
            ("StandardError", "s", "journal"),
            ("SyslogIdentifier", "s", ctx.skill),
            ("LogExtraFields", "aay", [f"{k}={v}".encode() for k, v in fields.items()]),
            ("CollectMode", "s", "inactive-or-failed"),
            ("TimeoutStopUSec", "t", int(self.kill_grace * USEC)),
            *step_sandbox.to_dbus(sandbox),
        ]
        if timeout is not None:
            props.append(("RuntimeMaxUSec", "t", int(timeout * USEC)))
        if self.daemon_unit is not None:  # stopped after the daemon at shutdown
            props.append(("Before", "as", [self.daemon_unit]))
        return props

    async def _stop(self, bus: SystemdBus, unit: str) -> None:
        await bus.stop(unit)
        await bus.wait_ended(unit)
        shutil.rmtree(self.directory / unit, ignore_errors=True)

    async def _collect(self, unit: str, argv: list[str], max_output: int) -> Any:
        where = self.directory / unit
        try:
            status = json.loads((where / "status").read_text())
        except (OSError, ValueError):
            status = {}
        try:
            stdout = await asyncio.to_thread(_read_head, where / "stdout", max_output + 1)
        except OSError:
            stdout = b""
        stderr_tail = await _stderr_tail(unit) if status.get("SERVICE_RESULT") != "success" else ""
        shutil.rmtree(where, ignore_errors=True)  # handed over: never adopted again
        if len(stdout) > max_output:
            raise StepFailure(f"{unit} wrote more than {max_output} bytes to stdout",
                              stderr_tail=stderr_tail)
        result = _result(stdout)
        outcome, code = status.get("SERVICE_RESULT", ""), status.get("EXIT_CODE", "")
        exit_status = str(status.get("EXIT_STATUS", ""))
        number = int(exit_status) if exit_status.isdigit() else None
        if _completed(status):
            return result
        last = stderr_tail.splitlines()[-1] if stderr_tail else ""
        if not status:
            raise StepFailure(f"{unit} ended without recording its status (journalctl -u {unit})",
                              stderr_tail=stderr_tail)
        if outcome == "timeout":
            raise StepTimeout(f"{unit} exceeded its RuntimeMaxSec= and was stopped",
                              stderr_tail=stderr_tail)
        if out_of_memory(status):
            limit = memory_limit(status)
            raise StepFailure(f"{unit} ran out of memory (MemoryMax={limit or ''}) and was killed "
                              "by the kernel's OOM killer", stderr_tail=stderr_tail, result=result)
        if code in ("killed", "dumped"):
            how = f"was killed by SIG{status.get('EXIT_STATUS')}"
            if status.get("EXIT_STATUS") == "KILL" and (limit := memory_limit(status)):
                # No OOM count to go by (an old kernel): say what may have done it.
                how += f" with MemoryMax={limit} set (possibly out of memory)"
        elif number in SETUP_FAILURES:
            how = f"{SETUP_FAILURES[number]} (exit status {number})"
        else:
            how = f"exited with status {status.get('EXIT_STATUS')}"
        raise StepFailure(f"command {argv!r} in {unit} {how}" + (f": {last}" if last else ""),
                          retryable=number == EX_TEMPFAIL and code == "exited",
                          exit_code=number if code == "exited" else None,
                          stderr_tail=stderr_tail, result=result)


async def _stderr_tail(unit: str) -> str:
    """The unit's own last stderr lines (not systemd's about it), once journald has them all."""
    try:
        await run_tool("journalctl", "--sync", timeout=15)
        done = await run_tool("journalctl", f"_SYSTEMD_UNIT={unit}", "-n", str(TAIL_LINES),
                              "-o", "cat", "--no-pager", timeout=15)
    except (SystemdUnavailable, SystemctlError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _stopped_by_shutdown(where: Path) -> bool:
    """Whether the unit whose directory this is ended because the system shut down."""
    try:
        status = json.loads((where / "status").read_text())
    except (OSError, ValueError):
        return False
    return not _completed(status) and shutdown.shutting_down(str(status.get("JOBS", "")))


def _completed(status: dict[str, Any]) -> bool:
    """Whether the command ran to its end with status 0. Not SERVICE_RESULT alone: systemd
    counts a death by SIGTERM (a stop) as "success" for a service."""
    return (status.get("SERVICE_RESULT") == "success" and status.get("EXIT_CODE") == "exited"
            and str(status.get("EXIT_STATUS")) == "0")


def _entries(directory: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(directory))
    except FileNotFoundError:
        return []


async def _uninterrupted(coro: Awaitable[None]) -> None:
    """Await coro to its end even if cancelled meanwhile: a stop must not be left half done."""
    task = asyncio.ensure_future(coro)
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            continue
    task.result()


def _read_head(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)
