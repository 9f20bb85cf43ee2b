"""Sandboxed expressions: `when:` conditions and `{{ }}` templating of step params.

Jinja2 expression syntax, evaluated in an ImmutableSandboxedEnvironment over the roots
`params`, `steps` and `run` (plain dicts). Any other free name fails at compile time, so
a typo fails when the workflow is loaded. Jinja's filters and tests, `range` and `dict`
stay available, and `steps_matching` / `results` collect many steps (`aggregate`).
`steps.health-monitoring.x` means `steps['health-monitoring'].x`, since a step without
an id is named by its skill. A missing key is an error, yet `is defined`
and `| default(y)` work on whole chains; on a mapping `a.items` is the key `items`.

Cost is bounded before it is paid: a source has at most MAX_SOURCE_CHARS characters and
MAX_NESTING levels of brackets, evaluation runs in the bounded sandbox of `sandbox`, and a
value has at most MAX_VALUE_SIZE items and characters (shared parts counted each time, as
they would be printed). An expression whose cost could grow beyond its reading of the data
(calls, most filters, `+`, `*`, `%`, `~`, slices) is not `is_cheap`: `evaluator` runs it in
a worker process under a hard deadline and memory limit.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError, UndefinedError, nodes
from jinja2.lexer import describe_token
from jinja2.parser import Parser
from jinja2.runtime import Undefined
from jinja2.sandbox import SecurityError
from markupsafe import Markup

from ..core.errors import ExpressionError
from . import aggregate
from .expr_gaps import explain_missing
from .sandbox import BUDGET_KEY, ENV, FUNCTIONS, MAX_ITEMS, Budget, measure

MAX_SOURCE_CHARS = 4096
MAX_NESTING = 32
MAX_VALUE_SIZE = MAX_ITEMS

ROOTS = ("params", "steps", "run")

# `steps.<id>` with a hyphen in the id, outside string literals. An id neither starts
# nor ends with a hyphen, so `steps.a - 1` stays a subtraction.
_HYPHEN_REF = re.compile(
    r"""(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
    r"""|(?<![\w.])steps\.(?P<id>[A-Za-z0-9_][A-Za-z0-9_-]*[A-Za-z0-9_])""", re.S)
_TEMPLATE_MARKS = ("{{", "{%", "{#")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.S)

# What an expression may contain and still run on the caller's thread: each node costs at
# most a reading of data the caller already holds, and builds nothing bigger than itself.
_CHEAP_NODES = (nodes.Name, nodes.Const, nodes.Getattr, nodes.Getitem, nodes.Compare,
                nodes.Operand, nodes.And, nodes.Or, nodes.Not, nodes.Neg, nodes.Pos,
                nodes.Sub, nodes.Div, nodes.FloorDiv, nodes.CondExpr, nodes.List,
                nodes.Tuple, nodes.Dict, nodes.Pair, nodes.Test, nodes.Filter)
_CHEAP_FILTERS = frozenset({"default", "d", "length", "count", "int", "float", "abs",
                            "round", "first", "last"})
_COSTLY_TESTS = frozenset({"lower", "upper"})  # they print their argument first


def _walk(node: nodes.Node, kind: Any) -> Iterator[Any]:
    if isinstance(node, kind):
        yield node
    yield from node.find_all(kind)


def _chain(node: nodes.Node) -> tuple[str, tuple] | None:
    """`steps.a['b']` as ("steps", (("attr", "a"), ("item", "b"))), if that simple."""
    segments = []
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr):
            segments.append(("attr", node.attr))
        elif isinstance(node.arg, nodes.Const):
            segments.append(("item", node.arg.value))
        else:
            return None
        node = node.node
    return (node.name, tuple(reversed(segments))) if isinstance(node, nodes.Name) else None


