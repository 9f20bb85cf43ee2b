"""orchestratord under real systemd: readiness, orchestrator@ units, journald, reload,
crash and restart, cancel by stop, watchdog, load."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Iterator

import pytest

from orchestratord.engine.context import MESSAGE_IDS

from .machine import Machine

pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

ETC = "/etc/agent-orchestrator"
CURSOR = "/run/agent-orchestrator-test.journal-cursor"

# A command skill the workflows below use: appends its step id to a ledger, sleeps, and
# fails when told to. Plain python3 of the container, stdlib only.
STEP_PY = textwrap.dedent("""
    import json, os, sys, time
    p = json.load(sys.stdin)
    with open("/var/lib/agent-orchestrator/ledger", "a") as f:
        f.write(os.environ["ORCHESTRATOR_RUN_ID"] + " " + os.environ["ORCHESTRATOR_STEP_ID"] + "\\n")
    print("working on " + os.environ["ORCHESTRATOR_STEP_ID"], file=sys.stderr, flush=True)
    time.sleep(p.get("sleep", 0))
    if p.get("fail"):
        sys.exit("told to fail")
    print(json.dumps({"step": os.environ["ORCHESTRATOR_STEP_ID"]}))
""")


def workflow(name: str, steps: int, sleep: float = 0.0, fail_at: int | None = None) -> str:
    items = [{"id": f"s{i}", "skill": "work", "action": "step",
              "params": {"sleep": sleep, "fail": i == fail_at}} for i in range(steps)]
    return json.dumps({"workflow": {"name": name, "steps": items}})


def write(machine: Machine, path: str, text: str) -> None:
    machine.succeed(f"mkdir -p $(dirname {path}) && cat > {path} <<'EOF'\n{text}\nEOF")


def install(machine: Machine, venv: str, step_units: str = "never") -> None:
    """The project's package and unit files installed as a distribution would, with the
    test skill `work` and the settings; workflows are the caller's."""
    machine.succeed(f"ln -sf {venv}/bin/orchestratord {venv}/bin/orchestratorctl /usr/local/bin/")
    units = machine.succeed(f"{venv}/bin/python -c 'import orchestratord, pathlib; "
                            "print(pathlib.Path(orchestratord.__file__).parent / \"daemon\" / \"units\")'").strip()
    machine.succeed(f"cp {units}/*.service /etc/systemd/system/")
    write(machine, f"{ETC}/skills/work/SKILL.md", "---\nname: work\ndescription: test work\n---\n")
    write(machine, f"{ETC}/skills/work/step.py", STEP_PY)
    write(machine, f"{ETC}/skills/work/actions.yaml",
          "actions:\n  step: {command: [python3, step.py], timeout: 60}\n")
    write(machine, f"{ETC}/settings.json", json.dumps({
        "workflows_dir": f"{ETC}/workflows", "skill_paths": [f"{ETC}/skills"], "kill_grace": 2,
        # These tests are about the daemon around steps run as its children (a shared
        # ledger in the state directory); test_step_units.py runs steps as units. A step
        # in a unit may write the ledger too.
        "step_units": step_units,
        "step_sandbox": {"skills": {"work": {"ReadWritePaths": ["/var/lib/agent-orchestrator"]}}}}))


@pytest.fixture(scope="module")
def installed(machine: Machine, installed_project: str) -> Machine:
    """install(), orchestratord not started."""
    install(machine, installed_project)
    machine.succeed("systemctl daemon-reload")
    return machine


def reset(machine: Machine) -> None:
    """orchestratord and every orchestrator@ unit stopped; no drop-ins or units a test
    added, no state, no ledger."""
    machine.succeed("systemctl stop 'orchestrator@*' orchestratord", timeout=180)
    machine.succeed("rm -rf /etc/systemd/system/orchestratord.service.d "
                    "/etc/systemd/system/orchestrator@.service.d "
                    "/etc/systemd/system/alerted.service /run/alerted && "
                    "systemctl daemon-reload && systemctl reset-failed")
    machine.succeed("rm -rf /var/lib/agent-orchestrator/*")
    # Where this test's journal begins: what earlier tests logged must not answer for it.
    machine.succeed(f"rm -f {CURSOR} && journalctl -q -n 1 --cursor-file={CURSOR} >/dev/null")


def log_of(machine: Machine, unit: str) -> str:
    """The messages `unit` logged since the last reset (this test's, not earlier ones')."""
    return machine.succeed(f"journalctl --sync; journalctl -u {unit} -o cat "
                           f"--after-cursor \"$(cat {CURSOR})\"")


