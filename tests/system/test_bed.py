"""Smoke tests of the system-test bed: boot, commands, journald, notify units, shutdown, install."""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from . import memcg
from .conftest import MARKER, RECIPE, rootfs_is_valid
from .machine import Machine, MachineError

# The first test that needs the rootfs may build it (about a minute) and the wheels.
pytestmark = [pytest.mark.system, pytest.mark.timeout(900)]

NATIVE_SEND = """
import socket, sys
token = sys.argv[1]
fields = f"MESSAGE=bed native message\\nPRIORITY=6\\nSYSLOG_IDENTIFIER=bed\\nBED_PROBE={token}\\n"
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.sendto(fields.encode(), "/run/systemd/journal/socket")
print("bed stdout line", flush=True)
"""

NOTIFY_WHEN_TOLD = """
import os, signal, socket, sys
open(sys.argv[1]).read()  # blocks until the test writes into the fifo
addr = os.environ["NOTIFY_SOCKET"]
addr = "\\0" + addr[1:] if addr.startswith("@") else addr
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.sendto(b"READY=1\\nSTATUS=bed ready", addr)
signal.pause()
"""


def token() -> str:
    return uuid.uuid4().hex[:12]


def test_boot_reaches_running_systemd(machine: Machine) -> None:
    _, state = machine.execute("systemctl is-system-running")
    assert state.strip() in ("running", "degraded"), machine.execute("systemctl --failed")[1]
    assert Path(f"/proc/{machine.pid1()}/comm").read_text().strip() == "systemd"
    assert machine.succeed("cat /proc/1/comm").strip() == "systemd"
    assert machine.succeed("hostname").strip() == machine.name
    assert machine.boot_seconds is not None and machine.boot_seconds < 60


def test_commands_report_exit_code_and_output(machine: Machine) -> None:
    assert machine.execute("echo out; echo err >&2; exit 3") == (3, "out\nerr\n")
    assert machine.succeed("echo fine") == "fine\n"
    with pytest.raises(AssertionError) as failed:
        machine.succeed("echo bed-diagnostic; exit 4")
    assert "exit 4" in str(failed.value) and "bed-diagnostic" in str(failed.value)
    assert "echo bed-diagnostic; exit 4" in str(failed.value)
    assert machine.fail("echo nope; false") == "nope\n"
    with pytest.raises(AssertionError):
        machine.fail("true")


def test_host_environment_does_not_leak_into_the_container(machine: Machine) -> None:
    """Regression: nsenter passes its environment on, so the host's PATH and PIP_* once reached commands."""
    out = machine.succeed("echo ${PIP_FIND_LINKS-unset} ${VIRTUAL_ENV-unset} $PATH")
    assert out.split() == ["unset", "unset", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]


def test_execute_timeout_kills_the_command_and_leaves_no_zombie(machine: Machine) -> None:
    """Regression: killing nsenter first orphaned its child to the host's init; the unreaped
    zombie then stayed in the container and held up its poweroff."""
    sleeper = f"/tmp/bedsleep{token()[:6]}"  # a name of its own, under the 15 characters of comm
    machine.succeed(f"cp /bin/sleep {sleeper}")
    with pytest.raises(TimeoutError) as timed_out:
        machine.execute(f"echo started; exec {sleeper} 31", timeout=1)
    assert "started" in str(timed_out.value)
    assert Path(sleeper).name not in machine.succeed("ps -e -o comm=").split()


def test_shutdown_kills_commands_still_running(boot_machine: Callable[..., Machine]) -> None:
    """Regression: a command still running at poweroff left nsenter stopped and the container hanging."""
    extra = boot_machine()
    result: list[tuple[int, str]] = []
    worker = threading.Thread(target=lambda: result.append(extra.execute("echo begun; sleep 300")))
    worker.start()
    extra.wait_until_succeeds("pgrep -x sleep")
    started = time.monotonic()
    extra.shutdown()
    worker.join(10)
    assert time.monotonic() - started < 10, extra.console_tail()
    assert not worker.is_alive() and result and result[0][0] != 0
    assert f"Container {extra.name} has been shut down" in extra.console_log.read_text()


def test_writes_in_the_container_never_reach_the_cached_rootfs(machine: Machine, rootfs: Path) -> None:
    probe = f"bed-probe-{token()}"
    machine.succeed(f"touch /etc/{probe} && test -e /etc/{probe}")
    assert not (rootfs / "etc" / probe).exists()
    assert rootfs_is_valid(rootfs)
    # Nothing in the cache changed since the build wrote its completion marker last.
    changed = subprocess.run(["find", str(rootfs), "-newer", str(rootfs / MARKER), "-print", "-quit"],
                             stdout=subprocess.PIPE, text=True, check=True).stdout
    assert changed == ""


