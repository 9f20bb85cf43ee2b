"""How fast `route` answers over a large catalog of skills (warm index, in memory).

`python -m bench.routing [--skills 1000]` generates that many skills (each with three
actions, capabilities, examples and a SKILL.md body drawn from a vocabulary), builds the
routing index once, and times requests of each kind: explicit, capability, lexical.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from orchestratord.language.model import ActionSpec
from orchestratord.language.skill_routing import router_of
from orchestratord.skills import Registry, Skill

from .results import Row, at_most, fmt_n, median_time

TARGET_MS = 10.0
NOUNS = ("disk certificate backup snapshot database table user account invoice report "
         "image photo container service unit page form sheet column record domain port "
         "rule log journal message mail calendar event package update repository commit "
         "test model cluster node volume bucket queue job cache index secret key token").split()
VERBS = ("check list create delete renew restore back-up query export import resize "
         "convert send post search tail restart start stop scan lock open close sync").split()


def generate(n: int, seed: int = 1) -> Registry:
    """A registry of n skills named skill-NNNN with plausible routing metadata."""
    rng = random.Random(seed)
    registry = Registry()
    for i in range(n):
        nouns = rng.sample(NOUNS, 3)
        actions = {}
        for verb in rng.sample(VERBS, 3):
            noun = rng.choice(nouns)
            actions[verb.replace("-", "_")] = ActionSpec(
                command=["./run"], description=f"{verb} the {noun} of a {rng.choice(nouns)}",
                capabilities=[f"{noun}.{verb.replace('-', '_')}"],
                examples=[f"please {verb} the {noun}", f"{verb} every {noun} now"])
        # Prose of a SKILL.md: mostly words of its own (a 5,000-word vocabulary), as real
        # skills' texts differ, and some of the shared nouns and verbs.
        body = " ".join(rng.choice(NOUNS + VERBS) if rng.random() < 0.1 else
                        f"w{rng.randrange(5000)}" for _ in range(120))
        registry.add(Skill(f"skill-{i:04d}", f"Work with {' and '.join(nouns)}", actions,
                           Path("/"), "generated", "1.0", None,
                           (f"{nouns[0]}.manage",), tuple(nouns), body))
    return registry


def measure(n: int = 1000, repeat: int = 50) -> list[Row]:
    registry = generate(n)
    started = time.perf_counter()
    router = router_of(registry)
    build_ms = (time.perf_counter() - started) * 1000
    some = registry.skills[f"skill-{n // 2:04d}"]
    action = next(iter(some.actions))
    cases = [("explicit skill.action", f"run {some.name}.{action} please"),
             ("capability", f"I need {some.actions[action].capabilities[0]}"),
             ("lexical, 6 words", "restore the snapshot of the database volume"),
             ("lexical, no match", "make me a sandwich with cheese")]
    rows = [Row("routing", f"build the index, {fmt_n(n)} skills", round(build_ms, 1), "ms",
                note=f"{fmt_n(n * 3)} actions")]
    for name, text in cases:
        router.route(text)  # warm
        ms = median_time(lambda text=text: router.route(text), repeat) * 1000
        target, ok = at_most(ms, TARGET_MS, "ms")
        rows.append(Row("routing", f"route: {name}, {fmt_n(n)} skills", round(ms, 2), "ms",
                        target=target, ok=ok))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--skills", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = measure(args.skills, args.repeat)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        for r in rows:
            print(f"{r.name:<50} {r.value:>8.2f} {r.unit}  {r.target or ''}  {r.note or ''}")
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
