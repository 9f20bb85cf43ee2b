"""Performance statistics from a real state database: exact counts, success rates and
percentiles of a known history, the filters, the engine's own records, an upgrade from
an older schema, and `orchestratorctl stats` in both its modes."""

from __future__ import annotations

import datetime
import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.history import RunSpec, StepSpec, plausible_runs, write_history
from orchestratord.core.errors import ParamsError
from orchestratord.engine.engine import Engine
from orchestratord.language.loader import load_workflow
from orchestratord.skills import discover
from orchestratord.store import stats
from orchestratord.store.migrations import MIGRATIONS
from orchestratord.store.sqlite import Store
from tests.conftest import ECHO, write_skill, write_workflow
from tests.integration.daemon_process import workflow
from tests.integration.test_metrics import FLAKY

T0 = 1_700_000_000.0
HOUR = 3600.0


def known_runs() -> list[RunSpec]:
    """deploy run i (1..20, created i hours after T0) builds for i seconds: 1..15
    succeed (run 2 is later rolled back: compensated), 16..19 fail, 20 is cancelled;
    builds 1..4 took two attempts, build 5 three. switch runs after each good build
    (2 s) and is upstream_failed, never run, after a bad one. Two health runs build for
    100 and 200 s."""
    runs = []
    for i in reversed(range(1, 21)):  # stored out of duration order
        status = "succeeded" if i <= 15 else "failed" if i < 20 else "cancelled"
        attempts = 2 if i <= 4 else 3 if i == 5 else 1
        build = StepSpec("nix", "build", "compensated" if i == 2 else status, attempts, float(i))
        switch = (StepSpec("nix", "switch", "compensated" if i == 2 else "succeeded", 1, 2.0)
                  if i <= 15 else StepSpec("nix", "switch", "upstream_failed", 0, 0.0))
        skipped = StepSpec("comms", "notify", "skipped", 0, 0.0)
        run_status = "rolled_back" if i == 2 else "succeeded" if i <= 15 else "failed"
        runs.append(RunSpec("deploy", T0 + i * HOUR, run_status, [build, switch, skipped]))
    for n, seconds in enumerate((100.0, 200.0)):
        runs.append(RunSpec("health", T0 + (30 + n) * HOUR, "succeeded",
                            [StepSpec("nix", "build", "succeeded", 1, seconds)]))
    return runs


@pytest.fixture
def history(tmp_path) -> Path:
    db = tmp_path / "state.db"
    write_history(db, known_runs())
    return db


