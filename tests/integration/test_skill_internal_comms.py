"""The bundled internal-comms skill through the real engine, with a real webhook server."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from orchestratord.core.errors import StepFailure
from orchestratord.engine.context import StepContext, step_logger
from orchestratord.engine.engine import Engine
from orchestratord.language.loader import load_workflow
from orchestratord.reports.formatting import when
from orchestratord.reports.report import build_report
from orchestratord.skills import discover, search_path
from orchestratord.skills.bundled.internal_comms.actions import status_report
from orchestratord.store.sqlite import Store
from tests.conftest import py_command, write_skill, write_workflow

SKILL = "internal-comms"

# Fails its first attempt (exit 75: retryable), then reports a result with awkward text.
FLAKY = py_command("""
    import json, os, sys
    p = json.load(sys.stdin)
    if not os.path.exists(p["marker"]):
        open(p["marker"], "w").close()
        print("first attempt fails", file=sys.stderr)
        sys.exit(75)
    print(json.dumps({"note": "a | b\\nc", "items": [1, 2, 3], "ok": True}))
""")
SAY = py_command("""
    import json, sys
    print(json.dumps({"said": json.load(sys.stdin)["text"]}))
""")
BROKEN = py_command("""
    import sys
    sys.exit("disk on fire")
""")
# Fails with a message that quotes code: a fence of three backticks inside the error.
FENCED = py_command("""
    import sys
    sys.exit("patch does not apply:\\n```\\n--- a/x\\n```")
""")


class Hook:
    """A real HTTP server on 127.0.0.1 that records what it receives."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # answers to give, in order; then 200

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="nope" if status >= 300 else "ok")


@pytest.fixture
async def hook():
    recorder = Hook()
    app = web.Application()
    app.router.add_post("/hook", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    recorder.url = f"http://127.0.0.1:{port}/hook"
    yield recorder
    await runner.cleanup()


@pytest.fixture
def registry(skill_root):
    write_skill(skill_root, "t", {"flaky": {"command": FLAKY}, "broken": {"command": BROKEN},
                                  "say": {"command": SAY}, "fenced": {"command": FENCED}})
    return discover(search_path([skill_root]))


async def run(tmp_path: Path, store: Store, registry, config: dict[str, Any], steps: str,
              head: str = ""):
    path = write_workflow(tmp_path, "workflow:\n  name: comms\n" + head + "  steps:\n" + steps)
    engine = Engine(store, settings=config, sleep=_no_wait)
    try:
        result = await engine.run(load_workflow(path, registry=registry))
    finally:
        await engine.close()
    return result, {s.step_id: s for s in await store.steps(result.run_id)}


async def _no_wait(seconds: float) -> None:
    return None


def report_step(params: dict[str, Any] | None = None, retry: int = 1) -> str:
    return ("    - id: report\n      skill: internal-comms\n      action: status_report\n"
            "      trigger_rule: all_done\n"
            f"      params: {json.dumps(params or {})}\n"
            f"      retry: {{attempts: {retry}, initial: 0}}\n")


WORK = """\
    - id: config
      skill: nixos-deployment
      action: generate_config
      params: {packages: [vim, git]}
    - parallel:
        - id: flaky
          skill: t
          action: flaky
          params: {marker: MARKER}
          retry: {attempts: 2, initial: 0}
        - id: broken
          skill: t
          action: broken
          continue_on_error: true
"""


async def test_report_lists_every_step_and_reaches_the_webhook(tmp_path, store, registry, hook,
                                                              caplog):
    state = tmp_path / "state"
    config = {"state_dir": str(state), "skills": {SKILL: {"webhook": hook.url}}}
    steps_yaml = WORK.replace("MARKER", str(tmp_path / "marker")) + report_step(
        {"title": "Nightly | deploy"})
    with caplog.at_level(logging.INFO, logger="orchestratord.step"):
        result, steps = await run(tmp_path, store, registry, config, steps_yaml)
    report = steps["report"]
    assert report.status == "succeeded", report.error
    out = report.result
    path = state / "reports" / f"{result.run_id}.md"
    assert out["path"] == str(path)
    markdown = path.read_text()
    assert out["markdown_bytes"] == len(markdown.encode())
    assert out["steps"] == 4 and out["failed"] == ["broken"] and out["delivered"] is True

    assert markdown.startswith("# Nightly | deploy\n")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in markdown.splitlines()
            if line.startswith("| ") and not line.startswith("| Step ")}
    assert set(rows) == {"config", "flaky", "broken", "report"}  # every step of the run
    assert all(row.count(" | ") == 5 for row in rows.values())  # a pipe in a result kept out
    assert "nixos-deployment.generate_config | succeeded" in rows["config"]
    assert "changed=true" in rows["config"]
    assert "| 2 (1 failed) |" in rows["flaky"]
    assert "note=a \\| b c" in rows["flaky"] and "items=[3 items]" in rows["flaky"]
    assert "| failed |" in rows["broken"]
    assert "| running |" in rows["report"]  # the report itself, as it stands while writing
    assert "## Failures" in markdown and "### broken: failed" in markdown
    assert "disk on fire" in markdown.split("### broken: failed")[1]

    [delivered] = hook.received
    assert delivered == {"run_id": result.run_id, "workflow": "comms", "markdown": markdown}
    assert any(result.run_id in r.getMessage() and "| config |" in r.getMessage()
               for r in caplog.records), "the report is logged"


