"""The control API: HTTP/JSON routes over the daemon's unix socket.

Routes are plain functions of the request; the daemon object they reach through
`request.app[DAEMON]` does the work. Every error is a JSON body {"error": "..."} with
a 4xx status; nothing a client sends can crash the daemon.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import pydantic
from aiohttp import web

from ..cli.client import MAX_RUNS_LISTED
from ..core.errors import (
    DefinitionError,
    LeaseHeld,
    OrchestratorError,
    ParamsError,
    RunNotFound,
    RunStateError,
    WorkflowNotFound,
)
from ..core.redact import RunRedactor, redact_definition
from ..core.statuses import FINAL
from ..language.skill_routing import MAX_CANDIDATES, router_of

if TYPE_CHECKING:
    from .services import DaemonServices as Daemon

log = logging.getLogger("orchestratord.api")
DAEMON: web.AppKey[Any] = web.AppKey("daemon", object)
METRICS: web.AppKey[Any] = web.AppKey("metrics", object)
MAX_BODY = 1024 * 1024


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


@web.middleware
async def errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Translate our errors to statuses; anything unexpected is a logged 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400 and not (exc.text or "").startswith("{"):
            return _error(exc.status, exc.reason if exc.status != 413 else
                          f"request body larger than {MAX_BODY} bytes")
        raise
    except RunNotFound as exc:
        return _error(404, str(exc))
    except (ParamsError, DefinitionError, WorkflowNotFound) as exc:
        return _error(400, str(exc))
    except (RunStateError, LeaseHeld) as exc:
        return _error(409, str(exc))
    except OrchestratorError as exc:
        return _error(500, str(exc))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, "internal error; see the daemon's journal")


class _Body(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class _WithParams(_Body):
    params: dict[str, Any] = pydantic.Field(default_factory=dict)

    @pydantic.field_validator("params")
    @classmethod
    def _finite(cls, params: dict[str, Any]) -> dict[str, Any]:
        # 1e999 parses as inf; stored, it would be JSON no other reader accepts.
        json.dumps(params, allow_nan=False)
        return params


class StartRun(_WithParams):
    """The body of POST /runs."""

    workflow: str


class StartCall(_WithParams):
    """The body of POST /calls."""

    skill: str
    action: str


class RouteRequest(_Body):
    """The body of POST /route."""

    text: str
    limit: int = pydantic.Field(5, ge=1, le=MAX_CANDIDATES, strict=True)


async def _body(request: web.Request, model: type[pydantic.BaseModel]) -> Any:
    """The body as model; anything else (not JSON, nested too deep, a number of
    thousands of digits, a wrong shape) is a 400 saying what is wrong."""
    try:
        return model.model_validate_json(await request.read() if request.body_exists else b"{}")
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                             for e in exc.errors(include_url=False)[:5])
        raise web.HTTPBadRequest(reason=problems.replace("\n", " ")) from None


def _int_query(request: web.Request, name: str, default: int, lowest: int, highest: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text) if len(text) <= 20 else None
    except ValueError:
        value = None
    if value is None or not lowest <= value <= highest:
        raise web.HTTPBadRequest(reason=f"{name}: expected a whole number from {lowest} "
                                        f"to {highest}, got {text[:40]!r}")
    return value


def _daemon(request: web.Request) -> Daemon:
    return request.app[DAEMON]


async def health(request: web.Request) -> web.Response:
    d = _daemon(request)
    return _json({"status": "ok", "active_runs": d.engine.active_count(),
                  "workflows": len(d.catalog.workflows), "problems": len(d.catalog.problems),
                  "metrics_listen": d.metrics_address, "api_listen": d.api_address,
                  "connections": len(d.connections)})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics in the text exposition format."""
    from ..observability.metrics import CONTENT_TYPE
    return web.Response(body=request.app[METRICS].exposition(),
                        headers={"Content-Type": CONTENT_TYPE})


