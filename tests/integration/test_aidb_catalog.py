"""AIDB's skills in the catalog, publishing ours, and the execute endpoint."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from orchestratord.core.errors import OrchestratorError
from tests.aidb_fake import FakeAidb, skill_record
from tests.conftest import ECHO, write_skill
from tests.waiting import until

from .aidb_env import api, configure, key_file, ready


@pytest.fixture
def aidb():
    fake = FakeAidb().start()
    fake.skills = {r["slug"]: r for r in [
        skill_record("postgres-tuning", description="Tune PostgreSQL for the AI stack's "
                     "vector store: shared_buffers, work_mem", tags=["database", "postgres"]),
        skill_record("empty-desc", description="",
                     content="---\nname: empty-desc\n---\n\n# Rotate logs\n\nRotate and "
                             "compress journald logs weekly.\n"),
        skill_record("placeholder-desc", description="TODO",
                     content="---\nname: placeholder-desc\ndescription: Placeholder\n---\n"),
        skill_record("health-monitoring", description="AIDB's own health notes"),
        skill_record("draft-skill", description="not approved yet", status="pending"),
        skill_record("bad slug!", description="unusable name"),
    ]}
    yield fake
    fake.close()


def test_aidb_skills_are_listed_shown_and_routed_as_instructions(env, daemon, aidb):
    configure(env, {"url": aidb.url, "history": False})
    d = daemon()
    ready(d)
    names = until("AIDB's skills in the catalog",
                  lambda: {s["name"] for s in api(env, "GET", "/skills")} > {"postgres-tuning"}
                  and {s["name"]: s for s in api(env, "GET", "/skills")})
    assert {"postgres-tuning", "empty-desc", "placeholder-desc"} <= set(names)
    assert "draft-skill" not in names and "bad slug!" not in names  # pending; unusable
    pg = names["postgres-tuning"]
    assert pg["kind"] == "instructions" and pg["actions"] == []
    assert pg["origin"] == f"aidb:{aidb.url}/skills/postgres-tuning"
    assert names["empty-desc"]["description"] == "Rotate and compress journald logs weekly."
    assert names["placeholder-desc"]["description"] == "(AIDB gives no description)"
    # The local skill of the same name wins; the shadowed one is reported.
    assert names["health-monitoring"]["kind"] == "actions"
    status = api(env, "GET", "/aidb/status")
    assert status["shadowed"] == ["health-monitoring"] and status["skipped"] == ["bad slug!"]
    shown = d.ctl("skills", "show", "postgres-tuning")
    assert shown.returncode == 0 and shown.stdout == aidb.skills["postgres-tuning"]["content"]
    listed = d.ctl("skills")
    assert "postgres-tuning" in listed.stdout and f"aidb:{aidb.url}" in listed.stdout
    routed = json.loads(d.ctl("route", "tune postgresql work_mem", "--json").stdout)
    assert routed["status"] == "matched", routed
    best = routed["candidates"][0]
    assert best["skill"] == "postgres-tuning" and best["instructions"] is True
    assert best["action"] == ""
    ran = d.ctl("route", "tune postgresql work_mem", "--run")
    assert ran.returncode == 7 and "skills show postgres-tuning" in ran.stderr
    called = d.ctl("call", "postgres-tuning", "anything")
    assert called.returncode == 2, called


def test_the_cached_catalog_serves_while_aidb_is_down(env, daemon, aidb):
    configure(env, {"url": aidb.url, "history": False})
    d = daemon()
    ready(d)
    until("a fetch", lambda: api(env, "GET", "/aidb/status")["catalog_fetched_at"])
    assert d.stop() == 0
    aidb.down()
    d = daemon()
    ready(d)
    assert "postgres-tuning" in {s["name"] for s in api(env, "GET", "/skills")}
    status = until("a failed refresh",
                   lambda: (s := api(env, "GET", "/aidb/status"))["last_refresh_error"] and s)
    assert status["reachable"] is False and status["catalog_skills"] == 5
    out = d.ctl("aidb", "status")
    assert out.returncode == 1 and "reachable:       no" in out.stdout, out


def test_aidb_sync_and_status_over_the_cli(env, daemon, aidb):
    configure(env, {"url": aidb.url, "api_key_file": key_file(env, aidb.key), "history": True})
    d = daemon()
    ready(d)
    aidb.skills["new-one"] = skill_record("new-one", description="Added after start")
    synced = d.ctl("aidb", "sync")
    assert synced.returncode == 0, synced
    assert "catalog refreshed: yes" in synced.stdout and "key accepted:    yes" in synced.stdout
    assert "new-one" in {s["name"] for s in api(env, "GET", "/skills")}
    assert not aidb.history  # the key probe stores nothing


def test_publishing_sends_only_changed_skill_documents(env, daemon, aidb):
    skills = env / "workflows" / "skills"
    write_skill(skills, "mine", {"go": {"command": ECHO}}, description="my skill")
    configure(env, {"url": aidb.url, "api_key_file": key_file(env, aidb.key),
                    "publish": True, "history": False, "discover": False})
    aidb.delay = 2.0  # the start's publishing pass is still busy when the sync below comes
    d = daemon()
    ready(d)
    until("mine published", lambda: any(i["slug"] == "mine" for i in aidb.imports))
    # The sync waits for that pass to end rather than publishing the rest a second time.
    assert d.ctl("aidb", "sync").returncode == 0
    aidb.delay = 0.0
    first = list(aidb.imports)
    assert len({i["slug"] for i in first}) == len(first), "a skill published twice"
    assert all(i["managed_by"] == "agent-orchestrator" for i in first)
    assert {i["slug"] for i in first} >= {"mine", "health-monitoring"}
    mine = next(i for i in first if i["slug"] == "mine")
    assert mine["content"] == (skills / "mine" / "SKILL.md").read_text()
    assert d.ctl("aidb", "sync").returncode == 0
    assert aidb.imports == first  # nothing changed: nothing sent again
    (skills / "mine" / "SKILL.md").write_text("---\nname: mine\ndescription: changed\n---\n")
    api(env, "POST", "/reload")
    assert d.ctl("aidb", "sync").returncode == 0
    assert [i["slug"] for i in aidb.imports[len(first):]] == ["mine"]


def test_publishing_is_off_by_default(env, daemon, aidb):
    configure(env, {"url": aidb.url, "api_key_file": key_file(env, aidb.key)})
    d = daemon()
    ready(d)
    assert d.ctl("aidb", "sync").returncode == 0
    assert aidb.imports == [] and ("POST", "/skills/import") not in aidb.requests


def post(url: str, body, headers=None):
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_execute_over_the_socket_and_the_keyed_listener(env, daemon, aidb):
    skills = env / "workflows" / "skills"
    write_skill(skills, "echo", {"say": {"command": ECHO}})
    write_skill(skills, "two", {"a": {"command": ECHO}, "b": {"command": ECHO}})
    configure(env, {"url": aidb.url, "api_key_file": key_file(env, "execute-key"),
                    "history": False, "api_listen": "127.0.0.1:0"})
    d = daemon()
    ready(d)
    answer = api(env, "POST", "/skills/echo/execute", {"parameters": {"x": 1}})
    assert answer["status"] == "succeeded" and answer["error"] is None
    assert answer["result"] == {"params": {"x": 1}} and answer["run_id"]
    assert d.ctl("show", answer["run_id"]).returncode == 0  # a recorded run like any
    with pytest.raises(OrchestratorError, match="several actions"):
        api(env, "POST", "/skills/two/execute", {"parameters": {}})
    assert api(env, "POST", "/skills/two/execute", {"parameters": {}, "action": "b"})[
        "status"] == "succeeded"
    until("AIDB's catalog",
          lambda: "postgres-tuning" in {s["name"] for s in api(env, "GET", "/skills")})
    with pytest.raises(OrchestratorError, match="instructions only"):
        api(env, "POST", "/skills/postgres-tuning/execute", {"parameters": {}})

    url = f"http://{api(env, 'GET', '/health')['api_listen']}/skills/echo/execute"
    body = {"parameters": {"y": 2}}
    assert post(url, body)[0] == 401
    assert post(url, body, {"X-API-Key": "wrong"})[0] == 403
    status, answer = post(url, body, {"X-API-Key": "execute-key"})
    assert status == 200 and answer["result"] == {"params": {"y": 2}}
    status, answer = post(url, body, {"Authorization": "Bearer execute-key"})
    assert status == 200 and answer["status"] == "succeeded"
    # The listener serves the execute route only: nothing else of the control API.
    req = urllib.request.Request(url.replace("/skills/echo/execute", "/runs"),
                                 headers={"X-API-Key": "execute-key"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code in (404, 405)
