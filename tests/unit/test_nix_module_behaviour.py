"""nix/module.nix on switch, with custom paths and groups, timers, cross builds and the
workflow files as they ship: evaluated through tests/unit/nix_module_harness.nix, which
declares the NixOS options the module sets with NixOS's own types."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_tool
from tests.unit.test_nix_module import (
    ROOT,
    NixError,
    materialise_skills,
    module,
    nix_eval,
    rendered_settings,
    rendered_workflow,
    validate,
)


def test_a_switch_never_restarts_a_running_workflow_and_settings_restart_the_daemon() -> None:
    out = nix_eval(module("workflows.deploy = import ./nix/tests/deploy-workflow.nix;"))
    assert out["services"]["orchestrator@"]["restartIfChanged"] is False
    daemon = out["services"]["orchestratord"]
    assert daemon["restartIfChanged"] is True
    assert out["etc"]["agent-orchestrator/settings.json"]["path"] in daemon["restartTriggers"]


def test_the_socket_group_is_created() -> None:
    out = nix_eval(module('settings.socket_group = "orchestrator";'))
    assert out["groups"] == {"orchestrator": "orchestrator"}
    assert rendered_settings(out)["socket_group"] == "orchestrator"
    assert nix_eval(module(""))["groups"] == {}


def test_paths_outside_the_units_directories_are_created_and_writable() -> None:
    out = nix_eval(module("""
        settings.state_dir = "/srv/orchestrator";
        settings.database = "/var/lib/orchestrator-db/state.db";
        settings.socket = "/run/orchestrator/ctl.sock";
    """))
    assert out["failedAssertions"] == []
    config = out["services"]["orchestratord"]["serviceConfig"]
    assert sorted(config["ReadWritePaths"]) == [
        "/run/orchestrator", "/srv/orchestrator", "/var/lib/orchestrator-db"]
    rules = out["tmpfiles"]["agent-orchestrator"]
    assert rules["/srv/orchestrator"]["d"]["mode"] == "0750"
    assert rules["/var/lib/orchestrator-db"]["d"]["mode"] == "0750"
    assert rules["/run/orchestrator"]["d"]["mode"] == "0755"  # clients reach the socket
    # Inside the unit's own StateDirectory= and RuntimeDirectory=: nothing to add.
    default = nix_eval(module('settings.database = "/var/lib/agent-orchestrator/db/state.db";'))
    assert "ReadWritePaths" not in default["services"]["orchestratord"]["serviceConfig"]
    assert default["tmpfiles"] == {"agent-orchestrator": {}}


@pytest.mark.parametrize(("options", "message"), [
    ('settings.state_dir = "/tmp/orchestrator";',
     "settings.state_dir: `/tmp/orchestrator` cannot be used: PrivateTmp=yes"),
    ('settings.database = "/home/alice/state.db";',
     "settings.database: `/home/alice/state.db` cannot be used: ProtectHome=yes"),
    ('settings.socket = "/run/orchestrator.sock";',
     "settings.socket: `/run/orchestrator.sock` is directly in /run"),
    ('settings.state_dir = "var/lib/x";', "settings.state_dir: `var/lib/x` is not an absolute path"),
])
def test_paths_the_hardening_hides_are_refused(options: str, message: str) -> None:
    out = nix_eval(module(options))
    assert any(message in m for m in out["failedAssertions"]), out["failedAssertions"]


def test_a_null_workspace_retention_reaches_the_daemon(tmp_path: Path) -> None:
    assert rendered_settings(nix_eval(module("")))["workspace_retention"] == "7d"
    settings = rendered_settings(nix_eval(module("settings.workspace_retention = null;")))
    assert "workspace_retention" in settings and settings["workspace_retention"] is None
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    shown = subprocess.run([sys.executable, "-c", (
        "import sys; from orchestratord.language.settings import load_settings; "
        "print(load_settings(sys.argv[1]).workspace_retention)"), str(path)],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert shown.stdout.strip() == "None", shown.stderr


def test_a_cross_build_checks_with_the_build_platforms_package() -> None:
    native = nix_eval(module(""))
    cross = nix_eval(module("workflows.deploy = import ./nix/tests/deploy-workflow.nix;"),
                     cross=True)
    assert native["checker"].endswith("-agent-orchestrator-0.1.0")
    assert cross["checker"].endswith("-agent-orchestrator-0.1.0-build")
    assert f"{cross['checker']}/bin/orchestratorctl" in (
        cross["etc"]["agent-orchestrator/workflows/deploy.json"]["script"])

    unchecked = nix_eval(module("checkPackage = null; workflows.deploy = import ./nix/tests/deploy-workflow.nix;"),
                         cross=True)
    assert unchecked["etc"]["agent-orchestrator/settings.json"]["kind"] == "json"
    assert unchecked["etc"]["agent-orchestrator/workflows/deploy.json"]["kind"] == "json"
    assert any("not checked while the system is built" in w and "checkPackage" in w
               for w in unchecked["warnings"])


def calendar_check(out: dict) -> dict:
    [check] = [c for c in out["checks"] if c["name"] == "agent-orchestrator-calendar-check"]
    return check


def test_calendar_events_are_checked_by_systemd_analyze(tmp_path: Path) -> None:
    require_tool("systemd-analyze", "Debian: apt-get install systemd")
    steps = 'steps = [ { skill = "a"; action = "b"; } ];'
    good = calendar_check(nix_eval(module(f'workflows.w = {{ startAt = [ "daily" "Mon 04:00" ]; {steps} }};')))
    bad = calendar_check(nix_eval(module(f'workflows.w = {{ startAt = "dialy"; {steps} }};')))
    assert good["nativeBuildInputs"] == ["systemd-build"]  # pkgs.buildPackages.systemd

    def run(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-euc", script], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60, env={**os.environ, "out": str(tmp_path / "out")})
    assert run(good["script"]).returncode == 0
    failed = run(bad["script"])
    assert failed.returncode == 1
    assert ("services.agent-orchestrator.workflows.w.startAt: `dialy` is not a calendar event"
            in failed.stderr)
    assert nix_eval(module(""))["checks"] == []


def test_timers_take_extra_timer_settings_over_persistent() -> None:
    out = nix_eval(module("""
        workflows.deploy = import ./nix/tests/deploy-workflow.nix // {
          startAt = "daily";
          timerConfig = { RandomizedDelaySec = "1h"; Persistent = false; };
        };
    """))
    assert out["timers"]["orchestrator@deploy"]["timerConfig"] == {
        "OnCalendar": "daily", "Unit": "orchestrator@deploy.service",
        "Persistent": False, "RandomizedDelaySec": "1h"}


def test_alert_units_are_unit_names() -> None:
    with pytest.raises(NixError) as caught:
        nix_eval(module('alertUnits = [ "notify-admin" ];'))
    assert "services.agent-orchestrator.alertUnits" in str(caught.value)
    assert "systemd unit name" in str(caught.value)


@pytest.mark.parametrize(("config", "where"), [
    ('{ systemd.services.x.onFailure = [ "alert" ]; }', "systemd.services.x.onFailure"),
    ('{ systemd.services.x.serviceConfig.Type = "oneshoot"; }', "systemd.services.x.serviceConfig"),
    ('{ systemd.services.x.restartIfChanged = "no"; }', "systemd.services.x.restartIfChanged"),
    ('{ systemd.timers.x.timerConfig.OnCalendar = [ "daily" ];'
     '  imports = [ { systemd.timers.x.timerConfig.OnCalendar = "weekly"; } ]; }',
     "systemd.timers.x.timerConfig.OnCalendar"),
])
def test_the_harness_rejects_what_nixos_rejects(config: str, where: str) -> None:
    with pytest.raises(NixError) as caught:
        nix_eval(config)
    assert where in str(caught.value)


def test_the_package_option_says_where_the_package_comes_from() -> None:
    assert nix_eval(module(""))["packageDefaultText"] == "pkgs.agent-orchestrator"
    with pytest.raises(NixError) as caught:
        nix_eval(module(""), overlay=False)
    assert "services.agent-orchestrator.package: pkgs has no agent-orchestrator" in str(caught.value)
    assert "overlays.default" in str(caught.value)


def test_authorization_headers_of_http_actions_warn() -> None:
    out = nix_eval(module("""
        skills.hook.actions.send.http = { url = "https://hooks.example/x";
                                          headers.authorization = "Bearer abc"; };
    """))
    assert out["warnings"] == [
        "services.agent-orchestrator.skills.hook.actions.send.http: the Authorization header"
        " ends up world-readable in the Nix store; send it from a command that reads a token"
        " from services.agent-orchestrator.secrets instead."]


def test_shorthand_params_and_constant_conditions_as_in_the_file_format(tmp_path: Path) -> None:
    out = nix_eval(module("""
        workflows.deploy = {
          params.packages = [ "vim" ];
          params.host = { default = "a"; type = "string"; };
          steps = [ { skill = "nixos-deployment"; action = "generate_config";
                      params.packages = "{{ params.packages }}"; when = true; } ];
        };
    """))
    doc = rendered_workflow(out, "deploy")
    params = doc["workflow"]["params"]
    assert params["packages"]["default"] == ["vim"]
    assert params["host"]["default"] == "a" and params["host"]["type"] == "string"
    assert doc["workflow"]["steps"][0]["when"] == "true"
    done = validate(tmp_path, doc, "deploy")
    assert done.returncode == 0, done.stderr


SHIPPED = sorted((ROOT / "workflows").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_workflow_file_is_a_valid_nix_value_as_it_is(path: Path, tmp_path: Path) -> None:
    """nix/README: a file's workflow section (minus name) is a valid value as it is."""
    from orchestratord.language.model import WorkflowDocument

    source = yaml.safe_load(path.read_text())
    name = source["workflow"]["name"]
    as_json = tmp_path / "workflow.json"
    as_json.write_text(json.dumps(source))
    out = nix_eval(f"""
        let doc = builtins.fromJSON (builtins.readFile {as_json}); in {{
          services.agent-orchestrator = {{
            enable = true;
            workflows.{json.dumps(name)} = removeAttrs doc.workflow [ "name" ];
            skills = doc.skills or {{ }};
          }};
        }}""")
    assert out["failedAssertions"] == []
    doc = rendered_workflow(out, name)
    assert (WorkflowDocument.model_validate(doc).workflow.model_dump()
            == WorkflowDocument.model_validate(source).workflow.model_dump())
    skills = (materialise_skills(out, tmp_path / "skills") if source.get("skills")
              else ROOT / "workflows" / "skills")
    done = validate(tmp_path, doc, name, skills=skills)
    assert done.returncode == 0, done.stderr


