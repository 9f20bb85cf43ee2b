"""Prometheus metrics of real runs: the engine's events counted, exposed, and accepted
by promtool; served by the daemon on its control socket and on a TCP port."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestratord import __version__
from orchestratord.engine.engine import Engine
from orchestratord.language.loader import load_workflow
from orchestratord.observability.metrics import CONTENT_TYPE, Metrics
from orchestratord.skills import discover
from orchestratord.store import stats
from orchestratord.store.sqlite import Store
from tests.conftest import ECHO, py_command, require_tool, write_skill, write_workflow
from tests.integration.daemon_process import Daemon, workflow

FLAKY = py_command("""
    import json, sys
    p = json.load(sys.stdin)
    with open(p["ledger"], "a") as f:
        f.write("x\\n")
    if sum(1 for _ in open(p["ledger"])) <= p["fail_times"]:
        sys.exit(75)  # retryable
    print(json.dumps({"ok": True}))
""")
BROKEN = py_command("""
    import sys
    sys.exit("broken on purpose")
""")
GATE = py_command("""
    import json, os, sys, time
    p = json.load(sys.stdin)
    deadline = time.monotonic() + 30
    while not os.path.exists(p["gate"]):
        if time.monotonic() > deadline:
            sys.exit("the gate never opened")
        time.sleep(0.01)
    print("{}")
""")


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value, from the text exposition format."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))




@pytest.fixture
def skills(skill_root):
    write_skill(skill_root, "t", {
        "echo": {"command": ECHO},
        "flaky": {"command": FLAKY},
        "broken": {"command": BROKEN},
        "gate": {"command": GATE},
        "make": {"command": ECHO, "rollback": {"action": "unmake"}},
        "unmake": {"command": ECHO},
    })
    return discover([skill_root])


@pytest.fixture
async def engine(tmp_path):
    store = await Store.open(tmp_path / "state.db")
    engine = Engine(store, sleep=lambda _: asyncio.sleep(0))  # back-off need not be waited
    metrics = Metrics()
    engine.listeners.append(metrics)
    yield engine, metrics
    await engine.close()
    await store.close()


def load(tmp_path: Path, registry, text: str, name: str):
    return load_workflow(write_workflow(tmp_path, text, f"{name}.yaml"), registry=registry)


async def run_ok_flaky_and_saga(tmp_path: Path, skills, engine: Engine) -> None:
    """Three runs: two steps that succeed, a step retried twice, a saga rolled back."""
    ok = load(tmp_path, skills, """
        workflow:
          name: ok
          steps:
            - {id: a, skill: t, action: echo}
            - {id: b, skill: t, action: echo}
    """, "ok")
    flaky = load(tmp_path, skills, f"""
        workflow:
          name: flaky
          steps:
            - id: f
              skill: t
              action: flaky
              params: {{ledger: {tmp_path / "ledger"}, fail_times: 2}}
              retry: {{attempts: 3, initial: 0s}}
    """, "flaky")
    saga = load(tmp_path, skills, """
        workflow:
          name: saga
          on_failure: rollback
          steps:
            - {id: made, skill: t, action: make}
            - {id: boom, skill: t, action: broken}
            - {id: never, skill: t, action: echo}
    """, "saga")
    assert (await engine.run(ok)).status == "succeeded"
    assert (await engine.run(flaky)).status == "succeeded"
    assert (await engine.run(saga)).status == "rolled_back"


async def test_success_retry_and_rollback_are_counted(tmp_path, skills, engine):
    engine, metrics = engine
    before = time.time()
    await run_ok_flaky_and_saga(tmp_path, skills, engine)
    after = time.time()

    text = metrics.exposition().decode()
    got = samples(text)
    assert value(got, "orchestrator_build_info", version=__version__) == 1
    for wf in ("ok", "flaky", "saga"):
        assert value(got, "orchestrator_runs_started_total", workflow=wf) == 1
        assert value(got, "orchestrator_runs_in_progress", workflow=wf) == 0
        assert value(got, "orchestrator_run_duration_seconds_count", workflow=wf) == 1
    assert value(got, "orchestrator_runs_finished_total", workflow="ok", outcome="succeeded") == 1
    assert value(got, "orchestrator_runs_finished_total", workflow="flaky", outcome="succeeded") == 1
    assert value(got, "orchestrator_runs_finished_total", workflow="saga", outcome="rolled_back") == 1
    assert value(got, "orchestrator_runs_finished_total", workflow="saga", outcome="failed") is None
    assert value(got, "orchestrator_rollbacks_total", workflow="saga", outcome="succeeded") == 1

    # retried twice, then succeeded: three attempts, two retries, one duration
    assert value(got, "orchestrator_step_attempts_total", skill="t", action="flaky") == 3
    assert value(got, "orchestrator_step_retries_total", skill="t", action="flaky") == 2
    assert value(got, "orchestrator_step_duration_seconds_count", skill="t", action="flaky") == 1
    assert value(got, "orchestrator_steps_finished_total", workflow="flaky", skill="t",
                 action="flaky", outcome="succeeded") == 1

    # echo ran in ok (a, b); in saga `never` did not run: counted as upstream_failed,
    # without an attempt or a duration
    assert value(got, "orchestrator_step_attempts_total", skill="t", action="echo") == 2
    assert value(got, "orchestrator_step_duration_seconds_count", skill="t", action="echo") == 2
    assert value(got, "orchestrator_steps_finished_total", workflow="saga", skill="t",
                 action="echo", outcome="upstream_failed") == 1
    assert value(got, "orchestrator_steps_finished_total", workflow="saga", skill="t",
                 action="broken", outcome="failed") == 1
    assert value(got, "orchestrator_step_retries_total", skill="t", action="broken") is None
    assert value(got, "orchestrator_steps_in_progress") == 0

    assert before <= value(got, "orchestrator_last_success_timestamp_seconds", workflow="ok") <= after
    assert value(got, "orchestrator_last_success_timestamp_seconds", workflow="saga") is None


async def test_promtool_accepts_the_exposition(tmp_path, skills, engine):
    """`promtool check metrics` accepts, without a remark, what the engine's runs leave and
    what a restarted daemon serves (the last successes read back from the database)."""
    promtool = require_tool("promtool", "Debian: apt-get install prometheus")
    engine, metrics = engine
    await run_ok_flaky_and_saga(tmp_path, skills, engine)
    restarted = Metrics()
    restarted.load_last_success(stats.last_successes(engine.store.path))
    for exposition in (metrics.exposition(), restarted.exposition()):
        checked = subprocess.run([promtool, "check", "metrics"], input=exposition.decode(),
                                 capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0 and not checked.stdout.strip(), \
            checked.stdout + checked.stderr


async def test_gauges_show_what_runs_now(tmp_path, skills, engine):
    engine, metrics = engine
    gate = tmp_path / "gate"
    held = load(tmp_path, skills, f"""
        workflow:
          name: held
          steps:
            - {{id: wait, skill: t, action: gate, params: {{gate: {gate}}}}}
            - {{id: after, skill: t, action: echo}}
    """, "held")
    task = asyncio.create_task(engine.run(held))
    deadline = time.monotonic() + 20
    while True:
        got = samples(metrics.exposition().decode())
        if value(got, "orchestrator_steps_in_progress") == 1:
            break
        assert time.monotonic() < deadline, "the step never showed as in progress"
        assert not task.done(), task
        await asyncio.sleep(0.02)
    assert value(got, "orchestrator_runs_in_progress", workflow="held") == 1
    assert value(got, "orchestrator_runs_finished_total", workflow="held", outcome="succeeded") is None
    gate.touch()
    assert (await asyncio.wait_for(task, 30)).status == "succeeded"
    got = samples(metrics.exposition().decode())
    assert value(got, "orchestrator_runs_in_progress", workflow="held") == 0
    assert value(got, "orchestrator_steps_in_progress") == 0
    assert value(got, "orchestrator_runs_finished_total", workflow="held", outcome="succeeded") == 1


# -- the daemon -------------------------------------------------------------------------

@pytest.fixture
def metrics_env(env):
    """The daemon environment (conftest's env) with a workflow and a TCP metrics port."""
    (env / "workflows" / "hello.yaml").write_text(workflow("hello", env / "ledger", 2))
    settings = json.loads((env / "settings.json").read_text())
    (env / "settings.json").write_text(json.dumps({**settings, "metrics_listen": "127.0.0.1:0"}))
    return env


@pytest.fixture
def start_daemon(metrics_env, daemon):
    def start() -> Daemon:
        d = daemon()
        d.notify.wait_for("READY=1")
        return d
    return start


async def get_unix(socket: Path, path: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket))) as s:
        async with s.get(f"http://orchestratord{path}") as response:
            return response.status, response.headers["Content-Type"], await response.text()


