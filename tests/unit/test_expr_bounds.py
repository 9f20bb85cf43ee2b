"""Hostile expressions on the caller's thread: no mutation of run data, bounded nesting,
bounded values, and which expressions are cheap enough to stay there."""

from __future__ import annotations

import copy
import json

import pytest

from orchestratord.cli.main import main
from orchestratord.core.errors import ExpressionError
from orchestratord.language.expr import MAX_NESTING, MAX_VALUE_SIZE, Expression, compile_value


@pytest.fixture
def scope():
    return {"params": {"env": "prod", "hosts": ["a", "b"]},
            "steps": {"a": {"status": "succeeded", "result": {"ok": True, "items": [1, 2]}}},
            "run": {"id": "r1", "workflow": "w"}}


@pytest.mark.parametrize("source", [
    "dict.update(params, {'env': 'dev'})",
    "dict.clear(steps.a.result)",
    "dict.pop(params, 'env')",
    "dict.popitem(params)",
    "dict.setdefault(params, 'new', 1)",
    "dict.fromkeys(range(10000), dict.fromkeys(range(5000), 1))",
    "dict().update.__self__",
    "params.update({'env': 'dev'})",
    "params.hosts.append('c')",
    "params.hosts.pop()",
    "params.hosts.clear()",
    "steps.a.result['items'].extend([3])",
    "(params.hosts|list).append('c')",
    "(steps|attr('update'))({'x': 1})",
])
def test_expressions_cannot_change_run_data(source, scope):
    """Regression: dict.update(params, ...) through the `dict` type changed params."""
    before = copy.deepcopy(scope)
    with pytest.raises(ExpressionError, match=r"not allowed|has no attribute|unsafe|not callable"):
        Expression.compile(source).evaluate(scope)
    assert scope == before


def test_dict_still_builds_a_new_mapping(scope):
    assert Expression.compile("dict(a=1, b=params.env)").evaluate(scope) == {"a": 1, "b": "prod"}


@pytest.mark.parametrize("source", [
    "(" * 70 + "1" + ")" * 70,
    "[" * 40 + "1" + "]" * 40,
    "{'a': " * 40 + "1" + "}" * 40,
    "not " * 1000 + "true",
    "- " * 2000 + "1",
])
def test_deep_nesting_is_an_expression_error(source):
    """Regression: 70 nested parentheses raised RecursionError out of the parser."""
    with pytest.raises(ExpressionError, match="nest"):
        Expression.compile(source)


def test_ten_thousand_parentheses_are_rejected_by_length():
    with pytest.raises(ExpressionError, match="characters long"):
        Expression.compile("(" * 10_000 + "1" + ")" * 10_000)


def test_brackets_in_strings_do_not_count_as_nesting(scope):
    deep = "(" * (MAX_NESTING + 5)
    assert Expression.compile(f"'{deep}' ~ \"{deep}\"").evaluate(scope) == deep * 2
    nested = "(" * MAX_NESTING + "1" + ")" * MAX_NESTING
    assert Expression.compile(nested).evaluate(scope) == 1


def test_validate_reports_deep_nesting_with_file_and_line(tmp_path, capsys):
    """Regression: `validate` printed a RecursionError traceback and exited 1."""
    bad = tmp_path / "deep.yaml"
    when = "(" * 70 + "true" + ")" * 70
    bad.write_text("workflow:\n  name: deep\n  steps:\n"
                   f"    - {{id: a, skill: s, action: x, when: '{when}'}}\n"
                   "skills:\n  s:\n    actions:\n      x: {command: [/bin/true]}\n")
    assert main(["validate", "--json", str(bad)]) == 2
    [problem] = json.loads(capsys.readouterr().out)["problems"]
    assert problem["file"] == str(bad) and problem["line"] == 4
    assert "nests brackets 70 deep" in problem["message"]


def test_shared_structure_too_big_to_print_is_refused_before_printing(scope):
    """Regression: the result of a cheap-to-build shared structure was walked uncharged."""
    source = "[range(1000)|list]|batch(2000, fill_with=range(1000)|list)|first"
    with pytest.raises(ExpressionError, match=f"more than {MAX_VALUE_SIZE:,} items"):
        Expression.compile(source).evaluate(scope)


@pytest.mark.parametrize("source", [
    "([range(1000)|list]|batch(2000, fill_with=range(1000)|list)|first)|string",
    "([range(1000)|list]|batch(2000, fill_with=range(1000)|list)|first)|pprint",
    "([range(1000)|list]|batch(2000, fill_with=range(1000)|list)|first)|tojson",
])
def test_printing_filters_are_charged_for_what_they_print(source, scope):
    with pytest.raises(ExpressionError, match="would produce"):
        Expression.compile(source).evaluate(scope)


def test_a_templated_string_is_bounded_like_a_value(scope):
    compiled = compile_value({"x": "{{ [range(1000)|list]|batch(2000, "
                                   "fill_with=range(1000)|list)|first }} items"})
    with pytest.raises(ExpressionError, match=r"^x: .*more than"):
        compiled.render(scope)


@pytest.mark.parametrize(("source", "cheap"), [
    ("steps.a.result.ok", True),
    ("params.env == 'prod' and not steps.a.result.ok", True),
    ("steps.a.result['items'] | length > 1", True),
    ("params.missing | default(3) - 1 > 0", True),
    ("params.env in ['prod', 'staging']", True),
    ("steps.a is defined and steps.a.status == 'succeeded'", True),
    ("params.env ~ 'x'", False),
    ("params.hosts + params.hosts", False),
    ("params.hosts * 3", False),
    ("params.hosts | join(',')", False),
    ("params.env | lower", False),
    ("params.hosts is lower", False),
    ("params.env.upper()", False),
    ("range(3)", False),
    ("params.hosts[::-1]", False),
    ("'%s' % params.env", False),
])
def test_cheap_expressions_only_read_and_compare(source, cheap):
    assert Expression.compile(source).is_cheap is cheap