async def get_stats(request: web.Request) -> web.Response:
    """Per skill/action statistics; ?workflow=W&since=T (ISO time or a duration: 7d)."""
    from ..store import stats
    q = request.query
    since = stats.parse_since(q["since"]) if q.get("since") else None
    # A read of the whole history: in a thread with its own connection, off the loop.
    result = await asyncio.to_thread(stats.compute, _daemon(request).store.path,
                                     workflow=q.get("workflow") or None, since=since)
    return _json([s.as_dict() for s in result])


async def list_workflows(request: web.Request) -> web.Response:
    return _json([{"name": d.name, "description": d.workflow.description, "file": d.file,
                   "steps": len(d.graph.nodes)}
                  for d in _daemon(request).catalog.workflows.values()])


async def get_workflow(request: web.Request) -> web.Response:
    definition = _daemon(request).catalog.workflows.get(request.match_info["name"])
    if definition is None:
        raise web.HTTPNotFound(reason=f"no workflow '{request.match_info['name']}'")
    from ..reports.workflow_info import describe_workflow
    # "steps" was, and stays, {id: deps}; the described list is "nodes".
    described = describe_workflow(definition)
    return _json({**described, "nodes": described["steps"],
                  "definition": redact_definition(definition.source),
                  "steps": {n.id: list(n.deps) for n in definition.graph.nodes.values()}})


async def list_skills(request: web.Request) -> web.Response:
    from ..skills.describe import describe_all
    return _json(describe_all(_daemon(request).catalog.skills))


async def get_skill(request: web.Request) -> web.Response:
    """A skill's catalog entry and, under "document", its SKILL.md."""
    from ..skills.describe import describe, document
    name = request.match_info["name"]
    skill = _daemon(request).catalog.skills.get(name)
    if skill is None:
        raise web.HTTPNotFound(reason=f"no skill '{name}'")
    return _json({**describe(skill), "document": document(skill)})


async def start_call(request: web.Request) -> web.Response:
    """Call one action: {"skill": S, "action": A, "params": {...}} -> a one-step run."""
    body = await _body(request, StartCall)
    from ..language.calls import call_definition
    d = _daemon(request)
    run_id = await d.start_definition(call_definition(d.catalog.skills, body.skill, body.action,
                                                      body.params))
    return _json({"run_id": run_id}, 201)


async def start_run(request: web.Request) -> web.Response:
    body = await _body(request, StartRun)
    run_id = await _daemon(request).start_run(body.workflow, body.params)
    return _json({"run_id": run_id}, 201)


async def route_request(request: web.Request) -> web.Response:
    """Which skill and action fit {"text": ..., "limit": K}; offline, with reasons."""
    body = await _body(request, RouteRequest)
    return _json(router_of(_daemon(request).catalog.skills).route(body.text, body.limit).as_dict())


async def list_runs(request: web.Request) -> web.Response:
    q = request.query
    limit = _int_query(request, "limit", 50, 1, MAX_RUNS_LISTED)
    runs = await _daemon(request).store.list_runs(workflow=q.get("workflow"),
                                                   status=q.get("status"), limit=limit)
    return _json([run_json(RunRedactor.for_run(r).rows(r)[0]) for r in runs])


async def get_run(request: web.Request) -> web.Response:
    store = _daemon(request).store
    run = await store.get_run(request.match_info["run"])
    # Secrets are masked on the way out; the store keeps what resume needs.
    run, steps, attempts = RunRedactor.for_run(run).rows(run, await store.steps(run.id),
                                                         await store.attempts(run.id))
    return _json({**run_json(run), "steps": [asdict(s) for s in steps],
                  "attempts": [asdict(a) for a in attempts]})


REPORT_TYPES = {"md": "text/markdown", "json": "application/json", "html": "text/html"}


