"""System-test fixtures, and what they build on the host for the containers of machine.py.

On the host: the Debian root file system every machine boots (debootstrapped once, cached,
``ensure_rootfs``) and the project's wheels (``build_wheels``, installed offline into a
container by ``install_project``). Fixtures: ``rootfs``, ``machine`` (one container per
session), ``boot_machine`` (extra containers in one test), ``installed_project``.

Everything under tests/system is marked ``system``. The tests skip, saying why, when this host
cannot run containers (not root, no systemd-nspawn, no debootstrap and no cached rootfs) or when
ORCHESTRATOR_SYSTEM_TESTS=0; with CI=true a missing tool is an error instead, so CI never skips
the system layer silently.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .machine import Machine, MachineError, die_with_parent

log = logging.getLogger("orchestratord.tests.system")

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]

DEFAULT_ROOTFS = Path("/var/cache/agent-orchestrator-tests/rootfs-bookworm")
SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "python3-venv", "curl", "procps", "iproute2")
# Units that only add noise or boot time in a test container; the getty ones would
# otherwise hold the read-only console.
MASKED_UNITS = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer",
    "fstrim.timer", "e2scrub_reap.service", "getty@tty1.service", "console-getty.service",
    "systemd-firstboot.service",
)
# Written last into a finished tree; a tree without it (or with an older recipe) is rebuilt.
MARKER = ".agent-orchestrator-testbed"
RECIPE = f"layout=1\nsuite={SUITE}\npackages={','.join(PACKAGES)}\nmasked={','.join(MASKED_UNITS)}\n"
VENV = "/opt/agent-orchestrator"
PACKAGE = "orchestratord"
# The test extra too: the tests that need systemd as PID 1 run inside a container.
EXTRAS = "journald,test"


def rootfs_path() -> Path:
    """Where the cached root file system lives (env ORCHESTRATOR_TEST_ROOTFS overrides)."""
    return Path(os.environ.get("ORCHESTRATOR_TEST_ROOTFS") or DEFAULT_ROOTFS)


def rootfs_is_valid(path: Path) -> bool:
    """True when ``path`` is a completely built tree of the current recipe."""
    try:
        return (path / MARKER).read_text() == RECIPE
    except OSError:
        return False


def debian_mirror() -> str:
    """The Debian mirror the host's apt uses for the suite (env ORCHESTRATOR_TEST_MIRROR overrides)."""
    if os.environ.get("ORCHESTRATOR_TEST_MIRROR"):
        return os.environ["ORCHESTRATOR_TEST_MIRROR"]
    # apt itself resolves sources.list, deb822 .sources files and their options.
    query = ["apt-get", "indextargets", "--format", "$(RELEASE) $(REPO_URI)", "Created-By: Packages"]
    listed = subprocess.run(query, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True).stdout if shutil.which("apt-get") else ""
    uris = [line.split()[1] for line in listed.splitlines() if line.split()[:1] == [SUITE]]
    return uris[0] if uris else "http://deb.debian.org/debian"


@contextmanager
def cache_lock(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file``: two sessions must not build one cache entry at once."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _unmount_under(path: Path) -> None:
    # debootstrap mounts proc/sys in its target; an interrupted build can leave them mounted,
    # and rmtree must never descend into them.
    prefix = str(path.resolve())
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m == prefix or m.startswith(prefix + "/")), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)


def remove_tree(path: Path) -> None:
    """Remove a cache entry or build leftover, unmounting anything still mounted inside it."""
    _unmount_under(path)
    shutil.rmtree(path, ignore_errors=True)


def ensure_rootfs(path: Path | None = None) -> Path:
    """Return a valid cached root file system, building it first if needed.

    The tree is debootstrapped into a hidden temporary sibling and renamed into place only
    once complete, so an interrupted build leaves nothing that passes ``rootfs_is_valid``.
    """
    path = path or rootfs_path()
    if rootfs_is_valid(path):
        return path
    with cache_lock(path.parent / f".{path.name}.lock"):
        if rootfs_is_valid(path):
            return path
        for stale in path.parent.glob(f".{path.name}.*-*"):
            log.info("removing leftover of an interrupted build: %s", stale)
            remove_tree(stale)
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
        started = time.monotonic()
        _debootstrap(tmp)
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            path.rename(old)
            tmp.rename(path)
            remove_tree(old)
        else:
            tmp.rename(path)
        log.info("built %s in %.1fs", path, time.monotonic() - started)
    return path


