"""`orchestratorctl mcp` over stdio, driven by the MCP SDK's own client, against a real
daemon process serving the specification's deploy workflow."""

from __future__ import annotations

import json
import shutil

import jsonschema
import pytest

from .mcp_client import DEPLOY, Progress, stdio_session, text

pytestmark = pytest.mark.usefixtures("mcp_sdk")

TOOLS = {"list_workflows", "describe_workflow", "start_run", "get_run", "list_runs",
         "get_report", "cancel_run", "resume_run", "list_skills", "read_skill",
         "route_request", "call_skill"}


@pytest.fixture
def served(env, daemon):
    """A daemon serving workflows/deploy-nixos-system.yaml, as written; its socket path."""
    shutil.copy(DEPLOY, env / "workflows")
    d = daemon()
    d.notify.wait_for("READY=1")
    return env, str(env / "run" / "control.sock")


async def test_tools_have_valid_input_schemas_and_the_resources_are_templates(served):
    home, sock = served
    async with stdio_session(home, "--socket", sock, "mcp") as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert set(tools) == TOOLS
        for tool in tools.values():
            jsonschema.Draft202012Validator.check_schema(tool.input_schema)
            assert tool.description, tool.name
        start = tools["start_run"].input_schema
        assert start["required"] == ["workflow"] and "wait" in start["properties"]
        assert tools["get_run"].input_schema["properties"]["run_id"]["pattern"]
        assert tools["get_run"].annotations.read_only_hint is True
        assert tools["start_run"].annotations.read_only_hint is False
        templates = (await session.list_resource_templates()).resource_templates
        assert {t.uri_template for t in templates} == {"orchestrator://runs/{run_id}/report",
                                                      "skill://{name}"}
        described = json.loads(text(await session.call_tool(
            "describe_workflow", {"name": "deploy-nixos-system"})))
        assert [s["id"] for s in described["steps"]] == [
            "nixos-deployment", "health-monitoring", "ai-service-management"]
        assert described["steps"][1]["depends_on"] == ["nixos-deployment"]
        assert described["graph"].startswith("flowchart TD")
        jsonschema.Draft202012Validator.check_schema(described["params"])


async def test_deploy_followed_to_its_end_through_progress_then_its_report(served):
    home, sock = served
    async with stdio_session(home, "--socket", sock, "mcp", "--allow-run") as session:
        progress = Progress()
        result = await session.call_tool("start_run", {"workflow": "deploy-nixos-system",
                                                       "wait": True},
                                         progress_callback=progress)
        assert not result.is_error, text(result)
        run = json.loads(text(result))
        assert run["status"] == "succeeded"
        assert [s["status"] for s in run["steps"]] == ["succeeded"] * 3

        values = [p for p, _, _ in progress.seen]
        assert values == sorted(values) and len(set(values)) == len(values), progress.seen
        assert {total for _, total, _ in progress.seen} == {4}
        messages = [m for _, _, m in progress.seen]
        assert "nixos-deployment succeeded" in messages
        assert messages[-1] == f"run {run['run_id']} succeeded" and values[-1] == 4

        report = text(await session.call_tool("get_report", {"run_id": run["run_id"]}))
        assert run["run_id"] in report and "health-monitoring" in report
        assert report.lstrip().startswith("#")
        resource = await session.read_resource(f"orchestrator://runs/{run['run_id']}/report")
        assert text(resource) == report
        shown = json.loads(text(await session.call_tool("get_run", {"run_id": run["run_id"][:6]})))
        assert shown["id"] == run["run_id"] and shown["steps"][0]["result"]["changed"] is True
        listed = json.loads(text(await session.call_tool("list_runs", {"status": "succeeded"})))["runs"]
        assert [r["id"] for r in listed] == [run["run_id"]]


async def test_skills_read_as_their_skill_md(served):
    home, sock = served
    async with stdio_session(home, "--socket", sock, "mcp") as session:
        skills = json.loads(text(await session.call_tool("list_skills", {})))["skills"]
        assert "nixos-deployment" in {s["name"] for s in skills}
        document = text(await session.call_tool("read_skill", {"name": "nixos-deployment"}))
        assert document.startswith("---\n") and "name: nixos-deployment" in document
        assert text(await session.read_resource("skill://nixos-deployment")) == document
        routed = json.loads(text(await session.call_tool(
            "route_request", {"text": "check the disk space and health of this host"})))
        assert routed["candidates"][0]["skill"] == "health-monitoring", routed
        missing = await session.call_tool("read_skill", {"name": "nope"})
        assert missing.is_error and "no skill 'nope'" in text(missing)


async def test_read_only_by_default_refuses_what_changes_things(served):
    home, sock = served
    async with stdio_session(home, "--socket", sock, "mcp") as session:
        refused = await session.call_tool("start_run", {"workflow": "deploy-nixos-system"})
        assert refused.is_error
        assert "start_run refused" in text(refused) and "--allow-run" in text(refused)
        for tool, args in (("cancel_run", {"run_id": "abc"}), ("resume_run", {"run_id": "abc"}),
                           ("call_skill", {"skill": "health-monitoring", "action": "check"}),
                           ("route_request", {"text": "check disk", "run": True})):
            answer = await session.call_tool(tool, args)
            assert answer.is_error and "mcp.allow_run" in text(answer), tool
        assert json.loads(text(await session.call_tool("list_runs", {}))) == {"runs": []}


async def test_hostile_input_gets_tool_errors_and_the_server_keeps_serving(served):
    home, sock = served
    async with stdio_session(home, "--socket", sock, "mcp", "--allow-run") as session:
        done = json.loads(text(await session.call_tool(
            "start_run", {"workflow": "deploy-nixos-system", "wait": True})))
        for run_id in ("%", "_", "../runs", "", "x" * 10_000):
            answer = await session.call_tool("get_run", {"run_id": run_id})
            assert answer.is_error and "pattern" in text(answer), run_id
        absent = await session.call_tool("get_report", {"run_id": "ffffffffffff"})
        assert absent.is_error and "no run 'ffffffffffff'" in text(absent)
        with pytest.raises(Exception, match="no run '%'"):
            await session.read_resource("orchestrator://runs/%25/report")

        unknown = await session.call_tool("start_run", {"workflow": "nope"})
        assert unknown.is_error
        assert "no workflow 'nope' (known: deploy-nixos-system)" in text(unknown)
        bad = await session.call_tool("start_run", {"workflow": "deploy-nixos-system",
                                                    "params": {"nope": 1}})
        assert bad.is_error and "unknown param 'nope'" in text(bad)
        huge = await session.call_tool("call_skill", {"skill": "health-monitoring",
                                                      "action": "check",
                                                      "params": {"x": "y" * 2_000_000}})
        assert huge.is_error and "at most 1048576" in text(huge)
        deep: dict = {}
        for _ in range(100):  # the SDK drops messages past ~200 levels: test_mcp_hostile.py
            deep = {"d": deep}
        nested = await session.call_tool("start_run", {"workflow": "deploy-nixos-system",
                                                       "params": deep})
        assert nested.is_error and "unknown param 'd'" in text(nested)
        wide = await session.call_tool("describe_workflow", {"name": "n" * 100_000})
        assert wide.is_error

        # Still serving, and nothing above started a run.
        runs = json.loads(text(await session.call_tool("list_runs", {"limit": 200})))["runs"]
        assert [r["id"] for r in runs] == [done["run_id"]]
