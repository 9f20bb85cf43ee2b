"""The workflows and skills a daemon serves, loaded from directories.

Loading never fails as a whole: a file with problems is reported and left out, and on
reload a workflow whose new file is broken keeps its previous definition, so a typo in
one file never takes down what runs from the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import DefinitionError, Problem
from .loader import Definition, load_workflow
from .skill_registry import Registry, discover_all, search_path

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
    catalog.skills, problems = discover_all(search_path([*skill_paths, *beside]))
    catalog.problems += problems
    _keep_broken_skills(catalog, previous)
    origin: dict[str, Path] = {}
    for path in _workflow_files(workflows_dir, catalog):
        definition = _load_one(path, catalog)
        if definition is None:
            for name, kept in _loaded_from(path, previous).items():
                catalog.workflows[name] = kept
                catalog.kept.append(name)
        elif definition.name in origin:
            catalog.problems.append(Problem(str(path), 1, 1, "workflow.name",
                                            f"workflow '{definition.name}' is also defined in "
                                            f"{origin[definition.name]}"))
        else:
            origin[definition.name] = path
            catalog.workflows[definition.name] = definition
    for problem in catalog.problems:
        log.error("%s", problem)
    for name in catalog.kept:
        log.warning("workflow %s keeps its previous definition until its file is fixed", name)
    return catalog


def _load_one(path: Path, catalog: Catalog) -> Definition | None:
    try:
        return load_workflow(path, registry=catalog.skills)
    except DefinitionError as exc:
        catalog.problems += exc.problems
    except Exception as exc:  # a bug, or a limit not yet thought of: this file's loss only
        log.exception("loading %s failed", path)
        catalog.problems.append(Problem(str(path), 1, 1, "", f"cannot load: {exc!r}"))
    return None


def _workflow_files(workflows_dir: Path | None, catalog: Catalog) -> list[Path]:
    if workflows_dir is None or not workflows_dir.is_dir():
        return []
    try:
        return sorted(p for p in workflows_dir.iterdir() if p.suffix in SUFFIXES)
    except OSError as exc:
        catalog.problems.append(Problem(str(workflows_dir), 1, 1, "",
                                        f"cannot list the workflows: {exc.strerror}"))
        return []


def _keep_broken_skills(catalog: Catalog, previous: Catalog | None) -> None:
    """A skill whose files broke since the last load keeps its previous definition."""
    if previous is None:
        return
    broken = {Path(p.file).parent.resolve() for p in catalog.problems}
    for name, skill in previous.skills.skills.items():
        if catalog.skills.get(name) is None and skill.directory in broken:
            catalog.skills.add(skill)
            log.warning("skill %s keeps its previous definition until its files are fixed", name)


def _loaded_from(path: Path, previous: Catalog | None) -> dict[str, Definition]:
    """Workflows that the previous catalog loaded from path, by name."""
    if previous is None:
        return {}
    return {name: d for name, d in previous.workflows.items() if Path(d.file) == path}
