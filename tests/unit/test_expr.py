"""Expressions: `when:` conditions and `{{ }}` templating of step params."""

from __future__ import annotations

import time

import pytest

from orchestratord.core.errors import ExpressionError
from orchestratord.language.expr import MAX_SOURCE_CHARS, CompiledValue, Expression, compile_value
from orchestratord.language.sandbox import MAX_RANGE


@pytest.fixture
def scope() -> dict:
    return {
        "params": {"packages": ["nginx", "git"], "replicas": 3, "dry_run": False,
                   "service": "web", "labels": {"tier": "front"}, "nothing": None},
        "steps": {
            "health-monitoring": {"status": "succeeded",
                                  "result": {"healthy": True, "items": [1, 2]},
                                  "error": None, "attempts": 1, "duration": 0.25},
            "check": {"status": "failed", "result": {"code": 3, "hosts": ["a", "b"]},
                      "error": "exit 3", "attempts": 2, "duration": None},
            "skipped": {"status": "skipped", "result": None, "error": None, "attempts": 0,
                        "duration": None},
        },
        "run": {"id": "r-1", "workflow": "deploy"},
    }


def evaluate(source: str, scope: dict):
    return Expression.compile(source).evaluate(scope)


# --- values and types --------------------------------------------------------------


@pytest.mark.parametrize("template, expected", [
    ("{{ params.packages }}", ["nginx", "git"]),
    ("{{ params.replicas * 2 }}", 6),
    ("{{ params.labels }}", {"tier": "front"}),
    ("{{ params.dry_run }}", False),
    ("{{ steps.check.result.code > 2 }}", True),
    ("{{ params.nothing }}", None),
    ("  {{ params.packages | length }}\n", 2),
    ("{{ range(3) }}", [0, 1, 2]),
    ("{{ params.packages | map('upper') }}", ["NGINX", "GIT"]),
])
def test_single_expression_keeps_its_native_type(template, expected, scope):
    rendered = compile_value(template).render(scope)
    assert rendered == expected
    assert type(rendered) is type(expected)


def test_text_around_expressions_renders_a_string(scope):
    value = compile_value(
        "deploy {{ params.service }} x{{ params.replicas }} to {{ run.workflow }}")
    assert value.render(scope) == "deploy web x3 to deploy"
    assert compile_value("{{ params.replicas }}{{ params.replicas }}").render(scope) == "33"


def test_nested_params_render_and_collect_refs(scope):
    value = compile_value({
        "service": "{{ params.service }}",
        "hosts": ["static", "{{ steps.check.result.hosts[0] }}", {"n": "{{ params.replicas }}"}],
        "{{ not.a.key }}": "keys are never templated",
        "timeout": 30,
    })
    assert not value.is_static
    assert value.step_refs == {"check"}
    assert value.param_refs == {"service", "replicas"}
    assert value.render(scope) == {
        "service": "web", "hosts": ["static", "a", {"n": 3}],
        "{{ not.a.key }}": "keys are never templated", "timeout": 30}


def test_static_values_are_static_and_rendered_as_copies(scope):
    params = {"argv": ["ls", "-l"], "n": 1, "text": "no templates } here {"}
    value = compile_value(params)
    assert isinstance(value, CompiledValue)
    assert value.is_static and value.step_refs == frozenset() and value.param_refs == frozenset()
    rendered = value.render(scope)
    assert rendered == params
    rendered["argv"].append("changed")
    assert params["argv"] == ["ls", "-l"]
    assert compile_value(42).render(scope) == 42


def test_json_keys_named_like_dict_methods_read_as_data(scope):
    """Guards against `result.items` returning dict.items instead of the `items` key."""
    assert evaluate("steps['health-monitoring'].result.items", scope) == [1, 2]
    assert sorted(evaluate("params.labels.keys()", scope)) == ["tier"]


