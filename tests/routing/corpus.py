"""The routing test corpus: the bundled and example skills plus tests/routing/skills.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from orchestratord.skills import BUNDLED, Registry, discover, search_path

HERE = Path(__file__).parent
EXAMPLES = BUNDLED.parents[3] / "workflows" / "skills"


def write_skills(root: Path, skills: dict[str, Any]) -> None:
    """Each skill as a directory with SKILL.md and actions.yaml, as a person writes them."""
    for name, spec in skills.items():
        directory = root / name
        directory.mkdir(parents=True)
        front = {"name": name, "description": spec["description"], "version": "1.0.0",
                 "metadata": {"capabilities": spec.get("capabilities", "")},
                 "tags": spec.get("tags", [])}
        (directory / "SKILL.md").write_text(
            f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n# {name}\n\n{spec.get('body', '')}\n")
        # A relative command must be an executable file of the skill (checked at load).
        script = directory / "run.py"
        script.write_text("#!/usr/bin/env python3\nimport json, sys\njson.dump({}, sys.stdout)\n")
        script.chmod(0o755)
        actions = {a: {"command": ["./run.py"], **fields} for a, fields in spec["actions"].items()}
        (directory / "actions.yaml").write_text(yaml.safe_dump({"actions": actions}))


def registry(root: Path) -> Registry:
    write_skills(root, yaml.safe_load((HERE / "skills.yaml").read_text()))
    return discover(search_path([EXAMPLES, root]))


def requests() -> list[dict[str, Any]]:
    return yaml.safe_load((HERE / "requests.yaml").read_text())
