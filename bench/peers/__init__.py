"""Peer orchestrators, each measured in a subprocess of bench/.venv-peers.

Each peer module (dbos_bench, prefect_bench, luigi_bench) runs the same chain and
fan-out of N no-op steps as bench.engine and prints one JSON line per measurement. It
runs as `bench/.venv-peers/bin/python -m bench.peers.<module>` with the repository root
on PYTHONPATH; this package therefore imports only the standard library, on both sides.
`bench/setup-peers` (or `python -m bench --peers`) creates that venv.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

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
    """Command line of a peer module: measure every --shapes x --sizes, print JSON lines.

    measure(shape, n, workdir) runs one workflow and returns at least {"seconds": s};
    anything else it returns (what was persisted) is passed along.
    """
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="100,1000")
    p.add_argument("--shapes", default="chain,fanout")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        workdir = Path(tmp)
        if warm is not None:
            started = time.perf_counter()
            warm(workdir)
            print(json.dumps({"warmup_seconds": time.perf_counter() - started,
                              "version": version}), flush=True)
        for shape in args.shapes.split(","):
            for n in map(int, args.sizes.split(",")):
                runs = [measure(shape, n, workdir) for _ in range(args.repeat if n <= 100 else 1)]
                runs.sort(key=lambda r: r["seconds"])
                print(json.dumps({"shape": shape, "n": n, "version": version,
                                  **runs[len(runs) // 2]}), flush=True)


# -- the orchestrator side (runs in the project's venv) -------------------------------

def installed() -> bool:
    return PYTHON.exists()


def install() -> None:
    """Create bench/.venv-peers with the pinned peers (bench/setup-peers)."""
    subprocess.run([str(ROOT / "bench" / "setup-peers")], check=True)


def run_peer(name: str, sizes: tuple[int, ...], shapes: tuple[str, ...] = ("chain", "fanout"),
             timeout: float = TIMEOUT) -> tuple[list[dict[str, Any]], str]:
    """(measurements, error text) of one peer, run in its own process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as home:
        env["HOME"] = home  # peers that keep state under ~ keep it here
        try:
            proc = subprocess.run(
                [str(PYTHON), "-m", f"bench.peers.{PEERS[name]}",
                 "--sizes", ",".join(map(str, sizes)), "--shapes", ",".join(shapes)],
                env=env, cwd=home, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return _lines(out), f"timed out after {timeout:g} s"
    error = "" if proc.returncode == 0 else \
        f"exit {proc.returncode}: " + " | ".join(proc.stderr.strip().splitlines()[-3:])
    return _lines(proc.stdout), error


def _lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a peer's own chatter on stdout
    return out


def collect(sizes: tuple[int, ...], ours: dict[tuple[str, int], float]) -> list[Any]:
    """A row per peer, shape and size: ours (ms/step) against the peer's.

    ours maps (shape, n) to our ms/step, measured in this run.
    """
    from bench.results import Row, fmt_n
    if not installed():
        return [Row("peers", f"{name}", None, "ms/step", target="< 1x (faster)",
                    note="not installed: `python -m bench --peers` installs them")
                for name in PEERS]
    rows = []
    for name in PEERS:
        results, error = run_peer(name, sizes)
        measured = [r for r in results if "shape" in r]
        version = next((r["version"] for r in results if r.get("version")), name)
        for r in measured:
            peer_ms = r["seconds"] * 1000 / r["n"]
            mine = ours.get((r["shape"], r["n"]))
            persisted = ", ".join(f"{k.removeprefix('persisted_')}={v}" for k, v in r.items()
                                  if k.startswith("persisted_"))
            rows.append(Row("peers", f"{r['shape']} N={fmt_n(r['n'])} vs {version}", mine,
                            "ms/step", baseline=peer_ms, target="< 1x (faster)",
                            ok=None if mine is None else mine < peer_ms,
                            note=f"peer {r['seconds']:.2f} s; {persisted}",
                            extra={**r, "peer": version}))
        if error or not measured:
            rows.append(Row("peers", f"{version}", None, "ms/step",
                            note=f"failed: {error or 'no measurement'}"))
    return rows
