"""Skills: directories with SKILL.md and actions.yaml, or declared inline.

A skill directory is what an AI agent reads (SKILL.md with name, description and version
in its frontmatter) plus what the orchestrator runs (actions.yaml beside it). Commands of
a skill run in its directory, so `argv: [scripts/check.py]` names a file of the skill.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from ..core.errors import DefinitionError, Problem
from .model import ActionSpec, SkillActions, SkillFrontmatter, SkillSpec
from .source import Document, Unreadable, load_file, parse_text, read_text
from .targets import command_path

log = logging.getLogger("orchestratord.skills")

BUNDLED = Path(__file__).parents[1] / "skills" / "bundled"  # the bundled skill packages
SKILL_PATH_ENV = "ORCHESTRATOR_SKILL_PATH"


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    actions: Mapping[str, ActionSpec]
    directory: Path | None = None   # where its commands run
    origin: str = ""                # the file that declared it, for messages
    version: str | None = None
    concurrency: int | None = None
    # What routing reads (skills.routing): the skill's own capabilities and tags, and
    # SKILL.md's text after the frontmatter, as an agent would read it.
    capabilities: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    body: str = ""
    # SKILL.md's whole text when it came from elsewhere than a file (AIDB's catalog); a
    # skill without actions is an instruction skill: read, routed to, never run.
    document: str | None = None


@dataclass
class Registry:
    """Skills by name; a name declared twice is a problem, never a silent override."""

    skills: dict[str, Skill] = field(default_factory=dict)
    # The routing index of these skills, kept here by skill_routing.router_of().
    routing_index: Any = field(default=None, repr=False, compare=False)

    def add(self, skill: Skill) -> str | None:
        """Register skill; returns why not if the name is taken."""
        if skill.name in self.skills:
            other = self.skills[skill.name].origin
            return f"skill '{skill.name}' is declared twice: here and in {other}"
        self.skills[skill.name] = skill
        self.routing_index = None
        return None

    def get(self, name: str) -> Skill | None:
        return self.skills.get(name)

    def merged(self, inline: Mapping[str, SkillSpec], origin: str, directory: Path,
               doc: Document) -> tuple[Registry, list[Problem]]:
        """This registry plus skills declared inline in a workflow file."""
        if not inline:
            return self, []  # and its routing index, built once for every workflow
        out = Registry(dict(self.skills))
        problems = []
        for name, spec in inline.items():
            problems += action_problems(doc, spec.actions, ("skills", name, "actions"), directory)
            clash = out.add(_from_spec(name, spec, directory, origin))
            if clash:
                problems.append(doc.problem(("skills", name), clash, key=True))
        return out, problems


def search_path(extra: Iterable[Path | str] = ()) -> list[Path]:
    """Bundled skills, then $ORCHESTRATOR_SKILL_PATH, then `extra`, without repeats."""
    paths = [BUNDLED]
    paths += [Path(p) for p in os.environ.get(SKILL_PATH_ENV, "").split(os.pathsep) if p]
    paths += [Path(p) for p in extra]
    seen, out = set(), []
    for path in paths:
        key = path.resolve()
        if key not in seen and path.is_dir():
            seen.add(key)
            out.append(path)
    return out


def discover(paths: Iterable[Path]) -> Registry:
    """Every skill directory found under paths; raises DefinitionError with all problems."""
    registry, problems = discover_all(paths)
    if problems:
        raise DefinitionError(problems)
    return registry


def discover_all(paths: Iterable[Path]) -> tuple[Registry, list[Problem]]:
    """The skills that load, and the problems of those that do not (for the daemon,
    where one broken skill must not take the others down with it)."""
    registry, problems = Registry(), []
    for root in paths:
        for skill_md in sorted(Path(root).glob("*/SKILL.md")):
            skill, found = load_skill_dir(skill_md.parent)
            problems += found
            if skill is not None:
                clash = registry.add(skill)
                if clash:
                    problems.append(Problem(str(skill_md), 1, 1, "name", clash))
    return registry, problems


def load_skill_dir(directory: Path) -> tuple[Skill | None, list[Problem]]:
    """Read SKILL.md's frontmatter and actions.yaml of one skill directory."""
    skill_md = directory / "SKILL.md"
    front, body, problems = _frontmatter(skill_md)
    if front is None:
        return None, problems
    actions_file = directory / "actions.yaml"
    actions: dict[str, ActionSpec] = {}
    concurrency = None
    if actions_file.exists():
        doc = load_file(actions_file)
        if doc.problems:
            return None, doc.problems
        spec, problems = doc.validate(SkillActions)
        if spec is None:
            return None, problems
        actions, concurrency = dict(spec.actions), spec.concurrency
        problems = action_problems(doc, actions, ("actions",), directory)
        if problems:
            return None, problems
    return Skill(front.name, front.description, actions, directory.resolve(), str(skill_md),
                 front.version, concurrency, tuple(front.capabilities), tuple(front.tags),
                 body), []


def _frontmatter(skill_md: Path) -> tuple[SkillFrontmatter | None, str, list[Problem]]:
    """The frontmatter of SKILL.md, checked, and the text after it."""
    shown = str(skill_md)
    try:
        text = read_text(skill_md)
    except Unreadable as exc:
        return None, "", [Problem(shown, 1, 1, "", str(exc))]
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---" or "---" not in (line.strip() for line in lines[1:]):
        return None, "", [Problem(shown, 1, 1, "", "SKILL.md must start with YAML frontmatter "
                                                   "between '---' lines (name, description, "
                                                   "version)")]
    end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
    # Blank lines keep the frontmatter's line numbers equal to the file's.
    doc = parse_text("\n" + "\n".join(lines[1:end]), shown)
    if doc.problems:
        return None, "", doc.problems
    front, problems = doc.validate(SkillFrontmatter)
    return front, "\n".join(lines[end + 1:]).strip(), problems


def action_problems(doc: Document, actions: Mapping[str, ActionSpec], base: tuple,
                    directory: Path | None = None) -> list[Problem]:
    """Actions whose `params` is not a valid JSON Schema, or whose command is a relative
    path that is not an executable file inside the skill's directory."""
    out = []
    for name, action in actions.items():
        if action.command is not None:
            try:
                command_path(action.command[0], directory)
            except ValueError as exc:
                out.append(doc.problem(base + (name, "command", 0), f"command {exc}"))
        if action.params is None:
            continue
        try:
            jsonschema.validators.validator_for(action.params).check_schema(action.params)
        except jsonschema.SchemaError as exc:
            where = base + (name, "params") + tuple(exc.absolute_path)
            out.append(doc.problem(where, f"not a valid JSON Schema: {exc.message}"))
    return out


def _from_spec(name: str, spec: SkillSpec, directory: Path, origin: str) -> Skill:
    return Skill(name, spec.description, dict(spec.actions), directory.resolve(), origin,
                 spec.version, spec.concurrency, tuple(spec.capabilities), tuple(spec.tags))
