"""health-monitoring against real things: a local aiohttp server on TCP and on a unix
socket, closed ports, real file systems, and (where systemd is PID 1) real units."""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from orchestratord.core.errors import DefinitionError, StepFailure
from orchestratord.engine.context import StepContext, step_logger
from orchestratord.engine.engine import Engine
from orchestratord.engine.runners import systemctl as systemd
from orchestratord.language.loader import load_workflow
from orchestratord.skills.bundled.health_monitoring import actions as health
from orchestratord.store.sqlite import Store
from tests.conftest import write_workflow

SYSTEMD_REASON = systemd.unavailable_reason()
needs_systemd = pytest.mark.skipif(
    SYSTEMD_REASON is not None,
    reason=f"needs systemd as PID 1 ({SYSTEMD_REASON}); tests/system runs these under real systemd")


def make_app() -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def broken(request: web.Request) -> web.Response:
        return web.json_response({"error": "model not loaded"}, status=500)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"status": "late"})

    app = web.Application()
    app.router.add_get("/health", ok)
    app.router.add_get("/broken", broken)
    app.router.add_get("/slow", slow)
    return app


async def serve(site_factory: Any) -> web.AppRunner:
    runner = web.AppRunner(make_app(), shutdown_timeout=0.1)
    await runner.setup()
    await site_factory(runner).start()
    return runner


