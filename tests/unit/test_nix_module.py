"""nix/module.nix evaluated with nixpkgs' lib: rendered /etc files and unit drop-ins.

Needs `nix-instantiate` (Debian's nix-bin is enough: nothing is built) and nixpkgs' lib:
$NIXPKGS_LIB, else ../shared/vendor/nixpkgs-lib beside the checkout; under CI=true their
absence fails the module. tests/unit/nix_module_harness.nix loads the module beside
declarations of the NixOS options it sets, with NixOS's types, and a `pkgs` whose builders
return stand-ins that remember their inputs, so these tests read exactly the JSON the
module would write to /etc/agent-orchestrator. The rendered workflows then go through
the real validator (`orchestratorctl validate`), as the module's build step does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require_tool, unavailable

ROOT = Path(__file__).resolve().parents[2]
HARNESS = Path(__file__).with_name("nix_module_harness.nix")
# nixpkgs' lib/ at a pinned commit (its VERSION file says which) lies beside every
# checkout, CI's included; $NIXPKGS_LIB (the dev shell sets it) takes precedence.
BESIDE_CHECKOUT = ROOT.parent / "shared" / "vendor" / "nixpkgs-lib"
ORCHESTRATORCTL = [sys.executable, "-m", "orchestratord.cli"]


def _nixpkgs_lib() -> Path | None:
    for candidate in (os.environ.get("NIXPKGS_LIB"), BESIDE_CHECKOUT):
        if candidate and (Path(candidate) / "lib" / "default.nix").is_file():
            return Path(candidate).resolve()
    return None


require_tool("nix-instantiate", "Debian: apt-get install nix-bin", module_level=True)
NIXPKGS_LIB = _nixpkgs_lib()
if NIXPKGS_LIB is None:
    unavailable(f"nixpkgs' lib is neither at $NIXPKGS_LIB nor at {BESIDE_CHECKOUT}; set "
                "NIXPKGS_LIB to a checkout of https://github.com/nix-community/nixpkgs.lib",
                module_level=True)

WORKFLOWS = "agent-orchestrator/workflows"
SETTINGS = "agent-orchestrator/settings.json"


def nix_eval(config: str, **harness: bool) -> dict[str, Any]:
    """Evaluate the module with `config` (a Nix expression for a NixOS module);
    `harness` sets the harness's switches (cross, overlay)."""
    switches = "".join(f" {k} = {str(v).lower()};" for k, v in harness.items())
    expr = (f"import {HARNESS} {{ nixpkgsLib = {NIXPKGS_LIB};{switches} "
            f"config = {{ pkgs, ... }}: {config}; }}")
    done = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise NixError(done.stderr)
    return json.loads(done.stdout)


class NixError(Exception):
    pass


def module(options: str) -> str:
    return f"{{ services.agent-orchestrator = {{ enable = true; {options} }}; }}"


def rendered_workflow(out: dict[str, Any], name: str) -> dict[str, Any]:
    """The workflow JSON the module renders, taken from the validating build step."""
    entry = out["etc"][f"{WORKFLOWS}/{name}.json"]
    assert entry["kind"] == "runCommand", "workflows must be validated at build time"
    return entry["inputs"]["workflow"]["json"]


def rendered_settings(out: dict[str, Any]) -> dict[str, Any]:
    """The settings JSON the module renders, taken from the build step that checks it."""
    entry = out["etc"][SETTINGS]
    assert entry["kind"] == "runCommand", "settings must be checked at build time"
    assert (f"{out['checker']}/bin/orchestratord --check --skip-host-checks "
            "--settings settings.json") in entry["script"]
    return entry["inputs"]["settings"]["json"]


