"""A real run worth reporting: a retried step, a failed step with stderr, a rollback.

Made through the real Engine against a real SQLite file, with real child processes,
so the reports under test read exactly what a production run leaves behind.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

from orchestratord.engine.engine import Engine
from orchestratord.language.loader import load_workflow
from orchestratord.skills import discover
from orchestratord.store.sqlite import Store
from tests.conftest import PY, write_skill, write_workflow

FLAKY = textwrap.dedent("""
    import json, sys
    p = json.load(sys.stdin)
    with open(p["ledger"], "a") as f:
        f.write("try\\n")
    n = sum(1 for _ in open(p["ledger"]))
    if n <= p["fail_times"]:
        print(f"mirror unreachable (try {n})", file=sys.stderr)
        sys.exit(75)
    print(json.dumps({"fetched": p["what"], "tries": n}))
""")

BROKEN = textwrap.dedent("""
    import json, sys
    p = json.load(sys.stdin)
    for i in range(30):
        print(f"compiling unit {i}", file=sys.stderr)
    print(f"upload with {p['auth']} refused", file=sys.stderr)
    print("error: " + p["why"], file=sys.stderr)
    sys.exit(3)
""")

LEDGER = textwrap.dedent("""
    import json, sys
    p = json.load(sys.stdin)
    with open(p["ledger"], "a") as f:
        f.write(p["tag"] + "\\n")
    print(json.dumps({"tag": p["tag"], "note": p.get("note")}))
""")

NASTY = "<script>alert('x')</script> & <b>bold</b>"
SECRET = "tok-9f8e7d6c5b4a"  # a workflow param declared secret: must show nowhere


@dataclass(frozen=True)
class ReportedRun:
    db: Path
    run_id: str
    ledger: Path


async def make_reported_run(tmp_path: Path, db: Path | None = None) -> ReportedRun:
    """Run `nightly-deploy` to its rollback (state in db, default tmp_path/state.db)."""
    skill_root = tmp_path / "skills"
    scripts = {}
    for name, code in (("flaky", FLAKY), ("broken", BROKEN), ("ledger", LEDGER)):
        scripts[name] = tmp_path / f"{name}.py"
        scripts[name].write_text(code)
    write_skill(skill_root, "t", {
        "flaky": {"command": [PY, str(scripts["flaky"])]},
        "broken": {"command": [PY, str(scripts["broken"])]},
        "ledger": {"command": [PY, str(scripts["ledger"])], "rollback": {"action": "undo"}},
        "undo": {"command": [PY, str(scripts["ledger"])]},
    })
    ledger, tries = tmp_path / "ledger", tmp_path / "tries"
    workflow = write_workflow(tmp_path, f"""
        workflow:
          name: nightly-deploy
          on_failure: rollback
          params:
            target: {{default: web-1}}
            banner: {{default: "{NASTY}"}}
            api_token: {{default: {SECRET}, secret: true}}
          steps:
            - id: prepare
              skill: t
              action: ledger
              params: {{ledger: {ledger}, tag: prepare, note: "{{{{ params.banner }}}}"}}
              rollback: {{action: undo, params: {{ledger: {ledger}, tag: undo-prepare}}}}
            - id: fetch
              skill: t
              action: flaky
              params: {{ledger: {tries}, fail_times: 2, what: "{{{{ params.target }}}}"}}
              retry: {{attempts: 3, initial: 0}}
            - parallel:
                - id: build
                  skill: t
                  action: broken
                  params: {{why: "missing dependency libfoo", auth: "{{{{ params.api_token }}}}"}}
                - {{id: lint, skill: t, action: ledger, params: {{ledger: {ledger}, tag: lint}}}}
            - {{id: publish, skill: t, action: ledger, params: {{ledger: {ledger}, tag: publish}}}}
    """)
    definition = load_workflow(workflow, registry=discover([skill_root]))
    db = db or tmp_path / "state.db"
    store = await Store.open(db)
    engine = Engine(store)
    try:
        result = await engine.run(definition)
    finally:
        await engine.close()
        await store.close()
    assert result.status == "rolled_back", result
    return ReportedRun(db, result.run_id, ledger)