def test_dict_method_calls_are_not_step_or_param_refs():
    """Guards against `steps.items()` being taken for a reference to a step named items."""
    assert Expression.compile("steps.items() | list").step_refs == frozenset()
    assert Expression.compile("params.keys() | list").param_refs == frozenset()
    assert Expression.compile("steps[0]()").step_refs == frozenset()  # an int key, called


# --- hyphenated step ids --------------------------------------------------------------


@pytest.mark.parametrize("source", [
    "steps.health-monitoring.result.healthy",
    "steps['health-monitoring'].result.healthy",
    'steps["health-monitoring"].result.healthy',
])
def test_hyphenated_step_ids_in_every_style(source, scope):
    expr = Expression.compile(source)
    assert expr.source == source
    assert expr.step_refs == {"health-monitoring"}
    assert expr.evaluate(scope) is True


def test_hyphenated_ids_inside_string_literals_are_left_alone(scope):
    expr = Expression.compile("'steps.health-monitoring' ~ \"/steps.a-b\"")
    assert expr.evaluate(scope) == "steps.health-monitoring/steps.a-b"
    assert expr.step_refs == frozenset()
    assert evaluate("steps.check.error == 'steps.check-x'", scope) is False


def test_spaced_minus_after_a_step_id_is_subtraction(scope):
    assert evaluate("steps.check.attempts - 1", scope) == 1
    assert evaluate("steps.health-monitoring.attempts - 1", scope) == 0


def test_hyphenated_ids_in_params_templates(scope):
    value = compile_value({"ok": "{{ steps.health-monitoring.result.healthy }}",
                           "text": "steps.health-monitoring is "
                                   "{{ steps.health-monitoring.status }}"})
    assert value.step_refs == {"health-monitoring"}
    assert value.render(scope) == {"ok": True, "text": "steps.health-monitoring is succeeded"}


# --- compile-time errors ----------------------------------------------------------------


def test_unknown_root_name_is_rejected_at_compile():
    with pytest.raises(ExpressionError, match="unknown name 'foo': expressions may use "
                                              "params, steps and run"):
        Expression.compile("foo.bar == 1")
    with pytest.raises(ExpressionError, match=r"unknown function 'len'.*length"):
        Expression.compile("len(params.packages) > 1")


def test_syntax_error_names_the_expression_and_the_problem():
    with pytest.raises(ExpressionError) as caught:
        Expression.compile("steps.check.status ==")
    message = str(caught.value)
    assert "steps.check.status ==" in message and "not valid" in message
    assert "end of expression" in message
    with pytest.raises(ExpressionError, match="unexpected 'succeeded' after the expression"):
        Expression.compile("steps.check.status succeeded")


def test_unknown_filter_is_rejected_at_compile():
    with pytest.raises(ExpressionError, match="No filter named 'shout'"):
        Expression.compile("params.service | shout")


def test_templated_condition_gets_a_hint():
    with pytest.raises(ExpressionError, match=r"without {{ }}"):
        Expression.compile("{{ params.dry_run }}")


