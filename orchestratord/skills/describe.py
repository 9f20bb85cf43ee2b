"""Skills as a catalog: what `orchestratorctl skills` and `GET /skills` show of each.

A skill is described as the orchestrator runs and routes it (actions, capabilities,
examples, whether an action changes the system) and shown as an agent reads it (its
SKILL.md, whole).
"""

from __future__ import annotations

from typing import Any

from ..language.skill_registry import Registry, Skill


def capabilities(skill: Skill) -> list[str]:
    """The skill's own capabilities and its actions', each once, in declared order."""
    found = list(skill.capabilities)
    for action in skill.actions.values():
        found += action.capabilities
    return list(dict.fromkeys(found))


def describe(skill: Skill) -> dict[str, Any]:
    """A skill as JSON: name, description, version, actions, capabilities, where found."""
    return {"name": skill.name, "description": skill.description, "version": skill.version,
            "tags": list(skill.tags), "capabilities": capabilities(skill),
            "actions": [{"name": name, "description": a.description, "kind": a.kind,
                         "capabilities": list(a.capabilities), "examples": list(a.examples),
                         "mutating": a.mutating}
                        for name, a in skill.actions.items()],
            "kind": "actions" if skill.actions else "instructions",
            "origin": skill.origin, "directory": str(skill.directory or "")}


def describe_all(registry: Registry) -> list[dict[str, Any]]:
    return [describe(registry.skills[name]) for name in sorted(registry.skills)]


def document(skill: Skill) -> str:
    """SKILL.md as an agent reads it; for a skill declared inline, an equivalent text."""
    if skill.document is not None:
        return skill.document
    if skill.origin.endswith("SKILL.md"):
        try:
            with open(skill.origin, encoding="utf-8") as f:
                return f.read()
        except OSError:
            pass  # moved since it was loaded: describe what was loaded
    lines = ["---", f"name: {skill.name}", f"description: {skill.description or '-'}"]
    if skill.version:
        lines.append(f"version: {skill.version}")
    lines += ["---", "", f"# {skill.name}", "", f"Declared in {skill.origin}.", ""]
    for name, action in skill.actions.items():
        lines += [f"## {name}", "", action.description or "", ""]
    return "\n".join(lines)


def table(described: list[dict[str, Any]]) -> str:
    """One line a skill: name, version, actions, capabilities, where it was found."""
    rows = [(d["name"], d["version"] or "-", ",".join(a["name"] for a in d["actions"]) or "-",
             " ".join(d["capabilities"]) or "-", d["origin"]) for d in described]
    head = ("SKILL", "VERSION", "ACTIONS", "CAPABILITIES", "FOUND IN")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(4)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r[:4], widths, strict=True))
                     + "  " + r[4] for r in [head, *rows])
