"""The "did you mean" hint of every error that names something unknown.

One cut-off for the whole program, so a typo is corrected the same way in a workflow
file, a step reference, a skill name on the command line and a key of the settings.
Imports nothing of the project.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# difflib's own default: close enough that the hint is usually what was meant.
CUTOFF = 0.6


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` naming the closest candidate, or '' when none is close."""
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=CUTOFF)
    return f" (did you mean '{close[0]}'?)" if close else ""