def test_overlong_source_is_rejected():
    source = "params.replicas + " * (MAX_SOURCE_CHARS // 10) + "1"
    with pytest.raises(ExpressionError, match="characters long"):
        Expression.compile(source)


@pytest.mark.parametrize("value, path", [
    ({"packages": ["git", "{% for p in params.packages %}{{ p }}{% endfor %}"]}, "packages[1]"),
    ({"service": "{# comment #}web"}, "service"),
    ({"service": "{% raw %}x{% endraw %}"}, "service"),
])
def test_statements_and_comments_are_rejected_in_params(value, path):
    with pytest.raises(ExpressionError) as caught:
        compile_value(value)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert "only {{ expressions }} are allowed in params" in message


def test_bad_expression_in_params_names_its_path():
    with pytest.raises(ExpressionError,
                       match=r"^svc\.hosts\[0\]: expression 'nope': unknown name"):
        compile_value({"svc": {"hosts": ["{{ nope }}"]}})
    with pytest.raises(ExpressionError, match="not closed"):
        compile_value({"svc": "a {{ params.service"})
    with pytest.raises(ExpressionError, match="empty"):
        compile_value({"svc": "{{ }}"})


def test_literal_statement_marker_can_be_written_as_an_expression(scope):
    assert compile_value("{{ '{%' }} done").render(scope) == "{% done"


# --- sandbox ------------------------------------------------------------------------------


@pytest.mark.parametrize("source", [
    "run.__class__",
    "run.__class__.__mro__[1].__subclasses__()",
    "''.__class__.__mro__[1].__subclasses__()",
    "params.get.__self__",
    "range.__globals__",
    "range.__code__",
    "params.packages.__class__.mro()",
    "params | attr('__class__')",
    "'{0.__class__.__init__.__globals__}'.format(run)",
    "'{0.__class__}'.format_map(params)",
    "params.update({'service': 'evil'})",
    "params.packages.append('evil')",
    "params.packages.pop()",
    "dict.__subclasses__()",
    "lipsum(1)",
    "cycler(1).__init__.__globals__",
    "self.__init__.__globals__",
])
def test_python_internals_are_blocked(source, scope):
    before = repr(scope)
    with pytest.raises(ExpressionError):
        evaluate(source, scope)
    assert repr(scope) == before


def test_security_violation_says_it_is_not_allowed(scope):
    with pytest.raises(ExpressionError, match=r"'run.__class__' is not allowed: .*unsafe"):
        evaluate("run.__class__", scope)


# --- bounded evaluation --------------------------------------------------------------------


@pytest.mark.parametrize("source", [
    "'a' * 10**9",
    "10**9 * 'a'",
    "[0] * 10**9",
    "[['x'] * 1000] * 10000",
    "2 ** (10 ** 8)",
    "(2 ** 10) ** (10 ** 8)",
    "(2 ** 60000) * (2 ** 60000)",
    "range(10**9)",
    "range(10**30)",
    "'a'.center(10**9)",
    "'a'.zfill(10**9)",
    "'a' | center(10**9)",
    "('a\\n' * 10) | indent(10**6)",
    "'x' | replace('', 'y' * 999999)",
    "('x' * 999999) | replace('x', 'yy')",
    "range(10000) | join('a' * 1000)",
    "('a' * 1000).join(range(10000) | map('string'))",
    "'%999999999d' % 1",
    "'%*d' % (10**9, 1)",
    "'{:>999999999}'.format(1)",
    "'%999999999s' | format('x')",
    "range(10000) | map('center', 5000) | list",
    "[1, 2] | slice(10**9) | list",
])
def test_costly_expressions_fail_fast(source, scope):
    """Guards against expressions that would allocate gigabytes or loop for minutes."""
    start = time.monotonic()
    with pytest.raises(ExpressionError) as caught:
        evaluate(source, scope)
    # Refusals take 0.1 s at most on an idle machine; what they refuse would take minutes.
    # 10 s tells the two apart on a loaded two-core machine too (speed is bench's business).
    elapsed = time.monotonic() - start
    assert elapsed < 10.0, f"{source!r} took {elapsed:.1f} s to be refused"
    message = str(caught.value)
    assert repr(source) in message
    assert "limit" in message or "not allowed" in message


def test_pow_is_left_associative_as_in_jinja(scope):
    """Documents that `2 ** 10 ** 8` is (2 ** 10) ** 8 in Jinja, so it is small."""
    assert evaluate("2 ** 10 ** 8", scope) == 2 ** 80


def test_range_is_capped_at_max_range(scope):
    assert len(evaluate(f"range({MAX_RANGE})", scope)) == MAX_RANGE
    with pytest.raises(ExpressionError, match="range"):
        evaluate(f"range({MAX_RANGE + 1})", scope)


def test_moderate_sizes_are_allowed(scope):
    assert len(evaluate("'ab' * 1000", scope)) == 2000
    assert evaluate("2 ** 100", scope) == 2 ** 100
    assert evaluate("'%5d|' % 42", scope) == "   42|"
    assert evaluate("'{:>4}'.format('x')", scope) == "   x"
    assert evaluate("params.packages | join(', ')", scope) == "nginx, git"
    assert evaluate("'a-b' | replace('-', '--')", scope) == "a--b"


# --- undefined and missing keys ---------------------------------------------------------


def test_missing_key_names_what_is_missing(scope):
    with pytest.raises(ExpressionError) as caught:
        evaluate("steps.check.result.healthy", scope)
    message = str(caught.value)
    assert "steps.check.result.healthy" in message
    assert "steps.check.result has no attribute 'healthy'" in message
    assert "'code'" in message  # what it does have


def test_missing_step_names_the_step(scope):
    with pytest.raises(ExpressionError, match="steps has no attribute 'chek'"):
        evaluate("steps.chek.status == 'succeeded'", scope)


def test_missing_item_of_a_list_or_null(scope):
    with pytest.raises(ExpressionError,
                       match=r"params.packages has no item 5 \(it is a list of 2"):
        evaluate("params.packages[5]", scope)
    with pytest.raises(ExpressionError, match="steps.skipped.result has no attribute 'ok' "
                                              r"\(it is null\)"):
        evaluate("steps.skipped.result.ok", scope)


def test_missing_value_inside_a_result_is_an_error(scope):
    """Guards against an undefined value slipping out inside a list."""
    with pytest.raises(ExpressionError, match="has no attribute 'nope'"):
        evaluate("[1, steps.check.result.nope]", scope)


def test_is_defined_and_default_work_on_missing_values(scope):
    assert evaluate("steps.check.result.healthy is defined", scope) is False
    assert evaluate("steps.check.result.code is defined", scope) is True
    assert evaluate("steps.nope.result.deep.path is defined", scope) is False
    assert evaluate("steps.check.result.healthy | default('unknown')", scope) == "unknown"
    assert evaluate("steps.nope.result.x | default(7)", scope) == 7


def test_type_errors_name_the_expression(scope):
    with pytest.raises(ExpressionError,
                       match=r"expression 'params.service \+ 1' failed: TypeError"):
        evaluate("params.service + 1", scope)


def test_render_error_names_the_path(scope):
    value = compile_value({"hosts": ["x", "{{ steps.check.result.missing }}"]})
    with pytest.raises(ExpressionError,
                       match=r"^hosts\[1\]: expression .*has no attribute 'missing'"):
        value.render(scope)


# --- truthiness and caching ---------------------------------------------------------------


@pytest.mark.parametrize("source, expected", [
    ("steps.check.status == 'failed'", True),
    ("steps.health-monitoring.result.healthy and not params.dry_run", True),
    ("steps.check.result.hosts", True),
    ("params.packages | select('equalto', 'vim') | list", False),
    ("steps.check.result.code", True),
    ("steps.check.result.code - 3", False),
    ("steps.skipped.result", False),
    ("''", False),
    ("{}", False),
    ("true", True),
    ("false", False),
    ("steps.check.error is none", False),
    ("steps.check.status in ['failed', 'timeout']", True),
])
def test_truthy(source, expected, scope):
    assert Expression.compile(source).truthy(scope) is expected


def test_compile_returns_the_same_object_for_the_same_source():
    first = Expression.compile("params.replicas > 1")
    assert Expression.compile("params.replicas > 1") is first
    assert Expression.compile("params.replicas > 2") is not first


def test_params_refs_and_step_refs():
    expr = Expression.compile("steps.a.status == 'ok' and steps['b'].result.x > params.limit "
                              "or params['other'] is defined")
    assert expr.step_refs == {"a", "b"}
    assert expr.param_refs == {"limit", "other"}
