"""The three runners against real child processes and a real local HTTP server."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket

import aiohttp
import pytest
from aiohttp import web

from orchestratord.core.errors import StepFailure
from orchestratord.engine.context import StepContext, step_logger
from orchestratord.engine.runners.command import run_command
from orchestratord.engine.runners.http import run_http
from orchestratord.engine.runners.python import run_python
from orchestratord.language.targets import resolve
from tests.conftest import py_command
from tests.waiting import died, file_words, process_state, until_async


def ctx(attempt: int = 1) -> StepContext:
    fields = {"WORKFLOW": "w", "RUN_ID": "r1", "STEP_ID": "s1", "SKILL": "k", "ACTION": "a"}
    return StepContext(run_id="r1", workflow="w", step_id="s1", skill="k", action="a",
                       attempt=attempt, idempotency_key="r1/s1",
                       log=step_logger("orchestratord.step", **fields, ATTEMPT=attempt))


# -- command ---------------------------------------------------------------------------

async def test_params_in_result_out_and_environment():
    argv = py_command("""
        import json, os, sys
        p = json.load(sys.stdin)
        print(json.dumps({"got": p, "key": os.environ["ORCHESTRATOR_IDEMPOTENCY_KEY"],
                          "attempt": os.environ["ORCHESTRATOR_ATTEMPT"], "extra": os.environ["EXTRA"]}))
    """)
    result = await run_command(argv, {"a": [1, 2]}, ctx(attempt=3), env={"EXTRA": "x"})
    assert result == {"got": {"a": [1, 2]}, "key": "r1/s1", "attempt": "3", "extra": "x"}


async def test_the_command_is_fed_while_its_process_is_being_recorded(tmp_path):
    # Recording the process group (a commit) and serving the command's pipes overlap:
    # here the record waits until the command has read its params and written a file,
    # which it could not do if its stdin were fed only after the record.
    fed = tmp_path / "fed"
    argv = py_command(f"""
        import json, sys
        p = json.load(sys.stdin)
        open({str(fed)!r}, "w").write("yes")
        print(json.dumps(p))
    """)
    recorded = []

    async def on_spawn(pid: int) -> None:
        await until_async("the command to be fed while being recorded", fed.exists, 20)
        recorded.append(pid)

    context = dataclasses.replace(ctx(), on_spawn=on_spawn)
    assert await run_command(argv, {"a": 1}, context) == {"a": 1}
    assert len(recorded) == 1


@pytest.mark.parametrize("out,expected", [("", None), ("plain words\n", {"stdout": "plain words"})])
async def test_empty_and_non_json_stdout(out, expected):
    assert await run_command(py_command(f"print({out!r}, end='')"), {}, ctx()) == expected


async def test_exit_75_is_retryable_and_others_are_not():
    with pytest.raises(StepFailure) as retry:
        await run_command(py_command("import sys; print('db busy', file=sys.stderr); sys.exit(75)"), {}, ctx())
    assert retry.value.retryable and retry.value.exit_code == 75
    assert str(retry.value).endswith("exited with status 75: db busy")
    with pytest.raises(StepFailure) as fail:
        await run_command(py_command("import sys; sys.exit(3)"), {}, ctx())
    assert not fail.value.retryable and fail.value.exit_code == 3
    assert fail.value.result is None


async def test_a_failing_command_can_still_give_its_result():
    with pytest.raises(StepFailure) as fail:
        await run_command(py_command("import json, sys; print(json.dumps({'failed': 2})); "
                                     "sys.exit(1)"), {}, ctx())
    assert fail.value.result == {"failed": 2}


async def test_killed_by_signal_is_named():
    with pytest.raises(StepFailure, match="was killed by SIGKILL"):
        await run_command(py_command("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"), {}, ctx())


async def test_missing_executable():
    with pytest.raises(StepFailure, match="cannot execute '/nonexistent/tool': No such file or directory"):
        await run_command(["/nonexistent/tool"], {}, ctx())


async def test_stderr_lines_logged_with_step_fields(caplog):
    caplog.set_level(logging.INFO, logger="orchestratord.step")
    await run_command(py_command("import sys; print('one', file=sys.stderr); print('two', file=sys.stderr)"),
                      {}, ctx())
    records = [r for r in caplog.records if r.name == "orchestratord.step"]
    assert [r.getMessage() for r in records] == ["one", "two"]
    assert records[0].fields["RUN_ID"] == "r1" and records[0].fields["STEP_ID"] == "s1"
    assert records[0].fields["ATTEMPT"] == 1


async def test_large_output_on_both_pipes_does_not_deadlock():
    argv = py_command("""
        import json, sys
        sys.stderr.write(("e" * 1023 + "\\n") * 1024)
        print(json.dumps({"blob": "o" * (1 << 20)}))
    """)
    result = await asyncio.wait_for(run_command(argv, {"x": "y" * (1 << 20)}, ctx()), 30)
    assert len(result["blob"]) == 1 << 20


async def test_output_limit():
    with pytest.raises(StepFailure, match="more than 1000 bytes"):
        await run_command(py_command("print('x' * 5000)"), {}, ctx(), max_output=1000)


async def test_cancel_kills_a_group_that_ignores_sigterm(tmp_path):
    pids = tmp_path / "pids"
    argv = py_command(f"""
        import os, signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
        open({str(pids)!r}, "w").write(f"{{os.getpid()}} {{child.pid}}")
        time.sleep(600)
    """)
    task = asyncio.create_task(run_command(argv, {}, ctx(), kill_grace=0.3))
    await until_async("the command to write its pids", file_words(pids, 2))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    leader, grandchild = map(int, pids.read_text().split())
    assert process_state(leader) is None, "the leader is reaped, no zombie"
    await died(grandchild, "the grandchild, which ignores SIGTERM")


async def test_a_grandchild_holding_stdout_does_not_hang_the_runner(tmp_path):
    pid_file = tmp_path / "pid"
    argv = py_command(f"""
        import subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        print('{{"done": true}}')
    """)
    assert await asyncio.wait_for(run_command(argv, {}, ctx()), 20) == {"done": True}
    await died(int(pid_file.read_text()), "the rest of the group, holding stdout")


# -- http ------------------------------------------------------------------------------

@pytest.fixture
async def server():
    seen = []

    async def handle(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "key": request.headers.get("Idempotency-Key"),
                     "query": dict(request.query),
                     "body": await request.json() if request.can_read_body else None})
        status = int(request.path.strip("/") or 200)
        if status == 204:
            return web.Response(status=204)
        return web.json_response({"echo": seen[-1]["body"]}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    async with aiohttp.ClientSession() as session:
        yield f"http://127.0.0.1:{port}", seen, session
    await runner.cleanup()


async def test_http_json_round_trip_with_idempotency_key(server):
    base, seen, session = server
    assert await run_http(f"{base}/200", {"a": 1}, ctx(), session=session) == {"echo": {"a": 1}}
    assert seen[-1]["key"] == "r1/s1"
    assert await run_http(f"{base}/204", {}, ctx(), session=session) is None
    await run_http(f"{base}/200", {"q": "x", "nested": {"no": 1}}, ctx(), session=session, method="GET")
    assert seen[-1]["query"] == {"q": "x"}


@pytest.mark.parametrize("status,retryable", [(500, True), (503, True), (429, True),
                                              (404, False), (400, False)])
async def test_http_status_classes(server, status, retryable):
    base, _, session = server
    with pytest.raises(StepFailure) as info:
        await run_http(f"{base}/{status}", {}, ctx(), session=session)
    assert info.value.retryable is retryable
    assert f"POST {base}/{status} answered {status}" in str(info.value)


async def test_http_connection_refused_is_retryable():
    # A port bound here but never listened on refuses connections for as long as it is
    # held; a port picked as free and let go could be taken by someone else meanwhile.
    with socket.socket() as unlistened:
        unlistened.bind(("127.0.0.1", 0))
        port = unlistened.getsockname()[1]
        async with aiohttp.ClientSession() as session:
            with pytest.raises(StepFailure) as info:
                await run_http(f"http://127.0.0.1:{port}/", {}, ctx(), session=session)
    assert info.value.retryable and "failed: ClientConnectorError" in str(info.value)


# -- python ----------------------------------------------------------------------------

def sync_action(params, context):
    return {"sum": sum(params["n"]), "step": context.step_id}


async def async_action(params, context):
    await asyncio.sleep(0)
    return [context.attempt]


def raises_failure(params, context):
    raise StepFailure("not yet", retryable=True)


def raises_other(params, context):
    raise KeyError("missing")


def returns_object(params, context):
    return object()


async def test_python_sync_and_async():
    assert await run_python(f"{__name__}:sync_action", {"n": [1, 2]}, ctx()) == {"sum": 3, "step": "s1"}
    assert await run_python(f"{__name__}:async_action", {}, ctx(attempt=2)) == [2]


async def test_python_failures():
    with pytest.raises(StepFailure) as passthrough:
        await run_python(f"{__name__}:raises_failure", {}, ctx())
    assert passthrough.value.retryable
    with pytest.raises(StepFailure, match="KeyError: 'missing'") as wrapped:
        await run_python(f"{__name__}:raises_other", {}, ctx())
    assert not wrapped.value.retryable
    with pytest.raises(StepFailure, match="the result is not JSON"):
        await run_python(f"{__name__}:returns_object", {}, ctx())


@pytest.mark.parametrize("target,message", [
    ("no_colon", "expected 'module:function', got 'no_colon'"),
    ("no.such.module:f", "cannot import module 'no.such.module'"),
    ("os:no_such_function", "module 'os' has no callable 'no_such_function'"),
])
def test_resolve_errors(target, message):
    with pytest.raises(ValueError, match=message):
        resolve(target)
