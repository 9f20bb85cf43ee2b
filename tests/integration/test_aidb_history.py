"""Execution history to AIDB through the durable outbox, against a real fake AIDB."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from orchestratord.integrations.aidb.outbox import SESSION_NAMESPACE
from tests.aidb_fake import FakeAidb
from tests.waiting import until

from .aidb_env import api, configure, history_workflow, key_file, ready


@pytest.fixture
def aidb():
    fake = FakeAidb().start()
    yield fake
    fake.close()


def wait_status(env, predicate, what: str, timeout: float = 30):
    """/aidb/status once predicate holds for it."""
    return until(what, lambda: predicate(s := api(env, "GET", "/aidb/status")) and s, timeout)


def test_fake_aidb_refuses_writes_without_the_right_key_and_checks_fields(aidb):
    """The fake must hold the orchestrator to AIDB's rules, or the tests prove nothing."""
    import urllib.error
    import urllib.request

    def post(path, body, headers=None):
        req = urllib.request.Request(aidb.url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json", **(headers or {})})
        try:
            return urllib.request.urlopen(req, timeout=5).status
        except urllib.error.HTTPError as exc:
            return exc.code
    good = {"session_id": str(uuid.uuid4()), "query": "q"}
    assert post("/history/record", good) == 401
    assert post("/history/record", good, {"X-API-Key": "nope"}) == 403
    assert post("/history/record", good, {"Authorization": f"Bearer {aidb.key}"}) == 200
    assert post("/history/record", {**good, "query": ""}, {"X-API-Key": aidb.key}) == 422
    assert post("/history/record", {**good, "session_id": "x"}, {"X-API-Key": aidb.key}) == 422
    assert post("/history/record", {**good, "bogus": 1}, {"X-API-Key": aidb.key}) == 422
    assert post("/skills/import", {"slug": "a", "content": "x"}) == 401
    assert urllib.request.urlopen(aidb.url + "/skills?include_pending=false").status == 200


def run_while_aidb_is_down(env, daemon, aidb):
    """A daemon with history on, AIDB down, and a run of two steps done: its three
    records (two steps, the run) pending. Returns (daemon, run id, status)."""
    (env / "workflows" / "hist.yaml").write_text(history_workflow("hist", steps=2))
    configure(env, {"url": aidb.url, "api_key_file": key_file(env, aidb.key),
                    "discover": False})
    aidb.down()
    d = ready(daemon())
    result = d.ctl("run", "hist", "--wait", "--json")
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout.splitlines()[-1])["id"]
    return d, run_id, wait_status(env, lambda s: s["outbox_pending"] == 3, "3 records pending")


def test_aidb_down_for_a_whole_run_then_back_gets_every_record_once(env, daemon, aidb):
    _, run_id, status = run_while_aidb_is_down(env, daemon, aidb)
    assert status["oldest_pending_at"] is not None and not aidb.history
    aidb.up()
    records = aidb.wait_for_history(3)
    wait_status(env, lambda s: s["outbox_pending"] == 0 and s["outbox_sent"] == 3, "all sent")
    # Nothing more can come: a record is resent only until AIDB's 2xx marked it sent.
    ids = aidb.interaction_ids()
    assert len(ids) == len(set(ids)) == 3, ids
    assert set(ids) == {f"orchestrator:{run_id}:s0:1", f"orchestrator:{run_id}:s1:1",
                        *[i for i in ids if ":run:" in i]}
    session = str(uuid.uuid5(SESSION_NAMESPACE, run_id))
    for r in records:
        assert r["agent_type"] == "orchestrator" and r["session_id"] == session
        assert r["outcome"] == "succeeded" and isinstance(r["latency_ms"], int)
        assert r["metadata"]["workflow"] == "hist" and r["metadata"]["run"] == run_id
        assert r["metadata"]["status"] == "succeeded" and "attempts" in r["metadata"]
    step = next(r for r in records if r["metadata"].get("step") == "s0")
    assert step["query"].startswith("local.work ")
    assert step["metadata"]["skill"] == "local" and step["metadata"]["action"] == "work"
    assert "hunter2" not in json.dumps(records), "a secret param left for AIDB"
    metrics = api_metrics(env)
    assert "orchestrator_aidb_outbox_sent_total 3.0" in metrics
    assert "orchestrator_aidb_outbox_pending 0.0" in metrics
    assert 'orchestrator_aidb_outbox_failed_total{reason="unavailable"}' in metrics


def api_metrics(env) -> str:
    import http.client
    import socket as s

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = s.socket(s.AF_UNIX)
            self.sock.connect(str(env / "run" / "control.sock"))
    c = Conn("x")
    c.request("GET", "/metrics")
    return c.getresponse().read().decode()


