"""Why a path an expression reads does not resolve: the message a person sees.

`steps.build.result.image` failing says where the chain broke and what was there
instead ("steps.build.result has no key 'image' (its keys: 'tag', 'digest')").
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from typing import Any

from jinja2 import UndefinedError

_MISSING = re.compile(r"has no (?:attribute|element) (.+)$|^(.+) is undefined$")


def explain_missing(scope: Mapping[str, Any], paths: tuple, exc: UndefinedError) -> str:
    """The reason one of `paths` (root, segments) broke, else jinja's own message."""
    match = _MISSING.search(str(exc))
    try:
        missing = ast.literal_eval(match.group(1) or match.group(2)) if match else None
    except (ValueError, SyntaxError):
        missing = None
    reasons = (_gap(scope, root, segments, missing) for root, segments in paths)
    return next((r for r in reasons if r), str(exc))


def _contents(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = sorted(map(str, obj))
        more = ", ..." if len(keys) > 12 else ""
        return f"its keys: {', '.join(map(repr, keys[:12]))}{more}" if keys else "it is empty"
    if isinstance(obj, (list, tuple)):
        return f"it is a list of {len(obj)} items"
    kinds = {type(None): "null", bool: "a boolean", int: "a number", float: "a number",
             str: "a string"}
    return "it is " + kinds.get(type(obj), f"a {type(obj).__name__}")


def _gap(scope: Mapping, root: str, segments: tuple, missing: Any) -> str | None:
    """Why `root.segments` does not resolve in scope, if it breaks at `missing`."""
    if root not in scope:
        return f"{root} is not available here" if missing == root else None
    obj, shown = scope[root], root
    for kind, key in segments:
        if (isinstance(obj, Mapping) and key in obj) or (isinstance(obj, (list, tuple)) and (
                isinstance(key, int) and -len(obj) <= key < len(obj))):
            obj = obj[key]
            plain = isinstance(key, str) and re.fullmatch(r"[A-Za-z_][\w-]*", key)
            shown += f".{key}" if plain else f"[{key!r}]"
            continue
        if key != missing:
            return None
        noun = "attribute" if kind == "attr" else "key" if isinstance(key, str) else "item"
        return f"{shown} has no {noun} {key!r} ({_contents(obj)})"
    return None
