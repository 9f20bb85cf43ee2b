"""Calling one action (a recorded one-step run) and routing, embedded and by the daemon."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ECHO, py_command, write_skill

from .daemon_process import workflow

FLAKY = py_command("""
    import json, os, sys
    params = json.load(sys.stdin)
    if os.environ["ORCHESTRATOR_ATTEMPT"] == "1":
        sys.exit(75)
    json.dump({"token_seen": params["token"] == "s3cret", "n": params["n"]}, sys.stdout)
""")


def ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestratord.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_call_is_a_recorded_run_with_retries_redaction_and_exit_codes(skill_root, tmp_path):
    schema = {"type": "object", "required": ["n"],
              "properties": {"n": {"type": "integer"}, "token": {"type": "string"}}}
    write_skill(skill_root, "tool", {
        "flaky": {"command": FLAKY, "params": schema,
                  "retry": {"attempts": 2, "initial": 0.01}},
        "fail": {"command": py_command("import sys; sys.exit(3)")},
        "echo": {"command": ECHO}})
    base = ["--state", str(tmp_path / "state.db"), "--skills", str(skill_root)]

    done = ctl(*base, "call", "tool", "flaky", "-p", "n=4", "-p", "token=s3cret", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "succeeded"
    assert out["outputs"] == {"result": {"token_seen": True, "n": 4}}
    shown = json.loads(ctl(*base, "show", out["run_id"], "--json").stdout)
    assert shown["workflow"] == "call-tool-flaky"
    (step,) = shown["steps"]
    assert (step["skill"], step["action"], step["attempts"]) == ("tool", "flaky", 2)
    assert "s3cret" not in json.dumps(shown)  # a param named token is a secret
    report = ctl(*base, "report", out["run_id"])
    assert report.returncode == 0 and "flaky" in report.stdout and "s3cret" not in report.stdout

    failed = ctl(*base, "call", "tool", "fail", "--json")
    assert failed.returncode == 1 and json.loads(failed.stdout)["status"] == "failed"
    invalid = ctl(*base, "call", "tool", "flaky", "-p", "n=four")
    assert invalid.returncode == 2 and "'four' is not of type 'integer'" in invalid.stderr
    unknown = ctl(*base, "call", "tool", "ecoh")
    assert unknown.returncode == 2 and "did you mean 'echo'" in unknown.stderr
    runs = json.loads(ctl(*base, "runs", "--json").stdout)
    assert [r["status"] for r in runs] == ["failed", "succeeded"]


def test_the_daemon_serves_skills_and_calls(env, daemon):
    (env / "workflows" / "hello.yaml").write_text(workflow("hello", env / "ledger", steps=1))
    write_skill(env / "workflows" / "skills", "tool", {"echo": {"command": ECHO}},
                description="Echo what it is given")
    d = daemon()
    d.notify.wait_for("READY=1")
    listed = json.loads(d.ctl("skills", "--json").stdout)
    assert "tool" in {s["name"] for s in listed}
    shown = d.ctl("skills", "show", "tool")
    assert shown.returncode == 0 and "description: Echo what it is given" in shown.stdout
    missing = d.ctl("skills", "show", "nope")
    assert missing.returncode != 0 and "no skill 'nope'" in missing.stderr
    called = d.ctl("call", "tool", "echo", "-p", "x=[1, 2]", "--json")
    assert called.returncode == 0, called.stderr
    run_id = json.loads(called.stdout)["id"]  # as `run NAME --wait --json` prints it
    shown = json.loads(d.ctl("show", run_id, "--json").stdout)
    assert shown["status"] == "succeeded" and shown["steps"][0]["result"] == {"params": {"x": [1, 2]}}
    routed = json.loads(d.ctl("route", "echo what it is given", "--json").stdout)
    assert routed["status"] == "matched" and routed["candidates"][0]["skill"] == "tool"
    bad = d.ctl("call", "tool", "nope")
    assert bad.returncode == 2, bad
    assert "has no action 'nope'" in bad.stderr
