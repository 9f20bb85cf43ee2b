"""The workflow language: every class of error, with the exact message a person sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestratord.core.errors import DefinitionError
from orchestratord.language.loader import load_workflow
from orchestratord.skills import discover, search_path
from tests.conftest import ECHO, write_skill, write_workflow

WORKFLOWS = Path(__file__).parents[2] / "workflows"


def problems(path: Path, skill_root: Path) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        load_workflow(path, registry=discover([skill_root]))
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize("name,deps,groups", [
    # a chain: generate, check, start
    ("deploy-nixos-system.yaml",
     {"nixos-deployment": (), "health-monitoring": ("nixos-deployment",),
      "ai-service-management": ("health-monitoring",)}, {}),
    # import, then review and test side by side, then the report on both
    ("code-review-pipeline.yaml",
     {"project-import": (), "code-review": ("project-import",),
      "webapp-testing": ("project-import",), "internal-comms": ("code-review", "webapp-testing")},
     {"parallel-1": ("code-review", "webapp-testing")}),
    # three facts gathered at once, then the verdict on all three
    ("host-facts.yaml",
     {"kernel": (), "disk": (), "python": (), "verdict": ("kernel", "disk", "python")},
     {"gather": ("kernel", "disk", "python")}),
])
def test_example_workflows_load_as_written(name, deps, groups):
    """Each shipped workflow, with the real skills it ships with (bundled and beside it),
    is the DAG its file says: every step and every edge."""
    registry = discover(search_path([WORKFLOWS / "skills"]))
    graph = load_workflow(WORKFLOWS / name, registry=registry).graph
    assert {n: graph.nodes[n].deps for n in graph.nodes} == deps
    assert graph.groups == groups


def test_json_workflow_loads(tmp_path, seed_skills):
    data = {"workflow": {"name": "j", "steps": [{"skill": "code-review", "action": "review_changes"}]}}
    path = tmp_path / "j.json"
    path.write_text(json.dumps(data, indent=2))
    assert list(load_workflow(path, registry=discover([seed_skills])).graph.nodes) == ["code-review"]


def test_sequence_semantics(tmp_path, seed_skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: order
          steps:
            - {id: a, skill: code-review, action: review_changes}
            - {id: b, skill: code-review, action: review_changes}
            - {id: root, skill: code-review, action: review_changes, depends_on: []}
            - parallel:
                - {id: p1, skill: code-review, action: review_changes}
                - {id: p2, skill: code-review, action: review_changes, depends_on: [a]}
            - {id: after-group, skill: code-review, action: review_changes}
            - {id: one, skill: code-review, action: review_changes, depends_on: [p1]}
            - {id: whole, skill: code-review, action: review_changes, depends_on: [parallel-1]}
    """)
    graph = load_workflow(path, registry=discover([seed_skills])).graph
    deps = {n: graph.nodes[n].deps for n in graph.nodes}
    assert deps == {"a": (), "b": ("a",), "root": (), "p1": ("root",), "p2": ("a",),
                    "after-group": ("p1", "p2"), "one": ("p1",), "whole": ("p1", "p2")}


def test_parallel_n_counts_only_groups_without_an_id(tmp_path, seed_skills):
    """Regression: a group with an id used to take a number, so the first anonymous group
    after it was parallel-2, not parallel-1 as the README and the schema say."""
    path = write_workflow(tmp_path, """
        workflow:
          name: groups
          steps:
            - id: named
              parallel:
                - {id: n1, skill: code-review, action: review_changes}
            - parallel:
                - {id: a1, skill: code-review, action: review_changes}
            - parallel:
                - {id: b1, skill: code-review, action: review_changes}
            - {id: last, skill: code-review, action: review_changes, depends_on: [parallel-1]}
    """)
    graph = load_workflow(path, registry=discover([seed_skills])).graph
    assert graph.groups == {"named": ("n1",), "parallel-1": ("a1",), "parallel-2": ("b1",)}
    assert graph.nodes["last"].deps == ("a1",)