@pytest.fixture
def configured(installed: Machine) -> Iterator[Machine]:
    """What each test starts from, whatever ran before it: the three workflows below,
    an empty state directory, orchestratord stopped. Reset again afterwards, so that a
    drop-in a test adds (the watchdog's, OnFailure=) outlives it in no other test."""
    reset(installed)
    installed.succeed(f"rm -rf {ETC}/workflows")
    write(installed, f"{ETC}/workflows/hello.json", workflow("hello", 3))
    write(installed, f"{ETC}/workflows/broken.json", workflow("broken", 2, fail_at=1))
    write(installed, f"{ETC}/workflows/slow.json", workflow("slow", 6, sleep=1))
    yield installed
    reset(installed)


@pytest.fixture
def daemon(configured: Machine) -> Machine:
    """configured, with orchestratord started (and ready: Type=notify)."""
    configured.succeed("systemctl start orchestratord")
    return configured


def last_run(machine: Machine, workflow: str) -> dict:
    runs = json.loads(machine.succeed(f"orchestratorctl runs --workflow {workflow} --json"))
    return runs[0]


def test_active_only_once_ready(configured: Machine) -> None:
    daemon = configured
    # Type=notify: `systemctl start` returns when READY=1 arrived, not before.
    daemon.succeed("systemctl start orchestratord")
    assert daemon.succeed("systemctl is-active orchestratord").strip() == "active"
    daemon.succeed("test -S /run/agent-orchestrator/control.sock")
    assert "hello\t3 steps" in daemon.succeed("orchestratorctl workflows")
    status = daemon.succeed("systemctl show -p StatusText --value orchestratord")
    assert status.startswith("idle: 3 workflows")


def test_unit_result_matches_the_run_and_journal_filters_one_run(daemon: Machine) -> None:
    daemon.succeed("systemctl start orchestrator@hello")  # oneshot: returns when the run ended
    assert daemon.succeed("systemctl show -p Result --value orchestrator@hello").strip() == "success"
    run = last_run(daemon, "hello")
    assert run["status"] == "succeeded"

    records = daemon.journal("-u", "orchestratord", f"RUN_ID={run['id']}")
    assert records, "journald has the run's records"
    assert {r["WORKFLOW"] for r in records} == {"hello"}
    assert {r.get("STEP_ID") for r in records} >= {"s0", "s1", "s2"}
    assert any(r.get("MESSAGE") == "working on s1" and r.get("ATTEMPT") == "1" and
               r.get("SKILL") == "work" and r.get("ACTION") == "step" for r in records)
    assert any(r.get("MESSAGE_ID") == MESSAGE_IDS["run_started"] for r in records)
    # the client unit mirrors progress in its own journal
    client = log_of(daemon, "orchestrator@hello")
    assert "✓ s2 succeeded" in client

    daemon.fail("systemctl start orchestrator@broken")
    daemon.succeed("systemctl is-failed orchestrator@broken")
    assert last_run(daemon, "broken")["status"] == "failed"


def test_reload_picks_up_changes_and_keeps_a_running_definition(daemon: Machine) -> None:
    write(daemon, f"{ETC}/workflows/hello.json", workflow("hello", 4))
    daemon.succeed("systemctl reload orchestratord")
    daemon.wait_until_succeeds("orchestratorctl workflows | grep -q 'hello\t4 steps'")
    write(daemon, f"{ETC}/workflows/hello.json", '{"workflow": {"name": "hello", "steps": [{"skill": "nope"}]}}')
    daemon.succeed("systemctl reload orchestratord")
    daemon.wait_until_succeeds(f"journalctl -u orchestratord -o cat --after-cursor "
                               f"\"$(cat {CURSOR})\" | grep -q 'workflow hello keeps its "
                               "previous definition'")
    assert "hello\t4 steps" in daemon.succeed("orchestratorctl workflows")
    assert daemon.succeed("systemctl is-active orchestratord").strip() == "active"
    daemon.succeed("systemctl start orchestrator@hello")
    assert last_run(daemon, "hello")["status"] == "succeeded"


def slow_run_succeeded_across_the_restart(daemon: Machine) -> None:
    """orchestrator@slow followed its run to success; each step ran once but the one in
    flight at the restart, which may have run twice."""
    daemon.wait_until_succeeds("systemctl show -p ActiveState --value orchestrator@slow "
                               "| grep -qx inactive", timeout=90)
    assert daemon.succeed("systemctl show -p Result --value orchestrator@slow").strip() == "success"
    run = last_run(daemon, "slow")
    assert run["status"] == "succeeded"
    ledger = daemon.succeed("cat /var/lib/agent-orchestrator/ledger").split("\n")
    ran = [line.split()[1] for line in ledger if line.startswith(run["id"])]
    assert sorted(set(ran)) == [f"s{i}" for i in range(6)]
    assert len(ran) - len(set(ran)) <= 1, f"only the step in flight may run twice: {ran}"


