"""How long something took, for people: the one duration format of every rendering.

Reports, the CLI's tables and progress lines, and alerts all print durations this way,
so a reader who sees `2m05s` in a report finds the same `2m05s` in `orchestratorctl
show` and in the alert. Like Go's and systemd's durations there is no space between
number and unit; below a minute a tenth of a second is shown, above it the two largest
units (seconds no longer matter to a run of hours). Imports nothing of the project.
"""

from __future__ import annotations

MISSING = "-"


def format_duration(seconds: float | None) -> str:
    """850ms, 1.2s, 59.9s, 2m05s, 1h02m, 2d03h; MISSING when unknown."""
    if seconds is None:
        return MISSING
    seconds = max(seconds, 0.0)  # a clock stepped back mid-run: say "0", not "-3ms"
    if round(seconds * 1000) < 1000:
        return f"{seconds * 1000:.0f}ms"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_span(start: float | None, end: float | None) -> str:
    """The duration from start to end, MISSING unless both are known."""
    return MISSING if start is None or end is None else format_duration(end - start)
