"""A Debian container with real systemd and journald, driven like a NixOS test-driver machine.

A ``Machine`` boots a throwaway view of a Debian root file system (built and cached by
``ensure_rootfs`` in conftest.py) with ``systemd-nspawn --volatile=overlay``:
the cached tree is the read-only lower layer of an overlayfs whose upper layer is a tmpfs
inside nspawn's own mount namespace, so booting costs no copy, writes never reach the
cache, several machines may boot the same tree at once, and nothing is left on the host
even if nspawn is killed. Commands run in the container through ``nsenter`` on the host
pid of the container's systemd.
"""

from __future__ import annotations

import ctypes
import io
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from . import memcg

log = logging.getLogger("orchestratord.tests.machine")

CONTAINER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb",
    "SYSTEMD_PAGER": "", "PAGER": "cat", "SYSTEMD_COLORS": "0",
}


class MachineError(RuntimeError):
    """The container (or what it needs: its rootfs, the project's wheels) could not be built, booted or reached."""


def die_with_parent() -> None:
    """``preexec_fn`` giving a child SIGTERM when the thread that started it ends.

    So a container (or a rootfs build) does not outlive a test process killed without running
    its finalizers: nspawn halts the container on SIGTERM. Start machines from a thread that
    lives as long as they do.
    """
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _processes() -> Iterator[tuple[int, int, int]]:
    """(pid, parent pid, process group) of every process on the host."""
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit():
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                yield int(entry.name), int(fields[1]), int(fields[2])
        except (OSError, IndexError, ValueError):
            continue


def _container_init(nspawn_pid: int) -> int | None:
    """Host pid of the container's systemd: the child of nspawn that is pid 1 in its namespace."""
    for pid, ppid, _ in _processes():
        if ppid != nspawn_pid:
            continue
        try:
            nspid = re.search(r"^NSpid:\s*(.*)$", Path(f"/proc/{pid}/status").read_text(), re.M)
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        # Before nspawn's child has exec'd systemd it is pid 1 too, but still nspawn.
        if nspid and nspid.group(1).split()[-1] == "1" and exe.endswith("/systemd"):
            return pid
    return None


def _kill_command(proc: subprocess.Popen) -> None:
    # Kill what nsenter runs (its process group), but not nsenter first: nsenter lives in the
    # host's pid namespace, so if it died first its child would be reparented to the host's
    # init, and that zombie, living in the container's namespace, would hold up poweroff.
    for pid, _, pgid in _processes():
        if pgid == proc.pid and pid != proc.pid:
            _signal(pid, signal.SIGKILL)
    # systemd stops every process while powering off, and nsenter then stops itself too.
    _signal(proc.pid, signal.SIGCONT)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        _signal(proc.pid, signal.SIGKILL)


def _output_after_kill(proc: subprocess.Popen) -> bytes:
    try:
        return proc.communicate(timeout=5)[0] or b""
    except subprocess.TimeoutExpired:
        # A daemon the command started in its own session still holds the pipe open.
        proc.kill()
        proc.wait()
        return b""


