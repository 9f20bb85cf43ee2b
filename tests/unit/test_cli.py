"""orchestratorctl's language commands: schema, validate, graph."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from orchestratord.cli.main import main

WORKFLOWS = Path(__file__).parents[2] / "workflows"


def test_schema_validates_every_shipped_workflow(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    validator = jsonschema.Draft202012Validator(schema)
    validator.check_schema(schema)
    for path in sorted(WORKFLOWS.glob("*.yaml")):
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, f"{path.name}: {[e.message for e in errors]}"


def test_schema_rejects_what_the_loader_rejects(capsys):
    main(["schema"])
    validator = jsonschema.Draft202012Validator(json.loads(capsys.readouterr().out))
    bad = {"workflow": {"name": "x", "steps": [{"skill": "a", "action": "b", "depend_on": []}]}}
    assert list(validator.iter_errors(bad))
    durations = {"workflow": {"name": "x", "timeout": "1h30m",
                              "steps": [{"skill": "a", "action": "b", "timeout": 30}]}}
    assert not list(validator.iter_errors(durations))


def test_validate_json_reports_problems_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("workflow:\n  name: bad\n  steps:\n    - {skill: nope, action: x}\n")
    assert main(["validate", "--json", str(bad), str(WORKFLOWS / "host-facts.yaml")]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] == [{"file": str(WORKFLOWS / "host-facts.yaml"),
                                "workflow": "host-facts", "steps": 4}]
    [problem] = report["problems"]
    assert problem == {"file": str(bad), "line": 4, "column": 15, "path": "steps[0].skill",
                       "message": "unknown skill 'nope'"}


@pytest.mark.parametrize("fmt,expected", [("mermaid", "n0 --> n3"), ("dot", '"kernel" -> "verdict";')])
def test_graph(fmt, expected, capsys):
    assert main(["graph", str(WORKFLOWS / "host-facts.yaml"), "--format", fmt]) == 0
    assert expected in capsys.readouterr().out
