"""orchestratord/__init__.py is the curated public API: each name it promises resolves,
importing it stays light, and the package says it is typed (PEP 561)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import orchestratord

ROOT = Path(__file__).resolve().parents[2]


def test_every_promised_name_resolves() -> None:
    missing = [name for name in orchestratord.__all__ if not hasattr(orchestratord, name)]
    assert missing == []
    assert issubclass(orchestratord.RunNotFound, orchestratord.OrchestratorError)


def test_importing_the_api_does_not_load_the_engine() -> None:
    probe = ("import sys, orchestratord; "
             "print(sorted(m for m in sys.modules if m.startswith(('orchestratord.engine', "
             "'orchestratord.store', 'aiosqlite', 'aiohttp'))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_the_package_is_typed_and_ships_the_marker() -> None:
    assert (ROOT / "orchestratord" / "py.typed").is_file()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in data["tool"]["setuptools"]["package-data"]["orchestratord"]
