"""orchestratorctl aidb status | sync: AIDB as the daemon sees it.

The catalog cache and the history outbox belong to the daemon, so both ask it (exit 7
when no daemon answers at the socket).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..core.statuses import ExitCode


def add_commands(sub: Any) -> None:
    c = sub.add_parser("aidb", help="AIDB: reachable, key accepted, catalog age, outbox depth")
    verbs = c.add_subparsers(dest="aidb_command", required=True)
    for name, help_ in (("status", "reachable, key accepted, catalog age, outbox depth, "
                                   "oldest pending record"),
                        ("sync", "refresh the catalog and send pending history records now")):
        v = verbs.add_parser(name, help=help_)
        v.add_argument("--json", action="store_true")
        v.set_defaults(handler=aidb)


def aidb(args: argparse.Namespace) -> int:
    from .client import request
    from .common import socket_path
    socket = socket_path(args)
    if not socket.is_socket():
        print(f"orchestratorctl aidb: no daemon at {socket}: AIDB's catalog cache and "
              "history outbox are the daemon's; start it, or name its socket with --socket",
              file=sys.stderr)
        return ExitCode.CANNOT_PROCEED
    if args.aidb_command == "status":
        answer = request(socket, "GET", "/aidb/status")
        status = answer
    else:
        answer = request(socket, "POST", "/aidb/sync")
        status = answer["status"]
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        if args.aidb_command == "sync":
            print(f"catalog refreshed: {'yes' if answer['refreshed'] else 'no'}; "
                  f"history records sent: {answer['sent']}")
            for error in answer["errors"]:
                print(f"  error: {error}")
        print(render_status(status))
    if status.get("url") is None:
        return ExitCode.CANNOT_PROCEED
    return 0 if status.get("reachable") and status.get("key_accepted") is not False else 1


def render_status(s: dict[str, Any]) -> str:
    def yes(v: Any) -> str:
        return "-" if v is None else ("yes" if v else "no")
    age = s.get("catalog_age_seconds")
    oldest = s.get("oldest_pending_age_seconds")
    lines = [f"AIDB:            {s.get('url') or 'not configured (aidb.url)'}",
             f"reachable:       {yes(s.get('reachable'))}",
             f"key accepted:    {yes(s.get('key_accepted'))}",
             f"catalog:         {s.get('catalog_skills', 0)} skills, "
             + ("never fetched" if age is None else f"fetched {age:.0f} s ago"),
             f"joined:          {', '.join(s.get('joined') or []) or '-'}",
             f"shadowed:        {', '.join(s.get('shadowed') or []) or '-'} (a local skill "
             "of the same name wins)",
             f"outbox:          {s.get('outbox_pending', 0)} pending, "
             f"{s.get('outbox_sent', 0)} sent, {s.get('outbox_rejected', 0)} rejected",
             f"oldest pending:  {'-' if oldest is None else f'{oldest:.0f} s'}"]
    for key in ("error", "last_refresh_error", "last_delivery_error"):
        if s.get(key):
            lines.append(f"{key.replace('_', ' ')}: {s[key]}")
    return "\n".join(lines)
