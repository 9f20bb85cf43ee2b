"""pyproject.toml declares what the code imports, and nothing of the benchmarks' peers."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def normalise(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def third_party_imports() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "orchestratord").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "orchestratord"}


def test_every_imported_distribution_is_declared() -> None:
    extras = PROJECT["optional-dependencies"]
    # orchestratord/mcp/ imports the SDK of the `mcp` extra; nothing else imports it.
    declared = {normalise(r) for r in PROJECT["dependencies"] + extras["journald"]
                + extras["mcp"]}
    owners = packages_distributions()
    missing = {name: owners.get(name) for name in third_party_imports()
               if not {normalise(d) for d in owners.get(name, [name])} & declared}
    assert missing == {}, f"imported by orchestratord/ but not in pyproject.toml: {missing}"


def test_license_is_an_spdx_expression_with_its_file() -> None:
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_no_extra_pulls_the_benchmarks_peers_into_the_project() -> None:
    peers = {normalise(line) for line in
             (ROOT / "bench" / "peers-requirements.txt").read_text().splitlines()
             if line and not line.startswith("#")}
    assert peers == {"dbos", "prefect", "luigi"}
    for extra, requirements in PROJECT["optional-dependencies"].items():
        assert not peers & {normalise(r) for r in requirements}, extra
