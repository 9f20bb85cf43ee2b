"""orchestratorctl's skill commands: the catalog, calling one action, routing a request.

Like the rest of the CLI these parse arguments and call the library; with the daemon's
socket present (and no --state) they ask the daemon, which serves the same answers.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..core.statuses import ExitCode


def add_commands(sub: Any) -> None:
    """Add `skills`, `call` and `route` to orchestratorctl's subcommands."""
    c = sub.add_parser("skills", help="the skills found: name, version, actions, capabilities")
    c.add_argument("--json", action="store_true")
    c.set_defaults(handler=skills)
    show = c.add_subparsers(dest="skills_command").add_parser(
        "show", help="a skill's SKILL.md, as an agent reads it")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="the catalog entry, as JSON")
    c = sub.add_parser("call", help="run one action of a skill as a recorded one-step run")
    c.add_argument("skill")
    c.add_argument("action")
    c.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a param of the action; VALUE is read as YAML (42, [a, b], true)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(handler=call)
    add_route_command(sub)


def _registry(args: argparse.Namespace) -> Any:
    from ..language.skill_registry import discover, search_path
    return discover(search_path(args.skills))


def skills(args: argparse.Namespace) -> int:
    from ..skills.describe import describe, describe_all, document, table
    from .common import socket_path, use_daemon
    name = getattr(args, "name", None)
    if use_daemon(args):
        from urllib.parse import quote

        from . import client
        if name is None:
            described = client.request(socket_path(args), "GET", "/skills")
        else:
            entry = client.request(socket_path(args), "GET", f"/skills/{quote(name, safe='')}")
            return _print_skill(entry, entry.pop("document"), args.json)
    else:
        registry = _registry(args)
        if name is not None:
            skill = registry.get(name)
            if skill is None:
                from ..core.suggest import did_you_mean
                print(f"orchestratorctl: no skill '{name}'{did_you_mean(name, registry.skills)}"
                      " (`orchestratorctl skills` lists them)", file=sys.stderr)
                return ExitCode.INVALID
            return _print_skill(describe(skill), document(skill), args.json)
        described = describe_all(registry)
    print(json.dumps(described, indent=2) if args.json else table(described))
    return ExitCode.SUCCEEDED


def _print_skill(entry: dict[str, Any], text: str, as_json: bool) -> int:
    sys.stdout.write(json.dumps(entry, indent=2) + "\n" if as_json else text)
    return ExitCode.SUCCEEDED


def call(args: argparse.Namespace) -> int:
    from .common import socket_path, use_daemon
    from .embedded import drive, parse_params
    params = parse_params(args.param)
    if use_daemon(args) and not args.skills:
        from . import remote
        return remote.run_call(socket_path(args), args.skill, args.action, params,
                               as_json=args.json)
    from ..language.calls import call_definition
    definition = call_definition(_registry(args), args.skill, args.action, params)
    return drive(args, lambda engine: engine.run(definition))


def add_route_command(sub: Any) -> None:
    c = sub.add_parser("route", help="which skill and action fit a request, with reasons")
    c.add_argument("text")
    c.add_argument("--json", action="store_true")
    c.add_argument("--limit", type=_route_limit, default=5, metavar="K",
                   help="at most K candidates")
    c.add_argument("--run", action="store_true",
                   help="call the match if it is one and its action is not mutating")
    c.set_defaults(handler=route)


def _route_limit(text: str) -> int:
    from ..language.skill_routing import MAX_CANDIDATES
    from .common import whole_number
    return whole_number(MAX_CANDIDATES)(text)


def route(args: argparse.Namespace) -> int:
    """Exit 0 when matched, 1 when ambiguous or none; with --run, the run's exit status."""
    from .common import socket_path, use_daemon
    if use_daemon(args) and not args.skills:
        from . import client
        answer = client.request(socket_path(args), "POST", "/route",
                             {"text": args.text, "limit": args.limit})
    else:
        from ..language.skill_routing import router_of
        answer = router_of(_registry(args)).route(args.text, args.limit).as_dict()
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        print(answer["status"])
        for c in answer["candidates"]:
            kind = " (instructions)" if c.get("instructions") else f".{c['action']}"
            target = c["skill"] + kind
            print(f"  {target}\t{c['score']}\t{c['why']}")
    if answer["status"] != "matched":
        return ExitCode.FAILED
    if not args.run:
        return ExitCode.SUCCEEDED
    best = answer["candidates"][0]
    if best.get("instructions"):
        print(f"orchestratorctl: {best['skill']} is an instruction skill, nothing to run: read "
              f"it with `orchestratorctl skills show {best['skill']}`", file=sys.stderr)
        return ExitCode.CANNOT_PROCEED
    described = [a for a in _registry(args).get(best["skill"]).actions.items()
                 if a[0] == best["action"]]
    if described and described[0][1].mutating:
        print(f"orchestratorctl: {best['skill']}.{best['action']} changes the system; run it "
              f"with `orchestratorctl call {best['skill']} {best['action']}`", file=sys.stderr)
        return ExitCode.CANNOT_PROCEED
    args.skill, args.action, args.param = best["skill"], best["action"], []
    return call(args)
