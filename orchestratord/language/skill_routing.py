"""Routing a request to a skill's action: deterministic, offline, with reasons.

Stages, first decisive one wins, each logged with its reason:

1. explicit: the request names `skill.action`, or `/skill` (whose only action, or the
   action of it that the lexical stage prefers);
2. capability: the request names a declared capability (`health.check`); one action
   declaring it is a match, several are told apart by the lexical stage;
3. lexical: SQLite FTS5 with bm25 ranking over each action's names, capabilities,
   examples, descriptions and its skill's SKILL.md body (in memory, built once per
   registry).

The margin rule: the best candidate is `matched` when its score is at least MIN_SCORE
and at least MARGIN times the runner-up's; when it is above MIN_SCORE but too close to
the runner-up the answer is `ambiguous` (the close candidates); else `none`.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .skill_registry import Registry, Skill

log = logging.getLogger("orchestratord.routing")

MIN_SCORE = 5.0   # below this, a lexical best is chance overlap: none
MARGIN = 1.15     # the best must beat the runner-up by this factor to be matched
MAX_CANDIDATES = 100  # the most candidates a route returns (API and CLI)
# bm25 weight of each indexed column: what an action is called and declares counts
# more than what its skill's prose mentions in passing.
# Actions and skills are ranked in two tables and their scores added, the action's
# counted ACTION_WEIGHT times: what tells two actions of one skill apart is theirs alone.
ACTION_COLUMNS = {"action": 3.0, "action_capabilities": 2.0, "examples": 2.0,
                  "action_description": 1.5}
SKILL_COLUMNS = {"skill": 3.0, "skill_capabilities": 2.0, "skill_description": 1.5,
                 "body": 0.3}
ACTION_WEIGHT = 2.0
SEARCH_DEPTH = 100  # the best this many skills and actions are combined into candidates

STOPWORDS = frozenset("""
a an and are as at be by can could do does for from get give go has have how i if in into
is it its let me my of on or please run should so some that the their then there this to
up use using want we what when where which who will with would you your can't don't i'd
i'm need make just tell show now all any out off our us via again new
""".split())
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_DOTTED = re.compile(r"(?<![\w/.-])([A-Za-z_][\w-]*)\.([A-Za-z_][\w-]*)(?![\w.-])")
_SLASH = re.compile(r"(?:^|\s)/([A-Za-z_][\w-]*)")
_CAPABILITY = re.compile(r"[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9][a-z0-9_-]*)+")


@dataclass(frozen=True)
class Candidate:
    skill: str
    action: str
    score: float
    why: str
    # An instruction skill (SKILL.md only, e.g. from AIDB): the answer is to read it with
    # `skills show`; there is no action to run (`action` is "").
    instructions: bool = False


@dataclass(frozen=True)
class Route:
    """The answer to a request: matched (one candidate), ambiguous, or none."""

    request: str
    status: str                      # matched | ambiguous | none
    candidates: list[Candidate] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)  # what each stage found, in order

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.status == "matched" else None

    def as_dict(self) -> dict[str, Any]:
        return {"request": self.request, "status": self.status,
                "candidates": [_candidate(c) for c in self.candidates], "stages": self.stages}


def _candidate(c: Candidate) -> dict[str, Any]:
    """A candidate as JSON; `instructions` only where true, so an action's keeps its shape."""
    d = asdict(c)
    if not c.instructions:
        del d["instructions"]
    return d


def router_of(registry: Registry) -> Router:
    """The routing index of registry's skills, built on first use and kept with them."""
    if registry.routing_index is None:
        registry.routing_index = Router(registry)
    router: Router = registry.routing_index
    return router