async def test_secrets_of_the_run_stay_out_of_the_report(tmp_path, store, registry, hook):
    secret = "hunter2-very-secret"
    head = f"  params:\n    password: {{default: {secret}, secret: true}}\n"
    steps_yaml = ("    - {id: login, skill: t, action: say, "
                  "params: {text: 'login with {{ params.password }}'}}\n"
                  + report_step({"webhook": hook.url}))
    result, steps = await run(tmp_path, store, registry,
                              {"state_dir": str(tmp_path / "state"), "skills": {}},
                              steps_yaml, head=head)
    assert result.status == "succeeded", steps["report"].error
    assert steps["login"].result == {"said": f"login with {secret}"}  # the step saw it
    markdown = Path(steps["report"].result["path"]).read_text()
    assert "said=login with ***" in markdown
    assert secret not in markdown and secret not in json.dumps(hook.received)


async def test_a_5xx_webhook_is_retried_and_a_4xx_is_not(tmp_path, store, registry, hook):
    state = tmp_path / "state"
    config = {"state_dir": str(state), "skills": {}}
    hook.statuses = [503]
    result, steps = await run(tmp_path, store, registry, config,
                              report_step({"webhook": hook.url}, retry=3))
    assert result.status == "succeeded"
    assert steps["report"].attempts == 2 and len(hook.received) == 2

    hook.statuses, hook.received = [404], []
    result, steps = await run(tmp_path, store, registry, config,
                              report_step({"webhook": hook.url}, retry=3))
    assert result.status == "failed"
    assert steps["report"].attempts == 1  # a 4xx will not change by asking again
    assert f"webhook {hook.url} answered HTTP 404: nope" == steps["report"].error
    assert (state / "reports" / f"{result.run_id}.md").exists()  # written before delivery


async def test_an_unreachable_webhook_is_a_retryable_failure(tmp_path, store, registry):
    # A port bound but not listening: held, so nothing else takes it; connections refused.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{held.getsockname()[1]}/hook"
        config = {"state_dir": str(tmp_path / "state"), "skills": {}}
        result, steps = await run(tmp_path, store, registry, config,
                                  report_step({"webhook": url}, retry=2))
    assert result.status == "failed"
    assert steps["report"].attempts == 2  # retryable: the policy tried again
    assert steps["report"].error.startswith(f"webhook {url} not reachable")


async def test_path_and_report_dir_settings(tmp_path, store, registry):
    state = tmp_path / "state"
    reports = tmp_path / "elsewhere"
    config = {"state_dir": str(state), "skills": {SKILL: {"report_dir": str(reports)}}}
    result, steps = await run(tmp_path, store, registry, config, report_step())
    assert steps["report"].result["path"] == str(reports / f"{result.run_id}.md")
    result, steps = await run(tmp_path, store, registry, config, report_step({"path": "r/x.md"}))
    assert steps["report"].result["path"] == str(state / "r" / "x.md")
    assert "| report |" in (state / "r" / "x.md").read_text()


async def test_without_a_run_view_the_failure_says_why(tmp_path):
    ctx = StepContext(run_id="r1", workflow="w", step_id="report", skill=SKILL,
                      action="status_report", attempt=1, idempotency_key="r1/report",
                      log=step_logger("test"), settings={"state_dir": str(tmp_path)})
    with pytest.raises(StepFailure, match="needs the run's stored state"):
        await status_report({}, ctx)


async def test_the_status_report_is_the_brief_shape_of_the_run_report(tmp_path, store, registry):
    """Regression: internal-comms rendered runs with a Markdown renderer of its own, which
    showed UTC where the run report shows the host's time with its offset, rewrote ```
    inside errors to ''' instead of fencing them, and counted a step skipped for a failed
    dependency (upstream_failed) as a failure of its own."""
    steps_yaml = ("    - {id: patch, skill: t, action: fenced}\n"
                  "    - {id: after, skill: t, action: say, params: {text: x}, "
                  "depends_on: [patch]}\n" + report_step())
    result, steps = await run(tmp_path, store, registry,
                              {"state_dir": str(tmp_path / "state"), "skills": {}}, steps_yaml)
    assert steps["after"].status == "upstream_failed"
    out = steps["report"].result
    assert out["failed"] == ["patch"]  # the cause, not its consequence
    markdown = Path(out["path"]).read_text()
    assert "### after" not in markdown and "| after | t.say | upstream_failed |" in markdown

    model = await build_report(store, result.run_id)
    assert f"- Started: {when(model['run']['started_at'])}\n" in markdown  # local time, UTC offset
    assert "UTC" not in markdown
    failure = markdown.split("### patch: failed", 1)[1]
    assert "````\n" in failure and "```\n--- a/x\n```" in failure  # verbatim, fenced longer
    assert "'''" not in markdown
