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
import threading
import time
from collections.abc import Callable
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
    """A NOTIFY_SOCKET the daemon reports to, read all the time as systemd's is.

    A reader thread takes every datagram as it comes: a socket nobody reads fills after
    some dozens of STATUS= lines, and a daemon blocked sending to it is not the daemon
    under test. It ends once the daemon's process has ended and the queue is empty.
    `seen` holds the lines received and not yet taken by wait_for(), oldest first.
    """

    def __init__(self, path: Path, alive: Callable[[], bool]):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)  # how often the reader checks whether the daemon lives
        self.seen: list[str] = []
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(alive,), daemon=True,
                                        name=f"notify {path.name}")
        self._reader.start()

    def _read(self, alive: Callable[[], bool]) -> None:
        with self.sock:
            while True:
                try:
                    data = self.sock.recv(4096)
                except TimeoutError:
                    if alive():
                        continue
                    return
                with self._arrived:
                    self.seen.extend(data.decode().splitlines())
                    self._arrived.notify_all()

    def _take(self, prefix: str) -> str | None:
        for line in self.seen:
            if line.startswith(prefix):
                self.seen.remove(line)
                return line
        return None

    def wait_for(self, prefix: str, timeout: float = 15) -> str:
        """The first line received starting with prefix (taken from `seen`), waiting up to
        timeout seconds for it."""
        with self._arrived:
            line = self._arrived.wait_for(lambda: self._take(prefix), timeout)
            if line is None:
                raise AssertionError(f"no {prefix} notification within {timeout}s; "
                                     f"saw {self.seen}")
            return line

    def count(self, message: str, seconds: float) -> int:
        """How many `message` datagrams arrive in the next `seconds` (others are kept)."""
        with self._arrived:
            self.seen = [line for line in self.seen if line != message]
        time.sleep(seconds)  # the window measured, not a wait for something to happen
        with self._arrived:
            counted = self.seen.count(message)
            self.seen = [line for line in self.seen if line != message]
        return counted


class Daemon:
    def __init__(self, root: Path, extra_env: dict[str, str] | None = None,
                 nofile: int | None = None):
        """nofile: the daemon's file limit (soft and hard), as a unit's LimitNOFILE= sets it."""
        self.root = root
        self.notify = Notifications(root / f"notify-{time.monotonic_ns()}", alive=self._alive)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestratord.daemon", "--settings", str(root / "settings.json"),
             "--log-target", "stderr"],
            env={**os.environ, "NOTIFY_SOCKET": str(self.notify.path), **(extra_env or {})},
            stderr=open(root / "daemon.log", "ab"),
            preexec_fn=None if nofile is None else
            lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))

    def _alive(self) -> bool:
        return not hasattr(self, "proc") or self.proc.poll() is None  # proc: not yet, or runs

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "orchestratord.cli", "--socket",
                               str(self.root / "run" / "control.sock"), *args],
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)
