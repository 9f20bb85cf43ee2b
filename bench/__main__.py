"""`python -m bench`: every benchmark in one run, one table, bench/results/latest.json
and bench/results/scaling.png.

Sections: engine (chain and fan-out of N no-op steps against bare asyncio + one SQLite
commit each), commands (/bin/true steps against bare spawns), peers (DBOS, Prefect,
Luigi, from bench/.venv-peers), daemon (READY=1, RSS, CLI cold start), history (`runs`
and `stats` on 100,000 runs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from . import report
from .results import Row

SECTIONS = ("engine", "commands", "peers", "daemon", "history")
PEER_SIZES = (100, 1_000)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a smoke run in about a minute: N = 100, 100 daemon runs, a history of "
                        "10,000 runs (figures are not comparable with a full run's)")
    p.add_argument("--only", action="append", choices=SECTIONS, metavar="NAME",
                   help=f"run only this section (repeatable): {', '.join(SECTIONS)}")
    p.add_argument("--peers", action="store_true",
                   help="install the peer orchestrators into bench/.venv-peers if missing")
    p.add_argument("--json", type=str, default=str(report.RESULTS / "latest.json"),
                   help="where to write the results (default: bench/results/latest.json)")
    p.add_argument("--plot", type=str, default=str(report.RESULTS / "scaling.png"),
                   help="where to write the plot (default: bench/results/scaling.png)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    sections = args.only or list(SECTIONS)
    # --quick: a smoke run (CI runs it), every section at a small size, in about a minute.
    sizes = (100,) if args.quick else (100, 1_000, 10_000)
    peer_sizes = (100,) if args.quick else PEER_SIZES
    info: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M %Z"),
                            "machine": report.machine(), "argv": sys.argv[1:],
                            "load": {"start": os.getloadavg()[0], "sections": {}}}
    rows: list[Row] = []

    def section(name: str, work: Callable[[], list[Row]]) -> list[Row]:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        started, load = time.perf_counter(), os.getloadavg()[0]
        out = work()
        info["load"]["sections"][name] = {"start": load, "end": os.getloadavg()[0],
                                          "seconds": round(time.perf_counter() - started, 1)}
        return out

    if "peers" in sections and args.peers:
        from . import peers
        if not peers.installed():
            section("installing peers", lambda: peers.install() or [])
    if "engine" in sections:
        from . import engine
        rows += section("engine", lambda: asyncio.run(engine.collect(sizes)))
    if "commands" in sections:
        from . import commands
        rows += section("commands", lambda: asyncio.run(commands.collect(quick=args.quick)))
    if "peers" in sections:
        from . import peers
        rows += section("peers", lambda: peers.collect(peer_sizes))
    if "daemon" in sections:
        from . import daemon
        runs = 100 if args.quick else daemon.RUNS
        rows += section("daemon", lambda: daemon.daemon_rows(runs=runs))
    if "history" in sections:
        from . import daemon
        rows += section("history", lambda: daemon.history_rows(10_000 if args.quick else 100_000))
    info["load"]["end"] = os.getloadavg()[0]

    print(report.header(info))
    print()
    print(report.table(rows))
    from pathlib import Path
    report.write_json(info, rows, Path(args.json))
    drawn = report.plot(rows, Path(args.plot))
    print(f"\nresults: {args.json}")
    print(f"plot: {drawn}" if drawn else
          "plot: not drawn (matplotlib missing: pip install -e '.[bench]')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
