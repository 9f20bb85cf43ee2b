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


async def test_every_ms_per_step_row_is_per_step_at_every_size(tmp_path):
    rows = await engine.collect((20,))
    per_step = [r for r in rows if r.unit == "ms/step"]
    assert {r.name for r in per_step} == {"chain N=20", "fanout N=20",
                                          "chain N=20, plain-function step"}
    for r in per_step:
        assert r.value == pytest.approx(r.extra["seconds"] * 1000 / r.extra["n"]), r.name


def test_history_holds_events_and_attempts_as_the_engine_leaves_them(tmp_path):
    import sqlite3

    from bench import history
    db = history.generate(tmp_path / "state.db", 200)
    with sqlite3.connect(db) as conn:
        attempts = conn.execute("SELECT sum(attempts) FROM steps").fetchone()[0]
        compensated = conn.execute("SELECT count(*) FROM steps WHERE status LIKE "
                                   "'compensat%'").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM attempts").fetchone()[0] == \
            attempts + compensated
        # an event per run's creation, start and end, per attempt, per step's end
        events = dict(conn.execute("SELECT type, count(*) FROM events GROUP BY type"))
        assert events["run_created"] == events["run_started"] == 200
        assert events["step_started"] == attempts
        # the events' triggers did not disturb the rows written as they end up
        assert conn.execute("SELECT count(*) FROM steps WHERE status = 'running'"
                            ).fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM attempts WHERE status = 'running'"
                            ).fetchone()[0] == 0


def test_a_peer_answers_one_run_per_request_after_warming_up(tmp_path):
    import sys

    from bench.peers import Peer
    fake = ("from bench.peers import serve\n"
            "serve(lambda shape, n, workdir: {'seconds': n / 1000, 'persisted_rows': n},"
            " warm=lambda workdir: None, version='fake 1.0')")
    peer = Peer("fake", tmp_path, timeout=60, argv=[sys.executable, "-c", fake])
    try:
        assert peer.version == "fake 1.0"
        assert peer.run("chain", 7) == {"shape": "chain", "n": 7, "version": "fake 1.0",
                                        "seconds": 0.007, "persisted_rows": 7}
        assert peer.run("fanout", 3)["n"] == 3
    finally:
        peer.close()
    assert peer.proc.returncode == 0


def test_the_largest_generated_workflow_loads(tmp_path):
    definition = engine.load(engine.document("fanout", 10_000), tmp_path)
    assert len(definition.graph.nodes) == 10_000
