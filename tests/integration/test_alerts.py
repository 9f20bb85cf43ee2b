"""Failure alerts against a real local HTTP server, real commands and a real state file."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from orchestratord.daemon.service import Daemon
from orchestratord.engine.engine import Engine
from orchestratord.language.loader import load_workflow
from orchestratord.language.settings import Alerts, Settings
from orchestratord.observability.alerts import ALERT_MESSAGE_ID, AlertManager
from orchestratord.observability.journal import priority
from orchestratord.skills import discover
from orchestratord.store.sqlite import Store
from tests.conftest import write_skill, write_workflow

SECRET = "hunter2-api-token"

FAILING = """
    workflow:
      name: deploy
      params:
        api_token: {default: %s}
      steps:
        - {id: prepare, skill: t, action: noop}
        - id: push
          skill: t
          action: fail
          params: {message: "login refused for {{ params.api_token }}"}
""" % SECRET  # noqa: UP031 - an f-string would have to double every brace of the YAML


class Webhook:
    """A real HTTP server on 127.0.0.1 that answers with the given statuses in turn."""

    def __init__(self, statuses: list[int], order: list[str]):
        self.statuses, self.order = list(statuses), order
        self.bodies: list[dict[str, Any]] = []
        self.delivered: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        status = self.statuses.pop(0) if self.statuses else 200
        self.order.append(f"webhook {status}")
        if status == 200:
            self.delivered.put_nowait(body)
        return web.json_response({}, status=status)

    async def start(self) -> Webhook:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def next(self, timeout: float = 20) -> dict[str, Any]:
        return await asyncio.wait_for(self.delivered.get(), timeout)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def webhook():
    servers: list[Webhook] = []

    async def make(statuses: list[int] = (), order: list[str] | None = None) -> Webhook:
        server = await Webhook(list(statuses), order if order is not None else []).start()
        servers.append(server)
        return server
    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
def registry(skill_root):
    write_skill(skill_root, "t", {
        "noop": {"python": "tests.integration.actions:noop", "rollback": {"action": "fail"}},
        "fail": {"python": "tests.integration.actions:fail"},
        "track": {"python": "tests.integration.actions:track"},
    })
    return discover([skill_root])


def load(tmp_path: Path, registry: Any, text: str, name: str = "wf.yaml") -> Any:
    return load_workflow(write_workflow(tmp_path, text, name), registry=registry)


def alert_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if (getattr(r, "fields", None) or {}).get("MESSAGE_ID") == ALERT_MESSAGE_ID]


async def run_with(store: Store, manager: AlertManager, definition: Any) -> Any:
    engine = Engine(store)
    engine.listeners.append(manager)
    try:
        return await asyncio.wait_for(engine.run(definition), 30)
    finally:
        await engine.close()


async def test_webhook_receives_the_failed_run(tmp_path, store, registry, webhook):
    server = await webhook()
    manager = AlertManager(store, Alerts(webhooks=[{"url": server.url,
                                                     "headers": {"X-Team": "ops"}}]))
    result = await run_with(store, manager, load(tmp_path, registry, FAILING))
    assert result.status == "failed"
    body = await server.next()
    await manager.close()
    assert body["kind"] == "run_failed"
    assert body["run_id"] == result.run_id and body["workflow"] == "deploy"
    assert body["status"] == "failed"
    assert body["failed_steps"] == [{"id": "push", "status": "failed",
                                     "error": "login refused for ***"}]
    assert body["report"] == f"orchestratorctl report {result.run_id}"
    assert body["summary"].startswith(f"run {result.run_id} of workflow deploy failed")
    assert "push failed: login refused for ***" in body["summary"]
    assert SECRET not in json.dumps(server.bodies)


async def test_a_failing_webhook_is_retried_without_holding_up_the_run(
        tmp_path, store, registry, webhook, caplog):
    caplog.set_level(logging.INFO, logger="orchestratord.alerts")
    order: list[str] = []
    server = await webhook([500, 500, 200], order)
    run_returned = asyncio.Event()

    async def backoff(delay: float) -> None:
        # Retries wait for the run to have returned: were the run waiting on its alert,
        # neither could go on and the run would time out below.
        await run_returned.wait()

    manager = AlertManager(store, Alerts(webhooks=[{"url": server.url}]), sleep=backoff)
    result = await run_with(store, manager, load(tmp_path, registry, FAILING))
    order.append("run returned")
    run_returned.set()
    assert result.status == "failed"
    body = await server.next()
    assert await manager.drain(20)
    await manager.close()
    assert body["run_id"] == result.run_id
    assert len(server.bodies) == 3 and server.bodies[0] == server.bodies[2]
    assert order.index("run returned") < order.index("webhook 200"), order
    retries = [r.getMessage() for r in caplog.records
               if r.name == "orchestratord.alerts" and r.levelno == logging.WARNING]
    assert len(retries) == 2 and all("HTTP 500" in m for m in retries), retries
    assert any("delivered" in r.getMessage() for r in caplog.records
               if r.name == "orchestratord.alerts")


async def test_command_sink_gets_the_alert_as_json_on_stdin(tmp_path, store, registry):
    received = tmp_path / "alert.json"
    script = tmp_path / "on-alert.py"
    script.write_text(textwrap.dedent("""
        import sys
        data = sys.stdin.read()
        with open(sys.argv[1], "w") as f:
            f.write(data)
    """))
    manager = AlertManager(store, Alerts(commands=[[sys.executable, str(script), str(received)]]))
    result = await run_with(store, manager, load(tmp_path, registry, FAILING))
    assert await manager.drain(20)
    await manager.close()
    alert = json.loads(received.read_text())
    assert alert["kind"] == "run_failed" and alert["run_id"] == result.run_id
    assert alert["failed_steps"][0]["id"] == "push"
    assert SECRET not in received.read_text()


async def test_a_failing_command_sink_is_logged(tmp_path, store, registry, caplog):
    manager = AlertManager(store, Alerts(commands=[[sys.executable, "-c",
                                                    "import sys; sys.exit('no pager today')"]]))
    await run_with(store, manager, load(tmp_path, registry, FAILING))
    assert await manager.drain(20)
    await manager.close()
    assert any("exited with status 1: no pager today" in r.getMessage() for r in caplog.records)


async def test_one_alert_per_run_even_across_restarts(tmp_path, store, registry, webhook):
    server = await webhook()
    alerts = Alerts(webhooks=[{"url": server.url}])
    manager = AlertManager(store, alerts)
    engine = Engine(store)
    engine.listeners.append(manager)
    definition = load(tmp_path, registry, FAILING)
    result = await engine.run(definition)
    await server.next()
    # The same notification again, and a restarted manager on the same database.
    manager({"type": "run_failed", "run_id": result.run_id, "workflow": "deploy",
             "status": "failed"})
    assert await manager.drain(20)
    restarted = AlertManager(store, alerts)
    assert await restarted.alert_run(result.run_id, "run_failed") is None
    # A new failed run is a new alert.
    second = await engine.run(definition)
    assert (await server.next())["run_id"] == second.run_id
    assert await manager.drain(20)
    await engine.close()
    await manager.close()
    await restarted.close()
    assert [b["run_id"] for b in server.bodies] == [result.run_id, second.run_id]


@pytest.mark.parametrize("kind", ["run_timed_out", "rollback_failed"])
async def test_timeouts_and_failed_rollbacks_alert_with_their_kind(
        tmp_path, store, registry, caplog, kind):
    text = {
        "run_timed_out": """
            workflow:
              name: slow
              timeout: 0.2
              steps:
                - {id: wait, skill: t, action: track, params: {hold: 30}}
        """,
        "rollback_failed": """
            workflow:
              name: undo
              on_failure: rollback
              steps:
                - {id: prepare, skill: t, action: noop}
                - {id: push, skill: t, action: fail}
        """,
    }[kind]
    manager = AlertManager(store)
    result = await run_with(store, manager, load(tmp_path, registry, text))
    assert await manager.drain(20)
    await manager.close()
    assert result.status == {"run_timed_out": "timed_out", "rollback_failed": "rollback_failed"}[kind]
    [record] = alert_records(caplog)
    assert record.fields["ALERT_KIND"] == kind and record.fields["RUN_ID"] == result.run_id
    if kind == "rollback_failed":
        assert "prepare compensation failed: told to fail" in record.getMessage()


async def test_the_journal_record_is_crit_with_a_fixed_message_id(tmp_path, store, registry,
                                                                   caplog):
    manager = AlertManager(store)  # no sinks configured: the journal record all the same
    result = await run_with(store, manager, load(tmp_path, registry, FAILING))
    assert await manager.drain(20)
    await manager.close()
    [record] = alert_records(caplog)
    assert record.levelno == logging.CRITICAL and priority(record.levelno) == 2  # crit
    assert record.fields["RUN_ID"] == result.run_id and record.fields["WORKFLOW"] == "deploy"
    assert record.fields["ALERT_KIND"] == "run_failed"
    assert f"run {result.run_id} of workflow deploy failed" in record.getMessage()
    assert SECRET not in record.getMessage()


async def test_a_failure_a_crash_left_unalerted_is_alerted_once_at_start(
        tmp_path, store, registry, caplog):
    # The runs end while no manager listens, as when the process died before alerting.
    engine = Engine(store)
    failed = await engine.run(load(tmp_path, registry, FAILING))
    await engine.close()
    assert failed.status == "failed" and alert_records(caplog) == []

    two_days_later = AlertManager(store, clock=lambda: time.time() + 2 * 86400)
    assert await two_days_later.catch_up() == []  # older than the window: history, not news

    manager = AlertManager(store)
    [alert] = await manager.catch_up()
    assert (alert["run_id"], alert["kind"]) == (failed.run_id, "run_failed")
    assert SECRET not in json.dumps(alert)
    assert await manager.catch_up() == []  # claimed: once
    await manager.close()
    [record] = alert_records(caplog)
    assert record.fields["RUN_ID"] == failed.run_id


async def test_a_workflow_without_recent_success_alerts_once_per_stretch(
        tmp_path, store, registry, webhook, caplog):
    server = await webhook()
    nightly = load(tmp_path, registry, """
        workflow:
          name: nightly
          steps:
            - {skill: t, action: track, params: {hold: 0}}
    """, "nightly.yaml")
    engine = Engine(store)
    first = await engine.run(nightly)
    finished = (await store.get_run(first.run_id)).finished_at
    manager = AlertManager(store, Alerts(webhooks=[{"url": server.url}],
                                         stale_after={"nightly": "30m", "weekly": "1h"}),
                           clock=lambda: finished)
    assert await manager.check_stale(now=finished + 60) == []  # fresh enough

    [alert] = await manager.check_stale(now=finished + 3600)
    assert alert["kind"] == "workflow_stale" and alert["workflow"] == "nightly"
    assert alert["run_id"] == first.run_id
    assert "has not succeeded for 1h00m (alert after 30m00s)" in alert["summary"]
    assert (await server.next())["kind"] == "workflow_stale"
    # Later: nightly was alerted for this stretch already; weekly never ran, and its
    # age counts from when the manager started.
    [never] = await manager.check_stale(now=finished + 7200)
    assert never["workflow"] == "weekly" and never["run_id"] is None
    assert "it never succeeded" in never["summary"]
    assert await manager.check_stale(now=finished + 9000) == []

    # A new success starts a new stretch, which alerts again once it is old.
    second = await engine.run(nightly)
    later = (await store.get_run(second.run_id)).finished_at
    [again] = await manager.check_stale(now=later + 3600)
    assert again["run_id"] == second.run_id
    assert await manager.drain(20)
    await engine.close()
    await manager.close()
    kinds = [(b["kind"], b["workflow"]) for b in server.bodies]
    assert kinds.count(("workflow_stale", "nightly")) == 2
    assert kinds.count(("workflow_stale", "weekly")) == 1


async def test_the_daemon_sends_alerts(tmp_path, registry, skill_root, webhook):
    server = await webhook()
    (tmp_path / "workflows").mkdir()
    write_workflow(tmp_path / "workflows", FAILING, "deploy.yaml")
    settings = Settings(state_dir=tmp_path / "state", workflows_dir=tmp_path / "workflows",
                        skill_paths=[skill_root], socket=tmp_path / "run" / "control.sock",
                        alerts={"webhooks": [{"url": server.url}]})
    daemon = Daemon(settings, handle_signals=False)
    await daemon.start()
    try:
        run_id = await daemon.start_run("deploy", {})
        body = await server.next()
        assert body["run_id"] == run_id and body["kind"] == "run_failed"
    finally:
        await daemon.close()


def test_an_embedded_run_alerts_by_the_daemon_settings(tmp_path, registry, skill_root):
    received = tmp_path / "alert.json"
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"alerts": {"commands": [[
        sys.executable, "-c", f"import sys; open({str(received)!r}, 'w').write(sys.stdin.read())"]]}}))
    workflow = write_workflow(tmp_path, FAILING, "deploy.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "orchestratord.cli", "--state", str(tmp_path / "state.db"),
         "--skills", str(skill_root), "run", str(workflow)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "ORCHESTRATOR_SETTINGS": str(settings),
             "ORCHESTRATOR_SOCKET": str(tmp_path / "no-daemon.sock")})
    assert result.returncode == 1, result.stderr
    assert "CRITICAL orchestratord.alerts: alert run_failed" in result.stderr
    assert json.loads(received.read_text())["kind"] == "run_failed"
    assert SECRET not in result.stderr + received.read_text()
