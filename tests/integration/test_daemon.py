"""orchestratord as a real process: sd_notify datagrams, the control socket, signals."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from orchestratord.cli.client import request
from orchestratord.core.errors import RunStateError
from tests.waiting import file_words, until

from .daemon_process import workflow
from .embedded import ctl, db, lines


def test_ready_only_when_serving_and_run_through_the_socket(env, daemon):
    (env / "workflows" / "hello.yaml").write_text(workflow("hello", env / "ledger"))
    d = daemon()
    d.notify.wait_for("READY=1")
    # READY=1 promised: the socket answers and the database exists
    assert (env / "state" / "state.db").exists()
    status = d.ctl("workflows")
    assert status.returncode == 0 and status.stdout.startswith("hello\t3 steps"), status
    result = d.ctl("run", "hello", "--wait")
    assert result.returncode == 0, result.stderr
    assert "✓ s2 succeeded" in result.stdout
    runs = json.loads(d.ctl("runs", "--json").stdout)
    assert [r["status"] for r in runs] == ["succeeded"]
    assert "STATUS=" in " ".join(d.notify.seen) or d.notify.wait_for("STATUS=")
    assert d.stop() == 0
    d.notify.wait_for("STOPPING=1")


def test_a_query_against_the_daemon_imports_neither_asyncio_nor_the_store(env, daemon):
    # `orchestratorctl runs` is started per command: what it imports is most of its
    # time (python -X importtime: asyncio and the store with aiosqlite were 80 ms;
    # --limit's check alone imported the store for its maximum, 30 ms).
    (env / "workflows" / "hello.yaml").write_text(workflow("hello", env / "ledger"))
    d = daemon()
    d.notify.wait_for("READY=1")
    probe = ("import sys\n"
             "from orchestratord.cli import main as cli\n"
             f"code = cli.main(['--socket', {str(env / 'run' / 'control.sock')!r}, 'runs',"
             " '--limit', '20'])\n"
             "heavy = sorted(m for m in ('asyncio', 'aiosqlite', 'aiohttp', 'orchestratord.store.sqlite')"
             " if m in sys.modules)\n"
             "print(code, heavy)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out


def test_bad_requests_get_4xx_and_the_daemon_keeps_serving(env, daemon):
    (env / "workflows" / "hello.yaml").write_text(workflow("hello", env / "ledger", steps=1))
    d = daemon()
    d.notify.wait_for("READY=1")
    sock = str(env / "run" / "control.sock")

    def raw(request: bytes) -> bytes:
        """Send bytes as they are; read the answer until the server closes."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(sock)
            s.sendall(request.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n", 1))
            return b"".join(iter(lambda: s.recv(65536), b""))

    assert b" 400 " in raw(b"POST /runs HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{nope")
    assert b" 400 " in raw(b'POST /runs HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]')
    assert b" 404 " in raw(b"GET /runs/ffffffffffff HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b" 400 " in raw(b'POST /runs HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\n{"workflow":"nah"}')
    big = b"x" * (2 * 1024 * 1024)
    assert b" 413 " in raw(b"POST /runs HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
    assert b" 400 " in raw(b"\x00\xff garbage\r\n\r\n")
    params = d.ctl("run", "hello", "--wait", "-p", "nope=1")
    assert params.returncode == 2 and "unknown param 'nope'" in params.stderr, params
    assert d.ctl("run", "hello", "--wait").returncode == 0
    assert d.proc.poll() is None


def test_reload_keeps_the_old_definition_when_the_new_one_is_broken(env, daemon):
    path = env / "workflows" / "hello.yaml"
    path.write_text(workflow("hello", env / "ledger", steps=1))
    d = daemon()
    d.notify.wait_for("READY=1")
    path.write_text(workflow("hello", env / "ledger", steps=2))
    d.proc.send_signal(signal.SIGHUP)
    d.notify.wait_for("RELOADING=1")
    d.notify.wait_for("READY=1")
    assert d.ctl("workflows").stdout.startswith("hello\t2 steps")
    path.write_text("workflow:\n  name: hello\n  steps: [{skill: nope}]\n")
    d.proc.send_signal(signal.SIGHUP)
    d.notify.wait_for("READY=1")
    assert d.ctl("workflows").stdout.startswith("hello\t2 steps"), "the old definition stays"
    log = (env / "daemon.log").read_text()
    assert "hello.yaml:3:11: steps[0]: missing required key 'action'" in log
    assert "workflow hello keeps its previous definition" in log


def test_sigterm_mid_run_leaves_it_resumable_and_restart_finishes_it(env, daemon):
    ledger = env / "ledger"
    (env / "workflows" / "slow.yaml").write_text(workflow("slow", ledger, steps=4, sleep=0.4))
    d = daemon()
    d.notify.wait_for("READY=1")
    run_id = d.ctl("run", "slow").stdout.strip()
    until("two of slow's steps to start", file_words(ledger, 2))
    assert d.stop() == 0
    d.notify.wait_for("STOPPING=1")
    runs = json.loads(d.ctl("--state", str(env / "state" / "state.db"), "runs", "--json").stdout)
    assert runs[0]["status"] == "interrupted"

    d2 = daemon()
    d2.notify.wait_for("READY=1")
    until(f"the resumed run {run_id} to succeed",
          lambda: json.loads(d2.ctl("show", run_id, "--json").stdout)["status"] == "succeeded")
    ran = ledger.read_text().split()
    assert sorted(set(ran)) == ["s0", "s1", "s2", "s3"]
    assert ran.count("s0") == 1, "a finished step ran again after the restart"


# A python action is awaited on the daemon's event loop; this one blocks it, as a hung
# daemon would be, after leaving a mark that it is about to.
STALL_LOOP = """
import pathlib, time

async def block(params, ctx):
    pathlib.Path(params["mark"]).touch()
    time.sleep(3600)
"""


def test_watchdog_pings_from_the_loop(env, daemon):
    """The pings come from the event loop: a blocked loop stops them (a thread would not),
    which is what lets systemd's WatchdogSec= restart a daemon that hangs. The loop is
    blocked from outside the daemon's code, by a skill's python action on PYTHONPATH."""
    (env / "stall_loop.py").write_text(STALL_LOOP)
    mark = env / "blocking"
    (env / "workflows" / "stall.yaml").write_text(
        f"workflow:\n  name: stall\n  steps:\n"
        f"    - {{id: s, skill: local, action: block, params: {{mark: {mark}}}}}\n"
        "skills:\n  local:\n    actions:\n      block: {python: 'stall_loop:block'}\n")
    python_path = os.pathsep.join(filter(None, (str(env), os.environ.get("PYTHONPATH"))))
    d = daemon(WATCHDOG_USEC="200000", PYTHONPATH=python_path)
    d.notify.wait_for("READY=1")
    # Every 0.1 s (half of WATCHDOG_USEC): about 20 in 2 s, at least 5 on a loaded machine.
    alive = d.notify.count("WATCHDOG=1", seconds=2)
    assert alive >= 5, f"only {alive} pings in 2 s from a running loop"
    # Its answer may never come: the loop may block before it writes one.
    starter = subprocess.Popen([sys.executable, "-m", "orchestratord.cli", "--socket",
                                str(env / "run" / "control.sock"), "run", "stall"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        until("the action to block the loop", mark.exists)
    finally:
        starter.kill()
        starter.wait(timeout=30)
    # count() forgets the pings sent while the run started, before the loop blocked.
    # A ping in flight as the action ran may still arrive; then none: a thread would go
    # on sending about 20.
    blocked = d.notify.count("WATCHDOG=1", seconds=2)
    assert blocked <= 2, f"{blocked} pings in 2 s while the loop was blocked"
    assert d.proc.poll() is None, "the daemon died instead of hanging"


def test_cancel_of_a_run_whose_other_driver_died(env, daemon):
    """Regression: the daemon only recorded a cancel for a run another process drove, and
    when that process was dead nothing ever honoured it."""
    ledger, state = env / "ledger", env / "state" / "state.db"
    (env / "other.yaml").write_text(workflow("other", ledger, steps=3, sleep=30))
    d = daemon()
    d.notify.wait_for("READY=1")
    driver = ctl(state, "run", str(env / "other.yaml"))
    until("the first step", lambda: lines(ledger))
    driver.kill()
    driver.wait(timeout=30)
    [(run_id,)] = db(state, "SELECT id FROM runs")
    result = d.ctl("cancel", run_id)
    assert result.returncode == 0, result.stderr
    until("the run to end cancelled", lambda: db(
        state, "SELECT status FROM runs WHERE id = ?", run_id) == [("cancelled",)])
    assert lines(ledger) == ["s0"], "nothing ran after the cancel"
    assert d.stop() == 0


def test_resume_of_a_succeeded_run_is_refused_with_409_and_exit_7(env, daemon):
    """Regression: the daemon accepted it (202), then only logged "nothing to resume", so
    `resume` exited 0 as if it had done something, and the MCP server could not tell."""
    ledger, state = env / "ledger", env / "state" / "state.db"
    (env / "workflows" / "hello.yaml").write_text(workflow("hello", ledger, steps=1))
    d = daemon()
    d.notify.wait_for("READY=1")
    assert d.ctl("run", "hello", "--wait").returncode == 0
    [(run_id,)] = db(state, "SELECT id FROM runs")
    message = f"run {run_id} succeeded; nothing to resume (start a new run of hello"
    with pytest.raises(RunStateError, match=re.escape(message)):  # the daemon's 409
        request(env / "run" / "control.sock", "POST", f"/runs/{run_id}/resume")
    refused = d.ctl("resume", run_id[:8])
    assert refused.returncode == 7 and message in refused.stderr, refused
    embedded = ctl(state, "resume", run_id)  # the same answer without the daemon
    _, err = embedded.communicate(timeout=60)
    assert embedded.returncode == 7 and message in err, err
    assert lines(ledger) == ["s0"], "the step ran once"
    assert db(state, "SELECT type FROM events WHERE type = 'run_resumed'") == []


def test_reload_request_returns_once_the_new_definitions_are_in_use(env, daemon):
    """Regression: `systemctl reload` (ExecReload=kill -HUP) returned before the reload."""
    path = env / "workflows" / "hello.yaml"
    path.write_text(workflow("hello", env / "ledger", steps=1))
    d = daemon()
    d.notify.wait_for("READY=1")
    path.write_text(workflow("hello", env / "ledger", steps=2))
    (env / "workflows" / "bad.yaml").write_text("workflow:\n  name: bad\n  steps: [{skill: nope}]\n")
    before = time.monotonic_ns() // 1000
    reload = subprocess.run([sys.executable, "-m", "orchestratord.daemon", "--settings",
                             str(env / "settings.json"), "--reload"],
                            capture_output=True, text=True, timeout=30)
    assert reload.returncode == 0, reload.stderr
    assert "reloaded: 1 workflows, 1 problems" in reload.stdout
    assert "bad.yaml:3:11" in reload.stderr
    # no waiting: the answer came once the new definition was in use
    assert d.ctl("workflows").stdout.startswith("hello\t2 steps")
    d.notify.wait_for("RELOADING=1")
    usec = int(d.notify.wait_for("MONOTONIC_USEC=").split("=", 1)[1])
    assert before <= usec <= time.monotonic_ns() // 1000, "MONOTONIC_USEC is CLOCK_MONOTONIC"
    d.notify.wait_for("READY=1")


def test_reload_request_without_a_daemon_fails_and_says_where(env):
    reload = subprocess.run([sys.executable, "-m", "orchestratord.daemon", "--settings",
                             str(env / "settings.json"), "--reload"],
                            capture_output=True, text=True, timeout=30)
    assert reload.returncode == 1
    assert f"cannot reach orchestratord at {env / 'run' / 'control.sock'}" in reload.stderr


async def test_the_daemon_settles_its_heap_once_loaded_and_after_a_reload(tmp_path):
    """Its definitions are frozen out of full collections (engine.settle_heap), and a
    reload's replaced ones are not kept frozen: it unfreezes before freezing again."""
    import gc

    from orchestratord.daemon.service import Daemon
    from orchestratord.language.settings import Settings
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "hello.yaml").write_text(workflow("hello", tmp_path / "ledger"))
    settings = Settings(state_dir=tmp_path / "state", workflows_dir=tmp_path / "workflows",
                        socket=tmp_path / "run" / "control.sock")
    daemon = Daemon(settings, handle_signals=False)
    gc.unfreeze()
    try:
        await daemon.start()
        first = daemon.catalog.workflows["hello"]
        tracked = {id(o) for o in gc.get_objects()}
        assert gc.get_freeze_count() > 0 and id(first) not in tracked
        (tmp_path / "workflows" / "hello.yaml").write_text(
            workflow("hello", tmp_path / "ledger", steps=1))
        await daemon.reload()
        assert daemon.catalog.workflows["hello"] is not first
        assert id(daemon.catalog.workflows["hello"]) not in {id(o) for o in gc.get_objects()}
    finally:
        await daemon.close()
        gc.unfreeze()
