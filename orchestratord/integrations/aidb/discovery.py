"""AIDB's skills in our catalog: instruction skills (their SKILL.md, no actions).

The catalog is fetched at start, on reload and on an interval, and kept in the state
database, so that while AIDB is down the last catalog still serves. A local skill of
the same name always wins; the AIDB skill it hides is reported as shadowed.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
import yaml

from ...language.skill_registry import Registry, Skill

log = logging.getLogger("orchestratord.aidb.discovery")

PLACEHOLDERS = frozenset({"", "-", "...", "todo", "tbd", "none", "n/a", "na", "null",
                          "description", "no description", "no description provided",
                          "placeholder", "fixme", "add a description", "description here"})
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_FRONTMATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.S)


@dataclass
class Joined:
    added: list[str] = field(default_factory=list)
    shadowed: list[str] = field(default_factory=list)   # AIDB skills a local one hides
    skipped: list[str] = field(default_factory=list)    # records unusable as skills


def is_placeholder(text: str | None) -> bool:
    return (text or "").strip().strip(".").strip().lower() in PLACEHOLDERS


def split_document(content: str) -> tuple[dict[str, Any], str]:
    """SKILL.md's frontmatter (a mapping, empty if none or broken) and its body."""
    m = _FRONTMATTER.match(content or "")
    if not m:
        return {}, content or ""
    try:
        front = yaml.safe_load(m.group(1))
    except yaml.YAMLError:
        front = None
    return (front if isinstance(front, dict) else {}), content[m.end():]


def description_of(record: dict[str, Any], front: dict[str, Any], body: str) -> str:
    """The record's description; if empty or a placeholder, SKILL.md's, else its first
    paragraph of prose, else a plain statement that there is none."""
    for candidate in (record.get("description"), front.get("description")):
        if isinstance(candidate, str) and not is_placeholder(candidate):
            return " ".join(candidate.split())
    for paragraph in re.split(r"\n\s*\n", body):
        text = " ".join(line for line in paragraph.strip().splitlines()
                        if not line.lstrip().startswith(("#", "```", "---")))
        if text and not is_placeholder(text):
            return text[:300]
    return "(AIDB gives no description)"


def to_skill(record: dict[str, Any], origin: str) -> Skill | None:
    """The instruction skill of an AIDB record, or None if its slug is not a usable name."""
    slug = str(record.get("slug") or "")
    if not _NAME.match(slug) or len(slug) > 64:
        return None
    raw_content, raw_tags = record.get("content"), record.get("tags")
    content = raw_content if isinstance(raw_content, str) else ""
    front, body = split_document(content)
    tags = raw_tags if isinstance(raw_tags, list) else []
    version = record.get("version") or front.get("version")
    return Skill(name=slug, description=description_of(record, front, body), actions={},
                 origin=f"{origin}/skills/{slug}", version=str(version) if version else None,
                 tags=tuple(str(t) for t in tags), body=body,
                 document=content or f"---\nname: {slug}\n---\n\n# {slug}\n")


def join(registry: Registry, records: Iterable[dict[str, Any]], origin: str) -> Joined:
    """Add AIDB's skills to registry where no local skill has the name; say what not."""
    joined = Joined()
    local = set(registry.skills)
    for record in records:
        skill = to_skill(record, origin)
        if skill is None:
            joined.skipped.append(str(record.get("slug")))
            continue
        names = {skill.name, str(record.get("name") or "")}
        if names & local:
            joined.shadowed.append(skill.name)
            continue
        if registry.add(skill) is None:
            joined.added.append(skill.name)
    if joined.shadowed:
        log.warning("AIDB skills shadowed by local skills of the same name (the local one "
                    "is used): %s", ", ".join(joined.shadowed))
    if joined.skipped:
        log.warning("AIDB skills left out (slug not usable as a skill name): %s",
                    ", ".join(joined.skipped))
    return joined


async def save_catalog(db: aiosqlite.Connection, records: list[dict[str, Any]]) -> float:
    """Replace the cached catalog with records; returns when it was fetched."""
    now = time.time()
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.execute("DELETE FROM aidb_skills")
        await db.executemany("INSERT OR REPLACE INTO aidb_skills (slug, record, fetched_at) "
                             "VALUES (?,?,?)",
                             [(str(r["slug"]), json.dumps(r), now) for r in records])
        await db.execute("INSERT OR REPLACE INTO aidb_state (key, value) VALUES "
                         "('catalog_fetched_at', ?)", (repr(now),))
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    return now


async def cached_catalog(db: aiosqlite.Connection) -> tuple[list[dict[str, Any]], float | None]:
    """The catalog as last fetched, and when (None: never)."""
    rows = list(await db.execute_fetchall("SELECT record FROM aidb_skills ORDER BY slug"))
    when = list(await db.execute_fetchall(
        "SELECT value FROM aidb_state WHERE key = 'catalog_fetched_at'"))
    return [json.loads(r[0]) for r in rows], float(when[0][0]) if when else None
