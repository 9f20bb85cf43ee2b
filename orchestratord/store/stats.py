"""Performance statistics from the run history: how often each skill/action runs,
succeeds, retries, and how long it takes.

Only steps that ran at least one attempt and ended count: a skipped step, or one that
failed before its first attempt (a dependency failed, its params did not render), says
nothing of its action. A step's duration runs from its first attempt's start to its end,
back-off waits included; its retries are its attempts after the first. A step that was
rolled back (compensated) had succeeded.

Everything is read from covering indexes in one read transaction: the steps that
ran are counted per skill/action in one pass over steps_stats (migration 3) that
decodes nothing but the group; each percentile and the longest duration is sought by
its rank in duration order from the nearer end (`LIMIT 1 OFFSET k`); failures and
retries are counted over steps_stats_exceptions (migration 7), which holds only the
steps that retried or did not succeed. About one and a half passes over the index
whatever the filter: 25-45 ms for 100,000 runs (see bench/history.py). Percentiles are
nearest-rank: the p-th percentile of n durations is the ceil(p/100 * n)-th smallest.
"""

from __future__ import annotations

import datetime
import math
import re
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..core.errors import ParamsError, StoreError
from ..core.statuses import ACTION_SUCCEEDED
from .connection import database_error

OK = ", ".join(f"'{s}'" for s in ACTION_SUCCEEDED)  # as SQL
RAN = "attempts > 0 AND duration IS NOT NULL"  # the partial indexes' condition, verbatim
# steps_stats_exceptions' condition beyond RAN, verbatim (else SQLite cannot use it)
EXCEPTIONAL = f"(attempts > 1 OR status NOT IN ({OK}))"


@dataclass(frozen=True)
class ActionStats:
    skill: str
    action: str
    count: int            # steps that ran this action and ended
    succeeded: int
    success_rate: float   # succeeded / count
    p50: float            # seconds
    p95: float
    max: float
    retries: int          # attempts after each step's first
    retries_per_run: float  # retries / count: how many retries a run of the step needs

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_since(text: str, *, now: float | None = None) -> float:
    """Unix time from an ISO date/time ("2024-05-01", "2024-05-01T10:00:00Z"; local
    time without a zone) or from a duration back from now ("7d", "12h", "1h30m")."""
    from ..language.model import parse_duration
    text = text.strip()
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        pass
    else:
        return moment.timestamp()  # naive: local time, as an operator types it
    try:
        seconds = parse_duration(text) if re.search(r"[a-z]$", text) else None
    except ValueError:
        seconds = None
    if seconds is None:
        raise ParamsError(f"--since: {text!r} is neither an ISO date/time (2024-05-01, "
                          "2024-05-01T10:00:00Z) nor a duration back from now (7d, 12h, 30m)")
    return (time.time() if now is None else now) - seconds


def compute(db: str | Path, *, workflow: str | None = None,
            since: float | None = None) -> list[ActionStats]:
    """Statistics per skill/action of the steps of `workflow` (all if None) that
    started at or after `since` (Unix time; all if None), ordered by skill and action.

    Reads through its own connection, so a daemon can run it in a thread while its
    store writes: WAL gives this read a consistent snapshot.
    """
    with _connect(db) as conn:
        return compute_on(conn, workflow=workflow, since=since)


def compute_on(conn: sqlite3.Connection, *, workflow: str | None = None,
               since: float | None = None) -> list[ActionStats]:
    """`compute` through conn (rows as sqlite3.Row), outside any transaction."""
    where = [RAN]
    args: list[Any] = []
    if workflow is not None:
        where.insert(0, "workflow = ?")
        args.append(workflow)
    if since is not None:
        where.append("started_at >= ?")
        args.append(since)
    condition = " AND ".join(where)
    conn.execute("BEGIN")  # one snapshot for the counts and the ranks
    try:
        groups = conn.execute(
            f"SELECT skill, action, count(*) AS n FROM steps WHERE {condition} "
            "GROUP BY skill, action ORDER BY skill, action", args).fetchall()
        exceptions = {(row["skill"], row["action"]): row for row in conn.execute(
            f"SELECT skill, action, count(*) FILTER (WHERE status NOT IN ({OK})) "
            "AS failed, total(attempts - 1) AS retries "
            f"FROM steps INDEXED BY steps_stats_exceptions WHERE {condition} AND "
            f"{EXCEPTIONAL} GROUP BY skill, action", args)}
        rank_sql = (f"SELECT duration FROM steps WHERE {condition} AND skill = ? "
                    "AND action = ? ORDER BY duration {} LIMIT 1 OFFSET ?")
        result = []
        for group in groups:
            skill, action, n = group["skill"], group["action"], group["n"]
            p50, p95, longest = (
                _ranked(conn, rank_sql, (*args, skill, action), rank, n)
                for rank in (_rank(50, n), _rank(95, n), n))
            other = exceptions.get((skill, action))
            failed, retries = (other["failed"], int(other["retries"])) if other else (0, 0)
            result.append(ActionStats(skill, action, n, n - failed, (n - failed) / n,
                                      p50, p95, longest, retries, retries / n))
    finally:
        conn.execute("COMMIT")
    return result


def last_successes(db: str | Path) -> dict[str, float]:
    """workflow -> when its latest succeeded run finished (Unix time), in one query."""
    with _connect(db) as conn:
        rows = conn.execute(
            "SELECT workflow, max(finished_at) AS finished_at FROM runs "
            "INDEXED BY runs_last_success WHERE status = 'succeeded' "
            "AND finished_at IS NOT NULL GROUP BY workflow").fetchall()
        return {row["workflow"]: row["finished_at"] for row in rows}


def _ranked(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...], rank: int, n: int) -> float:
    """The rank-th smallest of n durations, sought from the nearer end of the index: the
    95th percentile from the top skips 5 % of the entries, not 95 % (bench/history.py:
    stats over all history went from about 2.5 passes over the index to 1.5)."""
    if rank > n // 2:
        return conn.execute(sql.format("DESC"), (*args, n - rank)).fetchone()["duration"]
    return conn.execute(sql.format("ASC"), (*args, rank - 1)).fetchone()["duration"]


def _rank(percent: int, n: int) -> int:
    """Nearest rank (1-based) of the percent-th percentile of n values."""
    return max(1, math.ceil(percent * n / 100))


class _connect:
    """A short-lived query-only connection that turns SQLite errors into StoreError."""

    def __init__(self, db: str | Path):
        self.db = Path(db)

    def __enter__(self) -> sqlite3.Connection:
        if not self.db.exists():
            raise StoreError(f"no state database at {self.db}")
        try:
            self.conn = sqlite3.connect(self.db, isolation_level=None, timeout=10)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA query_only = 1")
        except sqlite3.Error as exc:
            raise database_error(self.db, exc) from exc
        return self.conn

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        self.conn.close()
        if isinstance(exc, sqlite3.Error):
            raise database_error(self.db, exc) from exc
