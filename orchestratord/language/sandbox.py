"""The sandbox expressions are evaluated in: Jinja2's ImmutableSandboxedEnvironment with
every size-multiplying operation bounded before it is paid.

`range` gives at most MAX_RANGE items; `*`, `**`, `%` and the padding, joining and
replacing filters and string methods may produce at most MAX_ITEMS items (or
MAX_INT_BITS bits), and one evaluation at most MAX_WORK items through them. The budget
of one evaluation travels in its context under BUDGET_KEY, a name no expression can
reach (expr checks the free names of every expression).
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import pass_context
from jinja2.runtime import ChainableUndefined, StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ..core.errors import ExpressionError

MAX_RANGE = 10_000
MAX_ITEMS = 1_000_000
MAX_WORK = 10 * MAX_ITEMS
MAX_INT_BITS = 100_000

FUNCTIONS = ("range", "dict")
BUDGET_KEY = "_budget"
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


class _LimitError(ExpressionError):
    """An evaluation exceeded a cost bound; the caller adds the expression source."""


class _Undefined(ChainableUndefined, StrictUndefined):
    """Strict when used, chainable when looked into, so `a.b.c is defined` works."""

    __slots__ = ()


class Budget:
    """What one evaluation may still produce through size-multiplying operations."""

    def __init__(self) -> None:
        self.left = MAX_WORK

    def charge(self, size: int, what: str) -> None:
        if size > MAX_ITEMS:
            raise _LimitError(f"{what} would produce {size:,} items; the limit is {MAX_ITEMS:,}")
        self.left -= max(size, 0)
        if self.left < 0:
            raise _LimitError(f"the expression produces more than {MAX_WORK:,} items in "
                              "all, the limit for one evaluation; do such work in a step")


def _spend(context: Any, size: int, what: str) -> None:
    budget = context.get(BUDGET_KEY) if context is not None else None
    (budget if isinstance(budget, Budget) else Budget()).charge(size, what)


_SCALARS = (int, float, type(None))


def measure(value: Any, limit: int, on_item: Callable[[Any], None] | None = None) -> int:
    """Items and characters in value as printed, nested and shared ones counted each time
    they appear; stops counting past limit, so its cost is bounded by limit too."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if on_item is not None:
            on_item(item)
        if isinstance(item, (str, bytes)):
            total += max(len(item), 1)
        elif isinstance(item, (list, tuple)):
            total += 1 + len(item)
            if total <= limit:  # numbers are counted already: only walk into the rest
                stack.extend([i for i in item if not isinstance(i, _SCALARS)])
        elif isinstance(item, Mapping):
            total += 1 + 2 * len(item)
            if total <= limit:
                stack.extend(item.keys())
                stack.extend([i for i in item.values() if not isinstance(i, _SCALARS)])
        else:
            total += 1
    return total


def _widths(fmt: str, printf: bool) -> int:
    """Sum of the widths and precisions in a %-format or a str.format string."""
    if printf:
        numbers = [g for m in _PRINTF_SPEC.finditer(fmt) for g in m.groups() if g]
    else:
        specs = [spec or "" for _t, _f, spec, _c in string.Formatter().parse(fmt)]
        numbers = [n for spec in specs for n in re.findall(r"\d+|\{", spec)]
    if "*" in numbers or "{" in numbers:
        raise _LimitError("widths taken from arguments are not allowed; write the number")
    return sum(int(n) for n in numbers)


