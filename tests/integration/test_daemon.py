"""orchestratord as a real process: sd_notify datagrams, the control socket, signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import py_command

SLOW = py_command("""
    import json, os, sys, time
    p = json.load(sys.stdin)
    with open(p["ledger"], "a") as f:
        f.write(os.environ["ORCHESTRATOR_STEP_ID"] + "\\n")
    time.sleep(p.get("sleep", 0))
    print(json.dumps({"ok": True}))
""")


def workflow(name: str, ledger: Path, steps: int = 3, sleep: float = 0.0) -> str:
    items = "\n".join(f"    - {{id: s{i}, skill: local, action: work, params: "
                      f"{{ledger: {ledger}, sleep: {sleep}}}}}" for i in range(steps))
    argv = json.dumps(SLOW)
    return (f"workflow:\n  name: {name}\n  steps:\n{items}\n"
            f"skills:\n  local:\n    actions:\n      work: {{command: {argv}}}\n")


class Notifications:
    """A NOTIFY_SOCKET the daemon reports to, as systemd's would be."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.seen: list[str] = []

    def wait_for(self, prefix: str, timeout: float = 15) -> str:
        deadline = time.monotonic() + timeout
        for line in self.seen:
            if line.startswith(prefix):
                self.seen.remove(line)
                return line
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            for line in data.splitlines():
                if line.startswith(prefix):
                    return line
                self.seen.append(line)
        raise AssertionError(f"no {prefix} notification within {timeout}s; saw {self.seen}")


@pytest.fixture
def env(tmp_path):
    (tmp_path / "workflows").mkdir()
    settings = {"state_dir": str(tmp_path / "state"), "workflows_dir": str(tmp_path / "workflows"),
                "socket": str(tmp_path / "run" / "control.sock"), "kill_grace": 1}
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    return tmp_path


class Daemon:
    def __init__(self, root: Path, extra_env: dict[str, str] | None = None):
        self.root = root
        self.notify = Notifications(root / f"notify-{time.monotonic_ns()}")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestratord.daemon", "--settings", str(root / "settings.json"),
             "--log-target", "stderr"],
            env={**os.environ, "NOTIFY_SOCKET": str(self.notify.path), **(extra_env or {})},
            stderr=open(root / "daemon.log", "ab"))

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "orchestratord.cli", "--socket",
                               str(self.root / "run" / "control.sock"), *args],
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def daemon(env):
    started = []

    def start(**extra_env: str) -> Daemon:
        d = Daemon(env, extra_env)
        started.append(d)
        return d
    yield start
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


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
    assert b" 409 " in raw(b'POST /runs HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\n{"workflow":"nah"}')
    big = b"x" * (2 * 1024 * 1024)
    assert b" 413 " in raw(b"POST /runs HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(big) + big)
    assert b" 400 " in raw(b"\x00\xff garbage\r\n\r\n")
    params = d.ctl("run", "hello", "--wait", "-p", "nope=1")
    assert params.returncode != 0 and "unknown param 'nope'" in params.stderr
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
    assert "hello.yaml:3:11: steps[0].action: missing required key 'action'" in log
    assert "workflow hello keeps its previous definition" in log


def test_sigterm_mid_run_leaves_it_resumable_and_restart_finishes_it(env, daemon):
    ledger = env / "ledger"
    (env / "workflows" / "slow.yaml").write_text(workflow("slow", ledger, steps=4, sleep=0.4))
    d = daemon()
    d.notify.wait_for("READY=1")
    run_id = d.ctl("run", "slow").stdout.strip()
    while not ledger.exists() or len(ledger.read_text().split()) < 2:
        time.sleep(0.02)
    assert d.stop() == 0
    d.notify.wait_for("STOPPING=1")
    runs = json.loads(Daemon.ctl(d, "--state", str(env / "state" / "state.db"), "runs", "--json").stdout)
    assert runs[0]["status"] == "interrupted"

    d2 = daemon()
    d2.notify.wait_for("READY=1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        show = json.loads(d2.ctl("show", run_id, "--json").stdout)
        if show["status"] == "succeeded":
            break
        time.sleep(0.1)
    assert show["status"] == "succeeded"
    ran = ledger.read_text().split()
    assert sorted(set(ran)) == ["s0", "s1", "s2", "s3"]
    assert ran.count("s0") == 1, "a finished step ran again after the restart"


def test_watchdog_pings_from_the_loop(env, daemon):
    d = daemon(WATCHDOG_USEC="200000")
    d.notify.wait_for("READY=1")
    d.notify.wait_for("WATCHDOG=1", timeout=2)
    d.notify.wait_for("WATCHDOG=1", timeout=2)
