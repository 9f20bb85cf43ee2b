"""Steps that choose their action by `route:` or `capability:`, resolved at load time."""

from __future__ import annotations

import json

import pytest

from orchestratord.core.errors import DefinitionError
from orchestratord.language.loader import load_data, load_workflow, stored_definition
from orchestratord.language.model import WorkflowDocument
from orchestratord.skills import discover, search_path
from tests.conftest import ECHO, write_skill, write_workflow


@pytest.fixture
def skills(skill_root):
    """The bundled skills plus a few of the test's own, as an installation has them."""
    write_skill(skill_root, "disk-report", {"usage": {
        "command": ECHO, "capabilities": ["disk.usage"],
        "examples": ["which directories use the most disk"]}})
    for name in ("log-rotate", "log-rotation"):  # two skills that serve the same request
        write_skill(skill_root, name, {"rotate": {
            "command": ECHO, "capabilities": ["logs.rotate"],
            "examples": ["rotate and compress the old log files"]}})
    return discover(search_path([skill_root]))


def problems(path, registry) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        load_workflow(path, registry=registry)
    return [str(p) for p in info.value.problems]


def test_route_and_capability_resolve_to_named_steps(tmp_path, skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: routed
          steps:
            - route: "check that the host is healthy"
            - capability: disk.usage
            - {id: after, skill: disk-report, action: usage, depends_on: [health-monitoring]}
    """)
    definition = load_workflow(path, registry=skills)
    nodes = definition.graph.nodes
    assert {n.id: (n.step.skill, n.step.action) for n in nodes.values()} == {
        "health-monitoring": ("health-monitoring", "check"),
        "disk-report": ("disk-report", "usage"),
        "after": ("disk-report", "usage")}
    assert nodes["disk-report"].deps == ("health-monitoring",)
    assert nodes["after"].deps == ("health-monitoring",), "depends_on names the resolved skill"
    stored = definition.source["workflow"]["steps"]
    assert stored[0] == {"route": "check that the host is healthy",
                         "skill": "health-monitoring", "action": "check"}
    assert stored[1] == {"capability": "disk.usage", "skill": "disk-report", "action": "usage"}


def test_routes_inside_a_parallel_group(tmp_path, skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: routed
          steps:
            - parallel:
                - route: "is the host healthy?"
                - capability: disk.usage
    """)
    graph = load_workflow(path, registry=skills).graph
    assert graph.groups == {"parallel-1": ("health-monitoring", "disk-report")}


def test_no_match_and_ambiguous_routes_list_candidates_at_their_line(tmp_path, skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: routed
          steps:
            - route: "bake a sourdough loaf"
            - id: rotate
              route: "rotate and compress the old log files"
            - capability: disk.usge
            - capability: logs.rotate
    """)
    found = problems(path, skills)
    assert found[0].startswith(f"{path}:4:14: steps[0].route: route 'bake a sourdough loaf' "
                               "matches no skill's action")
    assert found[1].startswith(f"{path}:6:14: steps[1].route: route 'rotate and compress the "
                               "old log files' is ambiguous: log-rotate.rotate (")
    assert "log-rotation.rotate (" in found[1] and "orchestratorctl route" in found[1]
    assert found[2] == (f"{path}:7:19: steps[2].capability: no action declares capability "
                        "'disk.usge' (did you mean 'disk.usage'?)")
    assert found[3] == (f"{path}:8:19: steps[3].capability: capability 'logs.rotate' is declared "
                        "by 2 actions: log-rotate.rotate, log-rotation.rotate; name one with "
                        "skill and action")
    assert len(found) == 4


def test_exactly_one_way_to_choose_the_action(tmp_path, skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: routed
          steps:
            - {skill: disk-report, action: usage, route: "disk usage"}
            - {route: "disk usage", capability: disk.usage}
            - {id: nothing}
            - {capability: disk.usage, action: usage}
    """)
    assert problems(path, skills) == [
        f"{path}:4:7: steps[0]: a step needs exactly one of skill (with action), route or "
        "capability (got skill, route)",
        f"{path}:5:7: steps[1]: a step needs exactly one of skill (with action), route or "
        "capability (got route, capability)",
        f"{path}:6:7: steps[2]: a step needs exactly one of skill (with action), route or "
        "capability",
        f"{path}:7:7: steps[3]: `action` goes with `skill`; `capability` chooses the action "
        "itself"]


def test_a_stored_run_keeps_its_resolution_and_a_file_cannot_pin_one(tmp_path, skills):
    """Guards against a resumed run re-routing: the recorded skill and action are used,
    even where the route would now resolve elsewhere; a person's file may not pin."""
    pinned = {"workflow": {"name": "routed", "steps": [
        {"route": "check that the host is healthy", "skill": "disk-report", "action": "usage"}]}}
    definition = stored_definition(pinned, str(tmp_path / "routed.yaml"), skills)
    assert [(n.id, n.step.skill, n.step.action) for n in definition.graph.nodes.values()] == [
        ("disk-report", "disk-report", "usage")]
    with pytest.raises(DefinitionError, match="exactly one of skill"):
        load_data(pinned, "routed.json", skills, tmp_path)


def test_schema_shows_the_new_keys_and_the_choice():
    step = WorkflowDocument.model_json_schema()["$defs"]["Step"]
    assert "routed to" in step["properties"]["route"]["description"]
    assert "capability" in step["properties"]["capability"]["description"]
    assert step["oneOf"] == [{"required": ["skill", "action"]}, {"required": ["route"]},
                             {"required": ["capability"]}]
    assert json.dumps(step)  # plain JSON, as `orchestratorctl schema` prints it
