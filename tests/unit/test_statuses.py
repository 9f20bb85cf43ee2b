"""Statuses, event kinds and exit codes are defined once (orchestratord/core/statuses.py);
the migrations' SQL, which must keep its literal strings, names only members of them, and
orchestratorctl's exit for a run is the same whether it ran the run itself or followed
the daemon's."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import orchestratord
from orchestratord.cli.stopping import exit_status
from orchestratord.core.statuses import (
    ACTION_SUCCEEDED,
    FINAL,
    STEP_ENDED,
    TERMINAL,
    AttemptStatus,
    EventKind,
    ExitCode,
    RunStatus,
    StepStatus,
    ended_status,
    event_subject,
)
from orchestratord.store.migrations import MIGRATIONS

STATUSES = {*RunStatus, *StepStatus, *AttemptStatus}
# Quoted words of the SQL that are neither statuses nor event kinds: attempt kinds
# (attempts.kind), a PRAGMA value and the AIDB outbox's record kind.
OTHER_WORDS = {"action", "rollback", "on", "history"}


@pytest.mark.parametrize("version", sorted(MIGRATIONS))
def test_every_status_and_event_kind_the_migrations_name_is_an_enum_member(version):
    words = set(re.findall(r"'([a-z_]+)'", MIGRATIONS[version]))
    unknown = words - STATUSES - set(EventKind) - OTHER_WORDS
    assert not unknown, f"migration {version} names {sorted(unknown)}: add them to core/statuses.py"


def test_each_step_ending_event_names_a_step_status():
    # The triggers set steps.status = substr(type, 6) for a step_<status> event.
    for kind in EventKind:
        if kind.startswith("step_") and kind not in {EventKind.STEP_STARTED, EventKind.STEP_RETRY,
                                                      EventKind.STEP_SANDBOX_UNAVAILABLE}:
            assert StepStatus(kind.removeprefix("step_"))


def test_an_event_kind_names_its_subject_and_the_status_it_ends_with():
    assert event_subject(EventKind.STEP_RETRY) == ("step", "retry")
    assert event_subject(EventKind.RUN_TIMED_OUT) == ("run", "timed_out")
    assert event_subject(EventKind.ATTEMPT_FAILED) == (None, "attempt_failed")
    assert event_subject("run") == (None, "run")
    # A run's `failed` and a step's compare equal; their types keep them apart.
    assert type(ended_status(EventKind.RUN_FAILED)) is RunStatus
    assert type(ended_status(EventKind.STEP_FAILED)) is StepStatus
    ending = {kind for kind in EventKind if ended_status(kind) is not None}
    assert ending == ({EventKind.run_ended(s) for s in FINAL}
                      | {EventKind.step_ended(s) for s in (*STEP_ENDED, *ACTION_SUCCEEDED)})
    assert ended_status("run_pending") is None  # a status, but no event ends a run with it
    assert ended_status("step_of_a_newer_daemon") is None


@pytest.mark.parametrize("status", [*TERMINAL, RunStatus.INTERRUPTED])
def test_a_followed_run_exits_as_a_run_in_process_does(status):
    # remote.py once had its own map without `interrupted`: a followed run whose daemon
    # stopped under it exited 1 instead of 130.
    assert exit_status(None, {"status": status}) == ExitCode.of_run(status)
    assert EventKind.run_ended(status).value == f"run_{status}"


def test_exit_codes_are_the_readmes():
    assert {s: int(ExitCode.of_run(s)) for s in [*TERMINAL, RunStatus.INTERRUPTED]} == {
        "succeeded": 0, "failed": 1, "cancelled": 3, "timed_out": 4, "rolled_back": 5,
        "rollback_failed": 6, "interrupted": 130}
    assert ExitCode.of_run("a_status_of_a_newer_daemon") == ExitCode.FAILED
    assert exit_status(None, None) == ExitCode.CANNOT_PROCEED == 7


# Words of other vocabularies that are spelled like a status or an event kind, by module.
NOT_STATUSES = {
    # retry.on's reasons in the workflow language, not attempt statuses
    "core/errors.py": {"failed", "timeout"},
    "engine/retry.py": {"failed"},
    "language/model.py": {"failed", "timeout"},
    # systemd's own: a unit's ActiveState=failed, its Result=timeout
    "engine/runners/systemctl.py": {"failed"},
    "engine/runners/systemd_bus.py": {"failed"},
    "engine/runners/unit.py": {"timeout"},
    # the error text of a step cancelled on request
    "engine/driver.py": {"cancelled"},
    # alert kinds (README "Alerts"), the rollback metric's outcome label, counters and
    # fields of messages sent elsewhere
    "observability/alerts.py": {"run_failed", "run_timed_out", "rollback_failed"},
    "observability/metrics.py": {"succeeded", "failed"},
    "integrations/aidb/service.py": {"skipped"},
    "skills/bundled/internal_comms/actions.py": {"failed"},
}


def test_no_module_spells_a_status_or_an_event_kind():
    """Regression: driver, compensation, stats, the daemon, the MCP server, the reports
    and metrics compared and recorded statuses as bare strings (stats.py and mcp/server.py
    had status lists of their own), and the store and the unit runner appended
    `"step_retry"` and `f"step_{status}"`, which a renamed member would not catch. Only
    core/statuses.py spells them; the migrations' SQL keeps its literals (tested above),
    and a subscript (`row["failed"]`) names a column, not a status. Likewise metrics,
    alerts, the AIDB history, orchestratorctl's progress and the MCP server each cut
    "run_"/"step_" off an event's kind to learn its subject and status: only
    core.statuses.event_subject and ended_status do."""
    package = Path(orchestratord.__file__).parent
    words = {str(word) for word in (*STATUSES, *EventKind)}
    literal: list[str] = []
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package).as_posix()
        if where in ("core/statuses.py", "store/migrations.py"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        keys = {id(node.slice) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
        for node in ast.walk(tree):
            head = node.values[0] if isinstance(node, ast.JoinedStr) and node.values else node
            if not isinstance(head, ast.Constant) or not isinstance(head.value, str):
                continue
            if head is not node and head.value in ("run_", "step_"):
                literal.append(f"{where}:{node.lineno}: f{head.value!r}...")
            elif (head.value in words and id(node) not in keys
                  and head.value not in NOT_STATUSES.get(where, ())):
                literal.append(f"{where}:{node.lineno}: {head.value!r}")
        literal += _kind_surgery(where, tree)
    assert literal == [], "use the members and functions of core/statuses.py instead"


# The prefixes of the kinds of a run's and a step's events, and what cutting them off
# looks like: kind.startswith("step_"), kind.removeprefix("run_"), kind.split("_", 1),
# kind[5:].
PREFIXES = ("run_", "step_")
CUTS = {"startswith", "removeprefix", "split", "rsplit", "partition"}


def _kind_surgery(where: str, tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in CUTS):
            args = [e for a in node.args for e in (a.elts if isinstance(a, ast.Tuple) else [a])]
            if any(isinstance(a, ast.Constant) and a.value in (*PREFIXES, "_") for a in args):
                found.append(f"{where}:{node.lineno}: .{node.func.attr}({ast.unparse(node.args[0])})")
        elif (isinstance(node, ast.Slice) and node.upper is None
              and isinstance(node.lower, ast.Constant)
              and node.lower.value in {len(prefix) for prefix in PREFIXES}):
            found.append(f"{where}:{node.lineno}: [{node.lower.value}:]")
    return found


def test_the_shells_return_exit_codes_as_enum_members():
    """Regression: orchestratorctl's and orchestratord's commands returned 0, 1, 2 and 7
    as bare numbers beside ExitCode; README's table is ExitCode's."""
    package = Path(orchestratord.__file__).parent
    codes = {int(code) for code in ExitCode}
    bare = [f"{path.relative_to(package)}:{node.lineno}: {node.value.value}"
            for shell in ("cli", "daemon", "mcp") for path in sorted((package / shell).rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant)
            and type(node.value.value) is int and node.value.value in codes]
    assert bare == [], "return core.statuses.ExitCode members instead"


def test_alerts_and_status_reports_take_failed_steps_from_core_statuses():
    """Regression: internal-comms' status report had a FAILED set of its own and alerts
    a FAILED_STEP_STATUSES; both now take core.statuses.STEP_FAILURES (internal-comms
    through the report model's failed_steps), so they cannot disagree."""
    package = Path(orchestratord.__file__).parent
    statuses = {*RunStatus, *StepStatus, *AttemptStatus}
    readers = [package / "observability" / "alerts.py", package / "reports" / "report.py",
               package / "reports" / "markdown.py",
               *(package / "skills" / "bundled" / "internal_comms").glob("*.py")]
    own = [f"{path.relative_to(package)}:{node.lineno}"
           for path in readers for node in ast.walk(ast.parse(path.read_text(), str(path)))
           if isinstance(node, ast.Set | ast.Tuple | ast.List)
           and sum(isinstance(e, ast.Constant) and e.value in statuses for e in node.elts) > 1]
    assert own == [], "name the status sets of core/statuses.py instead"
    assert "STEP_FAILURES" in readers[0].read_text() and "STEP_FAILURES" in readers[1].read_text()