@pytest.mark.parametrize("n", [1, 2, 3, 19, 20, 21, 40])
def test_percentiles_are_nearest_rank_for_any_count_sought_from_either_end(tmp_path, n):
    # Durations n, n-1, ..., 1 with ties (every value twice but one): the ranks above the
    # median are sought from the top of the index, the others from the bottom.
    durations = sorted([float(d) for d in range(1, n + 1)] * 2)[:2 * n - 1]
    write_history(tmp_path / "state.db", [
        RunSpec("w", T0 + i, "succeeded", [StepSpec("k", "a", "succeeded", 1, d)])
        for i, d in enumerate(reversed(durations))])
    [only] = stats.compute(tmp_path / "state.db")
    for percent, got in ((50, only.p50), (95, only.p95)):
        rank = max(1, -(-percent * len(durations) // 100))  # ceil
        assert got == durations[rank - 1], (percent, len(durations))


def by_action(result: list[stats.ActionStats]) -> dict[str, stats.ActionStats]:
    return {f"{s.skill}.{s.action}": s for s in result}


def test_known_history_gives_exact_counts_rates_and_percentiles(history):
    got = by_action(stats.compute(history, workflow="deploy"))
    assert list(got) == ["nix.build", "nix.switch"]  # never-run steps do not count
    build = got["nix.build"]
    assert (build.count, build.succeeded, build.success_rate) == (20, 15, 0.75)
    # nearest rank: p50 is the 10th of 20 durations, p95 the 19th
    assert (build.p50, build.p95, build.max) == (10.0, 19.0, 20.0)
    assert (build.retries, build.retries_per_run) == (6, 0.3)
    switch = got["nix.switch"]
    assert (switch.count, switch.succeeded, switch.success_rate) == (15, 15, 1.0)
    assert (switch.p50, switch.p95, switch.max, switch.retries) == (2.0, 2.0, 2.0, 0)


def test_all_workflows_together(history):
    build = by_action(stats.compute(history))["nix.build"]
    assert (build.count, build.succeeded) == (22, 17)
    assert (build.p50, build.p95, build.max) == (11.0, 100.0, 200.0)  # ranks 11 and 21 of 22
    health = by_action(stats.compute(history, workflow="health"))["nix.build"]
    assert (health.count, health.p50, health.p95, health.max) == (2, 100.0, 200.0, 200.0)
    assert stats.compute(history, workflow="nope") == []


def test_since_keeps_steps_started_from_then_on(history):
    since = T0 + 10.5 * HOUR  # deploy runs 11..20 and both health runs
    build = by_action(stats.compute(history, workflow="deploy", since=since))["nix.build"]
    assert (build.count, build.succeeded, build.success_rate) == (10, 5, 0.5)
    assert (build.p50, build.p95, build.max, build.retries) == (15.0, 20.0, 20.0, 0)
    both = by_action(stats.compute(history, since=since))["nix.build"]
    assert (both.count, both.p50, both.max) == (12, 16.0, 200.0)
    assert stats.compute(history, since=T0 + 100 * HOUR) == []


def test_since_reads_iso_times_and_durations_back_from_now():
    now = 1_800_000_000.0
    assert stats.parse_since("7d", now=now) == now - 7 * 86400
    assert stats.parse_since("1h30m", now=now) == now - 5400
    assert stats.parse_since("2024-05-01T10:00:00Z") == datetime.datetime(
        2024, 5, 1, 10, tzinfo=datetime.UTC).timestamp()
    assert stats.parse_since("2024-05-01") == datetime.datetime(2024, 5, 1).timestamp()
    for bad in ("yesterday", "7", "7 fortnights", ""):
        with pytest.raises(ParamsError, match="--since"):
            stats.parse_since(bad)


async def test_the_engines_own_records(tmp_path, skill_root):
    """Durations and the workflow column come from the store's triggers and inserts."""
    write_skill(skill_root, "t", {"echo": {"command": ECHO}, "flaky": {"command": FLAKY}})
    definition = load_workflow(write_workflow(tmp_path, f"""
        workflow:
          name: mixed
          steps:
            - {{id: first, skill: t, action: echo}}
            - id: second
              skill: t
              action: flaky
              params: {{ledger: {tmp_path / "ledger"}, fail_times: 1}}
              retry: {{attempts: 2, initial: 0s}}
    """), registry=discover([skill_root]))
    store = await Store.open(tmp_path / "state.db")
    try:
        engine = Engine(store)
        runs = [await engine.run(definition) for _ in range(3)]
        assert [r.status for r in runs] == ["succeeded"] * 3
        rows = [s for r in runs for s in await store.steps(r.run_id)]
        durations = sorted(s.duration for s in rows if s.step_id == "first")
    finally:
        await store.close()
    got = by_action(stats.compute(tmp_path / "state.db", workflow="mixed"))
    echo, flaky = got["t.echo"], got["t.flaky"]
    assert (echo.count, echo.success_rate, echo.retries) == (3, 1.0, 0)
    assert (echo.p50, echo.p95, echo.max) == (durations[1], durations[2], durations[2])
    # the ledger makes only the very first attempt of all fail: one retry in three runs
    assert (flaky.count, flaky.succeeded, flaky.retries) == (3, 3, 1)
    assert flaky.retries_per_run == pytest.approx(1 / 3)


async def test_an_older_database_is_upgraded_with_its_history(tmp_path):
    db = tmp_path / "state.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version in (1, 2):
        conn.executescript(f"BEGIN; {MIGRATIONS[version]}; "
                           f"INSERT INTO schema_version VALUES ({version}); COMMIT;")
    conn.execute("INSERT INTO runs (id, workflow, status, params, definition, file, created_at, "
                 "finished_at) VALUES ('r1', 'old', 'succeeded', '{}', '{}', 'f', 1, 20)")
    conn.executemany("INSERT INTO steps (run_id, step_id, position, skill, action, status, "
                     "attempts, started_at, finished_at) VALUES ('r1', ?, ?, 'k', 'a', ?, ?, 10, ?)",
                     [("s1", 0, "succeeded", 1, 13.0), ("s2", 1, "failed", 2, 11.0)])
    conn.close()
    await (await Store.open(db)).close()
    [row] = stats.compute(db, workflow="old")
    assert (row.count, row.succeeded, row.retries, row.p50, row.max) == (2, 1, 1, 1.0, 3.0)
    assert stats.last_successes(db) == {"old": 20.0}



def test_stats_over_all_history_costs_little_more_than_counting_its_steps(tmp_path):
    """Regression: the counting pass decoded every step's status, attempts and duration
    (3.2x the SQLite instructions of a bare count per skill/action; 70 ms over 100,000
    runs). Failures and retries now come from an index of the few steps that have them,
    and the longest duration from a seek: 1.5x. Counted in SQLite's virtual machine
    instructions (a progress handler every 100), which no load on the machine moves."""
    db = tmp_path / "state.db"
    write_history(db, plausible_runs(2000, seed=1))
    conn = sqlite3.connect(db, isolation_level=None)
    conn.row_factory = sqlite3.Row

    def instructions(work: Callable[[], object]) -> int:
        ticks = [0]
        conn.set_progress_handler(lambda: ticks.__setitem__(0, ticks[0] + 1) or 0, 100)
        work()
        conn.set_progress_handler(None, 100)
        return ticks[0]
    bare = instructions(lambda: conn.execute(
        f"SELECT skill, action, count(*) FROM steps WHERE {stats.RAN} "
        "GROUP BY skill, action").fetchall())
    ours = instructions(lambda: stats.compute_on(conn))
    assert ours < 2 * bare, (ours, bare)
    assert stats.compute_on(conn) == stats.compute(db)

# -- orchestratorctl stats --------------------------------------------------------------

def ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestratord.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_cli_prints_a_table_and_json_from_the_state_file(history):
    table = ctl("--state", str(history), "stats", "--workflow", "deploy")
    assert table.returncode == 0, table.stderr
    header, build, switch = table.stdout.splitlines()
    assert header.split() == ["SKILL.ACTION", "COUNT", "SUCCESS", "P50", "P95", "MAX",
                              "RETRIES/RUN"]
    assert build.split() == ["nix.build", "20", "75.0%", "10.0s", "19.0s", "20.0s", "0.30"]
    assert switch.split() == ["nix.switch", "15", "100.0%", "2.0s", "2.0s", "2.0s", "0.00"]

    as_json = ctl("--state", str(history), "stats", "--json", "--since",
                  datetime.datetime.fromtimestamp(T0 + 10.5 * HOUR).isoformat())
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == [s.as_dict() for s in
                                          stats.compute(history, since=T0 + 10.5 * HOUR)]
    assert ctl("--state", str(history), "stats", "--workflow", "nope").stdout.strip() == \
        "no steps ran in this period"


def test_cli_rejects_a_bad_since_naming_it(history):
    bad = ctl("--state", str(history), "stats", "--since", "last tuesday")
    assert bad.returncode == 2
    assert "--since: 'last tuesday' is neither" in bad.stderr


def test_cli_asks_the_daemon_when_it_runs(env, daemon):
    (env / "workflows" / "hello.yaml").write_text(workflow("hello", env / "ledger", steps=2))
    d = daemon()
    d.notify.wait_for("READY=1")
    assert d.ctl("run", "hello", "--wait").returncode == 0
    remote = d.ctl("stats", "--json", "--workflow", "hello", "--since", "1h")
    assert remote.returncode == 0, remote.stderr
    [work] = json.loads(remote.stdout)
    assert (work["skill"], work["action"], work["count"], work["success_rate"]) == \
        ("local", "work", 2, 1.0)
    assert d.ctl("stats", "--since", "1d").stdout.split("\n")[1].split()[:3] == \
        ["local.work", "2", "100.0%"]
    assert d.ctl("stats", "--since", "soon").returncode == 2
    assert d.stop() == 0
