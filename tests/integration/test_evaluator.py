"""Bounded evaluation in a real worker process, while the event loop keeps ticking."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator

import pytest

from orchestratord.core.errors import ExpressionError
from orchestratord.language.aggregate import SELECTIONS_KEY, Selector
from orchestratord.language.evaluator import Evaluator
from orchestratord.language.expr import Expression, compile_value
from tests.waiting import until_async

DEADLINE = 2.0  # the production bound
MAX_STALL = 0.25  # far below WatchdogSec; the loop only ever waits on a pipe

SCOPE = {"params": {"n": 3, "env": "prod"},
         "steps": {"a": {"status": "succeeded", "result": {"x": [1, 2, 3]}}},
         "run": {"id": "r1", "workflow": "w"}}

# A list holding one 3,000-item list 3,000 times: cheap to build, costly to walk.
SHARED = "([range(3)|list]|batch(3000, fill_with=range(3000)|list)|first)"
HUGE = SHARED.replace("3000", "10000")  # copied, 800 MB


class Stall:
    """The longest time the loop did not get to run a 10 ms ticker."""

    def __init__(self) -> None:
        self.worst = 0.0


@contextlib.asynccontextmanager
async def ticking() -> AsyncIterator[Stall]:
    stall = Stall()

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            stall.worst = max(stall.worst, now - last - 0.01)
            last = now
    task = asyncio.create_task(tick())
    try:
        yield stall
    finally:
        task.cancel()


@pytest.fixture
async def evaluator():
    e = Evaluator(deadline=DEADLINE)
    yield e
    await e.close()


@pytest.mark.parametrize(("source", "bound"), [
    (f"{SHARED}|sum(start=[])|length", "took longer than 2 s"),          # quadratic
    # the deadline or the join's own charge, whichever the machine's speed meets first
    (f"{SHARED}|map('join')|join|length", ("took longer than 2 s", "join would produce")),
    # under 1 s a wordwrap on an idle machine: two of them finished within the deadline
    ("('x ' * 400000)" + "|wordwrap(1)" * 10 + "|length", "took longer than 2 s"),
    (f"{SHARED}|string", "string would produce"),
    (f"{SHARED}|tojson", "tojson would produce"),
    (f"'%s' % {SHARED}", "% formatting would produce"),
    (SHARED, "more than 1,000,000 items"),
    ("dict.fromkeys(range(10000), dict.fromkeys(range(5000), 1))", "no attribute 'fromkeys'"),
])
async def test_costly_expressions_fail_within_their_bound_and_the_loop_runs(
        evaluator, source, bound):
    """Regression: such expressions ran on the event loop and froze the daemon for 23 s."""
    async with ticking() as stall:
        started = time.monotonic()
        with pytest.raises(ExpressionError) as failure:
            await evaluator.evaluate(Expression.compile(source), SCOPE)
        elapsed = time.monotonic() - started
    message = str(failure.value)
    bounds = (bound,) if isinstance(bound, str) else bound
    assert message.startswith(f"expression {source!r}"), message
    assert any(b in message for b in bounds), message
    assert elapsed < DEADLINE + 1.5, f"{elapsed:.2f} s"
    assert stall.worst < MAX_STALL, f"the loop stalled {stall.worst:.3f} s"
    # the next evaluation gets a working worker, restarted if it had to be killed
    assert await evaluator.evaluate(Expression.compile("params.n ~ ''"), SCOPE) == "3"


async def test_memory_limit_is_enforced_in_the_worker():
    small = Evaluator(deadline=20, memory_limit=256 * 2**20)
    try:
        with pytest.raises(ExpressionError, match="more memory than one evaluation may use"):
            await small.evaluate(Expression.compile(f"{HUGE}|map('list')|list|length"), SCOPE)
    finally:
        await small.close()


async def test_values_come_back_as_data(evaluator):
    compiled = compile_value({"hosts": "{{ ['a', 'b'] + [params.env] }}",
                              "text": "n={{ params.n * 2 }}, x={{ steps.a.result.x|join('+') }}",
                              "cheap": "{{ steps.a.result.x }}"})
    assert await evaluator.render(compiled, SCOPE) == {
        "hosts": ["a", "b", "prod"], "text": "n=6, x=1+2+3", "cheap": [1, 2, 3]}
    for source in ("params.env.upper", "(params.env ~ '').upper"):  # here and in the worker
        with pytest.raises(ExpressionError, match="builtin_function_or_method, not data"):
            await evaluator.evaluate(Expression.compile(source), SCOPE)


async def test_aggregates_read_their_selection_in_the_worker(evaluator):
    """Guards aggregates off the event loop: the selection the driver made travels to the
    worker in the pickled scope, and stays out of what an expression can name there."""
    scope = {**SCOPE, SELECTIONS_KEY: {Selector("a*").key: ("a",)}}
    remote = Expression.compile("results('a*') | map(attribute='x') | list")
    assert not remote.is_cheap
    assert await evaluator.evaluate(remote, scope) == [[1, 2, 3]]
    assert await evaluator.evaluate(Expression.compile("steps | list | join(',')"), scope) == "a"
    with pytest.raises(ExpressionError, match="steps has no key '_selections'"):
        await evaluator.evaluate(Expression.compile(f"steps['{SELECTIONS_KEY}'] | list"), scope)
    with pytest.raises(ExpressionError, match="unknown name"):
        Expression.compile(SELECTIONS_KEY)


async def test_an_error_is_raised_at_its_path(evaluator):
    compiled = compile_value({"ok": "{{ params.n + 1 }}",
                              "bad": ["{{ (params.n + 1) ~ params.nope }}"]})
    with pytest.raises(ExpressionError, match=r"^bad\[0\]: expression .* no attribute 'nope'"):
        await evaluator.render(compiled, SCOPE)


async def test_cancellation_mid_evaluation_leaves_no_stale_reply(evaluator):
    slow = asyncio.create_task(evaluator.evaluate(
        Expression.compile(f"{SHARED}|sum(start=[])|length"), SCOPE))
    # The request is written as soon as the worker exists (no await in between); the
    # evaluation then takes its whole 2 s bound, so the cancel lands mid-request.
    await until_async("the evaluation to reach its worker", lambda: evaluator._worker, timeout=10)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(10):
            await slow
    assert await evaluator.evaluate(Expression.compile("params.n + 1"), SCOPE) == 4


async def test_run_data_is_unchanged_by_a_remote_evaluation(evaluator):
    scope = {"params": {"env": "prod"}, "steps": {}, "run": {}}
    with pytest.raises(ExpressionError, match=r"not allowed|no attribute"):
        await evaluator.evaluate(Expression.compile("dict.update(params, {'env': 1}) ~ ''"),
                                 scope)
    assert scope["params"] == {"env": "prod"}


def test_daemon_answers_health_while_a_step_evaluates_a_costly_condition(env, daemon):
    """Regression: one `when` kept /health unanswered for 23 s, past WatchdogSec."""
    from .daemon_process import SLOW
    costly = f"{SHARED}|sum(start=[])|length > 0"
    (env / "workflows" / "hostile.yaml").write_text(
        "workflow:\n  name: hostile\n  steps:\n"
        f"    - {{id: bad, skill: local, action: work, when: \"{costly}\", "
        f"params: {{ledger: {env / 'ledger'}}}}}\n"
        f"    - {{id: good, skill: local, action: work, depends_on: [], "
        f"params: {{ledger: {env / 'ledger'}, sleep: 1}}}}\n"
        f"skills:\n  local:\n    actions:\n      work: {{command: {json.dumps(SLOW)}}}\n")
    d = daemon()
    d.notify.wait_for("READY=1")
    started = d.ctl("run", "hostile", "--json")
    assert started.returncode == 0, started.stderr
    slowest, deadline = 0.0, time.monotonic() + 30
    while True:
        asked = time.monotonic()
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(env / "run" / "control.sock"))
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b"".join(iter(lambda: s.recv(65536), b""))
        slowest = max(slowest, time.monotonic() - asked)
        assert b" 200 " in answer
        runs = json.loads(d.ctl("runs", "--json").stdout)
        if runs and runs[0]["status"] not in ("pending", "running"):
            break
        assert time.monotonic() < deadline, f"the run did not end: {runs}"
    assert slowest < 1.0, f"/health took {slowest:.2f} s"
    shown = json.loads(d.ctl("show", runs[0]["id"], "--json").stdout)
    steps = {s["step_id"]: s for s in shown["steps"]}
    assert steps["good"]["status"] == "succeeded"
    assert steps["bad"]["status"] == "failed"
    assert "took longer than 2 s, the bound for one evaluation" in steps["bad"]["error"]
    assert d.proc.poll() is None
