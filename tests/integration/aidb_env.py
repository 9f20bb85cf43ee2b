"""A daemon wired to the fake AIDB: settings, workflows, helpers shared by the AIDB tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestratord.cli.client import request
from tests.conftest import py_command

WORK = py_command("""
    import json, sys, time
    p = json.load(sys.stdin)
    time.sleep(p.get("sleep", 0))
    print(json.dumps({"ok": True, "n": p.get("n")}))
""")


def history_workflow(name: str, steps: int = 2, sleep: float = 0.0) -> str:
    """Steps of a local skill; each has a secret param (`password`), never to leave."""
    items = "\n".join(f"    - {{id: s{i}, skill: local, action: work, params: "
                      f"{{n: {i}, sleep: {sleep}, password: hunter2-secret}}}}"
                      for i in range(steps))
    return (f"workflow:\n  name: {name}\n  steps:\n{items}\n"
            f"skills:\n  local:\n    actions:\n      work: {{command: {json.dumps(WORK)}}}\n")


def configure(env: Path, aidb: dict[str, Any] | None, **extra: Any) -> None:
    settings = json.loads((env / "settings.json").read_text())
    if aidb is not None:
        settings["aidb"] = {"retry_max_delay": 0.5, **aidb}
    settings.update(extra)
    (env / "settings.json").write_text(json.dumps(settings))


def key_file(env: Path, key: str) -> str:
    path = env / "aidb-key"
    path.write_text(key + "\n")
    return str(path)


def api(env: Path, method: str, path: str, body: Any = None) -> Any:
    return request(env / "run" / "control.sock", method, path, body, timeout=60)


def ready(d: Any) -> Any:
    d.notify.wait_for("READY=1", 60)
    return d