class Machine:
    """One booted container; the API follows the NixOS test driver's ``machine`` object."""

    def __init__(self, rootfs: Path, *, name: str | None = None,
                 binds: Mapping[str, str] | None = None, ro_binds: Mapping[str, str] | None = None,
                 private_network: bool = True, boot_timeout: float = 60.0,
                 log_dir: Path | None = None, delegate_memory: bool = False) -> None:
        self.rootfs = Path(rootfs)
        self.name = name or f"orch-test-{uuid.uuid4().hex[:10]}"
        self.binds = dict(binds or {})
        self.ro_binds = dict(ro_binds or {})
        self.private_network = private_network
        # Give the container's systemd a memory controller on a cgroup v1 host (memcg.py).
        self.delegate_memory = delegate_memory
        self.memory_cgroup: Path | None = None
        self.boot_timeout = boot_timeout
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="orchestrator-machine-"))
        self.console_log = self.log_dir / f"{self.name}.console.log"
        self.boot_seconds: float | None = None
        self._proc: subprocess.Popen | None = None
        self._pid1: int | None = None
        self._commands: set[subprocess.Popen] = set()

    def __enter__(self) -> Machine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @property
    def nspawn_pid(self) -> int | None:
        """Host pid of the systemd-nspawn process, None when not running."""
        return self._proc.pid if self._proc else None

    def pid1(self) -> int:
        """Host pid of the container's systemd."""
        if self._pid1 is None:
            raise MachineError(f"machine {self.name} is not running; call start() first")
        return self._pid1

    def console_tail(self, lines: int = 40) -> str:
        """The last lines nspawn and the container's console printed."""
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console output)"
        return "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines()[-lines:])

    def start(self) -> None:
        """Boot the container and wait until systemd reports running or degraded."""
        if self._proc is not None:
            return
        cmd = ["systemd-nspawn", "--directory", str(self.rootfs), "--boot", "--volatile=overlay",
               "--register=no", f"--machine={self.name}", "--console=read-only"]
        if not Path("/run/systemd/system").exists():
            # Without systemd on the host there is no bus to create a scope unit on.
            cmd.append("--keep-unit")
        if self.private_network:
            cmd.append("--private-network")
        cmd += [f"--bind={host}:{inside}" for host, inside in self.binds.items()]
        cmd += [f"--bind-ro={host}:{inside}" for host, inside in self.ro_binds.items()]
        if self.delegate_memory and not memcg.pure_v2():
            try:
                self.memory_cgroup = memcg.create(self.name)
            except (memcg.NoMemoryHierarchy, OSError) as exc:
                raise MachineError(f"machine {self.name}: cannot delegate a memory cgroup: {exc}") from None
            cmd.append(f"--bind={self.memory_cgroup}:{memcg.BIND_POINT}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log.info("booting %s: %s", self.name, shlex.join(cmd))
        started = time.monotonic()
        deadline = started + self.boot_timeout
        try:
            with open(self.console_log, "wb") as console:
                self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console,
                                              stderr=subprocess.STDOUT, start_new_session=True,
                                              preexec_fn=die_with_parent)
        except BaseException:  # no process, so shutdown() would not remove the cgroup
            if self.memory_cgroup is not None:
                memcg.remove(self.memory_cgroup)
                self.memory_cgroup = None
            raise
        try:
            self._pid1 = self._wait_for_init(deadline)
            self._wait_for_boot(deadline)
            if self.memory_cgroup is not None:
                memcg.take_over(self, self.memory_cgroup, deadline)
                self._wait_for_boot(deadline)  # systemd is back after its re-exec
        except BaseException as exc:
            tail = self.console_tail()
            self.shutdown(timeout=10)
            if not isinstance(exc, Exception):
                raise
            raise MachineError(
                f"machine {self.name} did not boot from {self.rootfs} ({exc}; boot timeout "
                f"{self.boot_timeout:.0f}s); console output ({self.console_log}):\n{tail}") from None
        self.boot_seconds = time.monotonic() - started
        log.info("%s is up in %.2fs (systemd pid %d)", self.name, self.boot_seconds, self._pid1)

    def _wait_for_init(self, deadline: float) -> int:
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise MachineError(f"systemd-nspawn exited with {self._proc.returncode}")
            pid = _container_init(self._proc.pid)
            if pid is not None:
                return pid
            time.sleep(0.05)
        raise MachineError("systemd did not start in the container")

    def _wait_for_boot(self, deadline: float) -> None:
        state = ""
        while time.monotonic() < deadline:
            # Until PID 1's private socket exists systemctl fails at once; then --wait blocks.
            remaining = max(deadline - time.monotonic(), 1.0)
            _, out = self.execute("systemctl is-system-running --wait", timeout=remaining)
            state = out.strip().splitlines()[-1] if out.strip() else ""
            if state in ("running", "degraded"):
                if state == "degraded":
                    log.warning("%s booted degraded:\n%s", self.name,
                                self.execute("systemctl --failed --no-legend")[1])
                return
            time.sleep(0.1)
        raise MachineError(f"system state is {state!r}, not running/degraded")

    def shutdown(self, timeout: float = 30.0) -> None:
        """Power the container off cleanly, killing it if that hangs; safe to call twice."""
        proc, pid1 = self._proc, self._pid1
        if proc is None:
            return
        for command in list(self._commands):
            log.warning("%s: killing a command still running at shutdown: %s", self.name, command.args[-1])
            _kill_command(command)
        try:
            if proc.poll() is None:
                if pid1 is not None:
                    _signal(pid1, signal.SIGRTMIN + 4)  # systemd: start poweroff.target
                else:
                    proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning("%s did not power off within %.0fs; killing it:\n%s",
                                self.name, timeout, self.console_tail())
                    # Killing the namespace's init makes the kernel kill everything in it.
                    if pid1 is not None:
                        _signal(pid1, signal.SIGKILL)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            log.info("%s stopped (nspawn exit %s)", self.name, proc.returncode)
        finally:
            self._proc = None
            self._pid1 = None
            # A killed nspawn leaves its (empty) propagation directory behind.
            shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.name}", ignore_errors=True)
            if self.memory_cgroup is not None:
                cgroup, self.memory_cgroup = self.memory_cgroup, None
                memcg.remove(cgroup)

    def _nsenter(self, cmd: str) -> list[str]:
        return ["nsenter", "--target", str(self.pid1()), "--all", "/bin/sh", "-c", cmd]

    def execute(self, cmd: str, timeout: float = 120.0, input: bytes | None = None) -> tuple[int, str]:
        """Run ``/bin/sh -c cmd`` in all the container's namespaces; return (exit code, stdout+stderr).

        Raises TimeoutError (with the output so far) if it runs longer than ``timeout``.
        """
        log.debug("%s$ %s", self.name, cmd)
        proc = subprocess.Popen(self._nsenter(cmd), env=CONTAINER_ENV, start_new_session=True,
                                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._commands.add(proc)
        try:
            out, _ = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_command(proc)
            out = _output_after_kill(proc)
            raise TimeoutError(f"command timed out after {timeout:.0f}s in {self.name}: {cmd}\n"
                               f"output so far:\n{out.decode(errors='replace')}") from None
        except BaseException:
            _kill_command(proc)
            _output_after_kill(proc)
            raise
        finally:
            self._commands.discard(proc)
        return proc.returncode, out.decode(errors="replace")

    def succeed(self, cmd: str, timeout: float = 120.0) -> str:
        """Run ``cmd``; return its output, or raise AssertionError if it exits non-zero."""
        rc, out = self.execute(cmd, timeout)
        if rc != 0:
            raise AssertionError(f"command failed in {self.name} (exit {rc}): {cmd}\noutput:\n{out}")
        return out

    def fail(self, cmd: str, timeout: float = 120.0) -> str:
        """Run ``cmd``; return its output, or raise AssertionError if it exits zero."""
        rc, out = self.execute(cmd, timeout)
        if rc == 0:
            raise AssertionError(f"command unexpectedly succeeded in {self.name}: {cmd}\noutput:\n{out}")
        return out

    def _wait_until(self, cmd: str, want_success: bool, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            rc, out = self.execute(cmd, timeout=max(deadline - time.monotonic(), 1.0))
            if (rc == 0) == want_success:
                return out
            if time.monotonic() >= deadline:
                goal = "succeed" if want_success else "fail"
                raise AssertionError(f"command did not {goal} within {timeout:.0f}s in {self.name}: "
                                     f"{cmd}\nlast exit {rc}, output:\n{out}")
            time.sleep(0.2)

    def wait_until_succeeds(self, cmd: str, timeout: float = 60.0) -> str:
        """Repeat ``cmd`` until it exits zero; return its output."""
        return self._wait_until(cmd, True, timeout)

    def wait_until_fails(self, cmd: str, timeout: float = 60.0) -> str:
        """Repeat ``cmd`` until it exits non-zero; return its output."""
        return self._wait_until(cmd, False, timeout)

    def systemctl(self, args: str) -> tuple[int, str]:
        """Run ``systemctl ARGS`` in the container."""
        return self.execute(f"systemctl {args}")

    def unit_state(self, unit: str) -> dict[str, str]:
        """LoadState, ActiveState, SubState, Result and Job (empty when none) of ``unit``."""
        out = self.succeed(f"systemctl show -p LoadState,ActiveState,SubState,Result,Job {shlex.quote(unit)}")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def unit_report(self, unit: str, lines: int = 30) -> str:
        """``systemctl status`` and the journal tail of ``unit``, for error messages."""
        q = shlex.quote(unit)
        _, status = self.execute(f"systemctl status --no-pager --full {q}")
        _, tail = self.execute(f"journalctl --sync; journalctl --no-pager -o short-precise -n {lines} -u {q}")
        return f"--- systemctl status {unit} ---\n{status}\n--- journal of {unit} ---\n{tail}"

    def wait_for_unit(self, unit: str, timeout: float = 60.0) -> None:
        """Wait until ``unit`` is active.

        Fails at once, with the unit's status and journal tail, if the unit enters the failed
        state or is inactive with no job pending (nothing will start it), as the NixOS driver does.
        """
        deadline = time.monotonic() + timeout
        while True:
            state = self.unit_state(unit)
            active = state.get("ActiveState")
            if active == "active":
                return
            if active == "failed":
                raise AssertionError(f"unit {unit} failed in {self.name} (result {state.get('Result')})\n"
                                     + self.unit_report(unit))
            if active == "inactive" and state.get("LoadState") == "loaded" and not state.get("Job"):
                raise AssertionError(f"unit {unit} is inactive with no pending job in {self.name}\n"
                                     + self.unit_report(unit))
            if time.monotonic() >= deadline:
                raise AssertionError(f"unit {unit} not active within {timeout:.0f}s in {self.name}: "
                                     f"{state}\n" + self.unit_report(unit))
            time.sleep(0.2)

    def journal(self, *journalctl_args: str, sync: bool = True) -> list[dict]:
        """Entries of ``journalctl -o json ARGS``, e.g. ``journal("WORKFLOW=deploy", "-u", "x")``.

        ``sync`` first makes journald store everything logged so far, so a message sent just
        before the call is found.
        """
        if sync:
            self.succeed("journalctl --sync")
        out = self.succeed("journalctl --no-pager -o json " + shlex.join(journalctl_args))
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def copy_from_host(self, source: str | Path, target: str) -> None:
        """Copy a host file or directory to the absolute path ``target`` in the container (owned by root)."""
        source, target_path = Path(source), Path(target)
        if not target_path.is_absolute():
            raise ValueError(f"target must be an absolute path in the container, got {target!r}")
        buf = io.BytesIO()

        def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info

        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(source, arcname=target_path.name, filter=as_root)
        parent = shlex.quote(str(target_path.parent))
        rc, out = self.execute(f"mkdir -p {parent} && tar -C {parent} -xf -", input=buf.getvalue())
        if rc != 0:
            raise AssertionError(f"copying {source} to {self.name}:{target} failed (exit {rc}):\n{out}")
