"""The bundled nixos-deployment skill through the real engine: real files, real processes.

`nixos-rebuild` is a real executable placed first on PATH that records its argv and
working directory, so build, switch and rollback are checked by what they actually ran.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestratord.core.errors import StepFailure
from orchestratord.engine.engine import Engine
from orchestratord.language.loader import load_workflow
from orchestratord.skills import discover, search_path
from orchestratord.skills.bundled.nixos_deployment.actions import DEFAULT_FILE, parse_check
from orchestratord.store.sqlite import Store
from tests.conftest import require_tool, write_workflow

SKILL = "nixos-deployment"


@pytest.fixture
def state(tmp_path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def fake_rebuild(tmp_path, monkeypatch) -> Path:
    """A real `nixos-rebuild` first on PATH; returns the file its calls are recorded in.

    It exits with the status in $FAKE_REBUILD_EXIT (default 0), and `build` leaves a
    ./result symlink as the real one does.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "rebuild-calls.jsonl"
    script = bin_dir / "nixos-rebuild"
    script.write_text(f"""#!{sys.executable}
import json, os, sys
with open({str(calls)!r}, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "cwd": os.getcwd()}}) + "\\n")
print("building the system configuration...", file=sys.stderr)
code = int(os.environ.get("FAKE_REBUILD_EXIT", "0"))
if code:
    print("error: attribute 'nope' missing", file=sys.stderr)
    sys.exit(code)
if sys.argv[1:2] == ["build"]:
    os.makedirs("fake-store-system", exist_ok=True)
    if not os.path.islink("result"):
        os.symlink(os.path.abspath("fake-store-system"), "result")
print("done")
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def recorded(calls: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def settings(state: Path, **section: Any) -> dict[str, Any]:
    return {"state_dir": str(state), "skills": {SKILL: section}}


async def run(tmp_path: Path, store: Store, config: dict[str, Any], steps_yaml: str,
              extra: str = "") -> tuple[Any, dict[str, Any]]:
    """Run a workflow of the given steps against the bundled skills; (result, steps by id)."""
    path = write_workflow(tmp_path, f"workflow:\n  name: t\n{extra}  steps:\n{steps_yaml}")
    definition = load_workflow(path, registry=discover(search_path()))
    engine = Engine(store, settings=config)
    try:
        result = await engine.run(definition)
    finally:
        await engine.close()
    return result, {s.step_id: s for s in await store.steps(result.run_id)}


def generate(packages: list[str], services: list[str] | None = None, *, step_id: str = "gen",
             output: str | None = None, retry: bool = False) -> str:
    params: dict[str, Any] = {"packages": packages}
    if services is not None:
        params["services"] = services
    if output is not None:
        params["output"] = output
    text = (f"    - id: {step_id}\n      skill: {SKILL}\n      action: generate_config\n"
            f"      params: {json.dumps(params)}\n")
    if retry:
        text += "      retry: {attempts: 3, initial: 0, retry_on: [retryable, timeout]}\n"
    return text


def step(action: str, step_id: str | None = None, depends: str | None = None) -> str:
    text = f"    - id: {step_id or action}\n      skill: {SKILL}\n      action: {action}\n"
    return text + (f"      depends_on: [{depends}]\n" if depends else "")


# -- generate_config ----------------------------------------------------------------------

async def test_generate_config_writes_the_module(tmp_path, store, state):
    result, steps = await run(tmp_path, store, settings(state),
                              generate(["vim", "git", "podman", "python3Packages.requests", "git"],
                                       ["openssh"]))
    assert result.status == "succeeded", result
    out = steps["gen"].result
    path = state / SKILL / "packages.nix"
    assert out["path"] == str(path)
    text = path.read_text()
    assert "{ pkgs, ... }:" in text
    assert ("environment.systemPackages = with pkgs; [\n    vim\n    git\n    podman\n"
            "    python3Packages.requests\n  ];") in text
    assert "  services.openssh.enable = true;\n" in text
    assert out["packages"] == ["vim", "git", "podman", "python3Packages.requests"]  # no repeats
    assert out["services"] == ["openssh"]
    assert out["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert out["changed"] is True
    assert out["parse_checked"] is (shutil.which("nix-instantiate") is not None)
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in path.parent.iterdir()) == ["packages.nix"]  # no temp file left


async def test_same_content_again_is_unchanged_and_not_rewritten(tmp_path, store, state):
    config = settings(state)
    _, first = await run(tmp_path, store, config, generate(["vim", "git"]))
    path = Path(first["gen"].result["path"])
    inode = path.stat().st_ino
    _, second = await run(tmp_path, store, config, generate(["vim", "git"]))
    assert second["gen"].result["changed"] is False
    assert second["gen"].result["sha256"] == first["gen"].result["sha256"]
    assert path.stat().st_ino == inode  # not replaced by a new file
    _, third = await run(tmp_path, store, config, generate(["vim", "git", "htop"]))
    assert third["gen"].result["changed"] is True
    assert third["gen"].result["sha256"] != first["gen"].result["sha256"]
    assert "    htop\n" in path.read_text()


@pytest.mark.parametrize("bad", ["vim; rm -rf /", "with", "a..b", "${builtins.exec}",
                                 "python3Packages.let", "pkgs.\"x\"", ".vim", "vim ", "true"])
async def test_a_bad_package_name_fails_without_retry_naming_it(tmp_path, store, state, bad):
    result, steps = await run(tmp_path, store, settings(state),
                              generate(["vim", bad], retry=True))
    assert result.status == "failed"
    gen = steps["gen"]
    assert gen.status == "failed"
    assert f"params.packages[1] {bad!r}" in gen.error
    assert "vim'" not in gen.error.replace(f"{bad!r}", "")  # the good entry is not blamed
    assert gen.attempts == 1  # not retryable: the same name will fail again
    assert not (state / SKILL / "packages.nix").exists()


async def test_keyword_message_says_it_is_reserved(tmp_path, store, state):
    _, steps = await run(tmp_path, store, settings(state), generate(["with"]))
    assert "'with' is a reserved word of Nix" in steps["gen"].error


async def test_a_bad_service_name_fails_naming_it(tmp_path, store, state):
    _, steps = await run(tmp_path, store, settings(state),
                         generate(["vim"], ["openssh", "x = builtins.abort \"\"; y"]))
    assert steps["gen"].status == "failed"
    assert "params.services[1]" in steps["gen"].error


async def test_output_from_params_then_settings(tmp_path, store, state):
    configured = tmp_path / "etc" / "nixos" / "orchestrated.nix"
    config = settings(state, output=str(configured))
    _, steps = await run(tmp_path, store, config, generate(["vim"]))
    assert steps["gen"].result["path"] == str(configured) and configured.exists()
    _, steps = await run(tmp_path, store, config, generate(["git"], output="relative/x.nix"))
    assert steps["gen"].result["path"] == str(state / "relative" / "x.nix")
    assert "    git\n" in (state / "relative" / "x.nix").read_text()


async def test_nix_instantiate_parses_the_generated_module(tmp_path, store, state):
    nix_instantiate = require_tool("nix-instantiate", "Debian: apt-get install nix-bin")
    _, steps = await run(tmp_path, store, settings(state),
                         generate(["vim", "python3Packages.requests", "gnome-terminal"],
                                  ["openssh", "xserver.desktopManager.gnome"]))
    assert steps["gen"].result["parse_checked"] is True
    parsed = subprocess.run([nix_instantiate, "--parse", steps["gen"].result["path"]],
                            capture_output=True, text=True, check=True).stdout
    # Nix's own reading: one list element per name, the path an attribute selection.
    assert "with pkgs; [ (vim) ((python3Packages).requests) (gnome-terminal) ]" in parsed
    assert "xserver = { desktopManager = { gnome = { enable = true; }; }; }" in parsed
    with pytest.raises(StepFailure, match="cannot parse"):
        await parse_check("{ pkgs, ... }: [ with ]")


# -- build, switch, rollback --------------------------------------------------------------

async def test_build_runs_nixos_rebuild_build_with_the_flake(tmp_path, store, state, fake_rebuild):
    result, steps = await run(tmp_path, store, settings(state, flake="/etc/nixos#host"),
                              step("build"))
    assert result.status == "succeeded", steps["build"].error
    [call] = recorded(fake_rebuild)
    assert call["argv"] == ["build", "--flake", "/etc/nixos#host"]
    assert call["cwd"] == str(state / SKILL)  # ./result lands in the skill's state dir
    out = steps["build"].result
    assert out["result_path"] == str(state / SKILL / "fake-store-system")
    assert out["argv"][1:] == call["argv"] and out["stdout"] == "done"


async def test_switch_is_refused_unless_allowed(tmp_path, store, state, fake_rebuild):
    result, steps = await run(tmp_path, store, settings(state), step("switch"))
    assert result.status == "failed"
    assert "allow_switch" in steps["switch"].error
    assert "services.agent-orchestrator.settings" in steps["switch"].error
    assert recorded(fake_rebuild) == []  # nothing ran


async def test_switch_runs_and_its_rollback_switches_back(tmp_path, store, state, fake_rebuild):
    # The second step fails (a bad name), so on_failure: rollback compensates the switch.
    result, steps = await run(
        tmp_path, store, settings(state, allow_switch=True),
        step("switch") + generate(["bad name"], step_id="after"),
        extra="  on_failure: rollback\n")
    assert steps["switch"].status == "compensated"
    assert result.status == "rolled_back", result
    assert [c["argv"] for c in recorded(fake_rebuild)] == [["switch"], ["switch", "--rollback"]]
    attempts = await store.attempts(result.run_id)
    assert [(a.step_id, a.kind, a.status) for a in attempts if a.step_id == "switch"] == [
        ("switch", "action", "succeeded"), ("switch", "rollback", "succeeded")]


async def test_a_failing_rebuild_fails_the_step_with_its_error(tmp_path, store, state,
                                                              fake_rebuild, monkeypatch):
    monkeypatch.setenv("FAKE_REBUILD_EXIT", "1")
    result, steps = await run(tmp_path, store, settings(state), step("build"))
    assert result.status == "failed"
    assert "exited with status 1" in steps["build"].error
    assert "attribute 'nope' missing" in steps["build"].error
    [attempt] = await store.attempts(result.run_id)
    assert "building the system configuration" in attempt.stderr_tail


@pytest.mark.parametrize("action", ["build", "switch", "rollback"])
async def test_missing_nixos_rebuild_is_a_clear_failure(tmp_path, store, state, monkeypatch,
                                                        action):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result, steps = await run(tmp_path, store, settings(state, allow_switch=True), step(action))
    assert result.status == "failed"
    assert steps[action].error == "nixos-rebuild not found on PATH; this action needs NixOS"


@pytest.mark.parametrize("output, why", [
    ("/dev/zero", "must be a relative path under the state directory"),
    ("../../../etc/x.nix", "must be a relative path under the state directory"),
    ("a/../../x.nix", "without '..'"),
    ("out/zero", "leads out of the state directory"),  # out -> /dev
])
async def test_output_param_is_confined_to_the_state_directory(tmp_path, store, state, output,
                                                               why):
    """/dev/zero was read into memory in a thread no timeout stops, and ../../.. wrote
    outside the state directory: params.output is now checked before anything is read."""
    (state / "out").symlink_to("/dev")
    result, steps = await asyncio.wait_for(
        run(tmp_path, store, settings(state), generate(["vim"], output=output)), 60)
    assert result.status == "failed"
    assert f"params.output {output!r}" in steps["gen"].error and why in steps["gen"].error
    assert not list(state.rglob("*.nix"))


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
async def test_output_that_is_not_a_regular_file_is_neither_read_nor_replaced(
        tmp_path, store, state, kind):
    target = state / SKILL / DEFAULT_FILE
    target.parent.mkdir()
    if kind == "fifo":
        os.mkfifo(target)
        writer = os.open(target, os.O_RDWR)  # a writer that never writes: reads would block
    elif kind == "device":
        target.symlink_to("/dev/zero")
    else:
        target.mkdir()
    try:
        # The administrator's setting may point anywhere, but never at a device.
        config = settings(state, output="/dev/zero") if kind == "device" else settings(state)
        result, steps = await asyncio.wait_for(run(tmp_path, store, config, generate(["vim"])), 60)
    finally:
        if kind == "fifo":
            os.close(writer)
    assert result.status == "failed"
    shown = "/dev/zero" if kind == "device" else target
    assert f"output {shown} is a" in steps["gen"].error
    assert "not a regular file" in steps["gen"].error
    if kind == "fifo":
        assert target.is_fifo()
