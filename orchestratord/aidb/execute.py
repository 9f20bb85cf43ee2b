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
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..calls import call_definition
from ..redact import RunRedactor

if TYPE_CHECKING:
    from ..daemon import Daemon

DEFAULT_WAIT = 300.0


async def execute(request: web.Request) -> web.Response:
    from ..api import DAEMON, _body, _json
    daemon: Daemon = request.app[DAEMON]
    name = request.match_info["name"]
    body = await _body(request)
    params, action = body.get("parameters", {}), body.get("action")
    if not isinstance(params, dict) or not (action is None or isinstance(action, str)):
        raise web.HTTPBadRequest(reason='expected {"parameters": {...}, "action": optional}')
    try:
        wait = float(request.query.get("wait", DEFAULT_WAIT))
    except ValueError:
        raise web.HTTPBadRequest(reason="wait must be a number of seconds") from None
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
    while run.status not in daemon.FINAL and time.monotonic() < deadline:
        await daemon.changed(timeout=min(1.0, max(0.01, deadline - time.monotonic())))
        run = await daemon.store.get_run(run_id)
    redact = RunRedactor.for_run(run)
    outputs = run.outputs if isinstance(run.outputs, dict) else {}
    answer = {"run_id": run.id, "status": run.status, "result": redact(outputs.get("result")),
              "error": redact(run.error)}
    return _json(answer, 200 if run.status in daemon.FINAL else 202)


def key_required(key: str) -> Any:
    """Middleware: the request must present key (401 without one, 403 with another)."""
    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        from ..api import _error
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
    """The api_listen app: the execute route alone, behind the key."""
    from ..api import DAEMON, MAX_BODY, errors
    app = web.Application(middlewares=[key_required(key), errors], client_max_size=MAX_BODY)
    app[DAEMON] = daemon
    app.router.add_post("/skills/{name}/execute", execute)
    return app


async def serve_execute(daemon: Daemon, listen: str, key: str) -> tuple[web.AppRunner, str]:
    """Bind the api_listen listener; returns its runner and the address bound."""
    from ..errors import OrchestratorError
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(make_execute_app(daemon, key), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    except (OSError, OverflowError) as exc:
        await runner.cleanup()
        raise OrchestratorError(f"aidb.api_listen {listen}: cannot listen: "
                                f"{getattr(exc, 'strerror', None) or exc}") from exc
    bound = runner.addresses[0]
    return runner, (f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}")
