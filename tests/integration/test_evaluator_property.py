"""Property: whatever expression the sandbox accepts, evaluation ends within a fixed time
and memory bound, with a value or with ExpressionError, and the event loop keeps running."""

from __future__ import annotations

import asyncio
import resource
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestratord.core.errors import ExpressionError
from orchestratord.language.evaluator import DEADLINE, Evaluator
from orchestratord.language.expr import Expression
from orchestratord.language.sandbox import ENV

SCOPE = {"params": {"n": 7, "env": "prod", "hosts": ["a", "b", "c"], "big": list(range(2000))},
         "steps": {"a": {"status": "succeeded", "result": {"x": [1, 2, 3], "text": "a b c"}},
                   "b": {"status": "failed", "result": None, "error": "boom"}},
         "run": {"id": "r1", "workflow": "w"}}
SLACK = 3.0  # a worker restart and a loaded 2-core machine
MEMORY_GROWTH = 200 * 2**20  # of this process; the worker has its own hard limit

FILTERS = sorted(ENV.filters)
TESTS = sorted(ENV.tests)
METHODS = ["upper", "lower", "split", "join", "replace", "format", "center", "zfill",
           "keys", "values", "items", "get", "count", "index", "startswith", "strip"]
BINOPS = ["+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", ">=", "in",
          "not in", "and", "or"]

literals = st.one_of(
    st.integers(-3, 100_000).map(str),
    st.sampled_from(["0", "1", "2", "10", "1000", "10000", "-1", "1.5", "true", "none"]),
    st.text("ab %{}()\\n-_0", max_size=8).map(repr),
)
paths = st.sampled_from(["params.n", "params.env", "params.hosts", "params.big",
                         "steps.a.result", "steps.a.result.x", "steps.a.result.text",
                         "steps.b", "steps", "params", "run.id", "steps.a.result.missing"])
# Cheap to write, costly to use: what a hostile author starts from.
seeds = st.sampled_from([
    "range(10000)", "range(10000)|list", "dict(a=1)", "'x ' * 200000",
    "([range(3)|list]|batch(3000, fill_with=range(3000)|list)|first)",
    "(range(10000)|batch(100)|list)", "(params.big|map('string')|join(' '))",
])
atoms = st.one_of(literals, paths, seeds)


def _compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    args = st.lists(inner, max_size=3).map(", ".join)
    return st.one_of(
        st.tuples(inner, st.sampled_from(FILTERS), args).map(
            lambda t: f"({t[0]})|{t[1]}({t[2]})"),
        st.tuples(inner, st.sampled_from(FILTERS)).map(lambda t: f"({t[0]})|{t[1]}"),
        st.tuples(inner, st.sampled_from(TESTS)).map(lambda t: f"({t[0]}) is {t[1]}"),
        st.tuples(inner, st.sampled_from(BINOPS), inner).map(lambda t: f"({t[0]}) {t[1]} ({t[2]})"),
        st.tuples(inner, st.sampled_from(METHODS), args).map(lambda t: f"({t[0]}).{t[1]}({t[2]})"),
        st.lists(inner, max_size=4).map(lambda xs: f"[{', '.join(xs)}]"),
        st.tuples(inner, inner).map(lambda t: f"{{'k': {t[0]}, 'v': {t[1]}}}"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]})[{t[1]}]"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]}) if ({t[1]}) else ({t[2]})"),
        inner.map(lambda x: f"not ({x})"),
        inner.map(lambda x: f"range({x})"),
    )


expressions = st.recursive(atoms, _compound, max_leaves=12)


@pytest.fixture(scope="module")
def loop_and_evaluator():
    loop = asyncio.new_event_loop()
    evaluator = Evaluator()
    yield loop, evaluator
    loop.run_until_complete(evaluator.close())
    loop.close()


async def _evaluate_while_ticking(evaluator: Evaluator, source: str) -> float:
    worst, last = 0.0, time.monotonic()
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal worst, last
        while not done.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            worst, last = max(worst, now - last - 0.01), now
    ticker = asyncio.create_task(tick())
    try:
        await evaluator.evaluate(Expression.compile(source), SCOPE)
    except ExpressionError:
        pass  # the project's own error: an accepted outcome
    finally:
        done.set()
        await ticker
    return worst


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(source=expressions)
def test_any_expression_ends_within_the_bounds(loop_and_evaluator, source):
    loop, evaluator = loop_and_evaluator
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.monotonic()
    stall = loop.run_until_complete(_evaluate_while_ticking(evaluator, source))
    elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + SLACK, f"{source!r} took {elapsed:.2f} s"
    assert stall < 0.5, f"{source!r} stalled the event loop {stall:.2f} s"
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    assert grown < MEMORY_GROWTH, f"{source!r} grew this process by {grown / 2**20:.0f} MiB"
