"""The Python API of the specification, end to end on a real state file."""

from __future__ import annotations

import pytest

from orchestratord import AgentOrchestrator, SkillExecution, SkillResult, WorkflowResult
from orchestratord.core.errors import DefinitionError
from orchestratord.store.sqlite import Store
from tests.conftest import ECHO, py_command, write_skill

FAIL = py_command("import sys; print('broken', file=sys.stderr); sys.exit(3)")


@pytest.fixture
def skills(skill_root):
    write_skill(skill_root, "tool", {"echo": {"command": ECHO}, "fail": {"command": FAIL}},
                description="Echo params back")
    return skill_root


async def test_execute_workflow_from_a_mapping_returns_typed_results(skills, tmp_path):
    workflow = {"workflow": {"name": "two", "params": {"who": "world"},
                             "outputs": {"greeting": "{{ steps.second.result.params.hi }}"},
                             "steps": [{"id": "first", "skill": "tool", "action": "echo",
                                        "params": {"hi": "{{ params.who }}"}},
                                       {"id": "second", "skill": "tool", "action": "echo",
                                        "params": {"hi": "{{ steps.first.result.params.hi }}"}}]}}
    async with AgentOrchestrator(state=tmp_path / "state.db", skill_paths=[skills]) as orch:
        result = await orch.execute_workflow(workflow, {"who": "nix"})
    assert isinstance(result, WorkflowResult) and result.ok
    assert result.outputs == {"greeting": "nix"}
    assert list(result.steps) == ["first", "second"]
    first = result.steps["first"]
    assert (first.status, first.result, first.attempts) == ("succeeded", {"params": {"hi": "nix"}}, 1)
    assert first.duration is not None and first.duration >= 0
    store = await Store.open(tmp_path / "state.db")  # recorded where the CLI finds it
    try:
        assert (await store.get_run(result.run_id)).status == "succeeded"
    finally:
        await store.close()


async def test_parallel_and_sequence_are_recorded_runs(skills, tmp_path):
    async with AgentOrchestrator(state=tmp_path / "state.db", skill_paths=[skills]) as orch:
        both = await orch.execute_parallel([SkillExecution("tool", "echo", {"n": 1}),
                                            SkillExecution("tool", "echo", {"n": 2})])
        assert [r.result for r in both] == [{"params": {"n": 1}}, {"params": {"n": 2}}]
        assert len({r.run_id for r in both}) == 2
        seq = await orch.execute_sequence([SkillExecution("tool", "echo"),
                                           SkillExecution("tool", "fail"),
                                           SkillExecution("tool", "echo")])
        assert [r.status for r in seq] == ["succeeded", "failed"]  # stops at the failure
        assert isinstance(seq[1], SkillResult) and "exit" in (seq[1].error or "")
        assert orch.route("echo the params back").best.skill == "tool"
        with pytest.raises(DefinitionError, match="has no action 'nope'"):
            await orch.call("tool", "nope")
        runs = await orch.engine.store.list_runs(limit=10)
    assert sorted(r.status for r in runs) == ["failed"] + ["succeeded"] * 3
