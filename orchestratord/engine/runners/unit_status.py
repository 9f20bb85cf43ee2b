"""What a step unit leaves when it ends: the script its ExecStopPost= runs, and its memory.

ExecStopPost= runs with full privileges in the unit's own cgroup, after the command ended
and before systemd removes that cgroup, so it is where the cgroup's memory counters can
still be read. That matters on a cgroup v1 host: systemd 252 learns of an OOM kill only
from the v2 file memory.events, so there a step killed by the OOM killer for its
MemoryMax= (memory.limit_in_bytes) ends with Result=signal, SIGKILL; the cgroup's own
`oom_kill` counter (memory.oom_control, Linux 4.13+) tells it apart from any other SIGKILL.
"""

from __future__ import annotations

from typing import Any

# argv: the status file, then shutdown.list_jobs_argv(). JOBS is what the latter printed as
# the unit stopped: whether the system was shutting down then. MEMORY is the unit cgroup's
# OOM kills and limit in bytes (None where unknown). systemd puts a unit at the same path
# in every hierarchy, the one its name=systemd (v1) or 0:: line names; in a container the
# memory line may be relative to another root, so the directory that lists this process
# is the one.
WRITE_STATUS = """\
import json, os, subprocess, sys
status = {k: os.environ.get(k, '') for k in ('SERVICE_RESULT', 'EXIT_CODE', 'EXIT_STATUS')}
try:
    status['JOBS'] = subprocess.run(sys.argv[2:], capture_output=True, text=True,
                                    timeout=10).stdout if sys.argv[2:] else ''
except (OSError, subprocess.SubprocessError):
    status['JOBS'] = ''

def memory():
    lines = [l.split(':', 2) for l in open('/proc/self/cgroup').read().splitlines()]
    paths = {c: p.lstrip('/') for _, c, p in lines}
    own = paths.get('name=systemd', paths.get(''))
    for base, counters, limit in (
            ('/sys/fs/cgroup/memory', 'memory.oom_control', 'memory.limit_in_bytes'),
            ('/sys/fs/cgroup', 'memory.events', 'memory.max')):
        for path in dict.fromkeys(p for p in (own, paths.get('memory')) if p is not None):
            where = os.path.join(base, path)
            try:
                if str(os.getpid()) not in open(os.path.join(where, 'cgroup.procs')).read().split():
                    continue
                text = open(os.path.join(where, limit)).read().strip()
            except OSError:
                continue
            kills = None
            try:
                for line in open(os.path.join(where, counters)):
                    if line.startswith('oom_kill '):
                        kills = int(line.split()[1])
            except (OSError, ValueError):
                pass
            return {'oom_kills': kills, 'limit': int(text) if text.isdigit() else None}
    return {'oom_kills': None, 'limit': None}

try:
    status['MEMORY'] = memory()
except Exception as exc:
    status['MEMORY'] = {'oom_kills': None, 'limit': None, 'error': repr(exc)}
open(sys.argv[1], 'w').write(json.dumps(status))
"""
# cgroup v1 says "no limit" with the largest page-aligned 63-bit number.
UNLIMITED = 2**63 - 4096


def out_of_memory(status: dict[str, Any]) -> bool:
    """Whether the kernel's OOM killer ended the unit: systemd says so (cgroup v2), or the
    unit's cgroup counted an OOM kill (cgroup v1, where systemd cannot tell)."""
    memory = status.get("MEMORY") or {}
    return status.get("SERVICE_RESULT") == "oom-kill" or bool(memory.get("oom_kills"))


def memory_limit(status: dict[str, Any]) -> str | None:
    """The unit cgroup's memory limit as MemoryMax= would say it; None when it had none."""
    limit = (status.get("MEMORY") or {}).get("limit")
    if not isinstance(limit, int) or limit >= UNLIMITED:
        return None
    for suffix, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if limit % size == 0:
            return f"{limit // size}{suffix}"
    return str(limit)
