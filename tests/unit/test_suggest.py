"""The one "did you mean" hint."""

from __future__ import annotations

import pathlib

import orchestratord
from orchestratord.core.suggest import did_you_mean


def test_the_closest_candidate_or_nothing():
    assert did_you_mean("retyr", ["retry", "timeout", "params"]) == " (did you mean 'retry'?)"
    assert did_you_mean("zzz", ["retry", "timeout"]) == ""
    assert did_you_mean("x", []) == ""


def test_candidates_in_any_order_give_the_same_hint():
    names = ["step_a", "step_b", "step_c"]
    assert did_you_mean("step_", names) == did_you_mean("step_", reversed(names))


def test_no_other_module_computes_its_own_hint():
    """Regression: graph.py and source.py each had a did-you-mean of their own."""
    package = pathlib.Path(orchestratord.__file__).parent
    others = [p.relative_to(package) for p in package.rglob("*.py")
              if "get_close_matches" in p.read_text() and p.name != "suggest.py"]
    assert others == []