def test_copy_from_host_copies_files_and_directories(machine: Machine, tmp_path: Path) -> None:
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "data.txt").write_text("bed data\n")
    script = tmp_path / "tool.sh"
    script.write_text("#!/bin/sh\necho tool ran\n")
    script.chmod(0o755)
    machine.copy_from_host(tmp_path / "tree", "/srv/bed/copied")
    machine.copy_from_host(script, "/usr/local/bin/bed-tool")
    assert machine.succeed("cat /srv/bed/copied/sub/data.txt") == "bed data\n"
    assert machine.succeed("bed-tool") == "tool ran\n"
    assert machine.succeed("stat -c %U /srv/bed/copied/sub/data.txt").strip() == "root"


def test_journal_round_trip_with_structured_fields(machine: Machine) -> None:
    tok = token()
    machine.succeed(f"systemd-run --wait --quiet --unit bed-journal-{tok} -p LogExtraFields=BED_RUN={tok} "
                    f"python3 -c {shlex.quote(NATIVE_SEND)} {tok}")
    native = machine.journal(f"BED_PROBE={tok}")
    assert [(e["MESSAGE"], e["PRIORITY"], e["SYSLOG_IDENTIFIER"]) for e in native] == [
        ("bed native message", "6", "bed")]
    stdout = machine.journal(f"BED_RUN={tok}", "-u", f"bed-journal-{tok}.service")
    assert "bed stdout line" in [e["MESSAGE"] for e in stdout]
    assert machine.journal(f"BED_PROBE=never-{tok}") == []


def test_notify_unit_is_active_only_after_ready(machine: Machine) -> None:
    tok = token()
    unit, fifo = f"bed-notify-{tok}.service", f"/run/bed-go-{tok}"
    machine.succeed(f"mkfifo {fifo} && systemd-run --no-block --unit {unit} -p Type=notify "
                    f"python3 -c {shlex.quote(NOTIFY_WHEN_TOLD)} {fifo}")
    machine.wait_until_succeeds(f"test $(systemctl show -p ActiveState --value {unit}) = activating")
    machine.succeed(f"echo go > {fifo}")
    machine.wait_for_unit(unit, timeout=30)
    assert machine.succeed(f"systemctl show -p StatusText --value {unit}").strip() == "bed ready"
    machine.succeed(f"systemctl stop {unit}")


def test_wait_for_unit_fails_fast_with_status_and_journal_tail(machine: Machine) -> None:
    tok = token()
    unit = f"bed-fail-{tok}.service"
    # Type=notify: a daemon that dies before READY=1 is never active, so the failure cannot be missed.
    machine.succeed(f"systemd-run --no-block --unit {unit} -p Type=notify "
                    f"sh -c 'echo bed-fail-marker-{tok}; exit 3'")
    started = time.monotonic()
    with pytest.raises(AssertionError) as failed:
        machine.wait_for_unit(unit, timeout=60)
    assert time.monotonic() - started < 30, "wait_for_unit waited for the timeout instead of failing fast"
    message = str(failed.value)
    assert f"unit {unit} failed" in message
    assert "status=3" in message  # from systemctl status
    assert f"bed-fail-marker-{tok}" in message  # from the journal tail


def test_machines_boot_side_by_side_and_shut_down_cleanly(machine: Machine, rootfs: Path, tmp_path: Path) -> None:
    with Machine(rootfs, log_dir=tmp_path) as extra:
        nspawn_pid, pid1 = extra.nspawn_pid, extra.pid1()
        assert extra.name != machine.name
        assert extra.succeed("cat /etc/machine-id") != machine.succeed("cat /etc/machine-id")
    assert not Path(f"/proc/{nspawn_pid}").exists() and not Path(f"/proc/{pid1}").exists()
    assert f"Container {extra.name} has been shut down" in extra.console_log.read_text()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert extra.name not in mounts and str(rootfs) not in mounts
    assert not Path("/run/systemd/nspawn/propagate", extra.name).exists()
    extra.shutdown()  # a second call is a no-op
    with pytest.raises(MachineError):
        extra.pid1()
    assert machine.succeed("echo still here") == "still here\n"


