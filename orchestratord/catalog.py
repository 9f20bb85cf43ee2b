"""The workflows and skills a daemon serves, loaded from directories.

Loading never fails as a whole: a file with problems is reported and left out, and on
reload a workflow whose new file is broken keeps its previous definition, so a typo in
one file never takes down what runs from the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DefinitionError, Problem
from .loader import Definition, load_workflow
from .skills import Registry, discover, search_path

log = logging.getLogger("orchestratord.catalog")

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Catalog:
    workflows: dict[str, Definition] = field(default_factory=dict)
    skills: Registry = field(default_factory=Registry)
    problems: list[Problem] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # workflows whose old definition stayed


def load_catalog(workflows_dir: Path | None, skill_paths: list[Path],
                 previous: Catalog | None = None) -> Catalog:
    """Load every workflow file of workflows_dir against the skills of skill_paths.

    As for a workflow file run by the CLI, a `skills/` directory beside the workflows
    is searched too, so a directory of workflows loads the same under the daemon.
    """
    catalog = Catalog()
    beside = [workflows_dir / "skills"] if workflows_dir else []
    try:
        catalog.skills = discover(search_path([*skill_paths, *beside]))
    except DefinitionError as exc:
        catalog.problems += exc.problems
        catalog.skills = previous.skills if previous else Registry()
    files = sorted(p for p in workflows_dir.iterdir() if p.suffix in SUFFIXES) \
        if workflows_dir and workflows_dir.is_dir() else []
    origin: dict[str, Path] = {}
    for path in files:
        try:
            definition = load_workflow(path, registry=catalog.skills)
        except DefinitionError as exc:
            catalog.problems += exc.problems
            for name in _names_in(path, previous):
                catalog.workflows[name] = previous.workflows[name]
                catalog.kept.append(name)
            continue
        if definition.name in origin:
            catalog.problems.append(Problem(str(path), 1, 1, "workflow.name",
                                            f"workflow '{definition.name}' is also defined in "
                                            f"{origin[definition.name]}"))
            continue
        origin[definition.name] = path
        catalog.workflows[definition.name] = definition
    for problem in catalog.problems:
        log.error("%s", problem)
    for name in catalog.kept:
        log.warning("workflow %s keeps its previous definition until its file is fixed", name)
    return catalog


def _names_in(path: Path, previous: Catalog | None) -> list[str]:
    """Workflows that the previous catalog loaded from path."""
    if previous is None:
        return []
    return [name for name, d in previous.workflows.items() if Path(d.file) == path]
