"""Publishing our skills' SKILL.md to AIDB (off by default: `aidb.publish`).

Only what changed since it was last accepted goes out: the SHA-256 of each skill's
SKILL.md as AIDB accepted it is kept in the state database (aidb_state), so a restart
or a reload sends nothing that AIDB already has.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import aiosqlite

from ...language.skill_registry import Registry
from ...skills.describe import document
from .client import AidbClient

log = logging.getLogger("orchestratord.aidb.publish")
MANAGED_BY = "agent-orchestrator"


def import_body(name: str, content: str, source_path: str) -> dict[str, Any]:
    """The POST /skills/import body of one of our skills."""
    return {"slug": name, "content": content, "name": name, "managed_by": MANAGED_BY,
            "source_path": source_path, "source_url": None, "url": None}


async def publish_changed(db: aiosqlite.Connection, client: AidbClient,
                          registry: Registry) -> list[str]:
    """Import the local skills whose SKILL.md changed since AIDB last accepted it."""
    published = []
    for name in sorted(registry.skills):
        skill = registry.skills[name]
        if skill.document is not None or not skill.origin.endswith("SKILL.md"):
            continue  # AIDB's own, or declared inline: not ours to publish
        content = document(skill)
        digest = hashlib.sha256(content.encode()).hexdigest()
        key = f"published:{name}"
        rows = list(await db.execute_fetchall("SELECT value FROM aidb_state WHERE key = ?",
                                              (key,)))
        if rows and rows[0][0] == digest:
            continue
        await client.import_skill(import_body(name, content, skill.origin))
        await db.execute("INSERT OR REPLACE INTO aidb_state (key, value) VALUES (?, ?)",
                         (key, digest))
        published.append(name)
    if published:
        log.info("published to AIDB: %s", ", ".join(published))
    return published
