"""The daemon and the CLI as an administrator meets them.

- exec to READY=1: from just before the fork of `orchestratord` until its READY=1
  datagram arrives on a real NOTIFY_SOCKET (as systemd's), median of several starts on
  an existing state database;
- idle RSS (VmRSS from /proc) once ready, and after 1,000 completed runs submitted over
  the control socket;
- CLI cold start: `orchestratorctl --version`, and a status query (`runs`) against the
  running daemon, median of several, next to a bare `python -c pass`;
- history: `runs` and `stats` on a generated database of 100,000 runs (bench.history),
  the queries and the whole CLI commands.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .results import Row, at_least, at_most, fmt_n, median_time

ROOT = Path(__file__).resolve().parent.parent
# The programs through their modules, as their console scripts run them: an interpreter
# may have no scripts beside it (the Nix check phase runs test_bench.py that way).
DAEMON = [sys.executable, "-m", "orchestratord.daemon"]
CTL = [sys.executable, "-m", "orchestratord.cli"]
STARTS, CLI_REPEAT, RUNS = 3, 7, 1_000
WORKFLOW = """\
workflow:
  name: noop3
  steps:
    - {id: a, skill: bench, action: noop}
    - {id: b, skill: bench, action: noop}
    - {id: c, skill: bench, action: noop}
skills:
  bench:
    actions:
      noop: {python: "bench.noop:noop"}
"""


def _env(**extra: str) -> dict[str, str]:
    """The environment of the daemon and CLI: bench.noop importable, nothing inherited
    that would point them at another daemon or state file."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ORCHESTRATOR_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    return {**env, **extra}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


class Daemon:
    """orchestratord as a child process reporting to our NOTIFY_SOCKET."""

    def __init__(self, root: Path):
        self.root = root
        self.settings = root / "settings.json"
        self.socket = root / "run" / "control.sock"
        (root / "workflows").mkdir(exist_ok=True)
        (root / "workflows" / "noop3.yaml").write_text(WORKFLOW)
        self.settings.write_text(json.dumps({
            "state_dir": str(root / "state"), "workflows_dir": str(root / "workflows"),
            "socket": str(self.socket)}))
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> float:
        """Start it; seconds from exec to READY=1."""
        path = self.root / f"notify-{time.monotonic_ns()}"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(path))
        try:
            started = time.perf_counter()
            with open(self.root / "daemon.log", "ab") as log:
                self.proc = subprocess.Popen(
                    [*DAEMON, "--settings", str(self.settings),
                     "--log-target", "stderr", "--log-level", "info"],
                    env=_env(NOTIFY_SOCKET=str(path)), stdout=log, stderr=log, cwd=self.root)
            deadline = started + timeout
            while True:
                notify.settimeout(max(0.001, deadline - time.perf_counter()))
                try:
                    data = notify.recv(4096).decode()
                except TimeoutError:
                    self.stop()
                    raise RuntimeError(f"no READY=1 within {timeout} s; "
                                       f"see {self.root}/daemon.log") from None
                if "READY=1" in data.splitlines():
                    return time.perf_counter() - started
        finally:
            notify.close()
            path.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


async def _complete_runs(sock: Path, count: int, timeout: float = 300.0) -> float:
    """Submit count runs of noop3 over the control socket and wait until all ended;
    returns the seconds it took."""
    import aiohttp
    connector = aiohttp.UnixConnector(path=str(sock), limit=32)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def call(method: str, path: str, body: Any = None) -> Any:
            async with http.request(method, f"http://orchestratord{path}", json=body) as r:
                data = await r.json(content_type=None)
                if r.status >= 400:
                    raise RuntimeError(f"{method} {path}: {r.status} {data}")
                return data

        started = time.perf_counter()
        created = await asyncio.gather(*(call("POST", "/runs", {"workflow": "noop3"})
                                         for _ in range(count)))
        ids = {c["run_id"] for c in created}
        deadline = started + timeout
        # Polled cheaply (is any run still pending or running?), so that the polling
        # costs the daemon next to nothing; listing 1,000 runs every 0.1 s, as this did,
        # took a good part of the daemon's CPU from the runs it measured.
        while (await call("GET", "/runs?status=pending&limit=1")
               or await call("GET", "/runs?status=running&limit=1")):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"runs still pending or running after {timeout} s")
            await asyncio.sleep(0.02)
        took = time.perf_counter() - started
        runs = await call("GET", f"/runs?limit={min(count, 1000)}")
        bad = [r for r in runs if r["id"] in ids and r["status"] != "succeeded"]
        if bad:
            raise RuntimeError(f"{len(bad)} runs did not succeed, e.g. {bad[0]}")
        return took