def test_shutdown_kills_a_container_whose_poweroff_hangs(boot_machine: Callable[..., Machine]) -> None:
    extra = boot_machine()
    # A unit whose stop neither signals nor times out keeps poweroff waiting forever.
    extra.succeed("systemd-run --unit bed-hang -p KillSignal=SIGCONT -p TimeoutStopSec=infinity sleep infinity")
    nspawn_pid, pid1 = extra.nspawn_pid, extra.pid1()
    started = time.monotonic()
    extra.shutdown(timeout=2)
    assert time.monotonic() - started < 15
    assert not Path(f"/proc/{nspawn_pid}").exists() and not Path(f"/proc/{pid1}").exists()
    assert not Path("/run/systemd/nspawn/propagate", extra.name).exists()
    assert f"Container {extra.name} has been shut down" not in extra.console_log.read_text()


def test_a_delegated_memory_cgroup_enforces_memory_max_and_goes_with_a_killed_container(
        boot_machine: Callable[..., Machine]) -> None:
    extra = boot_machine(delegate_memory=True)
    # On a cgroup v1 host the container's systemd has a memory cgroup of its own (on v2 none is needed).
    assert (extra.memory_cgroup is None) == memcg.pure_v2()
    cgroup = extra.memory_cgroup
    out = extra.fail("systemd-run --wait -p MemoryMax=32M python3 -c 'b = bytearray(512 << 20)'", timeout=60)
    assert "code=killed/status=KILL" in out or "oom-kill" in out, out
    if cgroup is not None:
        assert (cgroup / "system.slice").is_dir()
    nspawn_pid, pid1 = extra.nspawn_pid, extra.pid1()
    subprocess.run(["kill", "-KILL", str(pid1)], check=True)  # no poweroff: the container is killed
    extra.shutdown(timeout=10)
    assert not Path(f"/proc/{nspawn_pid}").exists()
    assert cgroup is None or not cgroup.exists(), f"{cgroup} was left behind"


def test_a_host_without_a_memory_hierarchy_is_named_as_such() -> None:
    with pytest.raises(memcg.NoMemoryHierarchy, match="no cgroup v1 memory hierarchy"):
        memcg.own_memory_cgroup("3:cpu:/\n1:name=systemd:/\n0::/\n")


def test_bind_mounts_given_at_boot_are_visible(boot_machine: Callable[..., Machine], tmp_path: Path) -> None:
    (tmp_path / "shared.txt").write_text("from the host\n")
    extra = boot_machine(ro_binds={str(tmp_path): "/mnt/host"})
    assert extra.succeed("cat /mnt/host/shared.txt") == "from the host\n"
    extra.fail("touch /mnt/host/written-inside")
    assert not (tmp_path / "written-inside").exists()


def test_boot_failure_reports_the_console_output(tmp_path: Path) -> None:
    empty = tmp_path / "not-an-os"
    empty.mkdir()
    broken = Machine(empty, log_dir=tmp_path, boot_timeout=20)
    with pytest.raises(MachineError) as failed:
        broken.start()
    assert "did not boot" in str(failed.value)
    assert str(empty) in str(failed.value) and "Refusing" in str(failed.value)  # nspawn's own words
    assert broken.nspawn_pid is None


def test_rootfs_without_the_completion_marker_is_not_valid(tmp_path: Path) -> None:
    """Regression: a half-built tree must never be taken for a usable rootfs."""
    tree = tmp_path / "rootfs"
    (tree / "usr/lib/systemd").mkdir(parents=True)
    assert not rootfs_is_valid(tree)
    (tree / MARKER).write_text(RECIPE.replace("layout=", "layout=old-"))
    assert not rootfs_is_valid(tree)
    (tree / MARKER).write_text(RECIPE)
    assert rootfs_is_valid(tree)


def test_project_installs_offline_and_logs_through_systemd_python(machine: Machine, installed_project: str) -> None:
    assert machine.succeed("ip -o link show | awk -F': ' '{print $2}'").split() == ["lo"]
    out = machine.succeed(f"{installed_project}/bin/python -c "
                          "'import orchestratord, systemd.journal; print(orchestratord.__file__)'")
    assert out.startswith(f"{installed_project}/lib/python3")
    tok = token()
    machine.succeed(f"{installed_project}/bin/python -c "
                    f"'from systemd import journal; journal.send(\"bed via systemd-python\", BED_PY=\"{tok}\")'")
    assert [e["MESSAGE"] for e in machine.journal(f"BED_PY={tok}")] == ["bed via systemd-python"]
