"""Step units where systemd cannot run them, and what a unit leaves, read back.

The units themselves run under real systemd in tests/system/test_step_units.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from orchestratord.core.errors import StepFailure, StepTimeout
from orchestratord.engine.runners import run_action
from orchestratord.engine.runners.systemctl import BOOTED_MARKER
from orchestratord.engine.runners.unit import StepUnits, _stopped_by_shutdown
from orchestratord.engine.runners.unit_status import WRITE_STATUS
from orchestratord.language.model import ActionSpec
from orchestratord.language.step_sandbox import StepSandboxSettings

from .test_runners import ctx

no_systemd = pytest.mark.skipif(BOOTED_MARKER.is_dir(), reason="systemd is PID 1 here")
ACTION = ActionSpec(command=["python3", "-c", "print('{\"ok\": 1}')"])


def units(tmp_path: Path, mode: str = "auto", **sandbox) -> StepUnits:
    return StepUnits(mode, StepSandboxSettings(**sandbox), tmp_path)


@no_systemd
async def test_without_systemd_a_command_step_runs_as_a_child_as_before(tmp_path):
    assert await run_action(ACTION, {}, ctx(), http_session=None, units=units(tmp_path)) == {"ok": 1}


@no_systemd
async def test_always_fails_the_step_saying_why_units_cannot_be_had(tmp_path):
    with pytest.raises(StepFailure, match=r"step_units is always, but .*systemd is not PID 1"):
        await run_action(ACTION, {}, ctx(), http_session=None, units=units(tmp_path, "always"))


@no_systemd
async def test_a_requested_sandbox_that_cannot_be_had_is_an_error_when_so_configured(tmp_path):
    strict = units(tmp_path, skills={"k": {"MemoryMax": "1G"}}, unavailable="error")
    with pytest.raises(StepFailure, match="skill 'k' or its action 'a' asks for a sandbox"):
        await run_action(ACTION, {}, ctx(), http_session=None, units=strict)


@no_systemd
async def test_or_a_warning_recorded_with_the_run(tmp_path, store):
    definition = {"workflow": {"name": "w", "steps": [{"id": "s1", "skill": "k", "action": "a"}]}}
    run_id = await store.create_run("w", definition, "w.yaml", {}, [("s1", "k", "a")])
    lenient = StepUnits("auto", StepSandboxSettings(), tmp_path, record=store.record_event)
    action = ACTION.model_copy(update={"sandbox": {"PrivateNetwork": True}})
    step = ctx()
    step = type(step)(**{**step.__dict__, "run_id": run_id})
    assert await run_action(action, {}, step, http_session=None, units=lenient) == {"ok": 1}
    events = [e for e in await store.events(run_id) if e.type == "step_sandbox_unavailable"]
    assert [(e.step_id, e.data["policy"]) for e in events] == [("s1", "warn")]
    assert "systemd is not PID 1" in events[0].data["reason"]


def left(tmp_path: Path, unit: str, status: dict, stdout: str = "") -> StepUnits:
    """What a unit leaves in its directory: the status ExecStopPost= wrote, its stdout."""
    where = tmp_path / "step-units" / unit
    where.mkdir(parents=True)
    (where / "status").write_text(json.dumps(status))
    (where / "stdout").write_text(stdout)
    return units(tmp_path)


@pytest.mark.parametrize("status,error,kind", [
    ({"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "75"},
     r"exited with status 75", "retryable"),
    ({"SERVICE_RESULT": "oom-kill", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"},
     r"ran out of memory \(MemoryMax=\)", "failed"),
    # cgroup v1: systemd says "signal"; the cgroup counted the OOM kill
    ({"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL",
      "MEMORY": {"oom_kills": 1, "limit": 64 << 20}}, r"ran out of memory \(MemoryMax=64M\)", "failed"),
    # no OOM count to go by (Linux < 4.13): the reason still names the limit
    ({"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL",
      "MEMORY": {"oom_kills": None, "limit": 64 << 20}},
     r"was killed by SIGKILL with MemoryMax=64M set \(possibly out of memory\)$", "failed"),
    ({"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL",
      "MEMORY": {"oom_kills": 0, "limit": 2**63 - 4096}}, r"was killed by SIGKILL$", "failed"),
    ({"SERVICE_RESULT": "timeout", "EXIT_CODE": "killed", "EXIT_STATUS": "TERM"},
     r"exceeded its RuntimeMaxSec=", "timeout"),
    ({"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "SEGV"},
     r"was killed by SIGSEGV", "failed"),
    # systemd calls a death by SIGTERM "success"; it was no success of the step's command
    ({"SERVICE_RESULT": "success", "EXIT_CODE": "killed", "EXIT_STATUS": "TERM"},
     r"was killed by SIGTERM", "failed"),
    ({"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "226"},
     r"could not set up its file system namespace", "failed"),
    ({}, r"ended without recording its status", "failed"),
])
async def test_what_a_failed_unit_left_becomes_the_attempts_failure(tmp_path, status, error, kind):
    collector = left(tmp_path, "u.service", status, '{"found": 3}')
    with pytest.raises(StepFailure, match=error) as caught:
        await collector._collect("u.service", ["x"], 1024)
    assert isinstance(caught.value, StepTimeout) == (kind == "timeout")
    assert caught.value.retryable == (kind == "retryable")
    assert not (tmp_path / "step-units" / "u.service").exists(), "collected at most once"


async def test_a_successful_units_stdout_is_the_result(tmp_path):
    collector = left(tmp_path, "u.service", {"SERVICE_RESULT": "success", "EXIT_CODE": "exited",
                                             "EXIT_STATUS": "0"}, '{"found": 3}\n')
    assert await collector._collect("u.service", ["x"], 1024) == {"found": 3}


SHUTTING_DOWN = "9 shutdown.target start waiting\n"
KILLED = {"EXIT_CODE": "killed", "EXIT_STATUS": "TERM"}


@pytest.mark.parametrize("result,exit,jobs,interrupted", [
    ("signal", KILLED, SHUTTING_DOWN, True),
    ("success", KILLED, SHUTTING_DOWN, True),  # systemd calls a death by SIGTERM "success"
    ("exit-code", {"EXIT_CODE": "exited", "EXIT_STATUS": "1"}, SHUTTING_DOWN, True),
    ("success", KILLED, "12 orchestrator-step-r-s-1.service stop running\n", False),  # alone
    ("success", {"EXIT_CODE": "exited", "EXIT_STATUS": "0"}, SHUTTING_DOWN, False),  # done first
])
def test_a_unit_stopped_by_a_shutdown_is_interrupted_not_failed(tmp_path, result, exit, jobs,
                                                                 interrupted):
    """Regression: after a reboot the daemon collected the step unit the shutdown had
    killed as a failed step (killed by SIGTERM) instead of running it again."""
    where = tmp_path / "u.service"
    where.mkdir()
    list_jobs = [sys.executable, "-c", f"print({jobs!r}, end='')"]  # stands in for systemctl
    subprocess.run([sys.executable, "-I", "-c", WRITE_STATUS, str(where / "status"), *list_jobs],
                   env={"SERVICE_RESULT": result, **exit}, check=True)
    assert _stopped_by_shutdown(where) is interrupted


def own_v1_memory_cgroup() -> Path | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            where = Path("/sys/fs/cgroup/memory", path.lstrip("/"))
            return where if os.access(where, os.W_OK) else None
    return None


@pytest.fixture
def memory_cgroup(request):
    """A child of this process's own cgroup v1 memory cgroup, limited to 32 MB."""
    own = own_v1_memory_cgroup()
    if own is None:
        pytest.skip("needs a cgroup v1 memory hierarchy whose cgroup of this process is writable "
                    "(as root on a v1 or hybrid host); cgroup v2 hosts report OOM kills to systemd")
    where = own / f"orchestrator-test-{os.getpid()}-{request.node.name[-20:].strip('[]')}"
    where.mkdir()
    (where / "memory.limit_in_bytes").write_text(str(32 << 20))
    yield where
    where.rmdir()


