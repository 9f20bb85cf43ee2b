"""Secrets of every JSON type, through a real daemon run of command steps, stay hidden
in its log, `show`, the three report formats, the API, the events table and the alert
webhook's payloads; so does a value a result masks by its key (token) once a later step
receives it under another name.

Regression: a number secret (pin: 123789) showed in 30 places, and a result's token
showed in the clear in the step that was given it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestratord.cli.client import request
from tests.conftest import py_command

# Long enough to be hunted, and unlike anything else in a run (ids, timestamps).
PIN = 86420975
WORD, WORD_NUMBER = "alpha-secret-1f2e", 7315902468
BLOB_KEY, BLOB_NUMBER = "blob-secret-3d4c", 5550123987
TOKEN = "tk-flow-5e6f7a8b"
HUNTED = [str(PIN), WORD, str(WORD_NUMBER), BLOB_KEY, str(BLOB_NUMBER), TOKEN]
PARAMS = {"pin": PIN, "flag": True, "nothing": None, "words": [WORD, WORD_NUMBER],
          "blob": {"key": BLOB_KEY, "n": BLOB_NUMBER}}

# Echoes its params to stderr and in its result, under names that do not look secret.
ECHO = py_command("""
    import json, sys
    p = json.load(sys.stdin)
    print("received", json.dumps(p), file=sys.stderr)
    print(json.dumps({"echo": p, "text": f"pin {p['pin']} words {p['words']}"}))
""")
# The token is made at run time: the workflow's definition (shown as written) holds none.
LOGIN = py_command(f"""
    import json
    print(json.dumps({{"token": "{TOKEN[:8]}" + "{TOKEN[8:]}", "user": "alice"}}))
""")
# Uses the token under another name, says so on stderr, echoes it, then fails.
USE = py_command("""
    import json, sys
    p = json.load(sys.stdin)
    print("auth with", p["auth"], file=sys.stderr)
    print(json.dumps({"seen": p["auth"]}))
    sys.exit(1)
""")


def workflow() -> dict:
    secret = {"secret": True}
    return {
        "workflow": {
            "name": "typed",
            "params": {name: secret for name in PARAMS},
            "outputs": {"pin": "{{ params.pin }}"},
            "steps": [
                {"id": "echo", "skill": "s", "action": "echo",
                 "params": {"pin": "{{ params.pin }}", "flag": "{{ params.flag }}",
                            "nothing": "{{ params.nothing }}", "words": "{{ params.words }}",
                            "blob": "{{ params.blob }}", "line": "pin={{ params.pin }}"}},
                {"id": "login", "skill": "s", "action": "login"},
                {"id": "use", "skill": "s", "action": "use", "depends_on": ["login"],
                 "params": {"auth": "{{ steps.login.result.token }}"}},
            ],
        },
        "skills": {"s": {"actions": {"echo": {"command": ECHO}, "login": {"command": LOGIN},
                                     "use": {"command": USE}}}},
    }


class Webhook:
    """A real local HTTP server keeping every alert posted to it."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                received.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alert"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.server.shutdown()


def assert_hidden(where: str, text: str) -> None:
    for value in HUNTED:
        assert value not in text, f"{value!r} shows in {where}: {text[:3000]}"


def test_secrets_of_every_type_stay_hidden_everywhere(env, daemon, webhook):
    (env / "workflows" / "typed.json").write_text(json.dumps(workflow()))
    settings = json.loads((env / "settings.json").read_text())
    settings["alerts"] = {"webhooks": [{"url": webhook.url}]}
    (env / "settings.json").write_text(json.dumps(settings))
    d = daemon()
    d.notify.wait_for("READY=1")
    sock = env / "run" / "control.sock"

    run_id = request(sock, "POST", "/runs", {"workflow": "typed", "params": PARAMS})["run_id"]
    done = d.ctl("run", "typed", "--wait", "--json")  # a second run, followed by the CLI
    assert done.returncode == 1, done.stderr  # `use` fails: an alert is sent
    assert_hidden("orchestratorctl run --wait", done.stdout + done.stderr)

    shown = json.loads(d.ctl("show", run_id, "--json").stdout)
    assert shown["status"] == "failed"
    # Masked where they stand, whatever their type; null too.
    assert shown["params"] == dict.fromkeys(PARAMS, "***")
    steps = {s["step_id"]: s for s in shown["steps"]}
    assert steps["echo"]["params"] == {**dict.fromkeys(PARAMS, "***"), "line": "pin=***"}
    assert steps["echo"]["result"]["echo"]["flag"] is True  # a bare `true` is not hunted
    assert steps["use"]["params"] == {"auth": "***"} and steps["use"]["result"] == {"seen": "***"}
    assert steps["login"]["result"] == {"token": "***", "user": "alice"}
    assert "auth with ***" in steps["use"]["error"] or "auth with ***" in json.dumps(shown)

    texts = {"show": d.ctl("show", run_id).stdout,
             "show --json": json.dumps(shown)}
    for fmt in ("md", "json", "html"):
        report = d.ctl("report", run_id, "--format", fmt)
        assert report.returncode == 0, report.stderr
        texts[f"report --format {fmt}"] = report.stdout
    for path in (f"/runs/{run_id}", "/runs", f"/runs/{run_id}/events",
                 f"/runs/{run_id}/report?format=json", "/workflows/typed"):
        texts[f"GET {path}"] = json.dumps(request(sock, "GET", path, timeout=10)) \
            if not path.endswith("/events") else _raw_get(sock, path)
    for where, text in texts.items():
        assert_hidden(where, text)

    deadline_alerts = _wait(lambda: len(webhook.received) >= 2, "two alerts")
    assert deadline_alerts
    for payload in webhook.received:
        assert json.loads(payload)["kind"] == "run_failed"
        assert_hidden("an alert payload", payload)

    assert d.stop() == 0
    with sqlite3.connect(env / "state" / "state.db") as db:
        events = json.dumps(db.execute("SELECT * FROM events").fetchall())
        results = dict(db.execute("SELECT step_id, result FROM steps WHERE run_id = ?",
                                  (run_id,)).fetchall())
    assert_hidden("the events table", events)
    # One clear copy stays, where resume reads it: the results in the steps table.
    assert TOKEN in results["login"] and str(PIN) in results["echo"]
    log = (env / "daemon.log").read_text()
    assert "received" in log and "auth with ***" in log, log[-2000:]
    assert_hidden("the daemon's log", log)


def _raw_get(sock: Path, path: str) -> str:
    import socket
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(sock))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return b"".join(iter(lambda: s.recv(65536), b"")).decode()


def _wait(condition, what: str, timeout: float = 20) -> bool:
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {timeout}s")