def get_tcp(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def test_daemon_serves_metrics_on_its_socket_and_tcp_and_keeps_last_success(
        metrics_env, start_daemon):
    socket = metrics_env / "run" / "control.sock"
    d = start_daemon()
    result = d.ctl("run", "hello", "--wait")
    assert result.returncode == 0, result.stderr
    [run] = json.loads(d.ctl("runs", "--json").stdout)

    status, kind, text = await get_unix(socket, "/metrics")
    assert (status, kind) == (200, CONTENT_TYPE)
    got = samples(text)
    assert value(got, "orchestrator_runs_finished_total", workflow="hello", outcome="succeeded") == 1
    assert value(got, "orchestrator_steps_finished_total", workflow="hello", skill="local",
                 action="work", outcome="succeeded") == 2

    _, _, health = await get_unix(socket, "/health")
    address = json.loads(health)["metrics_listen"]
    assert address.startswith("127.0.0.1:") and not address.endswith(":0")
    status, kind, tcp_text = get_tcp(f"http://{address}/metrics")
    assert (status, kind) == (200, CONTENT_TYPE)
    assert value(samples(tcp_text), "orchestrator_runs_started_total", workflow="hello") == 1
    # only /metrics is on TCP: the control API stays behind the socket's permissions
    for path in ("/health", "/runs", "/stats"):
        assert get_tcp(f"http://{address}{path}")[0] == 404, path

    # a restart starts the counters afresh but remembers when hello last succeeded
    assert d.stop() == 0
    d2 = start_daemon()
    _, _, text = await get_unix(socket, "/metrics")
    got = samples(text)
    assert value(got, "orchestrator_last_success_timestamp_seconds",
                 workflow="hello") == pytest.approx(run["finished_at"])
    assert value(got, "orchestrator_runs_started_total", workflow="hello") is None
    assert d2.stop() == 0


def test_a_taken_metrics_port_stops_the_daemon_with_a_clear_error(metrics_env):
    import socket as sockets
    with sockets.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = json.loads((metrics_env / "settings.json").read_text())
        (metrics_env / "settings.json").write_text(json.dumps(
            {**settings, "metrics_listen": f"127.0.0.1:{port}"}))
        d = Daemon(metrics_env)
        try:
            assert d.proc.wait(timeout=30) != 0
        finally:
            if d.proc.poll() is None:
                d.proc.kill()
    log = (metrics_env / "daemon.log").read_text()
    assert f"metrics_listen 127.0.0.1:{port}: cannot listen" in log, log
