"""What an action's target names, checked where a workflow is validated and resolved
again where it runs: a command's program file, a python action's callable."""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def command_path(program: str, directory: Path | None) -> str:
    """argv[0] as it is executed, or ValueError saying why it may not be.

    A relative path with a slash (`scripts/check.sh`) names a file of the skill: it must
    exist inside the skill's directory, also after symlinks are followed, and be
    executable. A bare name (`python3`) is looked up on PATH when the step runs, and an
    absolute path is taken as written: neither is checked when a workflow is validated,
    because the machine that validates (a NixOS build) is not the one that runs.
    """
    if "/" not in program or os.path.isabs(program):
        return program
    if directory is None:
        raise ValueError(f"{program!r} is relative, but the skill has no directory")
    base = directory.resolve()
    path = (base / program).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"{program!r} leads out of the skill's directory {base}")
    if not path.is_file():
        raise ValueError(f"{program!r}: no such file in the skill's directory {base}")
    if not os.access(path, os.X_OK):
        raise ValueError(f"{program!r} is not executable (chmod +x {path})")
    return str(path)



@functools.cache
def resolve(target: str) -> Callable[..., Any]:
    """The callable a "package.module:function" target names; ValueError says why not."""
    module_name, sep, name = target.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"expected 'module:function', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import runs arbitrary code: report whatever it raised
        raise ValueError(f"cannot import module {module_name!r}: {exc}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"module {module_name!r} has no callable {name!r}")
    return fn