def test_yaml_syntax_error(tmp_path, seed_skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: x
          steps: [
    """)
    assert problems(path, seed_skills) == [
        f"{path}:4:1: YAML syntax: while parsing a flow node expected the node content, "
        "but found '<stream end>'"]


def test_unknown_keys_and_wrong_types_all_reported(tmp_path, seed_skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: x
          concurency: 3
          steps:
            - skill: code-review
              action: review_changes
              depend_on: [x]
            - skill: webapp-testing
              action: run_tests
              continue_on_error: maybe
    """)
    assert problems(path, seed_skills) == [
        f"{path}:3:3: concurency: unknown key 'concurency' (did you mean 'concurrency'?)",
        f"{path}:7:7: steps[0].depend_on: unknown key 'depend_on' (did you mean 'depends_on'?)",
        f"{path}:10:26: steps[1].continue_on_error: must be a valid boolean, unable to "
        "interpret input (got 'maybe')",
    ]


def test_missing_key(tmp_path, seed_skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: x
          steps:
            - skill: code-review
    """)
    assert problems(path, seed_skills) == [
        f"{path}:4:7: steps[0]: missing required key 'action' (which action of skill "
        "'code-review' to run)"]


def test_duplicate_ids_and_keys(tmp_path, seed_skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: x
          steps:
            - {skill: code-review, action: review_changes}
            - {skill: code-review, action: review_changes}
            - {id: twice, skill: webapp-testing, action: run_tests}
            - {id: twice, skill: webapp-testing, action: run_tests, action: run_tests}
    """)
    assert problems(path, seed_skills) == [
        f"{path}:5:15: steps[1].skill: duplicate step id 'code-review' (also used on line 4); "
        "give one of them an `id:`",
        f"{path}:7:12: steps[3].id: duplicate step id 'twice' (also used on line 6)",
        f"{path}:7:61: steps[3].action: duplicate key 'action'",
    ]


def test_unknown_and_ambiguous_dependencies(tmp_path, seed_skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: x
          steps:
            - {id: first, skill: health-monitoring, action: check}
            - {id: second, skill: health-monitoring, action: check}
            - skill: code-review
              action: review_changes
              depends_on: [helth-monitoring, health-monitoring]
    """)
    assert problems(path, seed_skills) == [
        f"{path}:8:20: steps[2].depends_on[0]: no step or skill named 'helth-monitoring' "
        "(did you mean 'health-monitoring'?)",
        f"{path}:8:38: steps[2].depends_on[1]: 'health-monitoring' is ambiguous: steps "
        "'first', 'second' all use skill 'health-monitoring'; name one of them by its id",
    ]


def test_cycle_is_printed(tmp_path, seed_skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: x
          steps:
            - {id: a, skill: code-review, action: review_changes, depends_on: [c]}
            - {id: b, skill: code-review, action: review_changes}
            - {id: c, skill: code-review, action: review_changes}
    """)
    [message] = problems(path, seed_skills)
    assert message.startswith(f"{path}:")
    assert "dependency cycle: " in message
    cycle = message.split("dependency cycle: ")[1].split(" (")[0].split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    # each step depends on the next one as printed
    deps = {"a": "c", "b": "a", "c": "b"}
    assert all(deps[cycle[i]] == cycle[i + 1] for i in range(len(cycle) - 1))


def test_unknown_skill_and_action(tmp_path, seed_skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: x
          steps:
            - {skill: code-reveiw, action: review_changes}
            - {skill: code-review, action: review, depends_on: []}
    """)
    assert problems(path, seed_skills) == [
        f"{path}:4:15: steps[0].skill: unknown skill 'code-reveiw' (did you mean 'code-review'?)",
        f"{path}:5:36: steps[1].action: skill 'code-review' has no action 'review' "
        "(did you mean 'review_changes'?)",
    ]


def test_params_checked_against_action_schema(tmp_path, skill_root):
    write_skill(skill_root, "deploy", {"generate_config": {
        "command": ECHO,
        "params": {"type": "object", "required": ["packages"], "additionalProperties": False,
                   "properties": {"packages": {"type": "array", "items": {"type": "string"}},
                                  "out": {"type": "string"}}}}})
    path = write_workflow(tmp_path, """
        workflow:
          name: x
          params: {where: /tmp/x}
          steps:
            - skill: deploy
              action: generate_config
              params:
                packages: [vim, 42]
                colour: blue
            - skill: deploy
              id: templated
              action: generate_config
              params:
                packages: "{{ params.where }}"
                out: "{{ params.where }}"
    """)
    assert problems(path, skill_root) == [
        f"{path}:8:9: steps[0].params: Additional properties are not allowed ('colour' was "
        "unexpected) (params schema of the action)",
        f"{path}:8:25: steps[0].params.packages[1]: 42 is not of type 'string' "
        "(params schema of the action)",
    ]


def test_bad_expressions_and_references(tmp_path, seed_skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: x
          params: {env: prod}
          steps:
            - {id: a, skill: code-review, action: review_changes}
            - id: b
              skill: code-review
              action: review_changes
              when: "steps.a.result.ok and"
            - id: c
              skill: code-review
              action: review_changes
              depends_on: []
              when: "steps.a.result.ok"
              params:
                target: "{{ params.enviroment }}"
                other: "{{ steps.nope.result }}"
    """)
    found = problems(path, seed_skills)
    assert len(found) == 4, found
    assert found[0].startswith(f"{path}:9:13: steps[1].when: ")
    assert found[0].endswith("expression 'steps.a.result.ok and' is not valid: "
                             "unexpected 'end of expression'")
    assert found[1:] == [
        f"{path}:14:13: steps[2].when: steps.a has not finished when step 'c' starts: "
        "add 'a' to its depends_on",
        f"{path}:16:9: steps[2].params: params.enviroment is not a workflow param",
        f"{path}:16:9: steps[2].params: steps.nope: no such step",
    ]


def test_retry_and_timeout_out_of_range(tmp_path, seed_skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: x
          timeout: soon
          steps:
            - skill: code-review
              action: review_changes
              timeout: -1
              retry: {attempts: 0, backoff: exp, max_delay: 2d}
    """)
    assert problems(path, seed_skills) == [
        f"{path}:3:12: timeout: 'soon' is not a duration: use seconds or units ms, s, m, h, d "
        "(e.g. \"30s\", \"1h30m\")",
        f"{path}:7:16: steps[0].timeout: must be greater than or equal to 0.001 (got -1)",
        f"{path}:8:25: steps[0].retry.attempts: must be greater than or equal to 1 (got 0)",
        f"{path}:8:37: steps[0].retry.backoff: must be 'fixed', 'linear' or 'exponential' "
        "(got 'exp')",
        f"{path}:8:53: steps[0].retry.max_delay: must be less than or equal to 86400 (got '2d')",
    ]


def test_skill_directories_clash(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    write_skill(one, "deploy", {"go": {"command": ["true"]}})
    write_skill(two, "deploy", {"go": {"command": ["true"]}})
    with pytest.raises(DefinitionError) as info:
        discover([one, two])
    assert [str(p) for p in info.value.problems] == [
        f"{two}/deploy/SKILL.md:1:1: name: skill 'deploy' is declared twice: here and in "
        f"{one}/deploy/SKILL.md"]


def test_inline_skill_and_clash(tmp_path, seed_skills):
    path = write_workflow(tmp_path, """
        workflow:
          name: x
          steps:
            - {skill: local, action: hello}
        skills:
          local:
            description: declared here
            actions:
              hello: {command: [echo, hi]}
          code-review:
            actions:
              other: {command: [echo]}
    """)
    [message] = problems(path, seed_skills)
    assert message == (f"{path}:10:3: skills.code-review: skill 'code-review' is declared twice: "
                       f"here and in {seed_skills}/code-review/SKILL.md")


def test_skill_md_without_frontmatter(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "SKILL.md").write_text("# no frontmatter\n")
    with pytest.raises(DefinitionError) as info:
        discover([tmp_path])
    assert str(info.value) == (f"{bad}/SKILL.md:1:1: SKILL.md must start with YAML frontmatter "
                               "between '---' lines (name, description, version)")


def test_action_needs_exactly_one_kind(tmp_path):
    write_skill(tmp_path, "two-kinds", {"go": {"command": ["true"], "python": "os:getcwd"}})
    with pytest.raises(DefinitionError) as info:
        discover([tmp_path])
    assert str(info.value) == (f"{tmp_path}/two-kinds/actions.yaml:3:5: actions.go: an action "
                               "needs exactly one of command, http or python (got command, python)")


def test_every_problem_of_a_file_at_once(tmp_path, seed_skills):
    """Regression: a semantic error must not hide behind another in the same stage."""
    path = write_workflow(tmp_path, """
        workflow:
          name: x
          steps:
            - {skill: nope, action: x}
            - {skill: code-review, action: review_changes, depends_on: [ghost]}
            - {skill: webapp-testing, action: run_tests, when: "steps.ghost.ok"}
    """)
    assert problems(path, seed_skills) == [
        f"{path}:4:15: steps[0].skill: unknown skill 'nope'",
        f"{path}:5:65: steps[1].depends_on[0]: no step or skill named 'ghost'",
        f"{path}:6:56: steps[2].when: steps.ghost: no such step"]
