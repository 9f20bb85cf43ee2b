"""The command runner: argv in its own process group, JSON in on stdin, JSON out on stdout.

Both pipes are drained concurrently (no deadlock on large output); stderr lines go to
the step's log as they come. The child leads a new session, so on timeout or cancel the
whole group gets SIGTERM, then SIGKILL after a grace period; after the leader exits, what
is left of its group is killed too, so nothing is orphaned and the pipes reach EOF.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...core.errors import StepFailure
from ..context import StepContext

EX_TEMPFAIL = 75  # sysexits.h: "try again later"
TAIL_LINES = 40


async def run_command(argv: Sequence[str], params: Any, ctx: StepContext, *,
                      env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                      kill_grace: float = 5.0, max_output: int = 16 * 1024 * 1024) -> Any:
    """Run argv once; returns its JSON result or raises StepFailure."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=cwd, start_new_session=True,
            env={**os.environ, **(env or {}), **ctx.env()})
    except OSError as exc:
        raise StepFailure(f"cannot execute {argv[0]!r}: {exc.strerror}") from None
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        stdin, stdout_pipe, stderr_pipe = _pipes(proc)
        # The group's leader is recorded (the group leads with pgid == pid, a new
        # session) while its pipes are served, not before: the process runs from the
        # fork on either way, so waiting for that commit before feeding it only delayed
        # every command by a round trip to the database (profiled: 200 /bin/true steps).
        # It is first in the gather, so it reads the leader's identity before anything
        # here reaps the leader, and the attempt cannot end (its end is recorded after
        # this gather) before it is committed.
        _, stdout, _, _, code = await asyncio.gather(
            _recorded(ctx, proc.pid), _read_all(stdout_pipe, max_output),
            _log_lines(stderr_pipe, ctx, tail), _feed(stdin, params),
            _reap_group_after_exit(proc))
    except BaseException:
        await _terminate(proc, kill_grace)
        raise
    stderr_tail = "\n".join(tail)
    if stdout is None:
        raise StepFailure(f"command {list(argv)!r} wrote more than {max_output} bytes to stdout",
                          stderr_tail=stderr_tail)
    result = _result(stdout)
    if code != 0:
        last = f": {tail[-1]}" if tail else ""
        how = (f"was killed by {signal.Signals(-code).name}" if code < 0
               else f"exited with status {code}")
        # A failing command may still say what it found (the counts of failed tests):
        # its stdout is the failed step's result.
        raise StepFailure(f"command {list(argv)!r} {how}{last}", retryable=code == EX_TEMPFAIL,
                          exit_code=code, stderr_tail=stderr_tail, result=result)
    return result


async def _recorded(ctx: StepContext, pid: int) -> None:
    if ctx.on_spawn is not None:
        await ctx.on_spawn(pid)


def _pipes(proc: asyncio.subprocess.Process
           ) -> tuple[asyncio.StreamWriter, asyncio.StreamReader, asyncio.StreamReader]:
    """stdin, stdout and stderr of a child spawned with all three as PIPE."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None, \
        "spawned with stdin, stdout and stderr as PIPE"
    return proc.stdin, proc.stdout, proc.stderr


def _result(stdout: bytes) -> Any:
    """stdout as JSON; text that is not JSON as {"stdout": text}; nothing as None."""
    text = stdout.decode("utf-8", "replace").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"stdout": text}


async def _feed(stdin: asyncio.StreamWriter, params: Any) -> None:
    try:
        stdin.write(json.dumps(params).encode())
        await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command does not read its params: its business
    finally:
        stdin.close()


async def _read_all(stream: asyncio.StreamReader, limit: int) -> bytes | None:
    chunks, size = [], 0
    while chunk := await stream.read(65536):
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    return b"".join(chunks) if size <= limit else None


async def _log_lines(stream: asyncio.StreamReader, ctx: StepContext,
                     tail: collections.deque) -> None:
    while True:
        try:
            line = await stream.readline()
        except ValueError:  # a line longer than the stream's limit: take what there is
            line = await stream.read(65536)
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip("\n")
        tail.append(text)
        ctx.log.info("%s", text)


async def _reap_group_after_exit(proc: asyncio.subprocess.Process) -> int:
    """The leader's exit status, once it and what was left of its group are gone."""
    # asyncio's proc.wait() also waits for the pipes to close, which a grandchild that
    # inherited stdout can postpone forever; a pidfd says when the leader itself exits.
    await _exited(proc.pid)
    _kill_group(proc.pid, signal.SIGKILL)
    return await proc.wait()


async def _exited(pid: int) -> None:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # gone already
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:  # once is enough; the fd stays readable until removed
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def _terminate(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the group, SIGKILL it after grace, and reap the leader; never interrupted."""
    async def stop() -> None:
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            pass
        _kill_group(proc.pid, signal.SIGKILL)
        await proc.wait()
    task = asyncio.ensure_future(stop())
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            continue  # a second cancel must not leave the group running
