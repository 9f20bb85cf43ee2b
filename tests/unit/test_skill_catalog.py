"""The skill catalog: what skills declare for routing and how the CLI lists them."""

from __future__ import annotations

import json

import pytest
import yaml

from orchestratord.cli.main import main
from orchestratord.core.errors import DefinitionError
from orchestratord.skills import BUNDLED, discover, load_skill_dir, search_path
from orchestratord.skills.describe import describe, describe_all
from tests.conftest import ECHO, write_skill

EXAMPLES = BUNDLED.parents[1] / "workflows" / "skills"


def test_frontmatter_metadata_tags_and_action_routing_fields(skill_root):
    d = write_skill(skill_root, "certs", {"renew": {"command": ECHO, "capabilities": ["tls.renew"],
                                                    "examples": ["renew the certificate"],
                                                    "mutating": True}})
    (d / "SKILL.md").write_text("---\nname: certs\ndescription: TLS certificates\n"
                                "metadata:\n  capabilities: tls.inspect tls.expiry\n"
                                "tags: [tls, x509]\n---\n\n# certs\n\nRenews certificates.\n")
    skill, problems = load_skill_dir(d)
    assert not problems
    assert skill.capabilities == ("tls.inspect", "tls.expiry") and skill.tags == ("tls", "x509")
    assert skill.body.startswith("# certs") and "Renews" in skill.body
    entry = describe(skill)
    assert entry["capabilities"] == ["tls.inspect", "tls.expiry", "tls.renew"]
    assert entry["actions"] == [{"name": "renew", "description": None, "kind": "command",
                                 "capabilities": ["tls.renew"],
                                 "examples": ["renew the certificate"], "mutating": True}]


def test_a_malformed_capability_is_reported_with_its_file_and_line(skill_root):
    d = write_skill(skill_root, "bad", {"go": {"command": ECHO, "capabilities": ["Not A Cap"]}})
    with pytest.raises(DefinitionError) as caught:
        discover([skill_root])
    text = str(caught.value)
    assert f"{d / 'actions.yaml'}:" in text and "capabilities" in text
    (d / "actions.yaml").write_text(yaml.safe_dump({"actions": {"go": {"command": ECHO}}}))
    (d / "SKILL.md").write_text("---\nname: bad\ndescription: x\nmetadata:\n"
                                "  capabilities: Health!\n---\n")
    with pytest.raises(DefinitionError, match=r"SKILL.md:\d+:\d+: .*'Health!' is not a capability"):
        discover([skill_root])


def test_every_bundled_and_example_action_declares_how_it_is_routed():
    for entry in describe_all(discover(search_path([EXAMPLES]))):
        assert entry["capabilities"], entry["name"]
        for action in entry["actions"]:
            assert action["capabilities"] and len(action["examples"]) >= 2, \
                f"{entry['name']}.{action['name']}"


def test_skills_lists_and_shows_what_an_agent_reads(capsys, skill_root, tmp_path):
    write_skill(skill_root, "certs", {"renew": {"command": ECHO}}, description="TLS certificates")
    state = ["--state", str(tmp_path / "state.db"), "--skills", str(skill_root)]
    assert main([*state, "skills", "--json"]) == 0
    listed = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    assert {"certs", "health-monitoring"} <= set(listed)
    assert listed["certs"]["origin"] == str(skill_root / "certs" / "SKILL.md")
    assert main([*state, "skills"]) == 0
    assert "certs" in capsys.readouterr().out
    assert main([*state, "skills", "show", "health-monitoring"]) == 0
    assert capsys.readouterr().out == (BUNDLED / "health_monitoring" / "SKILL.md").read_text()
    assert main([*state, "skills", "show", "helth-monitoring"]) == 2
    assert "did you mean 'health-monitoring'" in capsys.readouterr().err
