"""The benchmark harness runs end to end at tiny sizes (no timings are asserted).

`python -m bench` takes minutes; these keep its pieces working as the engine, store,
daemon and CLI change under it.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from bench import baseline, commands, daemon, engine, report
from bench.results import Row
from tests.conftest import require_module


@pytest.mark.parametrize("shape", ["chain", "fanout"])
async def test_engine_and_baseline_runs_commit_every_step(tmp_path, shape):
    definition = engine.load(engine.document(shape, 5), tmp_path)
    assert len(definition.graph.nodes) == 5
    # run_once raises unless all 5 steps are committed as succeeded
    assert await engine.run_once(definition, engine.fresh(tmp_path, shape)) > 0
    assert await baseline.run_once(shape, 5, engine.fresh(tmp_path, "base")) > 0


async def test_command_steps_and_bare_spawns_run(tmp_path):
    assert await commands.ours(tmp_path, 3) > 0
    assert await commands.bare(3) > 0
    assert await commands.bare(3, pipes=True) > 0


def test_daemon_reports_ready_and_completes_runs(tmp_path):
    d = daemon.Daemon(tmp_path)
    try:
        assert d.start() > 0
        assert daemon.rss_mib(d.proc.pid) > 1
        assert asyncio.run(daemon._complete_runs(d.socket, 3)) > 0
    finally:
        d.stop()


def test_report_writes_table_json_and_plot(tmp_path):
    rows = [Row("engine", "chain N=5", 0.5, "ms/step", baseline=0.1, target="<= 0.5 ms/step",
                ok=True, extra={"shape": "chain", "n": 5}),
            Row("peers", "dbos", None, "ms/step", note="not installed")]
    text = report.table(rows)
    assert "chain N=5" in text and "5.00x" in text and "not run" in text
    report.write_json({"date": "d"}, rows, tmp_path / "latest.json")
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert [r["name"] for r in saved["rows"]] == ["chain N=5", "dbos"]
    assert saved["rows"][0]["ratio"] == pytest.approx(5.0)
    require_module("matplotlib", "the bench extra: pip install -e '.[bench]'")
    assert report.plot(rows, tmp_path / "plot.png") and (tmp_path / "plot.png").stat().st_size > 0


def test_routing_bench_runs_at_a_small_size():
    from bench import routing
    rows = routing.measure(n=30, repeat=2)
    assert [r.name.split(",")[0] for r in rows][1:] == [
        "route: explicit skill.action", "route: capability", "route: lexical", "route: lexical"]
    assert all(r.value is not None for r in rows)
