"""The step sandbox: systemd property names in, StartTransientUnit's D-Bus values out."""

from __future__ import annotations

import json
import socket

import pytest

from orchestratord.core.errors import DefinitionError
from orchestratord.engine.runners.systemd_bus import unit_path
from orchestratord.language import step_sandbox
from orchestratord.language.settings import load_settings
from orchestratord.language.skill_registry import load_skill_dir


def dbus(sandbox: dict) -> dict:
    out: dict = {}
    for name, sig, value in step_sandbox.to_dbus(sandbox):
        out.setdefault(name, []).append((sig, value))
    return {name: values[0] if len(values) == 1 else values for name, values in out.items()}


def test_unit_file_spellings_become_the_dbus_values_systemd_expects():
    got = dbus({"MemoryMax": "64M", "CPUQuota": "50%", "TasksMax": "infinity",
                "ProtectHome": True, "CapabilityBoundingSet": [], "UMask": "0027",
                "SystemCallFilter": ["@system-service", "~@mount @swap"], "SystemCallErrorNumber": "EPERM",
                "RestrictAddressFamilies": "AF_UNIX", "RestrictNamespaces": True,
                "IPAddressDeny": "any", "PrivateNetwork": "yes"})
    assert got["MemoryMax"] == ("t", 64 * 1024 ** 2)
    assert got["CPUQuotaPerSecUSec"] == ("t", 500_000)
    assert got["TasksMax"] == ("t", 2 ** 64 - 1)
    assert got["ProtectHome"] == ("s", "yes")
    assert got["CapabilityBoundingSet"] == ("t", 0)
    assert got["UMask"] == ("u", 0o027)
    assert got["SystemCallFilter"] == [("(bas)", (True, ["@system-service"])),
                                       ("(bas)", (False, ["@mount", "@swap"]))]
    assert got["SystemCallErrorNumber"] == ("i", 1)
    assert got["RestrictAddressFamilies"] == ("(bas)", (True, ["AF_UNIX"]))
    assert got["RestrictNamespaces"] == ("t", 0)
    assert got["IPAddressDeny"] == ("a(iayu)", [(socket.AF_INET, bytes(4), 0),
                                                (socket.AF_INET6, bytes(16), 0)])
    assert got["PrivateNetwork"] == ("b", True)


def test_the_built_in_default_converts_and_levels_override_it_key_by_key():
    step_sandbox.check(step_sandbox.DEFAULT)
    merged = step_sandbox.merge({"MemoryMax": "1G"}, {"MemoryMax": "2G", "PrivateNetwork": True},
                                {"PrivateNetwork": False})
    assert merged["MemoryMax"] == "2G" and merged["PrivateNetwork"] is False
    assert merged["ProtectSystem"] == "strict"  # the default stays under every level


@pytest.mark.parametrize("sandbox,message", [
    ({"ProtectSytem": "strict"}, "unknown sandbox property 'ProtectSytem'; known: "),
    ({"MemoryMax": "lots"}, "MemoryMax: expected a size such as 512M"),
    ({"ProtectSystem": "very"}, "ProtectSystem: expected one of strict, full, yes, no"),
    ({"CapabilityBoundingSet": ["CAP_FLY"]}, "unknown capability 'CAP_FLY'"),
    ({"IPAddressDeny": ["nowhere"]}, "expected an address prefix"),
])
def test_a_bad_property_is_named(sandbox, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        step_sandbox.check(sandbox)


def test_settings_name_the_line_of_a_bad_skill_sandbox(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("step_units: auto\nstep_sandbox:\n  skills:\n    box: {MemoryMax: lots}\n")
    with pytest.raises(DefinitionError) as caught:
        load_settings(path)
    assert f"{path}:4:" in str(caught.value) and "MemoryMax: expected a size" in str(caught.value)


def test_an_action_sandbox_is_checked_when_its_skill_loads(tmp_path):
    (tmp_path / "SKILL.md").write_text("---\nname: box\ndescription: d\n---\n")
    (tmp_path / "actions.yaml").write_text(json.dumps(
        {"actions": {"do": {"command": ["true"], "sandbox": {"PrivateNetwork": "maybe"}}}}))
    skill, problems = load_skill_dir(tmp_path)
    assert skill is None and "PrivateNetwork: expected a boolean" in problems[0].message


def test_unit_object_paths_are_escaped_as_systemd_does():
    assert unit_path("orchestrator-step-ab12-s_0-1.service") == \
        "/org/freedesktop/systemd1/unit/orchestrator_2dstep_2dab12_2ds_5f0_2d1_2eservice"
