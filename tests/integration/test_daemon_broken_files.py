"""A broken file never stops the daemon: it starts, serves the other workflows and
reloads, sending READY=1 each time, whatever lies in its workflows directory."""

from __future__ import annotations

import os
import signal

from tests.conftest import ECHO, write_skill

from .daemon_process import workflow

DEEP_JSON = '{"workflow": ' + "[" * 10_000 + "]" * 10_000 + "}"


def test_deep_files_and_fifos_do_not_stop_start_or_reload(env, daemon):
    """A 10,000-deep JSON file once kept the daemon from starting (RecursionError), and a
    SIGHUP reload died without READY=1; a FIFO would have hung it for ever."""
    workflows = env / "workflows"
    (workflows / "hello.yaml").write_text(workflow("hello", env / "ledger", steps=1))
    (workflows / "deep.json").write_text(DEEP_JSON)
    os.mkfifo(workflows / "fifo.yaml")
    skills = workflows / "skills"
    (skills / "broken").mkdir(parents=True)
    os.mkfifo(skills / "broken" / "SKILL.md")
    write_skill(skills, "good", {"echo": {"command": ECHO}})  # beside the broken one
    (workflows / "echo.yaml").write_text(
        "workflow: {name: echo, steps: [{skill: good, action: echo}]}\n")
    served = [f"echo\t1 steps\t{workflows / 'echo.yaml'}",
              f"hello\t1 steps\t{workflows / 'hello.yaml'}"]
    d = daemon()
    d.notify.wait_for("READY=1", timeout=60)
    assert d.ctl("workflows").stdout.splitlines() == served
    assert d.ctl("run", "hello", "--wait").returncode == 0
    assert d.ctl("run", "echo", "--wait").returncode == 0
    log = (env / "daemon.log").read_text()
    assert f"{workflows / 'deep.json'}:1:" in log and "nested deeper than" in log
    assert f"{workflows / 'fifo.yaml'}:1:1: is a FIFO, not a regular file" in log
    assert f"{skills / 'broken' / 'SKILL.md'}:1:1: is a FIFO" in log

    (workflows / "deeper.yaml").write_text("workflow: " + "{a: " * 10_000 + "}" * 10_000 + "\n")
    for _ in range(2):
        d.proc.send_signal(signal.SIGHUP)
        d.notify.wait_for("RELOADING=1", timeout=60)
        d.notify.wait_for("READY=1", timeout=60)
    assert d.ctl("workflows").stdout.splitlines() == served
    assert d.ctl("run", "echo", "--wait").returncode == 0
    assert f"{workflows / 'deeper.yaml'}:1:" in (env / "daemon.log").read_text()
    assert d.proc.poll() is None
    assert d.stop() == 0
