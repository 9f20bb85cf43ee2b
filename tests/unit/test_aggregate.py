"""Aggregates in expressions: `steps_matching` and `results`, compiled, checked, evaluated."""

from __future__ import annotations

import textwrap

import pytest

from orchestratord.core.errors import DefinitionError, ExpressionError
from orchestratord.language.aggregate import SELECTIONS_KEY, Selector
from orchestratord.language.expr import Expression, compile_value
from orchestratord.language.loader import load_workflow
from orchestratord.skills import discover
from tests.conftest import ECHO, write_skill, write_workflow


def view(status: str, result: object) -> dict:
    return {"status": status, "result": result, "error": None, "attempts": 1, "duration": 0.1}


def checks_workflow(tmp_path, skill_root, more_steps: str):
    """Two health checks in a group, the run's outputs collecting them, then more_steps."""
    write_skill(skill_root, "probe", {"check": {"command": ECHO, "capabilities": ["health.check"]},
                                      "lint": {"command": ECHO}})
    return write_workflow(tmp_path, textwrap.dedent("""
        workflow:
          name: agg
          outputs:
            all: "{{ results(capability='health.check') }}"
          steps:
            - parallel:
                - {id: check-a, skill: probe, action: check}
                - {id: check-b, skill: probe, action: check}
    """) + textwrap.indent(textwrap.dedent(more_steps).strip("\n"), "    ") + "\n")


SCOPE = {"steps": {"check-b": view("succeeded", {"ok": True}),
                   "check-a": view("skipped", None),
                   "lint": view("succeeded", "clean")},
         SELECTIONS_KEY: {Selector("check-*").key: ("check-b", "check-a"),
                          Selector(capability="code.lint").key: ("lint",)}}


def test_an_aggregate_reads_the_selected_steps_in_the_order_selected():
    everything = Expression.compile("steps_matching('check-*')")
    assert everything.selectors == {Selector("check-*")} and everything.step_refs == set()
    assert everything.evaluate(SCOPE) == [{"id": "check-b", **view("succeeded", {"ok": True})},
                                          {"id": "check-a", **view("skipped", None)}]
    assert Expression.compile("results('check-*')").evaluate(SCOPE) == [{"ok": True}], \
        "results are those of the steps that succeeded"
    assert Expression.compile("results(capability='code.lint')").evaluate(SCOPE) == ["clean"]
    assert Expression.compile("results('check-*') | length == 1").evaluate(SCOPE) is True


def test_literal_aggregates_are_cheap_and_params_collect_their_selectors():
    assert Expression.compile("results('check-*') | length > 0").is_cheap
    assert not Expression.compile("results('check-*') | map(attribute='ok') | list").is_cheap
    value = compile_value({"a": "{{ results('check-*') }}", "b": ["{{ steps_matching("
                                                                    "capability='x.y') }}"]})
    assert value.selectors == {Selector("check-*"), Selector(capability="x.y")}


@pytest.mark.parametrize("source", ["results()", "results(params.p)", "results('a', 'b')",
                                    "results(pattern='a')", "results(capability=1)",
                                    "steps_matching('')", "results(*params.p)"])
def test_arguments_must_be_string_literals(source):
    with pytest.raises(ExpressionError, match=r"takes a step id pattern and/or capability="):
        Expression.compile(source)


def test_an_unselected_aggregate_fails_instead_of_reading_nothing():
    with pytest.raises(ExpressionError, match="steps matching 'other-\\*' were not selected"):
        Expression.compile("results('other-*')").evaluate(SCOPE)


def test_the_loader_checks_what_aggregates_read(tmp_path, skill_root):
    path = checks_workflow(tmp_path, skill_root, """
            - id: summary
              skill: probe
              action: lint
              params: {checks: "{{ results('check-?') }}"}
            - id: early
              skill: probe
              action: lint
              depends_on: []
              params: {checks: "{{ steps_matching('check-?') }}"}
            - id: check-self
              skill: probe
              action: lint
              when: "results('check-*') | length > 0"
            - id: typo
              skill: probe
              action: lint
              params: {x: "{{ results('chek-*') }}", y: "{{ results(capability='disk.free') }}"}
    """)
    with pytest.raises(DefinitionError) as info:
        load_workflow(path, registry=discover([skill_root]))
    assert [str(p) for p in info.value.problems] == [
        f"{path}:17:15: steps[2].params: the steps matching 'check-?' include 'check-a', "
        "'check-b', not finished when step 'early' starts: add them (or their group) to its "
        "depends_on",
        f"{path}:21:13: steps[3].when: step 'check-self' reads the steps matching 'check-*', "
        "itself among them: select only steps that finish before it",
        f"{path}:25:15: steps[4].params: no step declaring capability 'disk.free' (step ids: "
        "check-a, check-b, summary, early, check-self, typo)",
        f"{path}:25:15: steps[4].params: no step matching 'chek-*' (step ids: check-a, "
        "check-b, summary, early, check-self, typo)"]


def test_a_workflow_reading_finished_steps_loads(tmp_path, skill_root):
    path = checks_workflow(tmp_path, skill_root, """
            - {id: summary, skill: probe, action: lint, params: {all: "{{ results('check-*') }}"}}
    """)
    definition = load_workflow(path, registry=discover([skill_root]))
    assert definition.select(Selector("check-*")) == ("check-a", "check-b")
    assert definition.select(Selector(capability="health.check")) == ("check-a", "check-b")
    assert definition.select(Selector("*", capability="health.check")) == ("check-a", "check-b")


def test_an_aggregate_is_charged_to_the_evaluations_budget():
    """Guards the cost bound: a cheap aggregate runs in place, so what it builds is counted
    like any size-multiplying operation (here more entries than one evaluation may build)."""
    ids = tuple(f"s{i}" for i in range(150_000))
    scope = {"steps": {sid: view("succeeded", i) for i, sid in enumerate(ids)},
             SELECTIONS_KEY: {Selector("s*").key: ids}}
    assert Expression.compile("results('s*') | length").is_cheap
    with pytest.raises(ExpressionError, match="steps matching 's\\*' would produce 1,050,000 items"):
        Expression.compile("results('s*') | length").evaluate(scope)