def in_cgroup(where: Path, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    def enter() -> None:
        (where / "cgroup.procs").write_text(str(os.getpid()))
    return subprocess.run(argv, preexec_fn=enter, **kwargs)


async def test_the_status_counts_the_oom_kills_of_the_units_cgroup_v1(tmp_path, memory_cgroup):
    """On cgroup v1 systemd cannot tell an OOM kill from another SIGKILL (Result=signal):
    ExecStopPost=, in the unit's cgroup, reads the count from memory.oom_control."""
    status = tmp_path / "status"
    write_status = [sys.executable, "-I", "-c", WRITE_STATUS, str(status)]
    env = {"SERVICE_RESULT": "signal", "EXIT_CODE": "killed", "EXIT_STATUS": "KILL"}
    in_cgroup(memory_cgroup, write_status, env=env, check=True)
    assert json.loads(status.read_text())["MEMORY"] == {"oom_kills": 0, "limit": 32 << 20}
    hog = in_cgroup(memory_cgroup, [sys.executable, "-c", "b = bytearray(256 << 20)"], timeout=60)
    assert hog.returncode == -signal.SIGKILL, hog
    in_cgroup(memory_cgroup, write_status, env=env, check=True)
    recorded = json.loads(status.read_text())
    assert recorded["MEMORY"] == {"oom_kills": 1, "limit": 32 << 20}
    with pytest.raises(StepFailure, match=r"ran out of memory \(MemoryMax=32M\)"):
        await left(tmp_path, "u.service", recorded)._collect("u.service", ["hog"], 1024)
