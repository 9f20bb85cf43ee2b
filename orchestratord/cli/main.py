"""orchestratorctl: validate, draw and run workflows; inspect, resume and cancel runs.

`run NAME` asks the daemon (orchestratord, on its control socket) to run a workflow it
serves; `run FILE` runs a workflow file in this process against an embedded SQLite
state file ($ORCHESTRATOR_STATE, else $XDG_STATE_HOME/agent-orchestrator/state.db, or
--state). runs, show, report, stats, resume and cancel talk to the daemon when its socket
exists and no --state is given, else to the embedded state file.

Exit status: 0 succeeded; 1 failed; 2 invalid input (definition, params, usage);
3 cancelled; 4 timed out; 5 rolled back; 6 rollback failed; 7 cannot proceed (state
database, lease held by another process, run state); 130 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ..core.errors import DefinitionError, OrchestratorError, ParamsError
from ..core.statuses import ExitCode

# asyncio, yaml and the engine are imported where used: a CLI that answers --version or
# a daemon query should not pay for what it does not run.
from ..core.version import __version__
from .common import quoted_run, runs_limit, socket_path, use_daemon
from .embedded import definition_of_run, drive, parse_params, store_call, with_engine


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orchestratorctl", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--version", action="version", version=f"orchestratorctl {__version__}")
    p.add_argument("--state", type=Path, default=None, help="state database (embedded mode)")
    p.add_argument("--socket", type=Path, default=None,
                   help="the daemon's control socket ($ORCHESTRATOR_SOCKET; else the user's own "
                        "daemon's, else the system daemon's, when it exists)")
    p.add_argument("--skills", action="append", default=[], metavar="DIR",
                   help="another directory of skills (repeatable)")
    p.add_argument("-v", "--verbose", action="count", default=0)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("validate", help="check workflow files; exit 0 if all are valid, else 2")
    c.add_argument("files", nargs="+", type=Path)
    c.add_argument("--json", action="store_true", help="machine-readable problems")
    sub.add_parser("schema", help="print the JSON Schema of the workflow format")
    c = sub.add_parser("graph", help="draw a workflow's DAG")
    c.add_argument("file", type=Path)
    c.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    c = sub.add_parser("run", help="run a workflow (a file here, a name by the daemon)")
    c.add_argument("target", help="a workflow file, or the name of a workflow the daemon serves")
    c.add_argument("--daemon", action="store_true",
                   help="TARGET names a workflow the daemon serves, never a file here (what "
                        "orchestrator@NAME.service runs: `run --daemon --wait -- NAME`)")
    c.add_argument("--wait", action="store_true",
                   help="with the daemon: follow the run and exit with its outcome")
    c.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a workflow param; VALUE is read as YAML (42, [a, b], true)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c = sub.add_parser("runs", help="list recent runs")
    c.add_argument("--workflow")
    c.add_argument("--status")
    c.add_argument("--limit", type=runs_limit, default=20,
                   help="at most this many runs")
    c.add_argument("--json", action="store_true")
    c = sub.add_parser("show", help="a run with its steps")
    c.add_argument("run")
    c.add_argument("--json", action="store_true")
    c = sub.add_parser("resume", help="continue an interrupted run or redrive a failed one")
    c.add_argument("run")
    c.add_argument("--json", action="store_true")
    c = sub.add_parser("report", help="an execution report of a run (Markdown, JSON, HTML)")
    c.add_argument("run")
    c.add_argument("--format", choices=("md", "json", "html"), default="md")
    c.add_argument("-o", "--output", type=Path, metavar="FILE", help="write here, not to stdout")
    c = sub.add_parser("stats", help="per skill/action: count, success rate, p50/p95/max "
                                     "duration, retries per run")
    c.add_argument("--workflow", help="only the steps of this workflow's runs")
    c.add_argument("--since", metavar="T",
                   help="only steps started since T: an ISO date/time (2024-05-01, "
                        "2024-05-01T10:00Z) or a duration back from now (7d, 12h, 30m)")
    c.add_argument("--json", action="store_true")
    c = sub.add_parser("cancel", help="cancel a run: its live driver stops it, or it is "
                                      "taken over and ends here now if none lives")
    c.add_argument("run")
    sub.add_parser("workflows", help="the workflows the daemon serves")
    from .skills import add_commands
    add_commands(sub)
    from . import aidb as cli_aidb
    cli_aidb.add_commands(sub)
    from ..mcp.command import add_command
    add_command(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * min(args.verbose, 2),
                        format="%(levelname)s %(name)s: %(message)s")
    from ..observability.journal import quiet_libraries
    quiet_libraries()
    try:
        handler = getattr(args, "handler", None) or COMMANDS[args.command]
        return handler(args)
    except DefinitionError as exc:
        print(exc, file=sys.stderr)
        return ExitCode.INVALID
    except ParamsError as exc:
        print(f"orchestratorctl: {exc}", file=sys.stderr)
        return ExitCode.INVALID
    except OrchestratorError as exc:
        print(f"orchestratorctl: {exc}", file=sys.stderr)
        return ExitCode.CANNOT_PROCEED


def _validate(args: argparse.Namespace) -> int:
    from ..language.loader import load_workflow
    problems, valid = [], []
    for file in args.files:
        try:
            definition = load_workflow(file, skill_paths=args.skills)
            valid.append({"file": str(file), "workflow": definition.name,
                          "steps": len(definition.graph.nodes)})
        except DefinitionError as exc:
            problems += exc.problems
    if args.json:
        print(json.dumps({"valid": valid, "problems": [p.as_dict() for p in problems]}, indent=2))
    else:
        for p in problems:
            print(p, file=sys.stderr)
        for v in valid:
            print(f"{v['file']}: workflow {v['workflow']} is valid ({v['steps']} steps)")
    return ExitCode.INVALID if problems else 0


def _schema(args: argparse.Namespace) -> int:
    from ..language.model import WorkflowDocument
    schema = WorkflowDocument.model_json_schema()
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema",
              "title": "agent-orchestrator workflow", **schema}
    print(json.dumps(schema, indent=2))
    return ExitCode.SUCCEEDED


def _graph(args: argparse.Namespace) -> int:
    from ..language.loader import load_workflow
    from ..reports.render import dot, mermaid
    definition = load_workflow(args.file, skill_paths=args.skills)
    print(mermaid(definition.graph) if args.format == "mermaid" else dot(definition.graph))
    return ExitCode.SUCCEEDED


def _run(args: argparse.Namespace) -> int:
    params = parse_params(args.param)
    # Anything but a directory that exists is a file to run (a FIFO or a device is then
    # refused by the loader, exit 2), never a workflow name to ask the daemon for.
    if args.daemon or not os.path.lexists(args.target) or os.path.isdir(args.target):
        from . import remote
        return remote.run(socket_path(args), args.target, params, wait=args.wait, as_json=args.json)
    from ..language.loader import load_workflow
    definition = load_workflow(args.target, skill_paths=args.skills)
    return drive(args, lambda engine: engine.run(definition, params))


def _resume(args: argparse.Namespace) -> int:
    if use_daemon(args):
        from . import remote
        return remote.resume(socket_path(args), quoted_run(args.run), as_json=args.json)

    async def work(engine: Any) -> Any:
        run = await engine.store.get_run(args.run)
        return await engine.resume(run.id, definition_of_run(run, args.skills))
    return drive(args, work)


def _runs(args: argparse.Namespace) -> int:
    if use_daemon(args):
        from urllib.parse import urlencode

        from . import client
        query = urlencode({k: v for k, v in (("workflow", args.workflow), ("status", args.status),
                                             ("limit", args.limit)) if v})
        runs = client.as_rows(client.request(socket_path(args), "GET", f"/runs?{query}"))
    else:
        from ..core.redact import RunRedactor
        runs = store_call(args, lambda s: s.list_runs(workflow=args.workflow, status=args.status,
                                                       limit=args.limit))
        runs = [RunRedactor.for_run(r).rows(r)[0] for r in runs]
    if args.json:
        print(json.dumps([_run_json(r) for r in runs], indent=2))
        return ExitCode.SUCCEEDED
    from ..reports.render import run_table
    print(run_table(runs))
    return ExitCode.SUCCEEDED


def _show(args: argparse.Namespace) -> int:
    async def fetch(store: Any) -> Any:
        from ..core.redact import RunRedactor
        run = await store.get_run(args.run)
        return RunRedactor.for_run(run).rows(run, await store.steps(run.id),
                                             await store.attempts(run.id))
    if use_daemon(args):
        from . import client
        data = client.request(socket_path(args), "GET", f"/runs/{quoted_run(args.run)}")
        if args.json:
            print(json.dumps(data, indent=2))
            return ExitCode.SUCCEEDED
        run, steps, attempts = (client.as_rows([data])[0], client.as_rows(data["steps"]),
                                client.as_rows(data["attempts"]))
    else:
        run, steps, attempts = store_call(args, fetch)
    if args.json:
        print(json.dumps({**_run_json(run), "steps": [vars(s) for s in steps],
                          "attempts": [vars(a) for a in attempts]}, indent=2, default=str))
        return ExitCode.SUCCEEDED
    from ..reports.render import run_details
    print(run_details(run, steps, attempts))
    return ExitCode.SUCCEEDED


def _report(args: argparse.Namespace) -> int:
    from ..reports.report import build_report, render
    if use_daemon(args):
        # The daemon builds (and redacts) the model; any format renders from it here.
        from . import client
        model = client.request(socket_path(args), "GET", f"/runs/{quoted_run(args.run)}/report"
                                                  "?format=json")
    else:
        model = store_call(args, lambda store: build_report(store, args.run))
    text = render(model, args.format)
    if args.output is None:
        sys.stdout.write(text)
        return ExitCode.SUCCEEDED
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"orchestratorctl: cannot write the report to {args.output}: {exc.strerror}",
              file=sys.stderr)
        return ExitCode.CANNOT_PROCEED
    print(f"report of run {model['run']['id']} ({model['run']['status']}) written to "
          f"{args.output}", file=sys.stderr)
    return ExitCode.SUCCEEDED


def _stats(args: argparse.Namespace) -> int:
    from ..store import stats
    since = stats.parse_since(args.since) if args.since else None  # bad input: exit 2, here
    if use_daemon(args):
        from urllib.parse import urlencode

        from . import client
        query = urlencode({k: v for k, v in (("workflow", args.workflow),
                                             ("since", args.since)) if v})
        rows = [stats.ActionStats(**item)
                for item in client.request(socket_path(args), "GET", f"/stats?{query}")]
    else:
        import asyncio
        # The store opens (and migrates) the database; the statistics read it on their own.
        rows = store_call(args, lambda store: asyncio.to_thread(
            stats.compute, store.path, workflow=args.workflow, since=since))
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
        return ExitCode.SUCCEEDED
    from ..reports.render import stats_table
    print(stats_table(rows))
    return ExitCode.SUCCEEDED


def _cancel(args: argparse.Namespace) -> int:
    if use_daemon(args):
        from . import client
        client.request(socket_path(args), "POST", f"/runs/{quoted_run(args.run)}/cancel")
        print(f"cancel requested for run {args.run}")
        return ExitCode.SUCCEEDED

    async def work(engine: Any) -> Any:
        run = await engine.store.get_run(args.run)
        return run.id, await engine.cancel_run(run.id, definition_of_run(run, args.skills))
    import asyncio
    run_id, result = asyncio.run(with_engine(args, work))
    if result is None:
        print(f"cancel requested for run {run_id}; its driver stops it within a second")
    else:  # nobody drove it: it was taken over and ended here
        print(f"run {run_id} {result.status.replace('_', ' ')}: no process was driving it")
    return ExitCode.SUCCEEDED


def _workflows(args: argparse.Namespace) -> int:
    from . import client
    for w in client.request(socket_path(args), "GET", "/workflows"):
        print(f"{w['name']}\t{w['steps']} steps\t{w['file']}")
    return ExitCode.SUCCEEDED


def _run_json(run: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(run).items() if k not in ("definition", "lease_owner")}


COMMANDS = {"validate": _validate, "schema": _schema, "graph": _graph, "run": _run,
            "runs": _runs, "show": _show, "report": _report, "stats": _stats, "resume": _resume,
            "cancel": _cancel, "workflows": _workflows}

if __name__ == "__main__":
    sys.exit(main())
