"""Routing requests to skills: each stage, the margin rule, and the routing test set."""

from __future__ import annotations

import json

import pytest

from orchestratord.cli.main import main
from orchestratord.language.skill_routing import MARGIN, Candidate, Router, _decide
from orchestratord.skills import Registry
from tests.routing.corpus import registry, requests


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    r = Router(registry(tmp_path_factory.mktemp("routing") / "skills"))
    yield r
    r.close()


def test_explicit_skill_action_wins_over_words(router):
    route = router.route("use postgres-database.migrate, not a backup of snapshots")
    assert route.status == "matched"
    assert (route.best.skill, route.best.action) == ("postgres-database", "migrate")
    assert route.stages == ["explicit: names postgres-database.migrate -> matched"]


def test_slash_skill_picks_its_only_action_or_the_one_the_words_fit(router):
    assert router.route("/translation hola").best.action == "translate"
    route = router.route("/restic-backup bring back the deleted file")
    assert (route.best.skill, route.best.action) == ("restic-backup", "restore")
    assert route.best.why.startswith("/restic-backup named")


def test_declared_capability_is_the_second_stage(router):
    route = router.route("whatever tls.renew says")
    assert route.best.action == "renew" and "declares tls.renew" in route.best.why
    assert route.stages[0].startswith("explicit: no") and route.stages[1].startswith("capability")
    # A skill-level capability declared by every action: told apart by the words.
    assert router.route("backup.restic: list snapshots").best.action == "snapshots"


def test_lexical_stage_ranks_with_bm25_and_says_why(router):
    route = router.route("take a screenshot of the status page")
    assert route.best.action == "screenshot" and route.best.why.startswith("words match")
    assert route.stages[-1].startswith("lexical: best")
    assert [c.score for c in route.candidates] == sorted((c.score for c in route.candidates),
                                                         reverse=True)


def test_margin_rule():
    def ranked(*scores):
        return [Candidate("s", f"a{i}", x, "") for i, x in enumerate(scores)]
    assert _decide(ranked(10.0, 10.0 / MARGIN - 0.01))[0] == "matched"
    status, close = _decide(ranked(10.0, 9.5, 2.0))
    assert status == "ambiguous" and [c.action for c in close] == ["a0", "a1"]
    assert _decide(ranked(1.0))[0] == "none" and _decide([])[0] == "none"


def test_no_skills_no_match():
    assert Router(Registry()).route("anything at all").status == "none"


def test_routing_test_set_top1_at_least_90_percent(router):
    cases = requests()
    assert len(cases) >= 40
    wrong = []
    for case in cases:
        assert case["expect"] not in ("none", "ambiguous") or case.get("why"), case
        route = router.route(case["request"])
        got = f"{route.best.skill}.{route.best.action}" if route.best else route.status
        if got != case["expect"]:
            wrong.append(f"{case['request']!r}: {got}, expected {case['expect']}")
    accuracy = 1 - len(wrong) / len(cases)
    assert accuracy >= 0.9, f"top-1 {accuracy:.0%}; wrong:\n" + "\n".join(wrong)


def test_route_cli_json_and_exit_status(capsys, tmp_path):
    state = ["--state", str(tmp_path / "s.db")]
    assert main([*state, "route", "is the host healthy?", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "matched" and out["candidates"][0]["skill"] == "health-monitoring"
    assert set(out["candidates"][0]) == {"skill", "action", "score", "why"}
    assert main([*state, "route", "make me a sandwich"]) == 1
    assert "none" in capsys.readouterr().out