def free_port() -> int:
    """A port nothing listens on: bound, read, closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """Base URL of a real HTTP server on 127.0.0.1 with /health, /broken and /slow."""
    runner = await serve(lambda r: web.TCPSite(r, "127.0.0.1", 0))
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def unix_server() -> AsyncIterator[str]:
    """Path of a unix socket served by the same app (short: sun_path holds 108 bytes)."""
    with tempfile.TemporaryDirectory(prefix="hm-") as tmp:
        path = f"{tmp}/control.sock"
        runner = await serve(lambda r: web.UnixSite(r, path))
        yield path
        await runner.cleanup()


def context(tmp_path: Path, section: dict[str, Any] | None = None) -> StepContext:
    skills = {"health-monitoring": section} if section is not None else {}
    return StepContext(run_id="r", workflow="w", step_id="health-monitoring",
                       skill="health-monitoring", action="check", attempt=1,
                       idempotency_key="r/health-monitoring", log=step_logger("test"),
                       settings={"state_dir": str(tmp_path), "skills": skills})


def by_target(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["target"]: c for c in result["checks"]}


async def test_healthy_endpoint_and_disk(tmp_path: Path, server: str) -> None:
    result = await health.check({"endpoints": [{"url": f"{server}/health"}],
                                 "disks": [{"path": str(tmp_path), "min_free": 0.0}]},
                                context(tmp_path))
    assert result["healthy"] is True
    checks = by_target(result)
    endpoint = checks[f"{server}/health"]
    assert endpoint["kind"] == "endpoint" and endpoint["ok"] and endpoint["detail"].startswith("HTTP 200")
    assert endpoint["latency_ms"] > 0
    disk = checks[str(tmp_path)]
    assert disk["kind"] == "disk" and disk["ok"] and "free" in disk["detail"]


async def test_every_failing_check_is_named_and_retryable(tmp_path: Path, server: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}/health"
    params = {"endpoints": [{"url": f"{server}/health"},
                            {"url": f"{server}/broken"},
                            {"url": f"{server}/slow", "max_latency": "300ms"},
                            {"url": closed}],
              "disks": [{"path": str(tmp_path), "min_free": 1.0},
                        {"path": str(tmp_path / "missing")}]}
    with pytest.raises(StepFailure) as caught:
        await health.check(params, context(tmp_path))
    failure = caught.value
    assert failure.retryable, "unhealthy must be retryable so a policy can wait"
    assert str(failure).startswith("unhealthy: 5 of 6 checks failed")
    result = failure.result
    assert result["healthy"] is False
    checks = by_target(result)
    assert checks[f"{server}/health"]["ok"]
    assert checks[f"{server}/broken"]["detail"].startswith("HTTP 500, expected 200")
    assert "model not loaded" in checks[f"{server}/broken"]["detail"]
    assert checks[f"{server}/slow"]["detail"] == "no answer within max_latency 0.3 s"
    # the slow server was abandoned at the bound, not waited for (it sleeps 5 s)
    assert checks[f"{server}/slow"]["latency_ms"] < 5000
    assert checks[closed]["detail"].startswith("cannot connect")
    assert "minimum 100.0%" in checks[str(tmp_path)]["detail"]
    assert checks[str(tmp_path / "missing")]["detail"] == "no such path"
    for target in (f"{server}/broken", f"{server}/slow", closed, str(tmp_path / "missing")):
        assert target in str(failure)


async def test_expected_status_other_than_200(tmp_path: Path, server: str) -> None:
    result = await health.check({"endpoints": [{"url": f"{server}/broken", "status": 500}]},
                                context(tmp_path))
    assert result["healthy"]


async def test_unix_socket_endpoint(tmp_path: Path, unix_server: str) -> None:
    # How the orchestrator checks itself: its control socket's /health.
    result = await health.check({"endpoints": [{"url": "http://localhost/health",
                                                "unix_socket": unix_server}]}, context(tmp_path))
    assert result["checks"][0]["target"] == f"http://localhost/health via {unix_server}"
    assert result["checks"][0]["ok"]
    with pytest.raises(StepFailure) as caught:
        await health.check({"endpoints": [{"url": "http://localhost/health",
                                           "unix_socket": str(tmp_path / "nobody.sock")}]},
                           context(tmp_path))
    assert "cannot connect" in caught.value.result["checks"][0]["detail"]


async def test_checks_run_concurrently(tmp_path: Path) -> None:
    # /together answers only once all four requests are in flight at the same time; asked
    # one after another, the first would wait for the others until its max_latency.
    arrived, everyone = 0, asyncio.Event()

    async def together(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        if arrived == 4:
            everyone.set()
        await asyncio.wait_for(everyone.wait(), 10)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/together", together)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/together"
    try:
        result = await health.check({"endpoints": [{"url": url, "max_latency": 5}] * 4},
                                    context(tmp_path))
    finally:
        await runner.cleanup()
    assert result["healthy"] and arrived == 4


async def test_settings_defaults_apply_only_when_the_step_names_no_checks(
        tmp_path: Path, server: str) -> None:
    section = {"endpoints": [{"url": f"{server}/health"}],
               "disks": [{"path": str(tmp_path), "min_free": 0.0}]}
    result = await health.check({}, context(tmp_path, section))
    assert {c["kind"] for c in result["checks"]} == {"endpoint", "disk"}
    result = await health.check(None, context(tmp_path, section))
    assert len(result["checks"]) == 2
    # a step that names its checks gets exactly those
    result = await health.check({"disks": [{"path": "/"}]}, context(tmp_path, section))
    assert [c["target"] for c in result["checks"]] == ["/"]


async def test_nothing_configured_checks_the_state_dir_disk(tmp_path: Path) -> None:
    result = await health.check({}, context(tmp_path))
    assert [(c["kind"], c["target"]) for c in result["checks"]] == [("disk", str(tmp_path))]


async def test_bad_settings_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(StepFailure) as caught:
        await health.check({}, context(tmp_path, {"endpoints": [{"url": "ftp://x"}]}))
    assert not caught.value.retryable
    assert "settings skills.health-monitoring: endpoints.0.url" in str(caught.value)


@pytest.mark.skipif(SYSTEMD_REASON is None, reason="systemd runs here; this checks the fallback")
async def test_unit_check_without_systemd_says_why(tmp_path: Path) -> None:
    with pytest.raises(StepFailure) as caught:
        await health.check({"units": ["sshd.service"]}, context(tmp_path))
    check = caught.value.result["checks"][0]
    assert check["kind"] == "unit" and not check["ok"]
    assert check["detail"] == SYSTEMD_REASON


@needs_systemd
async def test_unit_checks_under_systemd(tmp_path: Path) -> None:
    result = await health.check({"units": ["-.mount"]}, context(tmp_path))
    assert result["checks"][0]["detail"].startswith("active")
    with pytest.raises(StepFailure) as caught:
        await health.check({"units": ["no-such-unit-agent-orchestrator.service"]}, context(tmp_path))
    assert caught.value.result["checks"][0]["detail"] == "not found"


# -- the engine: a retry policy waits for a server that comes up later ------------------

async def test_retry_policy_waits_for_a_server_that_starts_later(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/health"
    definition = load_workflow(write_workflow(tmp_path, f"""
        workflow:
          name: wait-for-model
          steps:
            - skill: health-monitoring
              action: check
              params: {{endpoints: [{{url: "{url}"}}]}}
              retry: {{attempts: 3, backoff: fixed, initial: 1s}}
    """))
    retry_due, server_up = asyncio.Event(), asyncio.Event()

    async def backoff(delay: float) -> None:
        # The engine's retry back-off: hold the retry until the test has started the server.
        retry_due.set()
        await server_up.wait()

    store = await Store.open(tmp_path / "state.db")
    engine = Engine(store, settings={"state_dir": str(tmp_path), "skills": {}}, sleep=backoff)
    runner = None
    try:
        run = asyncio.create_task(engine.run(definition))
        await asyncio.wait_for(retry_due.wait(), 30)
        (run_row,) = await store.list_runs(workflow="wait-for-model")
        attempts = await store.attempts(run_row.id)
        assert [(a.attempt, a.status) for a in attempts] == [(1, "failed")]
        assert "cannot connect" in attempts[0].error and url in attempts[0].error
        events = [e.type for e in await store.events(run_row.id)]
        assert "step_retry" in events

        runner = await serve(lambda r: web.TCPSite(r, "127.0.0.1", port))
        server_up.set()
        result = await asyncio.wait_for(run, 30)
    finally:
        if runner is not None:
            await runner.cleanup()
        await engine.close()
        await store.close()
    assert result.status == "succeeded", result
    (step,) = await _steps(tmp_path, result.run_id)
    assert step.attempts == 2 and step.result["healthy"] is True


async def _steps(tmp_path: Path, run_id: str) -> list[Any]:
    store = await Store.open(tmp_path / "state.db")
    try:
        return await store.steps(run_id)
    finally:
        await store.close()


def test_check_params_schema_rejects_bad_input(tmp_path: Path) -> None:
    """A typo in a step's check params is a load-time problem naming file, line and field."""
    path = write_workflow(tmp_path, """
        workflow:
          name: typo
          steps:
            - skill: health-monitoring
              action: check
              params: {endpoints: [{url: "http://x/", max_latency: "fast"}]}
    """)
    with pytest.raises(DefinitionError) as caught:
        load_workflow(path)
    assert f"{path}:6:" in str(caught.value)
    assert "steps[0].params.endpoints[0].max_latency" in str(caught.value)
