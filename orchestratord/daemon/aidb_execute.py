"""`POST /skills/{name}/execute`: AIDB's documented execute contract, served by us.

AIDB documents `{"parameters": {...}}` -> a result but cannot run anything; we can. The
request runs the skill's action as a `call` (a recorded one-step run, with everything a
run has) and answers `{run_id, status, result, error}` once the run ended, or with
status 202 and the run's current status after `?wait=SECONDS` (default 300).

Served on the control socket (its file permissions are the access control) and, with
`aidb.api_listen`, on a loopback TCP listener that serves only this route and only to
clients presenting the API key (`X-API-Key: KEY` or `Authorization: Bearer KEY`).
"""

from __future__ import annotations

import hmac
import json
import time
from typing import TYPE_CHECKING, Any

import pydantic
from aiohttp import web

from ..core.redact import RunRedactor
from ..core.statuses import FINAL
from ..language.calls import call_definition

if TYPE_CHECKING:
    from .services import DaemonServices as Daemon

DEFAULT_WAIT = 300.0
MAX_WAIT = 86400.0


class Execute(pydantic.BaseModel):
    """The body of POST /skills/{name}/execute, as AIDB documents it (plus "action")."""

    model_config = pydantic.ConfigDict(extra="forbid")
    parameters: dict[str, Any] = pydantic.Field(default_factory=dict)
    action: str | None = None

    @pydantic.field_validator("parameters")
    @classmethod
    def _finite(cls, params: dict[str, Any]) -> dict[str, Any]:
        json.dumps(params, allow_nan=False)  # as the API's other bodies: no inf/NaN stored
        return params


async def execute(request: web.Request) -> web.Response:
    from .api import DAEMON, _body, _json
    daemon: Daemon = request.app[DAEMON]
    name = request.match_info["name"]
    body = await _body(request, Execute)
    params, action = body.parameters, body.action
    try:
        wait = float(request.query.get("wait", DEFAULT_WAIT))
    except ValueError:
        wait = -1.0
    if not 0 <= wait <= MAX_WAIT:  # also NaN
        raise web.HTTPBadRequest(reason=f"wait: expected seconds from 0 to {MAX_WAIT:.0f}")
    skill = daemon.catalog.skills.get(name)
    if skill is None:
        raise web.HTTPNotFound(reason=f"no skill '{name}'")
    if not skill.actions:
        raise web.HTTPBadRequest(reason=f"skill '{name}' is instructions only (from "
                                        f"{skill.origin}): read it at GET /skills/{name}")
    if action is None:
        if len(skill.actions) != 1:
            raise web.HTTPBadRequest(reason=f"skill '{name}' has several actions: name one "
                                            f"of {', '.join(skill.actions)} as \"action\"")
        (action,) = skill.actions
    run_id = await daemon.start_definition(
        call_definition(daemon.catalog.skills, name, action, params))
    deadline = time.monotonic() + wait
    run = await daemon.store.get_run(run_id)
    while run.status not in FINAL and time.monotonic() < deadline:
        await daemon.changed(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
        run = await daemon.store.get_run(run_id)
    # Redacted as GET /runs/ID is: what a step's result masked stays masked here too.
    shown, _, _ = RunRedactor.for_run(run).rows(run, await daemon.store.steps(run.id))
    outputs = shown.outputs if isinstance(shown.outputs, dict) else {}
    answer = {"run_id": run.id, "status": run.status, "result": outputs.get("result"),
              "error": shown.error}
    return _json(answer, 200 if run.status in FINAL else 202)


def key_required(key: str) -> Any:
    """Middleware: the request must present key (401 without one, 403 with another)."""
    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        from .api import _error
        given = request.headers.get("X-API-Key")
        auth = request.headers.get("Authorization", "")
        if given is None and auth.startswith("Bearer "):
            given = auth[len("Bearer "):].strip()
        if given is None:
            return _error(401, "an API key is required: X-API-Key: KEY or "
                               "Authorization: Bearer KEY")
        if not hmac.compare_digest(given.encode(), key.encode()):
            return _error(403, "wrong API key")
        return await handler(request)
    return check


def make_execute_app(daemon: Daemon, key: str) -> web.Application:
    """The api_listen app: the execute route alone, behind the key (checked before a
    body is read), its connections bounded with the control socket's."""
    from .api import DAEMON, MAX_BODY, errors
    app = web.Application(middlewares=[key_required(key), errors, daemon.connections.middleware],
                          client_max_size=MAX_BODY)
    app[DAEMON] = daemon
    app.router.add_post("/skills/{name}/execute", execute)
    return app


async def serve_execute(daemon: Daemon, listen: str, key: str) -> tuple[web.AppRunner, str]:
    """Bind the api_listen listener; returns its runner and the address bound."""
    from ..core.errors import OrchestratorError
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(make_execute_app(daemon, key), access_log=None)
    await runner.setup()
    assert runner.server is not None  # setup() made it
    try:
        bound = await daemon.connections.listen_tcp(runner.server, host.strip("[]"), int(port))
    except (OSError, OverflowError) as exc:
        await runner.cleanup()
        raise OrchestratorError(f"aidb.api_listen {listen}: cannot listen: "
                                f"{getattr(exc, 'strerror', None) or exc}") from exc
    return runner, (f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}")