def cli_time(argv: list[str], env: dict[str, str], repeat: int = CLI_REPEAT) -> float:
    """Median seconds of a CLI invocation (each must exit 0)."""
    def once() -> None:
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    once()  # the page cache, as for any command run twice
    return median_time(once, repeat)


def daemon_rows(runs: int = RUNS) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as tmp:
        daemon = Daemon(Path(tmp))
        try:
            ready = []
            for _ in range(STARTS + 1):  # the first start creates the database: not counted
                ready.append(daemon.start())
                daemon.stop()
            ready_s = statistics.median(ready[1:])
            python_s = cli_time([sys.executable, "-c", "pass"], _env())
            target, ok = at_most(ready_s * 1000, 1000, "ms")
            rows.append(Row("daemon", "exec to READY=1", ready_s * 1000, "ms",
                            baseline=python_s * 1000, target=target, ok=ok,
                            note=f"median of {STARTS}; baseline: python -c pass",
                            extra={"all_ms": [round(r * 1000, 1) for r in ready]}))
            daemon.start()
            pid = daemon.proc.pid
            idle = rss_mib(pid)
            target, ok = at_most(idle, 60, "MiB")
            rows.append(Row("daemon", "idle RSS", idle, "MiB", target=target, ok=ok))
            took = asyncio.run(_complete_runs(daemon.socket, runs))
            after = rss_mib(pid)
            target, ok = at_least(runs / took, 300, "runs/s")
            rows.append(Row("daemon", f"{fmt_n(runs)} runs of 3 steps through the API",
                            runs / took, "runs/s", target=target, ok=ok,
                            note=f"{took:.2f} s: all POSTed at once (32 connections), "
                                 "then polled until all ended", extra={"seconds": took}))
            rows.append(Row("daemon", f"RSS after {fmt_n(runs)} runs", after, "MiB",
                            baseline=idle, note="3 steps each"))
            env = _env(ORCHESTRATOR_SOCKET=str(daemon.socket))
            for name, argv in (("CLI --version", [*CTL, "--version"]),
                               ("CLI runs (daemon)", [*CTL, "runs", "--limit", "20"])):
                ms = cli_time(argv, env) * 1000
                target, ok = at_most(ms, 150 if "version" in name else 100, "ms")
                rows.append(Row("daemon", name, ms, "ms", baseline=python_s * 1000,
                                target=target, ok=ok, note=f"median of {CLI_REPEAT}"))
        finally:
            daemon.stop()
    return rows


def history_rows(runs: int = 100_000) -> list[Row]:
    """`runs` and `stats` on a generated history of `runs` runs."""
    from orchestratord.store.sqlite import Store

    from . import history
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
        db = history.generate(Path(tmp) / "state.db", runs)

        async def list_runs() -> float:
            store = await Store.open(db)
            try:
                await store.list_runs(limit=20)
                times = []
                for _ in range(CLI_REPEAT):
                    t0 = time.perf_counter()
                    await store.list_runs(limit=20)
                    await store.list_runs(workflow="deploy", status="failed", limit=20)
                    times.append((time.perf_counter() - t0) / 2)
                return statistics.median(times)
            finally:
                await store.close()
        ms = asyncio.run(list_runs()) * 1000
        target, ok = at_most(ms, history.TARGET_MS, "ms")
        rows.append(Row("history", f"runs query, {fmt_n(runs)} runs", ms, "ms",
                        target=target, ok=ok, note="Store.list_runs, 20 newest (filtered too)"))
        cli = [*CTL, "--state", str(db)]
        env = _env()
        ms = cli_time([*cli, "runs", "--limit", "20"], env) * 1000
        rows.append(Row("history", f"CLI runs --state, {fmt_n(runs)} runs", ms, "ms",
                        note="whole command, interpreter start included"))
        ms = cli_time([*cli, "stats"], env) * 1000
        rows.append(Row("history", f"CLI stats --state, {fmt_n(runs)} runs", ms, "ms",
                        note="whole command, interpreter start included"))
        rows += history.measure_on(db, runs)
    return rows


if __name__ == "__main__":
    for row in daemon_rows() + history_rows():
        print(row.as_dict())
