"""Peer orchestrators, each measured in a subprocess of bench/.venv-peers.

Each peer module (dbos_bench, prefect_bench, luigi_bench) runs the same chain and
fan-out of N no-op steps as bench.engine, one run per request on its stdin, and answers
with one JSON line; our side alternates its own runs with the peer's. It runs as
`bench/.venv-peers/bin/python -m bench.peers.<module>` with the repository root on
PYTHONPATH; this package therefore imports only the standard library, on both sides.
`bench/setup-peers` (or `python -m bench --peers`) creates that venv.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = ROOT / "bench" / ".venv-peers"
PYTHON = VENV / "bin" / "python"
PEERS = {"dbos": "dbos_bench", "prefect": "prefect_bench", "luigi": "luigi_bench"}
DIST = {"dbos": "dbos", "prefect": "prefect", "luigi": "luigi"}
TIMEOUT = 900.0  # seconds for one peer's whole session


# -- the peer side (runs in the peers' venv) ------------------------------------------

Measure = Callable[[str, int, Path], dict[str, Any]]


def serve(measure: Measure, *, warm: Callable[[Path], None] | None = None,
          version: str = "") -> None:
    """Command line of a peer module: warm up, then measure on request.

    Prints {"ready": true, "version": ..., "warmup_seconds": ...}, then reads requests
    "SHAPE N" from stdin, one a line, and answers each with one JSON line: one run,
    measure(shape, n, workdir), which returns at least {"seconds": s}; anything else it
    returns (what was persisted) is passed along. The orchestrator side sends requests
    between its own runs of the same workload, so both sides meet the same load.
    """
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        if warm is not None:
            warm(workdir)
        print(json.dumps({"ready": True, "version": version,
                          "warmup_seconds": time.perf_counter() - started}), flush=True)
        for line in sys.stdin:
            if not line.strip():
                continue
            shape, n = line.split()
            print(json.dumps({"shape": shape, "n": int(n), "version": version,
                              **measure(shape, int(n), workdir)}), flush=True)


# -- the orchestrator side (runs in the project's venv) -------------------------------

def installed() -> bool:
    return PYTHON.exists()


def install() -> None:
    """Create bench/.venv-peers with the pinned peers (bench/setup-peers)."""
    subprocess.run([str(ROOT / "bench" / "setup-peers")], check=True)


class Peer:
    """One peer orchestrator in its own process of bench/.venv-peers, warmed up once and
    then asked for one run at a time."""

    def __init__(self, name: str, home: Path, timeout: float = TIMEOUT,
                 argv: list[str] | None = None):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(home)}  # state under ~ stays here
        self.name, self.timeout = name, timeout
        self.stderr = open(home / "stderr.log", "w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(argv or [str(PYTHON), "-m", f"bench.peers.{PEERS[name]}"],
                                     env=env, cwd=home, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        hello = self._answer()
        self.version = hello.get("version") or name

    def run(self, shape: str, n: int) -> dict[str, Any]:
        """One run of the workload in the peer: its answer ({"seconds": ..., ...})."""
        self.proc.stdin.write(f"{shape} {n}\n")
        self.proc.stdin.flush()
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise RuntimeError(f"{self.name}: no answer within {self.timeout:g} s")
            line = self.proc.stdout.readline()
            if not line:
                self.stderr.seek(0)
                tail = " | ".join(self.stderr.read().strip().splitlines()[-3:])
                raise RuntimeError(f"{self.name} exited {self.proc.wait()}: {tail}")
            try:
                return json.loads(line)
            except ValueError:
                continue  # a peer's own chatter on stdout

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def _median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def collect(sizes: tuple[int, ...]) -> list[Any]:
    """A row per peer, shape and size: ours (ms/step) against the peer's.

    For each workload, our run and the peer's alternate (ours, peer, ours, peer, ...),
    the same number of each (bench.engine.repeats), and the medians are compared: a
    burst of load from elsewhere hits both sides alike.
    """
    import asyncio

    from bench import engine
    from bench.results import Row, fmt_n
    if not installed():
        return [Row("peers", f"{name}", None, "ms/step", target="< 1x (faster)",
                    note="not installed: `python -m bench --peers` installs them")
                for name in PEERS]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        workdir = Path(tmp)
        definitions = {(shape, n): engine.load(engine.document(shape, n), workdir)
                       for shape in ("chain", "fanout") for n in sizes}
        for name in PEERS:
            home = workdir / name
            home.mkdir()
            peer = None
            try:
                peer = Peer(name, home)
                for (shape, n), definition in definitions.items():
                    ours, theirs = [], []
                    for _ in range(engine.repeats(n)):
                        ours.append(asyncio.run(engine.run_once(
                            definition, engine.fresh(workdir, f"{shape}-{n}"))))
                        theirs.append(peer.run(shape, n))
                    mine = _median(ours) * 1000 / n
                    middle = sorted(theirs, key=lambda r: r["seconds"])[len(theirs) // 2]
                    peer_ms = middle["seconds"] * 1000 / n
                    persisted = ", ".join(f"{k.removeprefix('persisted_')}={v}"
                                          for k, v in middle.items() if k.startswith("persisted_"))
                    if "server_cpu_seconds" in middle:  # a peer with its own server process
                        persisted += ("; its server process used "
                                      f"{middle['server_cpu_seconds']:.2f} s CPU, "
                                      f"the flow {middle['client_cpu_seconds']:.2f} s")
                    rows.append(Row(
                        "peers", f"{shape} N={fmt_n(n)} vs {peer.version}", mine, "ms/step",
                        baseline=peer_ms, target="< 1x (faster)", ok=mine < peer_ms,
                        note=f"median of {len(ours)} each, interleaved; peer "
                             f"{middle['seconds']:.2f} s; {persisted}",
                        extra={**middle, "peer": peer.version, "ours_seconds": ours,
                               "peer_seconds": [r["seconds"] for r in theirs]}))
            except (RuntimeError, OSError) as exc:
                rows.append(Row("peers", peer.version if peer else name, None, "ms/step",
                                note=f"failed: {exc}"))
            finally:
                if peer is not None:
                    peer.close()
    return rows
