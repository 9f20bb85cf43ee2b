"""The one duration format of reports, CLI tables, progress lines and alerts."""

from __future__ import annotations

import pytest

from orchestratord.core.durations import format_duration, format_span


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "-"), (0, "0ms"), (0.0123, "12ms"), (0.85, "850ms"),
    (0.9996, "1.0s"),  # rounds up into seconds, not "1000ms"
    (1.234, "1.2s"), (10, "10.0s"), (59.94, "59.9s"),
    (59.96, "1m00s"),  # not "60.0s"
    (125, "2m05s"), (3599.6, "1h00m"), (3723, "1h02m"), (90_000, "1d01h"),
    (-0.003, "0ms"),  # a clock stepped back: no negative durations
])
def test_format_duration(seconds, shown):
    assert format_duration(seconds) == shown


def test_a_span_needs_both_ends():
    """Regression: the CLI's tables printed "-" for a run started at timestamp 0."""
    assert format_span(0.0, 1.5) == "1.5s"
    assert format_span(None, 1.5) == format_span(1.0, None) == "-"