def timed_run(env, name: str) -> float:
    """Seconds from asking for a run to its end, as seen through the control API."""
    start = time.monotonic()
    run_id = api(env, "POST", "/runs", {"workflow": name})["run_id"]
    run = until(f"run {run_id} of {name} to end",
                lambda: (r := api(env, "GET", f"/runs/{run_id}"))["status"] in
                ("succeeded", "failed") and r, 60)
    assert run["status"] == "succeeded", run
    return time.monotonic() - start


@pytest.mark.parametrize("fault", ["500", "slow"])
def test_failing_or_slow_aidb_does_not_delay_runs(env, daemon, aidb, fault):
    (env / "workflows" / "quick.yaml").write_text(history_workflow("quick", steps=3))
    baseline = daemon()  # AIDB off: the run as fast as it gets here
    ready(baseline)
    timed_run(env, "quick")  # warm caches
    off = min(timed_run(env, "quick") for _ in range(2))
    assert baseline.stop() == 0
    configure(env, {"url": aidb.url, "api_key_file": key_file(env, aidb.key),
                    "discover": False, "timeout": 5})
    if fault == "500":
        aidb.fail_status = 500
    else:
        aidb.delay = 3.0  # each record takes 3 s to be answered
    d = daemon()
    ready(d)
    on = min(timed_run(env, "quick") for _ in range(2))
    # Four records a run would cost 12 s if a run waited for slow AIDB, each a retry if
    # it waited for a failing one; the runs take what they took without AIDB.
    print(f"run with AIDB {fault}: {on:.2f} s, without AIDB: {off:.2f} s")
    assert on < off + 1.0, f"with AIDB {fault}: {on:.2f} s, without: {off:.2f} s"
    aidb.fail_status, aidb.delay = None, 0.0
    api(env, "POST", "/aidb/sync")
    aidb.wait_for_history(8)
    wait_status(env, lambda s: s["outbox_pending"] == 0, "all delivered")
    assert len(set(aidb.interaction_ids())) == 8


def test_records_pending_at_kill_9_are_delivered_after_restart(env, daemon, aidb):
    d, _, _ = run_while_aidb_is_down(env, daemon, aidb)
    d.proc.kill()
    d.proc.wait()
    aidb.up()
    d2 = daemon()
    ready(d2)
    aidb.wait_for_history(3)
    wait_status(env, lambda s: s["outbox_pending"] == 0, "all delivered")
    assert len(set(aidb.interaction_ids())) == len(aidb.interaction_ids()) == 3


def test_a_wrong_key_is_a_clear_error_and_an_alert_and_records_wait(env, daemon, aidb):
    (env / "workflows" / "hist.yaml").write_text(history_workflow("hist", steps=1))
    alerts = env / "alerts.jsonl"
    sink = [__import__("sys").executable, "-c",
            f"import sys; open({str(alerts)!r}, 'a').write(sys.stdin.read() + '\\n')"]
    configure(env, {"url": aidb.url, "api_key_file": key_file(env, "not-the-key"),
                    "discover": False, "undelivered_alert_after": 1},
              alerts={"commands": [sink]})
    d = daemon()
    ready(d)
    assert d.ctl("run", "hist", "--wait").returncode == 0
    until("an aidb_undelivered alert",
          lambda: alerts.exists() and "aidb_undelivered" in alerts.read_text(), 30)
    kinds = [json.loads(line)["kind"] for line in alerts.read_text().splitlines() if line]
    assert kinds.count("aidb_unauthorized") == 1, kinds  # once, not per retry
    status = d.ctl("aidb", "status")
    assert status.returncode == 1
    assert "key accepted:    no" in status.stdout
    assert "the key sent is wrong" in status.stdout and "aidb.api_key_file" in status.stdout
    assert "HTTP 403" in (env / "daemon.log").read_text()
    assert not aidb.history and json.loads(d.ctl("aidb", "status", "--json").stdout)[
        "outbox_pending"] == 2


async def test_sent_records_are_pruned_after_a_week_and_pending_ones_never(store, tmp_path):
    from orchestratord.integrations.aidb.outbox import Outbox
    outbox = Outbox(store.path)
    await outbox.open()
    try:
        await outbox.set_recording(True)
        run_id = await store.create_run("wf", {}, "f", {}, [("s", "k", "a")])
        await store.set_run_status(run_id, "succeeded", "run_succeeded")
        await store.set_run_status(run_id, "failed", "run_failed")
        rows = await outbox.due()
        assert len(rows) == 2  # written by the event's own transaction
        await outbox.mark_sent(rows[0]["id"])
        assert await outbox.prune(older_than=-1) == 1
        assert (await outbox.depth()).pending == 1
        await outbox.set_recording(False)
        await store.set_run_status(run_id, "succeeded", "run_succeeded")
        assert (await outbox.depth()).pending == 1  # history off: no new records
    finally:
        await outbox.close()