def _plain(value: Any) -> Any:
    """The result as plain data: iterators read, Markup as str, no undefined inside.

    The walk is bounded: a value bigger than MAX_VALUE_SIZE, as printed, is an error
    before anything converts or prints it.
    """
    if isinstance(value, Markup):
        return str(value)
    if isinstance(value, (Iterator, range)) or type(value).__name__ in (
            "dict_keys", "dict_values", "dict_items"):
        value = list(value)
    size = measure(value, MAX_VALUE_SIZE, on_item=_check_item)
    if size > MAX_VALUE_SIZE:
        raise ExpressionError(f"its value has more than {MAX_VALUE_SIZE:,} items and "
                              "characters, the bound for one value; do such work in a step")
    return value


def _check_item(item: Any) -> None:
    if isinstance(item, Undefined):
        item._fail_with_undefined_error()
    if callable(item):
        raise ExpressionError(f"its value is a {type(item).__name__}, not data: call it "
                              "(e.g. x.keys()) or use a filter")


def _check_nesting(source: str) -> None:
    depth = deepest = 0
    for char in _STRING.sub("", source):
        depth += (char in "([{") - (char in ")]}")
        deepest = max(deepest, depth)
    if deepest > MAX_NESTING:
        raise ExpressionError(f"expression {source[:60]!r}... nests brackets {deepest} deep; "
                              f"the limit is {MAX_NESTING}: simplify it or move the logic "
                              "into a step's action")


def _is_cheap(tree: nodes.Node) -> bool:
    # An aggregate with literal arguments reads views the caller holds, and is charged.
    aggregates = {id(n) for call in aggregate.calls(tree) for n in _walk(call, nodes.Node)}
    for node in _walk(tree, nodes.Node):
        if id(node) in aggregates:
            continue
        if not isinstance(node, _CHEAP_NODES):
            return False
        if (isinstance(node, nodes.Filter) and node.name not in _CHEAP_FILTERS) or \
                (isinstance(node, nodes.Test) and node.name in _COSTLY_TESTS):
            return False
    return True


class Expression:
    """A compiled expression; build one with `Expression.compile(source)`."""

    __slots__ = ("source", "step_refs", "param_refs", "selectors", "is_cheap", "_code",
                 "_paths")

    def __init__(self, source: str, code: Any, step_refs: frozenset[str],
                 param_refs: frozenset[str], paths: tuple, is_cheap: bool,
                 selectors: frozenset[aggregate.Selector] = frozenset()) -> None:
        self.source, self.step_refs, self.param_refs = source, step_refs, param_refs
        self._code, self._paths, self.is_cheap = code, paths, is_cheap
        self.selectors = selectors  # the steps its aggregates read, beyond step_refs

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"

    @classmethod
    def compile(cls, source: str) -> Expression:
        """Parse and check `source` once; the same source returns the same object.

        Raises ExpressionError for syntax errors, unknown names, filters or tests, and
        over-long or too deeply nested sources.
        """
        if not isinstance(source, str):
            raise ExpressionError(f"an expression must be text, not {type(source).__name__}")
        if len(source) > MAX_SOURCE_CHARS:
            raise ExpressionError(
                f"expression {source[:60]!r}... is {len(source):,} characters long; the "
                f"limit is {MAX_SOURCE_CHARS:,}: move the logic into a step's action")
        _check_nesting(source)
        try:
            return _compile(source)
        except (RecursionError, MemoryError):  # nesting without brackets: `not not ...`
            raise ExpressionError(f"expression {source[:60]!r}... is nested too deeply to "
                                  "read: simplify it or move the logic into a step's "
                                  "action") from None

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        """The value of the expression over scope (params, steps, run), as plain data.

        Runs on the caller's thread: bounded in cost by the sandbox's accounting only.
        Call it directly where `is_cheap`; `evaluator.Evaluator` decides that for you.
        """
        names: dict[str, Any] = {name: scope[name] for name in ROOTS if name in scope}
        names[BUDGET_KEY] = budget = Budget()
        if self.selectors:
            names.update(aggregate.functions(scope, budget))
        where = f"expression {self.source!r}"
        try:
            result = self._code(names)
            if isinstance(result, Undefined):
                result._fail_with_undefined_error()
            return _plain(result)
        except SecurityError as exc:
            raise ExpressionError(f"{where} is not allowed: {exc}") from exc
        except UndefinedError as exc:
            raise ExpressionError(f"{where}: {self._explain(scope, exc)}") from exc
        except ExpressionError as exc:
            raise ExpressionError(f"{where}: {exc}") from exc
        except MemoryError:
            raise ExpressionError(f"{where} needs more memory than one evaluation may use; "
                                  "do such work in a step") from None
        except RecursionError:
            raise ExpressionError(f"{where} nests too deeply; do such work in a step") from None
        except Exception as exc:  # whatever the expression did wrong
            raise ExpressionError(f"{where} failed: {type(exc).__name__}: {exc}") from exc

    def truthy(self, scope: Mapping[str, Any]) -> bool:
        """Whether the value is true as Python sees it ([], {}, 0, '' and None are not)."""
        return bool(self.evaluate(scope))

    def _explain(self, scope: Mapping[str, Any], exc: UndefinedError) -> str:
        return explain_missing(scope, self._paths, exc)