def test_kill_9_mid_run_restarts_and_finishes_without_rerunning(daemon: Machine) -> None:
    daemon.succeed("systemctl start --no-block orchestrator@slow")
    daemon.wait_until_succeeds("test $(wc -l < /var/lib/agent-orchestrator/ledger) -ge 3")
    pid = daemon.succeed("systemctl show -p MainPID --value orchestratord").strip()
    daemon.succeed(f"kill -9 {pid}")
    daemon.wait_until_succeeds(f"test $(systemctl show -p MainPID --value orchestratord) != {pid} "
                               "&& systemctl is-active orchestratord")
    # the client unit follows the run across the restart and reports its outcome
    slow_run_succeeded_across_the_restart(daemon)


def test_a_restart_mid_run_interrupts_and_resumes_the_run(daemon: Machine) -> None:
    """What `nixos-rebuild switch` does when settings change (restartTriggers): a
    `systemctl restart` of the daemon. The run goes on afterwards; its client unit, which
    a switch leaves alone (restartIfChanged = false), reports its outcome."""
    daemon.succeed("systemctl start --no-block orchestrator@slow")
    daemon.wait_until_succeeds("test $(wc -l < /var/lib/agent-orchestrator/ledger) -ge 2")
    pid = daemon.succeed("systemctl show -p MainPID --value orchestratord").strip()
    daemon.succeed("systemctl restart orchestratord")
    assert daemon.succeed("systemctl show -p MainPID --value orchestratord").strip() != pid
    slow_run_succeeded_across_the_restart(daemon)


def test_stopping_the_unit_cancels_the_run_and_is_a_clean_stop(daemon: Machine) -> None:
    """Regression: a deliberate stop failed the unit (status 3) and fired OnFailure=."""
    write(daemon, "/etc/systemd/system/alerted.service",
          "[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo %i >> /run/alerted'\n")
    write(daemon, "/etc/systemd/system/orchestrator@.service.d/alert.conf",
          "[Unit]\nOnFailure=alerted.service\n")
    daemon.succeed("systemctl daemon-reload && rm -f /run/alerted")
    daemon.succeed("systemctl start --no-block orchestrator@slow")
    daemon.wait_until_succeeds("orchestratorctl runs --workflow slow --status running --json "
                               "| grep -q running")
    daemon.succeed("systemctl stop orchestrator@slow")
    run = last_run(daemon, "slow")
    assert run["status"] == "cancelled"
    state = daemon.unit_state("orchestrator@slow.service")
    assert (state["ActiveState"], state["Result"]) == ("inactive", "success"), state
    # no step process survives
    daemon.wait_until_fails("pgrep -f '^python3 step.py'")

    # cancelled by someone else: the unit fails, and OnFailure= fires
    daemon.succeed("systemctl start --no-block orchestrator@slow")
    daemon.wait_until_succeeds("orchestratorctl runs --workflow slow --status running --json "
                               "| grep -q running")
    daemon.succeed(f"orchestratorctl cancel {last_run(daemon, 'slow')['id']}")
    daemon.wait_until_succeeds("systemctl is-failed orchestrator@slow")
    assert daemon.succeed("systemctl show -p ExecMainStatus --value orchestrator@slow").strip() == "3"
    daemon.wait_until_succeeds("test -s /run/alerted")


def test_a_stop_while_the_daemon_is_down_is_bounded_and_the_cancel_honoured(daemon: Machine) -> None:
    """Regression: with orchestratord stopped, `systemctl stop orchestrator@X` hung until
    TimeoutStopSec (90 s) and the cancel was lost: the run resumed and ran to its end."""
    daemon.succeed("systemctl start --no-block orchestrator@slow")
    daemon.wait_until_succeeds("test -s /var/lib/agent-orchestrator/ledger")
    run_id = last_run(daemon, "slow")["id"]
    daemon.succeed("systemctl stop orchestratord")
    started = time.monotonic()
    daemon.succeed("systemctl stop orchestrator@slow", timeout=120)
    took = time.monotonic() - started
    assert took < 25, f"stopping the client took {took:.0f}s"
    state = daemon.unit_state("orchestrator@slow.service")
    assert (state["ActiveState"], state["Result"]) == ("inactive", "success"), \
        daemon.unit_report("orchestrator@slow.service")
    client = log_of(daemon, "orchestrator@slow")
    assert f"recorded the cancel of run {run_id} in /var/lib/agent-orchestrator/state.db" in client
    ran = daemon.succeed("cat /var/lib/agent-orchestrator/ledger")
    daemon.succeed("systemctl start orchestratord")
    daemon.wait_until_succeeds(f"orchestratorctl show {run_id} --json | grep -q '\"cancelled\"'")
    assert daemon.succeed("cat /var/lib/agent-orchestrator/ledger") == ran, "a step ran again"


