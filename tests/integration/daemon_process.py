"""orchestratord as a real process for tests: its settings in tmp_path, a real
NOTIFY_SOCKET it reports to, orchestratorctl against its control socket."""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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

    def drain(self) -> None:
        """Read what is queued: a full queue blocks the daemon's next notification."""
        self.sock.setblocking(False)
        try:
            while data := self.sock.recv(4096):
                self.seen.extend(data.decode().splitlines())
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)

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
            lines = data.splitlines()
            for i, line in enumerate(lines):
                if line.startswith(prefix):
                    self.seen += lines[i + 1:]  # the rest of one datagram is kept for later
                    return line
                self.seen.append(line)
        raise AssertionError(f"no {prefix} notification within {timeout}s; saw {self.seen}")

    def count(self, message: str, seconds: float) -> int:
        """How many `message` datagrams arrive in the next `seconds` (others are kept)."""
        self.seen = [line for line in self.seen if line != message]
        deadline, counted = time.monotonic() + seconds, 0
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                break
            for line in data.splitlines():
                if line == message:
                    counted += 1
                else:
                    self.seen.append(line)
        return counted


class Daemon:
    def __init__(self, root: Path, extra_env: dict[str, str] | None = None,
                 nofile: int | None = None):
        """nofile: the daemon's file limit (soft and hard), as a unit's LimitNOFILE= sets it."""
        self.root = root
        self.notify = Notifications(root / f"notify-{time.monotonic_ns()}")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestratord.daemon", "--settings", str(root / "settings.json"),
             "--log-target", "stderr"],
            env={**os.environ, "NOTIFY_SOCKET": str(self.notify.path), **(extra_env or {})},
            stderr=open(root / "daemon.log", "ab"),
            preexec_fn=None if nofile is None else
            lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "orchestratord.cli", "--socket",
                               str(self.root / "run" / "control.sock"), *args],
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)