Evaluate = Callable[[Expression, Mapping[str, Any]], Any]


def _invalid(source: str, exc: TemplateError) -> ExpressionError:
    reason = (exc.message or str(exc)).replace("end of template", "end of expression")
    return ExpressionError(f"expression {source!r} is not valid: {reason}")


def _quote_hyphen_ids(source: str) -> str:
    def quote(match: re.Match) -> str:
        step_id = match.group("id")
        return f"steps[{step_id!r}]" if step_id and "-" in step_id else match.group(0)
    return _HYPHEN_REF.sub(quote, source)


@functools.lru_cache(maxsize=2048)
def _compile(source: str) -> Expression:
    stripped = source.strip()
    if not stripped:
        raise ExpressionError("the expression is empty")
    if stripped.startswith("{{") and stripped.endswith("}}"):
        raise ExpressionError(f"expression {source!r}: write a condition without "
                              f"{{{{ }}}}, e.g. {stripped[2:-2].strip()!r}")
    rewritten = _quote_hyphen_ids(source)
    try:
        parser = Parser(ENV, rewritten, state="variable")
        tree = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError(f"unexpected {describe_token(parser.stream.current)!r}"
                                      " after the expression", parser.stream.current.lineno)
    except TemplateError as exc:
        raise _invalid(source, exc) from None
    called = {id(n.node) for n in _walk(tree, nodes.Call)}
    for name in _walk(tree, nodes.Name):
        if name.name in ROOTS or name.name in FUNCTIONS or \
                (name.name in aggregate.NAMES and id(name) in called):
            continue
        if id(name) in called:
            raise ExpressionError(
                f"expression {source!r}: unknown function {name.name!r}: use a filter "
                "instead (e.g. x | length, x | int); the functions are range, dict, "
                f"{' and '.join(aggregate.NAMES)}")
        raise ExpressionError(f"expression {source!r}: unknown name {name.name!r}: "
                              "expressions may use params, steps and run")
    refs: dict[str, set[str]] = {"steps": set(), "params": set()}
    paths: dict[tuple, None] = {}
    for node in _walk(tree, (nodes.Getattr, nodes.Getitem)):
        chain = _chain(node)
        if chain is None:
            continue
        paths[chain] = None
        root, ((_kind, key), *rest) = chain
        if root not in refs or not isinstance(key, str):
            continue
        if not (id(node) in called and not rest and hasattr(dict, key)):
            refs[root].add(key)  # `steps.items()` reads no step called items
    try:
        code = ENV.compile_expression(rewritten, undefined_to_none=False)
    except TemplateError as exc:  # unknown filters and tests are found here
        raise _invalid(source, exc) from None
    selectors = frozenset(aggregate.selector_of(c, source) for c in aggregate.calls(tree))
    return Expression(source, code, frozenset(refs["steps"]), frozenset(refs["params"]),
                      tuple(paths), _is_cheap(tree), selectors)