class Router:
    """Routes requests over one registry's skills; build once, ask many times."""

    def __init__(self, registry: Registry):
        self.skills = dict(registry.skills)
        self.by_capability: dict[str, list[tuple[str, str]]] = {}
        self._queries: dict[str, str] = {}
        for skill in self.skills.values():
            for name, action in skill.actions.items():
                for cap in dict.fromkeys([*skill.capabilities, *action.capabilities]):
                    self.by_capability.setdefault(cap, []).append((skill.name, name))
        self.db = sqlite3.connect(":memory:", check_same_thread=False)
        for table, columns in (("actions", ACTION_COLUMNS), ("skills", SKILL_COLUMNS)):
            self.db.execute(f"CREATE VIRTUAL TABLE {table} USING fts5(skill_name UNINDEXED, "
                            f"action_name UNINDEXED, {', '.join(columns)}, "
                            "tokenize='porter unicode61')")
            weights = ", ".join(str(w) for w in (0.0, 0.0, *columns.values()))
            # FTS5 ranks and cuts in C; only the best rows come back to Python.
            self._queries[table] = (f"SELECT skill_name, action_name, -rank FROM {table} "
                                    f"WHERE {table} MATCH ? AND rank MATCH 'bm25({weights})' "
                                    "{where} ORDER BY rank LIMIT ?")
        self.db.executemany(f"INSERT INTO actions VALUES ({', '.join('?' * 6)})",
                            [row for s in self.skills.values() for row in _action_rows(s)])
        self.db.executemany(f"INSERT INTO skills VALUES ({', '.join('?' * 6)})",
                            [_skill_row(s) for s in self.skills.values()])

    def route(self, text: str, limit: int = 5) -> Route:
        """Which skill and action fit text, best first, with the reason for each."""
        stages: list[str] = []
        for stage in (self._explicit, self._capability, self._lexical):
            found = stage(text, limit, stages)
            if found is not None:
                status, candidates = found
                route = Route(text, status, candidates[:limit], stages)
                log.info("route %r: %s %s", text, status,
                         ", ".join(f"{c.skill}.{c.action}" for c in route.candidates) or "-")
                return route
        return Route(text, "none", [], stages)

    def capability(self, name: str) -> list[tuple[str, str]]:
        """The (skill, action) pairs that declare capability name."""
        return list(self.by_capability.get(name, []))

    def close(self) -> None:
        self.db.close()

    # -- stages: each returns (status, candidates) when it decides, else None --------

    def _explicit(self, text: str, limit: int, stages: list[str]) -> Any:
        for m in _DOTTED.finditer(text):
            skill = self.skills.get(m.group(1))
            if skill is not None and m.group(2) in skill.actions:
                return self._note(stages, "explicit", f"names {m.group(0)}", "matched",
                                  [Candidate(skill.name, m.group(2), 100.0,
                                             f"the request names {m.group(0)}")])
        for m in _SLASH.finditer(text):
            skill = self.skills.get(m.group(1))
            if skill is None:
                continue
            if not skill.actions:
                return self._note(stages, "explicit", f"names /{skill.name}", "matched",
                                  [Candidate(skill.name, "", 100.0, f"the request names "
                                             f"/{skill.name}, instructions to read", True)])
            if len(skill.actions) == 1:
                (action,) = skill.actions
                return self._note(stages, "explicit", f"names /{skill.name}", "matched",
                                  [Candidate(skill.name, action, 100.0,
                                             f"the request names /{skill.name}, its only action")])
            rest = text.replace(m.group(0), " ")
            ranked = self._search(rest, limit, skills=[skill.name])
            if not ranked:
                ranked = [Candidate(skill.name, a, 0.0, f"an action of /{skill.name}")
                          for a in skill.actions]
            status, candidates = _decide(ranked)
            if status == "none":
                status = "ambiguous"
            return self._note(stages, "explicit", f"names /{skill.name}; the action by words",
                              status, [_because(c, f"/{skill.name} named; ") for c in candidates])
        stages.append("explicit: no skill.action or /skill named")
        return None

    def _capability(self, text: str, limit: int, stages: list[str]) -> Any:
        pairs = [p for cap in dict.fromkeys(_CAPABILITY.findall(text.lower()))
                 for p in self.by_capability.get(cap, [])]
        pairs = list(dict.fromkeys(pairs))
        if not pairs:
            stages.append("capability: no declared capability named")
            return None
        named = [c for c in dict.fromkeys(_CAPABILITY.findall(text.lower()))
                 if c in self.by_capability]
        why = f"declares {', '.join(named)}"
        if len(pairs) == 1:
            return self._note(stages, "capability", why, "matched",
                              [Candidate(*pairs[0], 50.0, f"it {why}")])
        skills = sorted({s for s, _ in pairs})
        scored = {(c.skill, c.action): c for c in self._search(text, 1000, skills=skills)}
        ranked = sorted((scored.get(p) or Candidate(*p, 0.0, "") for p in pairs),
                        key=lambda c: (-c.score, c.skill, c.action))
        status, candidates = _decide(ranked)
        if status == "none":
            status, candidates = "ambiguous", ranked
        return self._note(stages, "capability", why + " (several; told apart by words)", status,
                          [_because(c, f"it {why}; ") for c in candidates])

    def _lexical(self, text: str, limit: int, stages: list[str]) -> Any:
        ranked = self._search(text, max(limit, 2))
        status, candidates = _decide(ranked)
        top = f"best {ranked[0].score:.2f}" if ranked else "no word matches"
        second = f", runner-up {ranked[1].score:.2f}" if len(ranked) > 1 else ""
        return self._note(stages, "lexical", top + second, status, candidates)

    def _note(self, stages: list[str], stage: str, why: str, status: str,
              candidates: list[Candidate]) -> tuple[str, list[Candidate]]:
        stages.append(f"{stage}: {why} -> {status}")
        log.info("routing stage %s: %s -> %s", stage, why, status)
        return status, candidates

    def _search(self, text: str, limit: int,
                skills: Iterable[str] | None = None) -> list[Candidate]:
        # One letter ("s" of "what's") is noise, not a word of the request.
        words = [w for w in dict.fromkeys(_WORD.findall(text.lower()))
                 if len(w) > 1 and w not in STOPWORDS]
        if not words:
            return []
        match = " OR ".join(f'"{w}"' for w in words)
        where, args = "", []
        if skills is not None:
            args = list(skills)
            where = f"AND skill_name IN ({', '.join('?' * len(args))})"

        def ranked(table: str, depth: int) -> list[tuple[str, str, float]]:
            return self.db.execute(self._queries[table].format(where=where),
                                   [match, *args, depth]).fetchall()
        by_skill = {name: score for name, _, score in ranked("skills", SEARCH_DEPTH)}
        totals = {(name, action): ACTION_WEIGHT * score + by_skill.get(name, 0.0)
                  for name, action, score in ranked("actions", SEARCH_DEPTH)}
        for name, score in by_skill.items():
            for action in self.skills[name].actions or [""]:  # "": its instructions
                totals.setdefault((name, action), score)
        best = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return [Candidate(s, a, round(score, 3), f"words match ({', '.join(words)})"
                          + ("; instructions to read, nothing to run" if not a else ""), not a)
                for (s, a), score in best]


def _decide(ranked: list[Candidate]) -> tuple[str, list[Candidate]]:
    """The margin rule over candidates ranked best first."""
    if not ranked or ranked[0].score < MIN_SCORE:
        return "none", ranked[:3]
    if len(ranked) == 1 or ranked[0].score >= MARGIN * ranked[1].score:
        return "matched", ranked
    close = [c for c in ranked if c.score * MARGIN > ranked[0].score]
    return "ambiguous", close


def _because(c: Candidate, prefix: str) -> Candidate:
    return Candidate(c.skill, c.action, c.score, prefix + c.why if c.why else prefix.rstrip("; "))


def _words(name: str) -> str:
    return re.sub(r"[._-]+", " ", name)


def _action_rows(skill: Skill) -> Iterable[tuple[str, ...]]:
    for name, action in skill.actions.items():
        yield (skill.name, name, _words(name), " ".join(_words(c) for c in action.capabilities),
               "\n".join(action.examples), action.description or "")


def _skill_row(skill: Skill) -> tuple[str, ...]:
    return (skill.name, "", _words(skill.name),
            " ".join([*(_words(c) for c in skill.capabilities), *skill.tags]),
            skill.description, skill.body)
