"""How a report writes times and durations: the leaf the renderers (markdown, html,
layout) share, so that the report model dispatches to them without a cycle."""

from __future__ import annotations

import datetime


def when(ts: float | None) -> str:
    """A timestamp in the host's local time with its UTC offset (as journalctl shows)."""
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).astimezone().isoformat(sep=" ", timespec="seconds")


def took(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