def _num(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _len(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


def _replace_cost(text: Any, old: Any, new: Any, count: Any) -> int:
    if not (isinstance(old, type(text)) and isinstance(new, type(text))):
        return 0
    found = text.count(old) if old else len(text) + 1
    found = min(found, count) if isinstance(count, int) and count >= 0 else found
    return len(text) + found * max(len(new) - len(old), 0)


def _join_cost(sep: Any, items: list) -> int:
    return _len(sep) * max(len(items) - 1, 0) + sum(_len(i) for i in items)


# Upper bounds of what the size-multiplying str methods and filters produce, from the
# arguments of the call; each mirrors the real signature (join gets its items as a list).
_METHOD_COST: dict[str, Callable[..., int]] = {
    "center": lambda s, width, fillchar=" ": _num(width),
    "ljust": lambda s, width, fillchar=" ": _num(width),
    "rjust": lambda s, width, fillchar=" ": _num(width),
    "zfill": lambda s, width: _num(width),
    "expandtabs": lambda s, tabsize=8: len(s) + s.count("\t") * _num(tabsize),
    "replace": lambda s, old, new, count=-1: _replace_cost(s, old, new, count),
    "join": _join_cost,
    "translate": lambda s, table: len(s) * max([_len(v) for v in table.values()] + [1]),
    "format": lambda s, *args, **kwargs:
        len(s) + _widths(s, printf=False) + measure((args, kwargs), MAX_ITEMS),
    "format_map": lambda s, mapping:
        len(s) + _widths(s, printf=False) + measure(mapping, MAX_ITEMS),
}
_FILTER_COST: dict[str, Callable[..., int]] = {
    "center": lambda value, width=80: _num(width),
    "indent": lambda s, width=4, first=False, blank=False:
        len(str(s)) + (str(s).count("\n") + 1) * (_num(width) or _len(width)),
    "join": lambda value, d="", attribute=None: _join_cost(d, value),
    "replace": lambda s, old, new, count=None: _replace_cost(str(s), str(old), str(new), count),
    "format": lambda value, *args, **kwargs: len(str(value)) + _widths(str(value), printf=True)
        + measure((args, kwargs), MAX_ITEMS),
    "slice": lambda value, slices, fill_with=None: _num(slices),
    "batch": lambda value, linecount, fill_with=None: _num(linecount),
    "wordwrap": lambda s, width=79, break_long_words=True, wrapstring=None,
        break_on_hyphens=True: (len(str(s)) + 1) * len(wrapstring or "\n"),
    "tojson": lambda value, indent=None: (1 + _num(indent)) * measure(value, MAX_ITEMS),
    "string": lambda value: measure(value, MAX_ITEMS),
    "pprint": lambda value: measure(value, MAX_ITEMS),
}


def _charge_call(context: Any, cost: Callable[..., int], what: str, *args: Any,
                 **kwargs: Any) -> None:
    try:
        size = cost(*args, **kwargs)
    except (TypeError, AttributeError):
        return  # arguments the real call rejects, with its own message
    _spend(context, size, what)


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    kind = getattr(getattr(func, "jinja_pass_arg", None), "name", None)

    # pass_context (applied after wraps copied the original's marker) gives the guard
    # the evaluation's budget; the original still gets the argument it asked for.
    @pass_context
    @functools.wraps(func)
    def guarded(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        value = list(value) if name == "join" else value
        _charge_call(context, _FILTER_COST[name], name, value, *args, **kwargs)
        leads: dict[str | None, tuple[Any, ...]] = {
            "context": (context,), "eval_context": (context.eval_ctx,),
            "environment": (context.environment,)}
        lead = leads.get(kind, ())
        return func(*lead, value, *args, **kwargs)

    return guarded


def _bounded_range(*args: int) -> range:
    rng = range(*args)
    try:
        size = len(rng)
    except OverflowError:  # longer than sys.maxsize
        size = MAX_RANGE + 1
    if size > MAX_RANGE:
        raise _LimitError(f"range() is limited to {MAX_RANGE:,} items")
    return rng


def _new_dict(*args: Any, **kwargs: Any) -> dict:
    """`dict(...)` for expressions: a new mapping, without the type's methods
    (`dict.update(params, ...)` would change the run's data, `dict.fromkeys` is unbounded)."""
    return dict(*args, **kwargs)


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with bounded operators, filters and method calls."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self) -> None:
        super().__init__(undefined=_Undefined, autoescape=False)
        # lipsum, cycler, joiner and namespace are for templates, not conditions.
        self.globals = {"range": _bounded_range, "dict": _new_dict}
        for name in _FILTER_COST:
            self.filters[name] = _guard_filter(name, self.filters[name])

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]  # JSON keys such as `items` win over dict methods
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        ints = isinstance(left, int) and isinstance(right, int)
        bits = 0
        if operator == "**" and ints and right > 0 and abs(left) > 1:
            bits = right * left.bit_length()
        elif operator == "*" and ints:
            bits = left.bit_length() + right.bit_length()
        elif operator == "*" and (isinstance(left, int) or isinstance(right, int)):
            seq, times = (right, left) if isinstance(left, int) else (left, right)
            if isinstance(seq, (str, bytes, list, tuple)) and times > 0:
                _spend(context, measure(seq, MAX_ITEMS // times + 1) * times, "*")
        elif operator == "%" and isinstance(left, str):
            _spend(context, len(left) + _widths(left, printf=True) + measure(right, MAX_ITEMS),
                   "% formatting")
        if bits > MAX_INT_BITS:
            raise _LimitError(f"{operator} would produce an integer of about {bits:,} bits; "
                              f"the limit is {MAX_INT_BITS:,}")
        return super().call_binop(context, operator, left, right)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        target = getattr(obj, "__wrapped__", obj)  # str.format arrives wrapped
        owner, name = getattr(target, "__self__", None), getattr(target, "__name__", "")
        if isinstance(owner, type) or isinstance(getattr(target, "__objclass__", None), type):
            # `dict.update(params, ...)` would bypass the immutable sandbox's method check
            raise SecurityError(f"{name}() called through a type is not allowed")
        if isinstance(owner, str) and name in _METHOD_COST:
            if name == "join" and args:
                args = (list(args[0]), *args[1:])
            _charge_call(context, _METHOD_COST[name], f"{name}()", owner, *args, **kwargs)
        return super().call(context, obj, *args, **kwargs)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        # bytes methods are not costed like str ones; expressions have no use for bytes
        return not isinstance(obj, bytes) and super().is_safe_attribute(obj, attr, value)


ENV = _Sandbox()
