"""The MCP server's tools and resources, on the official SDK's MCPServer.

Each tool is a thin call to a Backend (the daemon, or the engine embedded on the
state file); what it answers is the control API's JSON, secrets already redacted.
An OrchestratorError becomes a tool error carrying the message the CLI prints.
Tools that change something refuse unless the server was started with --allow-run
(or the settings' mcp.allow_run), so that connecting an agent is safe by default.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from ..core.errors import OrchestratorError
from ..core.statuses import (
    STEP_ENDED,
    TERMINAL,
    EventKind,
    RunStatus,
    StepStatus,
    ended_status,
)
from ..core.version import __version__
from ..reports.report import render
from .backend import Backend

MAX_PARAMS_BYTES = 1024 * 1024  # as the daemon's control API accepts at most
ENABLE = ("this MCP server is read-only; start it with `orchestratorctl mcp --allow-run` "
          "(or set mcp.allow_run: true in the settings file; NixOS: "
          "services.agent-orchestrator.mcp.allowRun = true)")

# Runs are named by an id or a unique prefix of one: hex, never a pattern.
RunId = Annotated[str, Field(pattern=r"^[0-9a-f]{1,32}$",
                             description="a run id, or a unique prefix of one")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Params = Annotated[dict[str, Any], Field(description="params as JSON (at most 1 MiB)")]
Wait = Annotated[bool, Field(description="follow the run to its end, reporting each step as "
                                         "a progress notification; else return at once")]

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
CHANGES = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True)


def build_server(backend: Backend, *, allow_run: bool) -> MCPServer:
    """An MCPServer whose tools and resources answer from backend."""
    server = MCPServer("agent-orchestrator", version=__version__, instructions=(
        "Workflows of agent skills, run durably by agent-orchestrator. list_workflows and "
        "describe_workflow show what can run; start_run starts one (wait=true follows it "
        "with progress notifications); get_run, list_runs and get_report inspect runs. "
        "list_skills and read_skill show the skills (read_skill: the SKILL.md); "
        "route_request finds the skill and action for a request; call_skill calls one. "
        + ("" if allow_run else "This server is read-only: " + ENABLE + ".")))

    def tool(annotations: ToolAnnotations, mutating: bool = False) -> Callable[[Any], Any]:
        def register(fn: Callable[..., Awaitable[Any]]) -> Any:
            @functools.wraps(fn)
            async def guarded(*args: Any, **kwargs: Any) -> Any:
                if mutating and not allow_run:
                    raise ToolError(f"{fn.__name__} refused: {ENABLE}")
                try:
                    return await fn(*args, **kwargs)
                except OrchestratorError as exc:
                    raise ToolError(str(exc)) from None
            server.add_tool(guarded, annotations=annotations)
            return guarded
        return register

    async def outcome(run_id: str, wait: bool, ctx: Context) -> dict[str, Any]:
        if wait:
            await follow(backend, run_id, ctx)
        return summary(await backend.get_run(run_id))

    @tool(READ)
    async def list_workflows() -> dict[str, Any]:
        """The workflows that can be started: name, description, file, number of steps."""
        return {"workflows": await backend.list_workflows()}

    @tool(READ)
    async def describe_workflow(name: Name) -> dict[str, Any]:
        """A workflow's params (a JSON Schema: what start_run's params must fit), its
        steps (skill, action, depends_on) and its graph as a Mermaid flowchart."""
        return await backend.describe_workflow(name)

    @tool(CHANGES, mutating=True)
    async def start_run(workflow: Name, ctx: Context, params: Params | None = None,
                        wait: Wait = False) -> dict[str, Any]:
        """Start a run of a workflow with params; returns its id and status, or with
        wait=true its outcome (status, outputs, error, each step's status)."""
        run_id = await backend.start_run(workflow, checked(params))
        return await outcome(run_id, wait, ctx)

    @tool(READ)
    async def get_run(run_id: RunId) -> dict[str, Any]:
        """A run: status, params (secrets masked), outputs, error, and each step's status,
        attempts, result and error."""
        return await backend.get_run(run_id)

    @tool(READ)
    async def list_runs(status: RunStatus | None = None, workflow: Name | None = None,
                        limit: Annotated[int, Field(ge=1, le=200)] = 20) -> dict[str, Any]:
        """Recent runs, newest first, optionally only of one status or workflow."""
        runs = await backend.list_runs(workflow, status, limit)
        return {"runs": [{k: r.get(k) for k in SUMMARY} for r in runs]}

    @tool(READ)
    async def get_report(run_id: RunId) -> str:
        """A run's execution report in Markdown: summary, steps, timeline, failures."""
        return render(await backend.report(run_id), "md")

    @tool(CHANGES, mutating=True)
    async def cancel_run(run_id: RunId) -> dict[str, Any]:
        """Cancel a run: its driver stops it (with rollback when the workflow says so)."""
        await backend.cancel_run(run_id)
        return summary(await backend.get_run(run_id)) | {"cancel_requested": True}

    @tool(CHANGES, mutating=True)
    async def resume_run(run_id: RunId, ctx: Context, wait: Wait = False) -> dict[str, Any]:
        """Continue an interrupted run, or redrive a failed one from its failed steps;
        succeeded steps are not run again."""
        run = await backend.get_run(run_id)
        seen = await backend.last_seq(run["id"]) if wait else 0
        run_id = await backend.resume_run(run["id"])
        if wait:  # this resume's events only: the run's earlier end is history
            await follow(backend, run_id, ctx, after=seen, before=run)
        return summary(await backend.get_run(run_id))

    @tool(READ)
    async def list_skills() -> dict[str, Any]:
        """The skills: name, description, version, actions (with whether each changes
        the system), capabilities, examples."""
        return {"skills": await backend.list_skills()}

    @tool(READ)
    async def read_skill(name: Name) -> str:
        """A skill's SKILL.md, whole: what it is for and how its actions are used."""
        return (await backend.read_skill(name))["document"]

    @tool(READ)
    async def route_request(text: Annotated[str, Field(min_length=1, max_length=10_000)],
                            ctx: Context, limit: Annotated[int, Field(ge=1, le=20)] = 5,
                            run: Annotated[bool, Field(description=(
                                "call the match when it is one and its action does not "
                                "change the system (needs --allow-run)"))] = False,
                            wait: Wait = False) -> dict[str, Any]:
        """Which skill and action fit a request in plain words, with a score and the
        reasons; status is matched, ambiguous or none."""
        if run and not allow_run:
            raise ToolError(f"route_request with run=true refused: {ENABLE}")
        answer = await backend.route(text, limit)
        if not run or answer["status"] != "matched":
            return answer
        best = answer["candidates"][0]
        skill = await backend.read_skill(best["skill"])
        if any(a["name"] == best["action"] and a["mutating"] for a in skill["actions"]):
            raise ToolError(f"{best['skill']}.{best['action']} changes the system; call it "
                            "with call_skill")
        run_id = await backend.call_skill(best["skill"], best["action"], {})
        return answer | {"run": await outcome(run_id, wait, ctx)}

    @tool(CHANGES, mutating=True)
    async def call_skill(skill: Name, action: Name, ctx: Context, params: Params | None = None,
                         wait: Wait = True) -> dict[str, Any]:
        """Call one action of a skill with params, as a recorded one-step run; with
        wait (the default) its outcome, the action's result under outputs.result."""
        run_id = await backend.call_skill(skill, action, checked(params))
        return await outcome(run_id, wait, ctx)

    @server.resource("orchestrator://runs/{run_id}/report", mime_type="text/markdown",
                     description="a run's execution report (Markdown)")
    async def run_report(run_id: str) -> str:
        try:
            return render(await backend.report(run_id), "md")
        except OrchestratorError as exc:
            raise ResourceError(str(exc)) from None

    @server.resource("skill://{name}", mime_type="text/markdown",
                     description="a skill's SKILL.md")
    async def skill_document(name: str) -> str:
        try:
            return (await backend.read_skill(name))["document"]
        except OrchestratorError as exc:
            raise ResourceError(str(exc)) from None

    return server


SUMMARY = ("id", "workflow", "status", "created_at", "started_at", "finished_at", "outputs",
           "error")


def summary(run: dict[str, Any]) -> dict[str, Any]:
    """What a caller wants of a run it started: its outcome and each step's."""
    return {"run_id": run["id"], **{k: run.get(k) for k in SUMMARY if k != "id"},
            "steps": [{"step_id": s["step_id"], "skill": s["skill"], "action": s["action"],
                       "status": s["status"], "attempts": s["attempts"], "error": s["error"]}
                      for s in run.get("steps", [])]}


def checked(params: dict[str, Any] | None) -> dict[str, Any]:
    """params, bounded as the control API bounds a request body."""
    size = len(json.dumps(params or {}))
    if size > MAX_PARAMS_BYTES:
        raise ToolError(f"params are {size} bytes of JSON; at most {MAX_PARAMS_BYTES} are "
                        "accepted")
    return params or {}


async def follow(backend: Backend, run_id: str, ctx: Context, *, after: int = 0,
                 before: dict[str, Any] | None = None) -> None:
    """Report the run's steps as progress notifications until the run ends.

    Progress is the number of steps ended, of all the run's steps and its end (the
    last unit); a step that starts (or starts again) nudges it up a little, since MCP
    wants every notification's progress above the last one's.

    A resumed run (`before`: as it was before the resume) is followed from its events
    after `after`; the steps that had succeeded are not run again, so they count as
    ended. Until its driver takes it up (a slot may be busy) it still shows its old
    end, so that is waited out, for RESUME_WAIT at most.
    """
    steps = (before or await backend.get_run(run_id))["steps"]
    total = len(steps) + 1
    ended = sum(s["status"] == StepStatus.SUCCEEDED for s in steps) if before else 0
    progress, taken_up = 0.0, before is None
    deadline = time.monotonic() + RESUME_WAIT

    async def report(message: str) -> None:
        nonlocal progress
        progress = max(float(ended), progress + 0.01)
        await ctx.report_progress(progress, total, message)

    while True:
        async for event in backend.events(run_id, after=after):
            after = event["seq"]
            kind, step, data = event["type"], event.get("step_id"), event.get("data") or {}
            status = ended_status(kind)
            taken_up = taken_up or kind == EventKind.RUN_RESUMED
            if kind == EventKind.STEP_STARTED:
                await report(f"{step}: attempt {event.get('attempt')}")
            elif isinstance(status, StepStatus) and step and status in STEP_ENDED:
                ended += 1
                error = f": {data['error']}" if data.get("error") else ""
                await report(f"{step} {status.replace('_', ' ')}{error}")
            elif isinstance(status, RunStatus) and status in TERMINAL:
                ended = total
                await report(f"run {run_id} {status.replace('_', ' ')}")
        if taken_up or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.2)


RESUME_WAIT = 30.0  # seconds a resumed run may wait for its driver while it is followed