def _split_template(text: str) -> list[str | Expression]:
    """The text and `{{ }}` expressions of a param string, in order."""
    parts: list[str | Expression] = []
    inner: list[str] | None = None
    try:
        for _line, kind, token in ENV.lex(text):
            if inner is not None and kind == "variable_end":
                parts.append(Expression.compile("".join(inner).strip()))
                inner = None
            elif inner is not None:
                inner.append(token)
            elif kind == "variable_begin":
                inner = []
            elif kind == "data":
                parts.append(token)
            else:
                raise ExpressionError(
                    "only {{ expressions }} are allowed in params, not {% statements %} or "
                    "{# comments #}; to write '{%' or '{#' literally use {{ '{%' }}")
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"cannot read {text!r}: {exc.message}") from None
    if inner is not None:
        raise ExpressionError(f"'{{{{' is not closed by '}}}}' in {text!r}")
    return [p for p in parts if p != ""]


def _at(path: str, exc: ExpressionError) -> ExpressionError:
    return ExpressionError(f"{path}: {exc}" if path else str(exc))


def _build_text(text: str, path: str, found: list[Expression]) -> Callable | None:
    try:
        parts = _split_template(text)
    except ExpressionError as exc:
        raise _at(path, exc) from exc
    exprs = [p for p in parts if isinstance(p, Expression)]
    found.extend(exprs)
    if not exprs:
        return None
    native = len(exprs) == 1 and all(isinstance(p, Expression) or not p.strip() for p in parts)

    def render(scope: Mapping[str, Any], evaluate: Evaluate) -> Any:
        try:
            if native:
                return evaluate(exprs[0], scope)
            return "".join(p if isinstance(p, str) else str(evaluate(p, scope)) for p in parts)
        except ExpressionError as exc:
            raise _at(path, exc) from exc
    return render


def _build(value: Any, path: str, found: list[Expression]) -> Callable | None:
    """A function rendering value, or None when value is static; collects expressions."""
    if isinstance(value, str):
        marked = any(mark in value for mark in _TEMPLATE_MARKS)
        return _build_text(value, path, found) if marked else None
    if isinstance(value, Mapping):
        items = [(k, v, _build(v, f"{path}.{k}" if path else str(k), found))
                 for k, v in value.items()]
        if all(render is None for *_, render in items):
            return None
        return lambda scope, ev: {k: r(scope, ev) if r else copy.deepcopy(v) for k, v, r in items}
    if isinstance(value, (list, tuple)):
        elements = [(v, _build(v, f"{path}[{i}]", found)) for i, v in enumerate(value)]
        if all(render is None for _, render in elements):
            return None
        return lambda scope, ev: [r(scope, ev) if r else copy.deepcopy(v) for v, r in elements]
    return None


class CompiledValue:
    """A step's params (any JSON-like value) with its `{{ }}` expressions compiled."""

    __slots__ = ("_value", "_render", "step_refs", "param_refs", "selectors", "is_static",
                 "expressions")

    def __init__(self, value: Any, render: Callable | None, found: list[Expression]) -> None:
        self._value, self._render, self.is_static = value, render, render is None
        self.expressions = tuple(dict.fromkeys(found))  # in rendering order, each once
        self.step_refs = frozenset().union(*(e.step_refs for e in found))
        self.param_refs = frozenset().union(*(e.param_refs for e in found))
        self.selectors = frozenset().union(*(e.selectors for e in found))

    def render(self, scope: Mapping[str, Any], evaluate: Evaluate | None = None) -> Any:
        """The value with every expression evaluated, as a fresh copy.

        `evaluate(expression, scope)` gives an expression's value (default: evaluated
        here, unbounded in time; `evaluator.Evaluator.render` passes values it computed
        away from the caller). Raises ExpressionError whose message starts with the path
        inside the value.
        """
        if self._render is None:
            return copy.deepcopy(self._value)
        return self._render(scope, evaluate or Expression.evaluate)


def compile_value(value: Any) -> CompiledValue:
    """Compile every `{{ }}` in a nested dict/list value; dict keys are never templated.

    A string that is exactly one `{{ expr }}` renders to the expression's own value
    (list, number, mapping, bool, None); text around `{{ }}` renders to a string.
    Raises ExpressionError naming the path of the first bad string (e.g. "hosts[1]: ...").
    """
    found: list[Expression] = []
    render = _build(value, "", found)
    return CompiledValue(value, render, found)
