"""The example deploy workflow, unchanged, as the README's first command runs it: the real
CLI as a subprocess on a host without systemd services to manage, embedded state.

Under real systemd (services to start, the orchestrator's own health) the same workflow
runs in tests/scenarios/deploy.py, in the container and in the NixOS VM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[2]
SEED = ROOT / "workflows" / "deploy-nixos-system.yaml"
# The CLI's entry point, not a console script: the Nix check phase has none beside the
# interpreter.
CTL = [sys.executable, "-m", "orchestratord.cli"]


def ctl(home: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_STATE_HOME": str(home / "state"), "HOME": str(home)}
    for name in ("ORCHESTRATOR_STATE", "ORCHESTRATOR_SOCKET", "ORCHESTRATOR_SETTINGS"):
        env.pop(name, None)
    env.update(extra_env)
    return subprocess.run([*CTL, *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_readme_command_deploys_the_example_workflow(tmp_path):
    done = ctl(tmp_path, "run", str(SEED), "--json")
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]

    shown = ctl(tmp_path, "show", run_id, "--json")
    assert shown.returncode == 0, shown.stderr
    steps = {s["step_id"]: s for s in json.loads(shown.stdout)["steps"]}
    assert [s["status"] for s in steps.values()] == ["succeeded"] * 3

    config = steps["nixos-deployment"]["result"]
    module = Path(config["path"])
    # Embedded runs keep skill output beside the state file, under XDG_STATE_HOME.
    assert module.parent == tmp_path / "state" / "agent-orchestrator" / "nixos-deployment"
    assert "environment.systemPackages = with pkgs; [" in module.read_text()
    assert [line.strip() for line in module.read_text().splitlines()
            if line.strip() in ("vim", "git", "podman")] == ["vim", "git", "podman"]
    assert config["changed"] is True

    health = steps["health-monitoring"]["result"]
    assert health["healthy"] is True
    assert [c["kind"] for c in health["checks"]] == ["disk"]

    # A second run finds the same module and leaves it alone.
    again = ctl(tmp_path, "run", str(SEED), "--json")
    assert again.returncode == 0, again.stderr
    second = json.loads(ctl(tmp_path, "show", json.loads(again.stdout)["run_id"], "--json").stdout)
    result = next(s for s in second["steps"] if s["step_id"] == "nixos-deployment")["result"]
    assert result["changed"] is False and result["sha256"] == config["sha256"]


def test_an_embedded_run_uses_the_settings_file_it_is_given(tmp_path):
    """$ORCHESTRATOR_SETTINGS: its skill sections apply, and its workspace retention."""
    custom = tmp_path / "etc" / "packages.nix"
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({
        "skills": {"nixos-deployment": {"output": str(custom)}},
        "workspace_retention": "1h"}))
    workspaces = tmp_path / "state" / "agent-orchestrator" / "workspaces"
    stale = workspaces / "0123456789ab"  # a workspace no run claims, two hours old
    stale.mkdir(parents=True)
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))

    done = ctl(tmp_path, "run", str(SEED), "--json", ORCHESTRATOR_SETTINGS=str(settings))
    assert done.returncode == 0, done.stderr
    assert "podman" in custom.read_text()
    assert not stale.exists()
