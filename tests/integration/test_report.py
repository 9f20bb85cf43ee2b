"""Execution reports (Markdown, JSON) of a real run: retries, a failure with stderr, a rollback."""

from __future__ import annotations

import json

import pytest

from orchestratord.cli.main import main
from orchestratord.engine.engine import Engine
from orchestratord.language.loader import load_workflow
from orchestratord.reports.layout import PER_ROW, dag
from orchestratord.reports.report import STDERR_TAIL_LINES, build_report, render
from orchestratord.skills import discover
from orchestratord.store.sqlite import Store
from tests.conftest import ECHO, write_skill, write_workflow
from tests.integration.report_run import NASTY, SECRET, make_reported_run


@pytest.fixture
async def reported(tmp_path):
    return await make_reported_run(tmp_path)


async def _model_and_rows(reported):
    store = await Store.open(reported.db)
    try:
        model = await build_report(store, reported.run_id)
        return model, await store.steps(reported.run_id), await store.attempts(reported.run_id)
    finally:
        await store.close()


async def test_json_model_tells_what_the_store_holds(reported):
    model, steps, attempts = await _model_and_rows(reported)
    assert model["report_version"] == 1
    assert model["run"]["status"] == "rolled_back"
    assert model["run"]["error"] == "failed steps: build"
    assert model["run"]["duration"] == pytest.approx(
        model["run"]["finished_at"] - model["run"]["started_at"], abs=1e-5)

    # every attempt the store has, compensations included, once
    assert sorted((a["step_id"], a["kind"], a["attempt"], a["status"]) for a in model["attempts"]) \
        == sorted((a.step_id, a.kind, a.attempt, a.status) for a in attempts)
    assert model["summary"]["attempts"] == sum(1 for a in attempts if a.kind == "action") == 6
    assert model["summary"]["compensations"] == 2

    by_id = {s["id"]: s for s in model["steps"]}
    assert {k: v["status"] for k, v in by_id.items()} == {s.step_id: s.status for s in steps} == {
        "prepare": "compensated", "fetch": "succeeded", "build": "failed",
        "lint": "compensated", "publish": "upstream_failed"}
    assert by_id["fetch"]["attempts"] == 3 and by_id["fetch"]["retries"] == 2
    assert by_id["fetch"]["result"] == {"fetched": "web-1", "tries": 3}
    assert by_id["publish"]["duration"] is None  # never ran

    # the DAG, from the stored definition: groups expanded, layered by depth
    assert {(e["from"], e["to"]) for e in model["edges"]} == {
        ("prepare", "fetch"), ("fetch", "build"), ("fetch", "lint"),
        ("build", "publish"), ("lint", "publish")}
    assert {k: v["depth"] for k, v in by_id.items()} == {
        "prepare": 0, "fetch": 1, "build": 2, "lint": 2, "publish": 3}
    assert by_id["build"]["group"] == by_id["lint"]["group"] == "parallel-1"

    assert [(r["step_id"], r["attempt"], r["status"]) for r in model["retries"]] == [
        ("fetch", 1, "failed"), ("fetch", 2, "failed")]
    assert "mirror unreachable (try 2)" in model["retries"][1]["error"]

    [failure] = model["failures"]
    assert failure["step_id"] == "build" and failure["exit_code"] == 3
    assert "missing dependency libfoo" in failure["error"]
    tail = failure["stderr_tail"].splitlines()
    assert len(tail) == STDERR_TAIL_LINES and tail[-1] == "error: missing dependency libfoo"
    assert "upload with *** refused" in tail  # the secret the step printed is scrubbed

    rollback = model["rollback"]
    assert rollback["order"] == ["lint", "fetch", "prepare"]  # reverse completion order
    assert [(a["step_id"], a["action"], a["status"]) for a in rollback["actions"]] == [
        ("lint", None, "succeeded"), ("fetch", None, "skipped"), ("prepare", "undo", "succeeded")]


async def test_json_rendering_is_the_model_and_keeps_secrets_out(reported):
    model, _, _ = await _model_and_rows(reported)
    text = render(model, "json")
    assert json.loads(text) == json.loads(json.dumps(model))
    assert list(json.loads(text)) == ["report_version", "generated_at", "run", "summary", "steps",
                                      "edges", "attempts", "failures", "retries", "rollback"]
    assert SECRET not in text
    assert model["run"]["params"]["api_token"] == "***"
    assert model["run"]["params"]["banner"] == NASTY  # not a secret: shown as given


