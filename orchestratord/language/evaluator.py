"""Evaluation away from the event loop, under a hard deadline and a memory limit.

The sandbox accounts for what the operations it knows build, but a single C call (printing
a large shared structure, comparing two, a quadratic filter) cannot be interrupted once it
runs, and a thread cannot be killed. So an expression that is not `is_cheap` runs in a
worker process: one long-lived `python -m orchestratord.evaluator`, limited to
MEMORY_LIMIT bytes of address space, killed when one evaluation takes longer than
DEADLINE seconds and started again for the next. The event loop only waits on a pipe.
Cheap expressions (reading params and results, comparing, `default`, `length`: nearly
every `when`) are evaluated in place; their cost is one reading of data already held.

The request is a pickle (the worker trusts the daemon), the reply JSON (the daemon does
not trust what a hostile expression may have done to the worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import pickle
import resource
import signal
import struct
import sys
from collections.abc import Mapping
from typing import Any, BinaryIO

from ..core.errors import ExpressionError
from .expr import CompiledValue, Expression

DEADLINE = 2.0
MEMORY_LIMIT = 512 * 2**20
MAX_REPLY = 64 * 2**20
_HEADER = struct.Struct(">I")
_PR_SET_PDEATHSIG = 1


class Evaluator:
    """Evaluates expressions for one engine; `close()` ends its worker."""

    def __init__(self, deadline: float = DEADLINE, memory_limit: int = MEMORY_LIMIT) -> None:
        self.deadline, self.memory_limit = deadline, memory_limit
        self._worker: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()  # one request on the pipe at a time

    async def evaluate(self, expression: Expression, scope: Mapping[str, Any]) -> Any:
        """The expression's value over scope; ExpressionError if it fails or hits a bound."""
        if expression.is_cheap:
            return expression.evaluate(scope)
        async with self._lock:
            return await self._remote(expression, scope)

    async def truthy(self, expression: Expression, scope: Mapping[str, Any]) -> bool:
        """Whether the value is true as Python sees it."""
        return bool(await self.evaluate(expression, scope))

    async def render(self, compiled: CompiledValue, scope: Mapping[str, Any]) -> Any:
        """compiled.render(scope) with each expression evaluated by `evaluate`."""
        values: dict[Expression, Any] = {}
        failure: ExpressionError | None = None
        for expression in compiled.expressions:
            try:
                values[expression] = await self.evaluate(expression, scope)
            except ExpressionError as exc:
                failure = exc  # raised by render at the path where it occurs
                break

        def known(expression: Expression, _scope: Mapping[str, Any]) -> Any:
            if expression not in values:
                raise failure or ExpressionError(f"{expression!r} was not evaluated")
            return values[expression]
        return compiled.render(scope, known)

    async def close(self) -> None:
        """End the worker process, if one runs."""
        await self._stop()

    async def _remote(self, expression: Expression, scope: Mapping[str, Any]) -> Any:
        where = f"expression {expression.source!r}"
        worker = await self._start()
        assert worker.stdin is not None and worker.stdout is not None
        request = pickle.dumps((expression.source, dict(scope)), protocol=5)
        try:
            worker.stdin.write(_HEADER.pack(len(request)) + request)
            await worker.stdin.drain()
            reply = await asyncio.wait_for(_read_frame(worker.stdout), self.deadline)
        except TimeoutError:
            await self._stop()
            raise ExpressionError(
                f"{where} took longer than {self.deadline:g} s, the bound for one "
                "evaluation; do such work in a step") from None
        except _ReplyTooBig as exc:
            await self._stop()
            raise ExpressionError(f"{where} gives a value of {exc} bytes; the bound is "
                                  f"{MAX_REPLY:,}: do such work in a step") from None
        except (asyncio.IncompleteReadError, ConnectionError):
            code = await self._stop()
            raise ExpressionError(
                f"{where} needs more memory than one evaluation may use "
                f"({self.memory_limit // 2**20} MiB; the evaluation process ended with "
                f"status {code}); do such work in a step") from None
        except BaseException:  # cancelled mid-request: the pipe is out of step
            await self._stop()
            raise
        try:
            answer = json.loads(reply)
        except (ValueError, RecursionError):
            raise ExpressionError(f"{where} gives a value nested too deeply") from None
        if "error" in answer:
            raise ExpressionError(str(answer["error"]))
        return answer["value"]

    async def _start(self) -> asyncio.subprocess.Process:
        if self._worker is None or self._worker.returncode is not None:
            # The parent's import path, since under Nix it is set inside the wrapper
            # script, not in the environment a child inherits.
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            self._worker = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "orchestratord.language.evaluator", str(self.memory_limit),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
                start_new_session=True)  # Ctrl-C on a terminal is the parent's to handle
        return self._worker

    async def _stop(self) -> int | None:
        worker, self._worker = self._worker, None
        if worker is None:
            return None
        if worker.returncode is None:
            worker.kill()
        return await worker.wait()


class _ReplyTooBig(Exception):
    """The worker announced a reply over MAX_REPLY bytes (the worker checks first)."""


async def _read_frame(stream: asyncio.StreamReader) -> bytes:
    (size,) = _HEADER.unpack(await stream.readexactly(_HEADER.size))
    if size > MAX_REPLY:
        raise _ReplyTooBig(f"{size:,}")
    return await stream.readexactly(size)


# -- the worker process -------------------------------------------------------------------

def _read(stream: BinaryIO) -> bytes | None:
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None  # the daemon closed the pipe: it ended or stopped us
    return stream.read(_HEADER.unpack(header)[0])


def _not_data(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    raise TypeError(f"a {type(value).__name__}, not data")


def _answer(source: str, scope: Mapping[str, Any]) -> bytes:
    try:
        value = Expression.compile(source).evaluate(scope)
        reply = json.dumps({"value": value}, default=_not_data).encode()
        if len(reply) <= MAX_REPLY:
            return reply
        error = (f"expression {source!r} gives a value of {len(reply):,} bytes; the bound is "
                 f"{MAX_REPLY:,}: do such work in a step")
    except ExpressionError as exc:
        error = str(exc)
    except (TypeError, ValueError) as exc:  # not JSON: a method, a huge int
        error = f"expression {source!r} gives {exc}"
    except (MemoryError, RecursionError):
        error = f"expression {source!r} gives a value too big to return; do such work in a step"
    return json.dumps({"error": error}).encode()


def main() -> None:
    """Serve evaluation requests on stdin/stdout until stdin closes."""
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else MEMORY_LIMIT
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with contextlib.suppress(OSError, AttributeError):  # Linux: die with the daemon
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    while (request := _read(requests)) is not None:
        source, scope = pickle.loads(request)
        reply = _answer(source, scope)
        replies.write(_HEADER.pack(len(reply)) + reply)
        replies.flush()


if __name__ == "__main__":
    main()
