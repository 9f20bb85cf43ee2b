"""Skills: the SDK a python skill uses, and the bundled skills as subpackages.

Each bundled skill is a self-contained directory (orchestratord/skills/bundled/<pkg>/
with SKILL.md, actions.yaml and actions.py), so an AI agent reads the same SKILL.md the
orchestrator runs. The registry (discovery of skill directories, inline skills) lives in
language/skill_registry.py, because the loader resolves steps with it; it is re-exported
so `from orchestratord.skills import discover` keeps working.

`section` and `state_dir` are the two things every bundled skill reads from its step
context: its own settings section and the daemon's state directory; `atomic_write` is
how they write the files they generate.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from ..language.skill_registry import (
    BUNDLED,
    SKILL_PATH_ENV,
    Registry,
    Skill,
    action_problems,
    discover,
    discover_all,
    load_skill_dir,
    search_path,
)

__all__ = ["BUNDLED", "SKILL_PATH_ENV", "Registry", "Skill", "discover", "discover_all",
           "load_skill_dir", "action_problems", "search_path", "section", "state_dir",
           "atomic_write"]


def section(ctx: Any, name: str) -> dict[str, Any]:
    """The `skills.<name>` section of the daemon settings ({} when absent)."""
    skills = (ctx.settings or {}).get("skills") or {}
    return dict(skills.get(name) or {})


def state_dir(ctx: Any) -> Path:
    """The daemon's state directory, where skills keep files they generate."""
    value = (ctx.settings or {}).get("state_dir")
    if not value:
        # Settings always carry state_dir when the engine builds the context; a bare
        # context (tests, direct calls) falls back to the working directory, never /.
        return Path.cwd() / ".orchestrator-state"
    return Path(value)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace path's content with data so that readers see the old or the new file.

    The temporary file lives in the same directory, so the rename is atomic; both the
    file and the directory are fsynced, so after a crash the file is whole, old or new.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fchmod(out.fileno(), mode)
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