def test_markdown_through_the_cli(reported, capsys):
    assert main(["--state", str(reported.db), "report", reported.run_id[:6], "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert md.startswith(f"# Run {reported.run_id} of nightly-deploy: rolled_back\n")
    assert "| Duration |" in md and "| Error | failed steps: build |" in md
    assert "| fetch | t.flaky | succeeded | 3 |" in md
    assert "| publish | t.ledger | upstream_failed | 0 | - | dependency failed: build |" in md
    failures = md.split("## Failures", 1)[1].split("## Retries", 1)[0]
    assert "### build: failed" in failures and "exit status 3" in failures
    assert "```\ncompiling unit 12\n" in failures
    assert "upload with *** refused\nerror: missing dependency libfoo\n```" in failures
    retries = md.split("## Retries", 1)[1].split("## Rollback", 1)[0]
    assert retries.count("| fetch |") == 2 and "mirror unreachable (try 1)" in retries
    rollback = md.split("## Rollback", 1)[1]
    assert "lint, fetch, prepare" in rollback
    assert "| prepare | undo | succeeded | 1 |" in rollback
    assert "| fetch | - | skipped | 0 | - | no rollback action declared |" in rollback
    assert SECRET not in md


def test_report_to_a_file_and_clear_errors(reported, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["--state", str(reported.db), "report", reported.run_id, "--format", "json",
                 "-o", str(out)]) == 0
    assert json.loads(out.read_text())["run"]["id"] == reported.run_id
    assert str(out) in capsys.readouterr().err
    assert main(["--state", str(reported.db), "report", "nosuchrun"]) == 7
    assert "no run 'nosuchrun'" in capsys.readouterr().err
    assert main(["--state", str(reported.db), "report", reported.run_id, "-o",
                 str(tmp_path / "missing-dir" / "r.md")]) == 7
    assert "cannot write the report" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--state", str(reported.db), "report", reported.run_id, "--format", "pdf"])
    assert "--format" in capsys.readouterr().err


async def test_a_run_not_started_yet_reports_too(tmp_path):
    """A pending run (no attempts, no times) and a wide layer: every format still renders."""
    write_skill(tmp_path / "skills", "k", {"a": {"command": ECHO}})
    members = "\n".join(f"        - {{id: m{i}, skill: k, action: a}}" for i in range(12))
    path = write_workflow(tmp_path, f"workflow:\n  name: wide\n  steps:\n"
                                    f"    - {{id: root, skill: k, action: a}}\n"
                                    f"    - parallel:\n{members}\n")
    definition = load_workflow(path, registry=discover([tmp_path / "skills"]))
    store = await Store.open(tmp_path / "state.db")
    engine = Engine(store)
    try:
        run_id = await engine.start(definition)
        model = await build_report(store, run_id)
    finally:
        await engine.close()
        await store.close()
    assert model["run"]["status"] == "pending" and model["attempts"] == []
    assert {s["depth"] for s in model["steps"] if s["id"] != "root"} == {1}
    assert "| m11 | k.a | pending | 0 | - |" in render(model, "md")
    html = render(model, "html")
    assert html.count('class="node status-pending"') == 13 and 'class="bar' not in html
    rows = {n["y"] for n in dag(model)["nodes"]}
    assert len(rows) == 1 + -(-12 // PER_ROW)  # a wide layer wraps instead of shrinking


async def test_a_failed_compensation_is_a_failure_of_its_own(tmp_path):
    write_skill(tmp_path / "skills", "k", {
        "ok": {"command": ECHO},
        "fail": {"python": "tests.integration.actions:fail"}})
    path = write_workflow(tmp_path, """
        workflow:
          name: saga
          on_failure: rollback
          steps:
            - {id: a, skill: k, action: ok, rollback: {action: fail, params: {message: undo broke}}}
            - {id: b, skill: k, action: fail, params: {message: b broke}}
    """)
    definition = load_workflow(path, registry=discover([tmp_path / "skills"]))
    store = await Store.open(tmp_path / "state.db")
    engine = Engine(store)
    try:
        result = await engine.run(definition)
        model = await build_report(store, result.run_id)
    finally:
        await engine.close()
        await store.close()
    assert model["run"]["status"] == "rollback_failed"
    assert [(f["step_id"], f["kind"], f["status"], f["error"]) for f in model["failures"]] == [
        ("a", "rollback", "compensation_failed", "undo broke"),
        ("b", "action", "failed", "b broke")]
    [action] = model["rollback"]["actions"]
    assert (action["step_id"], action["action"], action["status"]) == ("a", "fail", "failed")
    md = render(model, "md")
    assert "### rollback of a: compensation failed" in md and "undo broke" in md