def _debootstrap(target: Path) -> None:
    mirror = debian_mirror()
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(target), mirror]
    log.info("building rootfs: %s", shlex.join(cmd))
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=die_with_parent)
    if result.returncode != 0:
        remove_tree(target)
        tail = "\n".join(result.stdout.splitlines()[-30:])
        raise MachineError(
            f"debootstrap of {SUITE} from {mirror} into {target} failed (exit {result.returncode}); "
            f"check the mirror (ORCHESTRATOR_TEST_MIRROR) and network:\n{tail}")
    # An empty machine-id gives every boot a fresh transient id; dbus's copy would pin one.
    (target / "etc/machine-id").write_text("")
    dbus_id = target / "var/lib/dbus/machine-id"
    dbus_id.unlink(missing_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    # Without /etc/hostname the container keeps the machine name nspawn gives it.
    (target / "etc/hostname").unlink(missing_ok=True)
    for unit in MASKED_UNITS:
        link = target / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    for deb in (target / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    (target / MARKER).write_text(RECIPE)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/system as ``system`` (select with -m system, skip with -m 'not system')."""
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.system)


def missing_requirements(rootfs: Path | None = None) -> list[str]:
    """Say what this host lacks to run system tests; empty when it has everything."""
    problems = []
    if os.geteuid() != 0:
        problems.append("system tests need root (systemd-nspawn, nsenter)")
    for tool, package in (("systemd-nspawn", "systemd-container"), ("nsenter", "util-linux")):
        if shutil.which(tool) is None:
            problems.append(f"{tool} not found: apt-get install {package}")
    if shutil.which("debootstrap") is None and not rootfs_is_valid(rootfs or rootfs_path()):
        problems.append("debootstrap not found and no cached rootfs: apt-get install debootstrap")
    return problems


def _project_files(project_root: Path) -> list[Path]:
    # What a wheel is built from: the build metadata and the package (bench/ and tests/
    # are not shipped, and bench/ may hold a whole virtualenv of peer orchestrators).
    names = ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in", "README.md", "LICENSE")
    files = [project_root / n for n in names if (project_root / n).is_file()]
    files += sorted(p for p in (project_root / PACKAGE).rglob("*") if p.is_file()
                    and "__pycache__" not in p.parts and p.suffix != ".pyc")
    return files


def _digest(paths: list[Path], root: Path, salt: str = "") -> str:
    h = hashlib.sha256(f"python{sys.version_info[0]}.{sys.version_info[1]}{salt}".encode())
    for path in paths:
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _ensure_build_tools() -> None:
    # systemd-python (the journald extra) compiles against libsystemd.
    probe = ["pkg-config", "--exists", "libsystemd"]
    if shutil.which("pkg-config") and subprocess.run(probe).returncode == 0:
        return
    log.info("installing libsystemd-dev and pkg-config to build systemd-python")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "libsystemd-dev", "pkg-config"]
    result = subprocess.run(install, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if result.returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        result = subprocess.run(install, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if result.returncode != 0:
        raise MachineError("building systemd-python needs libsystemd-dev and pkg-config; "
                           f"`apt-get install libsystemd-dev pkg-config` failed:\n{result.stdout[-3000:]}")


def _pip_wheel(staged: Path, out_dir: Path, deps: bool) -> None:
    # Built into a temporary sibling and renamed, like the rootfs, so a cache entry is complete.
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    remove_tree(tmp)
    requirement = f"{staged}[{EXTRAS}]" if deps else str(staged)
    cmd = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--wheel-dir", str(tmp),
           *(() if deps else ("--no-deps",)), requirement]
    log.info("building wheels: %s", shlex.join(cmd))
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=staged, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        remove_tree(tmp)
        raise MachineError(f"pip wheel failed for {requirement}:\n{result.stdout[-4000:]}")
    if deps:
        # The dependency set must not carry a project wheel that would shadow newer sources.
        for wheel in tmp.glob("agent_orchestrator-*.whl"):
            wheel.unlink()
    tmp.rename(out_dir)
    log.info("built %s in %.1fs", out_dir, time.monotonic() - started)


def build_wheels(project_root: Path, cache_dir: Path | None = None) -> list[Path]:
    """Wheels of the project and of its dependencies (journald and test extras), cached on the host.

    Dependencies are keyed by pyproject.toml, the project wheel by pyproject.toml plus the package
    sources, so a source change rebuilds one small wheel. Returns the directories to install from.
    """
    project_root = Path(project_root).resolve()
    cache_dir = Path(cache_dir) if cache_dir else rootfs_path().parent / "wheels"
    files = _project_files(project_root)
    deps_dir = cache_dir / f"deps-{_digest([project_root / 'pyproject.toml'], project_root, EXTRAS)}"
    project_dir = cache_dir / f"project-{_digest(files, project_root)}"
    with cache_lock(cache_dir / ".lock"):
        if deps_dir.is_dir() and project_dir.is_dir():
            for used in (deps_dir, project_dir):
                os.utime(used)  # pruning below keeps the most recently used entries
            return [deps_dir, project_dir]
        for stale in cache_dir.glob(".*.tmp-*"):
            remove_tree(stale)
        with tempfile.TemporaryDirectory(prefix="orchestrator-src-") as tmp:
            # Build from a copy holding exactly the hashed files, so the wheel matches its key
            # and no build/ or egg-info lands in the working tree.
            staged = Path(tmp)
            for path in files:
                dest = staged / path.relative_to(project_root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
            if not deps_dir.is_dir():
                _ensure_build_tools()
                _pip_wheel(staged, deps_dir, deps=True)
            if not project_dir.is_dir():
                _pip_wheel(staged, project_dir, deps=False)
        for prefix, keep in (("deps-", 2), ("project-", 3)):
            entries = sorted(cache_dir.glob(f"{prefix}*"), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in entries[keep:]:
                if old not in (deps_dir, project_dir):
                    remove_tree(old)
    return [deps_dir, project_dir]


def install_project(machine: Machine, project_root: Path, cache_dir: Path | None = None) -> str:
    """Install the project with its journald extra into a venv at /opt/agent-orchestrator, offline.

    Wheels are built on the host (the container has no network and no compiler) and copied
    in; host and container must therefore share the Python minor version. Returns the venv path.
    """
    inside = machine.succeed("python3 -c 'import sys; print(\"%d.%d\" % sys.version_info[:2])'").strip()
    host = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if inside != host:
        raise MachineError(f"the container has Python {inside} but wheels are built with the host's {host} "
                           f"({sys.executable}); run the system tests with a Python {inside} interpreter")
    started = time.monotonic()
    links = []
    for wheel_dir in build_wheels(project_root, cache_dir):
        machine.copy_from_host(wheel_dir, f"/wheels/{wheel_dir.name}")
        links += ["--find-links", f"/wheels/{wheel_dir.name}"]
    machine.succeed(f"python3 -m venv {VENV} && {VENV}/bin/pip install --disable-pip-version-check "
                    f"--no-index {shlex.join(links)} 'agent-orchestrator[journald]'", timeout=600)
    log.info("installed the project into %s:%s in %.1fs", machine.name, VENV, time.monotonic() - started)
    return VENV


@pytest.fixture(scope="session", autouse=True)
def _system_bed_available() -> None:
    """Skip (or, under CI=true, fail) the system tests when this host cannot run them."""
    if os.environ.get("ORCHESTRATOR_SYSTEM_TESTS") == "0":
        pytest.skip("system tests disabled by ORCHESTRATOR_SYSTEM_TESTS=0")
    problems = missing_requirements()
    if not problems:
        return
    reason = "system test bed unavailable: " + "; ".join(problems)
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the system layer must run, not be skipped)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def rootfs() -> Path:
    """The cached Debian root file system, built on first use."""
    return ensure_rootfs()


@pytest.fixture(scope="session")
def machine(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """One container booted for the whole session; always powered off at the end."""
    booted = Machine(rootfs, log_dir=tmp_path_factory.mktemp("machine"))
    try:
        booted.start()
        yield booted
    finally:
        booted.shutdown()


@pytest.fixture
def boot_machine(rootfs: Path, tmp_path: Path) -> Iterator[Callable[..., Machine]]:
    """Factory for extra containers in one test (``boot_machine(binds=...)``); all shut down after it."""
    machines: list[Machine] = []

    def boot(**kwargs: object) -> Machine:
        kwargs.setdefault("log_dir", tmp_path)
        extra = Machine(rootfs, **kwargs)  # type: ignore[arg-type]
        machines.append(extra)
        extra.start()
        return extra

    yield boot
    for extra in machines:
        extra.shutdown()


@pytest.fixture(scope="session")
def installed_project(machine: Machine) -> str:
    """The project with its journald extra installed in the session machine; returns the venv path."""
    return install_project(machine, PROJECT_ROOT)