def validate(tmp_path: Path, doc: dict[str, Any], name: str,
             skills: Path | None = None) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2))
    argv = ORCHESTRATORCTL + (["--skills", str(skills)] if skills else [])
    return subprocess.run(argv + ["validate", str(path)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def materialise_skills(out: dict[str, Any], into: Path) -> Path:
    """Write the skill tree the module links into /etc/agent-orchestrator/skills."""
    tree = out["etc"]["agent-orchestrator/skills"]
    for entry in tree["entries"]:
        target = into / entry["name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        content = entry["path"]
        target.write_text(content["text"] if content["kind"] == "text"
                          else json.dumps(content["json"], indent=2))
    return into


def test_example_deploy_workflow_renders_as_written_and_passes_the_validator(tmp_path: Path) -> None:
    out = nix_eval(module("workflows.deploy = import ./nix/tests/deploy-workflow.nix;"))
    assert out["failedAssertions"] == []
    doc = rendered_workflow(out, "deploy")

    seed = yaml.safe_load((ROOT / "workflows" / "deploy-nixos-system.yaml").read_text())
    assert doc["workflow"]["name"] == "deploy"  # the unit instance: orchestrator@deploy
    assert doc["workflow"]["steps"] == seed["workflow"]["steps"]

    done = validate(tmp_path, doc, "deploy")
    assert done.returncode == 0, done.stderr
    assert "workflow deploy is valid (3 steps)" in done.stdout

    # The build step runs the package's own validator on that same file.
    step = out["etc"][f"{WORKFLOWS}/deploy.json"]
    assert f"{out['checker']}/bin/orchestratorctl" in step["script"]
    assert "validate workflows/deploy.json" in step["script"]
    # A changed workflow reloads the daemon (SIGHUP) instead of restarting it.
    daemon = out["services"]["orchestratord"]
    assert step["path"] in daemon["reloadTriggers"]
    assert out["etc"][SETTINGS]["path"] in daemon["restartTriggers"]


def test_routed_steps_render_and_resolve_in_the_validator(tmp_path: Path) -> None:
    out = nix_eval(module("""
        workflows.routed.steps = [
          { route = "check that the host is healthy"; }
          { capability = "report.status"; trigger_rule = "all_done"; }
        ];
    """))
    assert out["failedAssertions"] == []
    doc = rendered_workflow(out, "routed")
    assert doc["workflow"]["steps"] == [{"route": "check that the host is healthy"},
                                        {"capability": "report.status",
                                         "trigger_rule": "all_done"}]
    done = validate(tmp_path, doc, "routed")
    assert done.returncode == 0, done.stderr


def test_the_vm_tests_machine_serves_the_scenario_workflows_unchanged(tmp_path: Path) -> None:
    """nix/tests/scenario-machine.nix declares, in Nix, what the container tests copy in."""
    from orchestratord.language.model import WorkflowDocument

    out = nix_eval("{ imports = [ ./nix/tests/scenario-machine.nix ]; }")
    assert out["failedAssertions"] == []
    machine = ROOT / "tests" / "scenarios" / "machine"
    settings = rendered_settings(out)
    assert settings["skills"] == {
        **json.loads((machine / "skills.json").read_text()),
        "nixos-deployment": {"nixos_rebuild": "/run/current-system/sw/bin/nixos-rebuild"}}

    skills = materialise_skills(out, tmp_path / "skills")
    files = sorted((machine / "workflows").glob("*.json"))
    assert files
    for file in files:
        expected = json.loads(file.read_text())
        name = expected["workflow"]["name"]
        doc = rendered_workflow(out, name)
        # Same workflow once defaults are filled in; inline skills moved to `skills`.
        assert (WorkflowDocument.model_validate(doc).workflow.model_dump()
                == WorkflowDocument.model_validate(expected).workflow.model_dump()), name
        for skill in expected.get("skills", {}):
            assert (skills / skill / "SKILL.md").is_file(), skill
        done = validate(tmp_path, doc, name, skills=skills)
        assert done.returncode == 0, done.stderr


def test_settings_file_and_unit_drop_ins(tmp_path: Path) -> None:
    out = nix_eval(module("""
        workflows.deploy = import ./nix/tests/deploy-workflow.nix // { startAt = "daily"; };
        managedServices.model = {
          unit = "agent-orchestrator-example-model.service";
          endpoint = "http://127.0.0.1:8088/health";
        };
        settings.alerts.webhooks = [ { url = "http://127.0.0.1:9000/alert"; } ];
        settings.skills.nixos-deployment.flake = "/etc/nixos";
        secrets.alert-token = "/run/keys/alert-token";
        alertUnits = [ "alert@%i.service" ];
        environment.OLLAMA_HOST = "127.0.0.1:11434";
    """))
    assert out["failedAssertions"] == [] and out["warnings"] == []

    settings = rendered_settings(out)
    assert settings["workflows_dir"] == "/etc/agent-orchestrator/workflows"
    assert settings["state_dir"] == "/var/lib/agent-orchestrator"
    assert settings["socket"] == "/run/agent-orchestrator/control.sock"
    assert settings["skills"] == {
        "ai-service-management": {"services": {"model": "agent-orchestrator-example-model.service"}},
        "health-monitoring": {"endpoints": [{"url": "http://127.0.0.1:8088/health"}]},
        "nixos-deployment": {"flake": "/etc/nixos",
                             "nixos_rebuild": "/run/current-system/sw/bin/nixos-rebuild"},
    }
    assert settings["alerts"]["webhooks"] == [{"url": "http://127.0.0.1:9000/alert", "headers": {}}]
    assert None not in settings.values(), "unset keys are left to the daemon's defaults"
    # The daemon's own check, which the build step runs, accepts the file.
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    check = subprocess.run([sys.executable, "-m", "orchestratord.daemon", "--check",
                            "--skip-host-checks", "--settings", str(path)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr

    daemon = out["services"]["orchestratord"]
    assert daemon["wantedBy"] == ["multi-user.target"]
    assert daemon["serviceConfig"]["LoadCredential"] == ["alert-token:/run/keys/alert-token"]
    assert daemon["environment"] == {"OLLAMA_HOST": "127.0.0.1:11434"}
    assert "ProtectSystem" not in daemon["serviceConfig"], "the packaged unit's sandbox stays"
    # The secret's path is in the unit, never its content, and not in any rendered file.
    assert "alert-token" not in json.dumps(out["etc"])

    template = out["services"]["orchestrator@"]
    assert template["overrideStrategy"] == "asDropin"  # a drop-in, never a unit of its own
    assert template["onFailure"] == ["alert@%i.service"]
    assert template["environment"]["ORCHESTRATOR_SOCKET"] == settings["socket"]

    assert out["timers"] == {"orchestrator@deploy": {
        **out["timers"]["orchestrator@deploy"],
        "wantedBy": ["timers.target"],
        "timerConfig": {"OnCalendar": "daily", "Persistent": True,
                        "Unit": "orchestrator@deploy.service"},
    }}
    assert out["packages"] == ["agent-orchestrator-0.1.0"]
    assert out["variables"] == {"ORCHESTRATOR_SOCKET": settings["socket"]}


def test_skills_declared_in_nix_and_a_workflow_using_them(tmp_path: Path) -> None:
    out = nix_eval(module("""
        skills.facts = {
          description = "Facts about the host";
          actions.disk = {
            command = [ "python3" "-c" "import json; print(json.dumps({'free': 0.5}))" ];
            params = { type = "object"; properties.path.type = "string"; };
            timeout = "10s";
          };
          actions.notify.http = { url = "http://127.0.0.1:9000/notify"; };
          actions.undo.command = [ "true" ];
        };
        workflows.facts = {
          params.min_free = { default = 0.05; type = "number"; };
          on_failure = "rollback";
          steps = [
            { id = "gather"; parallel = [
                { id = "root"; skill = "facts"; action = "disk"; params.path = "/";
                  retry = { attempts = 3; backoff = "fixed"; initial = "1s"; };
                  rollback.action = "undo"; }
                { id = "var"; skill = "facts"; action = "disk"; params.path = "/var"; }
              ]; }
            { id = "tell"; skill = "facts"; action = "notify";
              when = "steps.root.result.free < params.min_free";
              trigger_rule = "none_failed";
              params.text = "{{ steps.root.result.free }}"; }
          ];
        };
    """))
    assert out["failedAssertions"] == []
    assert rendered_settings(out)["skill_paths"] == ["/etc/agent-orchestrator/skills"]

    skills = materialise_skills(out, tmp_path / "skills")
    assert (skills / "facts" / "SKILL.md").read_text().startswith(
        '---\nname: "facts"\ndescription: "Facts about the host"\n---\n')
    actions = json.loads((skills / "facts" / "actions.yaml").read_text())["actions"]
    assert actions["notify"] == {"http": {"url": "http://127.0.0.1:9000/notify", "method": "POST"}}

    doc = rendered_workflow(out, "facts")
    group, tell = doc["workflow"]["steps"]
    assert group["id"] == "gather" and set(group) == {"id", "parallel"}
    assert group["parallel"][0]["retry"]["attempts"] == 3
    assert group["parallel"][0]["rollback"] == {"action": "undo"}
    assert tell["trigger_rule"] == "none_failed"

    done = validate(tmp_path, doc, "facts", skills=skills)
    assert done.returncode == 0, done.stderr


def test_a_bad_workflow_fails_the_build_step_with_the_validators_message(tmp_path: Path) -> None:
    out = nix_eval(module("""
        workflows.deploy.steps = [
          { skill = "nixos-deployment"; action = "generate_config"; params.pakages = [ "vim" ]; }
          { skill = "health-monitoring"; action = "chek"; }
        ];
    """))
    assert out["failedAssertions"] == []  # well-typed; only the validator knows the skills
    done = validate(tmp_path, rendered_workflow(out, "deploy"), "deploy")
    assert done.returncode == 2
    assert "deploy.json" in done.stderr
    assert "pakages" in done.stderr and "chek" in done.stderr


@pytest.mark.parametrize(("options", "message"), [
    ('workflows.deploy.steps = [ { skill = "health-monitoring"; } ];',
     "services.agent-orchestrator.workflows.deploy.steps.0: a step needs `skill` and `action`"),
    ('workflows.deploy.steps = [ { parallel = [ { skill = "a"; action = "b"; } ];'
     ' retry.attempts = 2; } ];',
     "workflows.deploy.steps.0: a parallel group sets only `id`, `depends_on` and `parallel`;"
     " move retry to its member steps"),
    ('workflows.deploy.steps = [ { parallel = [ { skill = "a"; } ]; } ];',
     "workflows.deploy.steps.0.parallel.0: a step needs `skill` and `action`"),
    ('workflows.deploy.steps = [ { route = "check the host"; skill = "a"; action = "b"; } ];',
     "workflows.deploy.steps.0: a step needs exactly one of `skill` (with `action`), `route` "
     "or `capability`"),
    ('workflows."9lives".steps = [ { skill = "a"; action = "b"; } ];',
     "`9lives` is not a valid workflow name"),
    ('skills.s.actions.a = { command = [ "true" ]; http.url = "http://x"; };',
     "services.agent-orchestrator.skills.s.actions.a: set exactly one of `command` and `http`"),
    ('skills.s.actions = { };', "skills.s.actions: a skill needs at least one action"),
    ('secrets.token = "/nix/store/abc-token";',
     "secrets.token: `/nix/store/abc-token` must be an absolute path outside the Nix store"),
    ('workflows.w = { startAt = ""; steps = [ { skill = "a"; action = "b"; } ]; };',
     "workflows.w.startAt: an empty calendar event"),
])
def test_assertions_name_the_option(options: str, message: str) -> None:
    out = nix_eval(module(options))
    assert any(message in m for m in out["failedAssertions"]), out["failedAssertions"]


def test_type_errors_name_the_option() -> None:
    with pytest.raises(NixError) as caught:
        nix_eval(module('workflows.deploy.steps = [ { skill = "a"; action = "b"; timeout = "soon"; } ];'))
    assert "services.agent-orchestrator.workflows.deploy.steps" in str(caught.value)
    assert "timeout" in str(caught.value) and "duration" in str(caught.value)


def test_allow_switch_lifts_the_sandbox_and_webhook_tokens_warn() -> None:
    out = nix_eval(module("""
        settings.skills.nixos-deployment.allow_switch = true;
        settings.alerts.webhooks = [ { url = "https://hooks.example/x";
                                       headers.Authorization = "Bearer abc"; } ];
    """))
    config = out["services"]["orchestratord"]["serviceConfig"]
    assert config["ProtectSystem"] is False and config["CapabilityBoundingSet"] == ["~"]
    assert rendered_settings(out)["skills"]["nixos-deployment"] == {
        "allow_switch": True, "nixos_rebuild": "/run/current-system/sw/bin/nixos-rebuild"}
    assert any("Authorization header" in w for w in out["warnings"])


def test_disabled_module_sets_nothing() -> None:
    out = nix_eval("{ services.agent-orchestrator.workflows.deploy = import ./nix/tests/deploy-workflow.nix; }")
    assert out["etc"] == {} and out["services"] == {} and out["packages"] == []


def test_aidb_options_render_settings_and_hand_the_key_over_as_a_credential(tmp_path: Path) -> None:
    out = nix_eval(module("""
        aidb = { enable = true; url = "http://127.0.0.1:8002"; apiKeyFile = "/run/keys/aidb"; };
        settings.aidb.publish = true;
    """))
    assert out["failedAssertions"] == []
    settings = rendered_settings(out)
    assert settings["aidb"] == {"url": "http://127.0.0.1:8002", "publish": True,
                                "api_key_file": "/run/credentials/orchestratord.service/aidb-key"}
    daemon = out["services"]["orchestratord"]
    assert daemon["serviceConfig"]["LoadCredential"] == ["aidb-key:/run/keys/aidb"]
    assert "/run/keys/aidb" not in json.dumps(out["etc"])  # the key's path, not in the store
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    check = subprocess.run([sys.executable, "-m", "orchestratord.daemon", "--check",
                            "--settings", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_mcp_service_serves_http_on_loopback_with_the_token_as_a_credential() -> None:
    out = nix_eval(module("""
        settings.socket_group = "agents";
        mcp = { enable = true; listen = "127.0.0.1:9876"; allowRun = true;
                tokenFile = "/run/keys/mcp-token"; };
    """))
    assert out["failedAssertions"] == []
    service = out["services"]["agent-orchestrator-mcp"]
    command = service["serviceConfig"]["ExecStart"].split()
    assert command[0].endswith("/bin/orchestratorctl")
    assert command[1:] == ["--socket", "/run/agent-orchestrator/control.sock", "mcp", "--http",
                           "127.0.0.1:9876", "--token-file", "%d/token", "--allow-run"]
    assert service["serviceConfig"]["LoadCredential"] == ["token:/run/keys/mcp-token"]
    assert service["serviceConfig"]["SupplementaryGroups"] == ["agents"]
    assert service["serviceConfig"]["DynamicUser"] is True
    assert "mcp-token" not in json.dumps(out["etc"]), "the token's path only, in the unit"
    # The default: read-only; and nothing at all unless enabled.
    read_only = nix_eval(module("""
        settings.socket_group = "agents";
        mcp = { enable = true; tokenFile = "/run/keys/mcp-token"; };
    """))["services"]["agent-orchestrator-mcp"]["serviceConfig"]["ExecStart"]
    assert read_only.endswith("--token-file %d/token")
    assert "agent-orchestrator-mcp" not in nix_eval(module(""))["services"]


@pytest.mark.parametrize("options, message", [
    ('mcp.enable = true; settings.socket_group = "agents";', "mcp.tokenFile must be set"),
    ('mcp = { enable = true; tokenFile = "/run/keys/t"; };', "needs services.agent-orchestrator"
                                                              ".settings.socket_group"),
])
def test_mcp_assertions_name_the_option(options: str, message: str) -> None:
    failed = nix_eval(module(options))["failedAssertions"]
    assert any(message in m for m in failed), failed


def test_mcp_listen_must_be_loopback() -> None:
    with pytest.raises(NixError, match=r"mcp.listen"):
        nix_eval(module('mcp = { enable = true; listen = "0.0.0.0:8765"; };'))