async def run_report(request: web.Request) -> web.Response:
    """The run's execution report; ?format=md|json|html (default json), secrets redacted."""
    from ..reports.report import build_report, render
    fmt = request.query.get("format", "json")
    if fmt not in REPORT_TYPES:
        raise web.HTTPBadRequest(reason=f"format: expected one of {', '.join(REPORT_TYPES)}, "
                                        f"got {fmt!r}")
    model = await build_report(_daemon(request).store, request.match_info["run"])
    if fmt == "json":
        return _json(model)
    return web.Response(text=render(model, fmt), content_type=REPORT_TYPES[fmt], charset="utf-8")


async def run_events(request: web.Request) -> web.StreamResponse:
    """The run's events as NDJSON; with follow=1, streamed until the run ends."""
    d = _daemon(request)
    run = await d.store.get_run(request.match_info["run"])
    after = _int_query(request, "after", 0, 0, 2**63 - 1)
    follow = request.query.get("follow") in ("1", "true")
    redacted = RunRedactor.for_run(run, await d.store.steps(run.id))
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    while True:
        for event in await d.store.events(run.id, after=after):
            after = event.seq
            await response.write((json.dumps(redacted(asdict(event))) + "\n").encode())
        if not follow or ((await d.store.get_run(run.id)).status in FINAL and \
                not await d.store.events(run.id, after=after)):
            break
        await d.changed(timeout=1.0)
    await response.write_eof()
    return response


async def cancel_run(request: web.Request) -> web.Response:
    run_id = await _daemon(request).cancel_run(request.match_info["run"])
    return _json({"run_id": run_id, "cancel_requested": True}, 202)


async def resume_run(request: web.Request) -> web.Response:
    run_id = await _daemon(request).resume_run(request.match_info["run"])
    return _json({"run_id": run_id}, 202)


async def reload(request: web.Request) -> web.Response:
    """Reread workflows and skills; answers once they are in use (what ExecReload= waits for)."""
    catalog = await _daemon(request).reload()
    return _json({"workflows": sorted(catalog.workflows),
                  "problems": [str(p) for p in catalog.problems]})


async def aidb_status(request: web.Request) -> web.Response:
    aidb = _daemon(request).aidb
    if aidb is None:
        return _error(503, "the daemon is still starting; ask again")
    return _json(await aidb.status())


async def aidb_sync(request: web.Request) -> web.Response:
    """Refresh AIDB's catalog and flush the history outbox now."""
    aidb = _daemon(request).aidb
    if aidb is None:
        return _error(503, "the daemon is still starting; ask again")
    return _json(await aidb.sync())


def run_json(run: Any) -> dict[str, Any]:
    return {k: v for k, v in asdict(run).items() if k not in ("definition",)}


def make_app(daemon: Daemon) -> web.Application:
    app = web.Application(middlewares=[errors, daemon.connections.middleware],
                          client_max_size=MAX_BODY)
    app[DAEMON] = daemon
    app[METRICS] = daemon.metrics
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/stats", get_stats)
    app.router.add_get("/workflows", list_workflows)
    app.router.add_get("/workflows/{name}", get_workflow)
    app.router.add_get("/skills", list_skills)
    app.router.add_get("/skills/{name}", get_skill)
    app.router.add_get("/aidb/status", aidb_status)
    app.router.add_post("/aidb/sync", aidb_sync)
    app.router.add_post("/calls", start_call)
    app.router.add_post("/route", route_request)
    app.router.add_post("/reload", reload)
    app.router.add_post("/runs", start_run)
    app.router.add_get("/runs", list_runs)
    app.router.add_get("/runs/{run}", get_run)
    app.router.add_get("/runs/{run}/events", run_events)
    app.router.add_get("/runs/{run}/report", run_report)
    app.router.add_post("/runs/{run}/cancel", cancel_run)
    app.router.add_post("/runs/{run}/resume", resume_run)
    return app


def make_metrics_app(source: Any, connections: Any) -> web.Application:
    """The app of the optional TCP listener: /metrics and nothing else, since TCP
    reaches past the control socket's file permissions."""
    app = web.Application(middlewares=[errors, connections.middleware])
    app[METRICS] = source  # orchestratord.metrics.Metrics
    app.router.add_get("/metrics", metrics)
    return app
