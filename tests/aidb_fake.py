"""A fake AIDB: a real HTTP server with AIDB's endpoints, field names and auth rules.

AIDB (NixOS-Dev-Quick-Deploy, ai-stack/mcp-servers/aidb) is a FastAPI service; this
implements the part the orchestrator uses, as AIDB answers it:

- GET  /skills?include_pending=false  -> [skill record]; GET /skills/{slug}
- POST /skills/import   (key)  {slug, content, name, managed_by, source_path, source_url, url}
- POST /history/record  (key)  {interaction_id, session_id (UUID), project, query (required),
                                response, agent_type, model_used, role, outcome, tokens_in,
                                tokens_out, latency_ms, value_score, metadata}
- GET  /history?session_id=&agent_type=&project=&limit=&offset=;  GET /history/stats

Writes need `X-API-Key: KEY` or `Authorization: Bearer KEY` when a key is set (401
without one, 403 with a wrong one); reads never do. Switches for the fault tests:
`down()`/`up()` (the port refuses connections), `fail_status` (every request answers
it), `delay` (seconds before each answer). It runs in its own thread and event loop, so
sync tests that drive a daemon process and async tests can both use it.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

from aiohttp import web

from tests.waiting import until

SKILL_FIELDS = ("slug", "name", "description", "version", "tags", "content", "metadata",
                "source_path", "updated_at", "source_url", "managed_by", "status")
HISTORY_FIELDS = ("interaction_id", "session_id", "project", "query", "response", "agent_type",
                  "model_used", "role", "outcome", "tokens_in", "tokens_out", "latency_ms",
                  "value_score", "metadata")
IMPORT_FIELDS = ("slug", "content", "name", "managed_by", "source_path", "source_url", "url")


def skill_record(slug: str, *, description: str = "", content: str | None = None,
                 status: str = "approved", **extra: Any) -> dict[str, Any]:
    """A skill record with every field AIDB returns."""
    content = content if content is not None else (
        f"---\nname: {slug}\ndescription: {description}\n---\n\n# {slug}\n\nDo the thing.\n")
    return {"slug": slug, "name": extra.pop("name", slug), "description": description,
            "version": extra.pop("version", "1.0.0"), "tags": extra.pop("tags", []),
            "content": content, "metadata": extra.pop("metadata", {}),
            "source_path": extra.pop("source_path", f"skills/{slug}/SKILL.md"),
            "updated_at": extra.pop("updated_at", "2026-01-01T00:00:00Z"),
            "source_url": extra.pop("source_url", None),
            "managed_by": extra.pop("managed_by", "aidb"), "status": status, **extra}


class FakeAidb:
    def __init__(self, key: str | None = "aidb-test-key"):
        self.key = key
        self.skills: dict[str, dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []
        self.imports: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request seen
        self.fail_status: int | None = None
        self.delay = 0.0
        self.port: int | None = None  # chosen by the kernel at the first bind, then kept
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # -- lifecycle (called from the test's thread) ------------------------------------

    def start(self) -> FakeAidb:
        self._thread.start()
        self._call(self._setup())
        self.up()
        return self

    @property
    def url(self) -> str:
        assert self.port is not None, "FakeAidb.start() first: the port is bound there"
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        """Accept connections (again) on the same port."""
        self._call(self._listen())

    def down(self) -> None:
        """Refuse connections: as AIDB stopped or unreachable."""
        self._call(self._unlisten())

    def close(self) -> None:
        self._call(self._cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _setup(self) -> None:
        app = web.Application(middlewares=[self._faults])
        app.router.add_get("/skills", self._list_skills)
        app.router.add_post("/skills/import", self._import)
        app.router.add_get("/skills/{slug}", self._get_skill)
        app.router.add_post("/history/record", self._record)
        app.router.add_get("/history/stats", self._stats)
        app.router.add_get("/history", self._list_history)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()

    async def _listen(self) -> None:
        if self._site is not None:
            return
        if self.port is None:  # the first bind: port 0, the kernel's choice, race-free
            self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await self._site.start()
            self.port = self._runner.addresses[0][1]
            return
        # up() after down(): the daemon under test knows this URL, so the same port again.
        # SO_REUSEADDR skips our own old connections' TIME_WAIT; only this rebind can race
        # (another process may have bound the port while we were down), and then the
        # test fails here saying so rather than talking to a stranger.
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise AssertionError(f"FakeAidb.up(): port {self.port} was taken while AIDB was "
                                 f"down ({exc.strerror}); rerun the test") from exc
        self._site = site

    async def _unlisten(self) -> None:
        if self._site is not None:
            site, self._site = self._site, None
            await site.stop()

    async def _cleanup(self) -> None:
        await self._unlisten()
        await self._runner.cleanup()

    # -- what tests read ----------------------------------------------------------------

    def interaction_ids(self) -> list[str]:
        return [r["interaction_id"] for r in self.history]

    def wait_for_history(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        until(f"{count} history records in AIDB (has {self.interaction_ids()})",
              lambda: len(self.history) >= count, timeout)
        return list(self.history)

    # -- the app ------------------------------------------------------------------------

    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_status is not None:
            return web.json_response({"detail": "injected failure"}, status=self.fail_status)
        return await handler(request)

    def _authorize(self, request: web.Request) -> None:
        """AIDB's rule: writes need the key when one is configured."""
        if self.key is None:
            return
        given = request.headers.get("X-API-Key")
        auth = request.headers.get("Authorization", "")
        if given is None and auth.startswith("Bearer "):
            given = auth[len("Bearer "):]
        if given is None:
            raise web.HTTPUnauthorized(text='{"detail": "missing API key"}',
                                       content_type="application/json")
        if given != self.key:
            raise web.HTTPForbidden(text='{"detail": "invalid API key"}',
                                    content_type="application/json")

    async def _list_skills(self, request: web.Request) -> web.Response:
        pending = request.query.get("include_pending", "false").lower() == "true"
        return web.json_response([s for s in self.skills.values()
                                  if pending or s["status"] == "approved"])

    async def _get_skill(self, request: web.Request) -> web.Response:
        skill = self.skills.get(request.match_info["slug"])
        if skill is None:
            raise web.HTTPNotFound(text='{"detail": "skill not found"}',
                                   content_type="application/json")
        return web.json_response(skill)

    async def _import(self, request: web.Request) -> web.Response:
        self._authorize(request)
        body = await request.json()
        unknown = set(body) - set(IMPORT_FIELDS)
        if unknown or not body.get("content"):
            return _unprocessable(f"unknown fields {sorted(unknown)} or no content")
        self.imports.append(body)
        slug = body.get("slug") or body.get("name")
        self.skills[slug] = skill_record(slug, content=body["content"], status="approved",
                                         name=body.get("name") or slug,
                                         managed_by=body.get("managed_by") or "aidb",
                                         source_path=body.get("source_path"),
                                         source_url=body.get("source_url"))
        return web.json_response({"status": "imported", "slug": slug})

    async def _record(self, request: web.Request) -> web.Response:
        self._authorize(request)
        body = await request.json()
        unknown = set(body) - set(HISTORY_FIELDS)
        if unknown:
            return _unprocessable(f"unknown fields {sorted(unknown)}")
        if not isinstance(body.get("query"), str) or not body["query"]:
            return _unprocessable("query is required")
        try:
            uuid.UUID(str(body.get("session_id")))
        except ValueError:
            return _unprocessable("session_id must be a UUID")
        self.history.append(body)
        return web.json_response({"status": "recorded",
                                  "interaction_id": body.get("interaction_id")})

    async def _list_history(self, request: web.Request) -> web.Response:
        q = request.query
        rows = [r for r in self.history
                if all(not q.get(k) or r.get(k) == q[k]
                       for k in ("session_id", "agent_type", "project"))]
        offset, limit = int(q.get("offset", 0)), int(q.get("limit", 50))
        return web.json_response(rows[offset:offset + limit])

    async def _stats(self, request: web.Request) -> web.Response:
        by_outcome: dict[str, int] = {}
        for r in self.history:
            by_outcome[r.get("outcome") or "unknown"] = by_outcome.get(
                r.get("outcome") or "unknown", 0) + 1
        return web.json_response({"total_interactions": len(self.history),
                                  "by_outcome": by_outcome})


def _unprocessable(detail: str) -> web.Response:
    return web.json_response({"detail": detail}, status=422)