def test_the_package_declares_what_pyproject_declares() -> None:
    """nix/package.nix, called with stand-ins: its dependencies are pyproject.toml's
    (and the journald extra's), its meta has its license, and its homepage where pyproject names one."""
    import tomllib

    from tests.unit.test_nix_module import NIXPKGS_LIB

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]

    def names(requirements: list[str]) -> list[str]:
        return [re.split(r"[<>=!~\[;]", r, maxsplit=1)[0].strip().lower() for r in requirements]

    declared = names(project["dependencies"] + extras["journald"])
    # The stand-in python3Packages offers exactly what pyproject.toml declares (and the
    # build's own hooks): a name package.nix uses beyond that is an undefined variable.
    offered = " ".join(f'"{n}"' for n in declared + names(extras["test"])
                       + ["setuptools", "pytestCheckHook"])
    expr = f"""
      let
        lib = import {NIXPKGS_LIB}/lib;
        python3Packages = builtins.listToAttrs (map (n: {{ name = n; value = n; }}) [ {offered} ])
          // {{ buildPythonApplication = args: args; python = null; }};
        call = import ./nix/package.nix;
        # every other argument (tools such as git) as null: only the Python side is read
        package = call (builtins.mapAttrs (_: _: null) (builtins.functionArgs call)
                        // {{ inherit lib python3Packages; }});
      in {{ inherit (package) dependencies; meta = {{ homepage = package.meta.homepage or null;
            license = package.meta.license.spdxId; }}; }}"""
    done = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    package = json.loads(done.stdout)
    assert sorted(package["dependencies"]) == sorted(declared)
    assert package["meta"] == {"homepage": project.get("urls", {}).get("Homepage"),
                               "license": project["license"]}