def test_an_instance_name_is_only_a_workflow_and_an_unknown_one_is_invalid_input(daemon: Machine) -> None:
    """Regression: `systemctl start orchestrator@--help` succeeded without a run."""
    for name in ("--help", "nope"):
        daemon.fail(f"systemctl start orchestrator@{name}")
        unit = f"orchestrator@{name}.service"
        assert daemon.succeed(f"systemctl show -p ExecMainStatus --value -- {unit}").strip() == "2"
        assert f"no workflow '{name}'" in log_of(daemon, unit)


def test_reload_returns_once_the_reload_is_done(daemon: Machine) -> None:
    """Regression: ExecReload=kill -HUP returned before the daemon had reread anything.
    Many workflows make the reload slow enough for the old race to show."""
    daemon.succeed(f"for i in $(seq 400); do "
                   f"sed s/hello/many$i/ {ETC}/workflows/hello.json > {ETC}/workflows/many$i.json; done")
    write(daemon, f"{ETC}/workflows/hello.json", workflow("hello", 5))
    daemon.succeed("systemctl reload orchestratord")
    assert "hello\t5 steps" in daemon.succeed("orchestratorctl workflows")  # no waiting
    daemon.succeed(f"rm {ETC}/workflows/many*.json")
    write(daemon, f"{ETC}/workflows/hello.json", workflow("hello", 3))
    daemon.succeed("systemctl reload orchestratord")
    assert "hello\t3 steps" in daemon.succeed("orchestratorctl workflows")


def test_watchdog_restarts_a_daemon_whose_loop_is_blocked(daemon: Machine) -> None:
    """The loop is blocked by a python action, which the daemon awaits on it, from a
    module the drop-in puts on its PYTHONPATH."""
    write(daemon, f"{ETC}/test-python/stall_loop.py",
          "import time\n\nasync def block(params, ctx):\n    time.sleep(3600)\n")
    write(daemon, f"{ETC}/workflows/stall.json", json.dumps({
        "workflow": {"name": "stall", "steps": [{"id": "s", "skill": "stall", "action": "block"}]},
        "skills": {"stall": {"actions": {"block": {"python": "stall_loop:block"}}}}}))
    write(daemon, "/etc/systemd/system/orchestratord.service.d/watchdog.conf",
          f"[Service]\nWatchdogSec=2s\nEnvironment=PYTHONPATH={ETC}/test-python\n")
    daemon.succeed("systemctl daemon-reload && systemctl restart orchestratord")
    pid = daemon.succeed("systemctl show -p MainPID --value orchestratord").strip()
    daemon.succeed("orchestratorctl run stall >/dev/null 2>&1 &")  # its answer may never come
    daemon.wait_until_succeeds(f"test $(systemctl show -p MainPID --value orchestratord) != {pid} "
                               "&& systemctl is-active orchestratord", timeout=30)
    assert "Watchdog timeout" in log_of(daemon, "orchestratord")


def test_hardening_exposure(installed: Machine) -> None:
    out = installed.succeed("systemd-analyze security --no-pager orchestratord.service | tail -1")
    score = float(out.split("exposure level for orchestratord.service:")[1].split()[0])
    assert score < 3.0, out


def test_the_daemon_runs_with_the_units_file_limit(daemon: Machine) -> None:
    """The control API takes at most a quarter of the file limit; the unit raises it so
    that steps keep plenty (regression: clients starved a step of descriptors)."""
    pid = daemon.succeed("systemctl show -p MainPID --value orchestratord").strip()
    limits = daemon.succeed(f"grep 'Max open files' /proc/{pid}/limits").split()
    assert limits[3:5] == ["16384", "16384"], limits


def test_hundred_runs_at_once(daemon: Machine) -> None:
    write(daemon, f"{ETC}/workflows/ten.json", workflow("ten", 10))
    daemon.succeed("systemctl reload orchestratord")
    daemon.wait_until_succeeds("orchestratorctl workflows | grep -q ten")
    pid = daemon.succeed("systemctl show -p MainPID --value orchestratord").strip()
    rss_before = int(daemon.succeed(f"ps -o rss= -p {pid}"))
    daemon.succeed("for i in $(seq 100); do orchestratorctl run ten >/dev/null & done; wait", timeout=300)
    daemon.wait_until_succeeds(
        "test $(orchestratorctl runs --workflow ten --status succeeded --limit 1000 --json "
        "| python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') -eq 100", timeout=600)
    rss_after = int(daemon.succeed(f"ps -o rss= -p {pid}"))
    assert rss_after < rss_before + 80 * 1024, (rss_before, rss_after)
    assert daemon.succeed("systemctl is-active orchestratord").strip() == "active"
