"""How a report writes times: the leaf the renderers (markdown, html, layout) share, so
that the report model dispatches to them without a cycle. Durations are written by
core/durations.py, the one duration format of the whole program."""

from __future__ import annotations

import datetime


def when(ts: float | None) -> str:
    """A timestamp in the host's local time with its UTC offset, as journalctl and
    systemctl show it: a reader lines the report up with the journal of the same host,
    and the offset keeps it unambiguous wherever the report is read."""
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).astimezone().isoformat(sep=" ", timespec="seconds")
